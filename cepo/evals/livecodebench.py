"""LiveCodeBench code generation: a JSONL file in the benchmark's format, stdin and functional problems.

Public tests are shown to the method; scoring runs the public and the private tests, as the benchmark
does. Private tests come as JSON, or as base64 of zlib-compressed JSON; the benchmark's own release
pickles that JSON string, and cepo reads such a pickle only when it holds nothing but one string (read
with pickletools, never unpickled).
"""

from __future__ import annotations

import base64
import binascii
import json
import pickletools
import zlib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from cepo.checks.code import extract_code, parses, without_main_block
from cepo.checks.examples import Example, failure
from cepo.evals.base import BadLinePolicy, Dataset, Loaded, Problem, Verdict
from cepo.evals.execution import run_check
from cepo.evals.jsonl import read_problems
from cepo.sandbox import Limits, run_code_async

TEST_SECONDS = 6  # per test, as the benchmark allows
MAX_FUNCTIONAL_SECONDS = 60  # all of a functional problem's tests run in one process

SYSTEM = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests."
)
FUNCTIONAL_FORMAT = """### Format: Write the solution using the following starter code, and enclose your \
code within delimiters.
```python
{starter_code}
```"""
STDIN_FORMAT = """### Format: Read the inputs from stdin, solve the problem and write the answer to stdout \
(do not test on the sample inputs). Enclose your code within delimiters as follows.
```python
# YOUR CODE HERE
```"""
QUESTION = """### Question:
{content}

{format}

### Answer: (use the provided format with backticks)
"""
# Names a solution may use without importing them, as in the benchmark's own harness.
PRELUDE = """from typing import *
from collections import *
from functools import *
from itertools import *
from heapq import *
from bisect import *
from math import *
import collections, functools, itertools, heapq, bisect, math, re, string, sys
sys.setrecursionlimit(50000)
"""
FUNCTIONAL_HARNESS = """
import json as _json

_TESTS = _json.loads({tests!r})
_target = getattr(Solution(), {name!r}) if "Solution" in globals() else globals()[{name!r}]
for _number, (_args, _expected) in enumerate(_TESTS, 1):
    _got = _target(*_args)
    if isinstance(_got, tuple):
        _got = list(_got)
    assert _got == _expected, f"test {{_number}}: returned {{_got!r:.200}}, expected {{_expected!r:.200}}"
"""


class Test(BaseModel):
    input: str
    output: str
    testtype: Literal["stdin", "functional"]


class Row(BaseModel):
    """One line of a LiveCodeBench code-generation file; test lists may be JSON text or encoded."""

    question_id: str
    question_content: str
    starter_code: str = ""
    public_test_cases: list[Test]
    private_test_cases: list[Test] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("public_test_cases", "private_test_cases", "metadata", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return decode_field(value) if isinstance(value, str) else value


class LiveCodeProblem(Problem):
    kind: Literal["stdin", "functional"]
    func_name: str | None
    all_tests: list[Test]


class LiveCodeBench(Dataset):
    name = "livecodebench"
    task = "code"
    needs_path = True

    def load(self, path: Path | None, on_bad_line: BadLinePolicy) -> Loaded:
        assert path is not None
        return read_problems(path, _problem, on_bad_line)

    async def score(self, problem: Problem, answer: str) -> Verdict:
        assert isinstance(problem, LiveCodeProblem)
        code = extract_code(answer, [problem.func_name] if problem.func_name else [])
        if code is None:
            return Verdict(passed=False, detail="no code in the answer")
        if problem.kind == "functional":
            if parses(code):  # the harness calls the function; a `__main__` block would wait on stdin
                code = without_main_block(code)
            return await _score_functional(problem, PRELUDE + code)
        return await _score_stdin(problem, PRELUDE + code)


def _problem(raw: dict) -> LiveCodeProblem:
    row = Row.model_validate(raw)
    tests = row.public_test_cases + row.private_test_cases
    if not tests:
        raise ValueError("no test cases")
    kinds = {test.testtype for test in tests}
    if len(kinds) > 1:
        raise ValueError("mixes stdin and functional test cases")
    kind = kinds.pop()
    func_name = row.metadata.get("func_name")
    if kind == "functional" and not func_name:
        raise ValueError("functional test cases need metadata.func_name")
    if kind == "functional":
        _functional_arguments(tests)  # a test whose input or output is not JSON makes the line bad now
        task_format = FUNCTIONAL_FORMAT.format(starter_code=row.starter_code.rstrip())
    else:
        task_format = STDIN_FORMAT
    question = QUESTION.format(content=row.question_content.strip(), format=task_format)
    return LiveCodeProblem(
        id=row.question_id,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        tests=[_public_test(test, func_name) for test in row.public_test_cases],
        kind=kind,
        func_name=func_name,
        all_tests=tests,
    )


def decode_field(text: str) -> Any:
    """JSON text, or base64 of zlib-compressed JSON (possibly pickled as one string)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(text, validate=True))
    except (binascii.Error, zlib.error) as exc:
        raise ValueError("neither JSON nor base64 of zlib-compressed JSON") from exc
    decoded = pickled_string(raw) if raw.startswith(b"\x80") else raw.decode("utf-8")
    try:
        return json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise ValueError(f"decompressed test cases are not JSON ({exc.msg})") from exc


_STRING_PICKLE_OPS = {"PROTO", "FRAME", "MEMOIZE", "STOP", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}


def pickled_string(data: bytes) -> str:
    """The one string a pickle holds, read from its opcodes; anything else in it is refused."""
    try:
        operations = list(pickletools.genops(data))
    except Exception as exc:  # pickletools raises assorted errors on damaged input
        raise ValueError(f"broken pickle ({exc})") from exc
    refused = sorted({opcode.name for opcode, _, _ in operations} - _STRING_PICKLE_OPS)
    if refused:
        raise ValueError(f"pickle holds more than a string ({', '.join(refused)}); cepo never unpickles")
    strings = [argument for _, argument, _ in operations if isinstance(argument, str)]
    if len(strings) != 1:
        raise ValueError("pickle does not hold exactly one string")
    return strings[0]


def _functional_arguments(tests: list[Test]) -> list[tuple[list[Any], Any]]:
    """Each test as (arguments, expected value): one JSON value per input line, JSON output."""
    try:
        return [
            ([json.loads(line) for line in test.input.split("\n")], json.loads(test.output)) for test in tests
        ]
    except json.JSONDecodeError as exc:
        raise ValueError(f"functional test case is not JSON ({exc.msg})") from exc


def _public_test(test: Test, func_name: str | None) -> Example:
    if test.testtype == "stdin":
        return Example(kind="stdio", input=test.input, output=test.output)
    [(arguments, expected)] = _functional_arguments([test])
    call = f"Solution().{func_name}({', '.join(repr(argument) for argument in arguments)})"
    return Example(kind="call", input=call, output=repr(expected))


async def _score_functional(problem: LiveCodeProblem, code: str) -> Verdict:
    tests = json.dumps(_functional_arguments(problem.all_tests))
    seconds = min(TEST_SECONDS * len(problem.all_tests), MAX_FUNCTIONAL_SECONDS)
    harness = FUNCTIONAL_HARNESS.format(tests=tests, name=problem.func_name)
    return await run_check(code + harness, Limits(cpu_s=seconds, wall_s=2 * seconds))


async def _score_stdin(problem: LiveCodeProblem, code: str) -> Verdict:
    for number, test in enumerate(problem.all_tests, 1):
        # Room for the expected output (some problems print megabytes) and a little more, not unbounded.
        output_bytes = max(Limits().output_bytes, 2 * len(test.output.encode()) + 4096)
        limits = Limits(cpu_s=TEST_SECONDS, wall_s=2 * TEST_SECONDS, output_bytes=output_bytes)
        result = await run_code_async(code, stdin=test.input, limits=limits)
        where = f"test {number} of {len(problem.all_tests)}"
        if result.truncated:
            return Verdict(passed=False, detail=f"{where}: printed more than {output_bytes} bytes")
        if not result.ok:
            return Verdict(passed=False, detail=f"{where}: {failure(result)}")
        if not outputs_match(result.stdout, test.output):
            return Verdict(passed=False, detail=f"{where}: wrong answer {result.stdout.strip()[:200]!r}")
    return Verdict(passed=True)


def outputs_match(got: str, expected: str) -> bool:
    """Line by line, ignoring surrounding whitespace; numbers match when equal as decimals (1.50 == 1.5)."""
    got_lines = [line.strip() for line in got.strip().splitlines()]
    expected_lines = [line.strip() for line in expected.strip().splitlines()]
    if len(got_lines) != len(expected_lines):
        return False
    return all(_lines_match(a, b) for a, b in zip(got_lines, expected_lines, strict=True))


def _lines_match(got: str, expected: str) -> bool:
    if got == expected:
        return True
    got_tokens, expected_tokens = got.split(), expected.split()
    return len(got_tokens) == len(expected_tokens) and all(
        a == b or _same_number(a, b) for a, b in zip(got_tokens, expected_tokens, strict=True)
    )


def _same_number(a: str, b: str) -> bool:
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False
