"""CRUXEval: predict a function's output from its input (cruxeval-o), or an input from its output (-i).

Prompts follow the benchmark's own direct few-shot prompts, with the answer as an assertion between
[ANSWER] tags, so scores compare with published ones. Scoring follows the benchmark too: the program
`<code>; assert <output> == <prediction>` runs in the sandbox, and an output prediction may not call `f`
while an input prediction must be a call of `f`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from cepo.evals.base import BadLinePolicy, Dataset, Loaded, Problem, Verdict
from cepo.evals.execution import run_check
from cepo.evals.jsonl import read_problems
from cepo.sandbox import Limits

Mode = Literal["output", "input"]
LIMITS = Limits(cpu_s=3, wall_s=6)

OUTPUT_PROMPT = """You are given a Python function and an assertion containing an input to the function. \
Complete the assertion with a literal (no unsimplified expressions, no function calls) containing the output \
when executing the provided code on the given input, even if the function is incorrect or incomplete. \
Do NOT output any extra information. Provide the full assertion with the correct output in [ANSWER] and \
[/ANSWER] tags, following the examples.

[PYTHON]
def f(n):
    return n
assert f(17) == ??
[/PYTHON]
[ANSWER]
assert f(17) == 17
[/ANSWER]

[PYTHON]
def f(s):
    return s + "a"
assert f("x9j") == ??
[/PYTHON]
[ANSWER]
assert f("x9j") == "x9ja"
[/ANSWER]

[PYTHON]
{code}
assert f({input}) == ??
[/PYTHON]
[ANSWER]
"""

INPUT_PROMPT = """You will be given a function f and an output in the form f(??) == output. Find any input \
such that executing f on the input leads to the given output. There may be multiple answers, but you should \
only output one. In [ANSWER] and [/ANSWER] tags, complete the assertion with one such input that will \
produce the output when executing the function.

[PYTHON]
def f(my_list):
    count = 0
    for i in my_list:
        if len(i) % 2 == 0:
            count += 1
    return count
assert f(??) == 3
[/PYTHON]
[ANSWER]
assert f(["mq", "px", "zy"]) == 3
[/ANSWER]

[PYTHON]
def f(s1, s2):
    return s1 + s2
assert f(??) == "banana"
[/PYTHON]
[ANSWER]
assert f("ba", "nana") == "banana"
[/ANSWER]

[PYTHON]
{code}
assert f(??) == {output}
[/PYTHON]
[ANSWER]
"""

_ANSWER = re.compile(r"\[ANSWER\](.*?)(?:\[/ANSWER\]|\Z)", re.DOTALL)


class Row(BaseModel):
    """One line of a CRUXEval JSONL file."""

    id: str
    code: str
    input: str
    output: str


class CruxProblem(Problem):
    code: str
    input: str
    output: str


class CruxEval(Dataset):
    needs_path = True
    task = "open"  # the answer is an assertion to read, not code to run

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.name = f"cruxeval-{mode[0]}"

    def load(self, path: Path | None, on_bad_line: BadLinePolicy) -> Loaded:
        assert path is not None
        return read_problems(path, self._problem, on_bad_line)

    def _problem(self, raw: dict) -> CruxProblem:
        row = Row.model_validate(raw)
        prompt = OUTPUT_PROMPT if self.mode == "output" else INPUT_PROMPT
        question = prompt.format(code=row.code, input=row.input, output=row.output)
        return CruxProblem(messages=[{"role": "user", "content": question}], **row.model_dump())

    async def score(self, problem: Problem, answer: str) -> Verdict:
        assert isinstance(problem, CruxProblem)
        prediction = extract_prediction(answer, self.mode)
        if not prediction:
            return Verdict(passed=False, detail="no prediction found")
        if self.mode == "output" and _calls_f(prediction):
            return Verdict(passed=False, detail="the predicted output calls f")
        if self.mode == "input" and not _is_call_of_f(prediction):
            return Verdict(passed=False, detail="the predicted input is not a call of f")
        return await run_check(f"{problem.code}\nassert {problem.output} == {prediction}", LIMITS)


def extract_prediction(answer: str, mode: Mode) -> str:
    """The predicted output (the right side of the assertion), or the predicted call `f(...)`.

    Reads the last [ANSWER] block, else the last line starting with `assert`, else the whole answer.
    """
    blocks = [block.strip() for block in _ANSWER.findall(answer) if block.strip()]
    if blocks:
        text = blocks[-1]
    else:
        asserts = [line.strip() for line in answer.splitlines() if line.strip().startswith("assert")]
        text = asserts[-1] if asserts else answer.strip()
    sides = _assertion_sides(text)
    if sides is not None:
        return sides[1] if mode == "output" else sides[0]
    # Not a parseable assertion: split as the benchmark's own post-processing does.
    if mode == "output":
        return text.split("==", 1)[1].strip() if "==" in text else text
    call = text.split("==", 1)[0].strip()
    return call.removeprefix("assert").strip()


def _assertion_sides(text: str) -> tuple[str, str] | None:
    """`(left, right)` source of `[assert] left == right`, when the text parses as that."""
    source = text if text.startswith("assert") else f"assert {text}"
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    test = tree.body[0].test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    left = ast.get_source_segment(source, test.left)
    right = ast.get_source_segment(source, test.comparators[0])
    return (left, right) if left and right else None


def _calls_f(expression: str) -> bool:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:  # the sandbox reports the syntax error when the check runs
        return False
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f"
        for node in ast.walk(tree)
    )


def _is_call_of_f(expression: str) -> bool:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return False
    call = tree.body
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"
