"""Examples a question gives for its code, and running a candidate's code against them in the sandbox.

Three shapes: a call and the value it returns (doctest `>>> f(2)` / `4`, "Example: f(2) -> 4", or a call
on literal values anywhere in a line, as in "any_int(5, 2, 7) ➞ True" or "...so f(2) = 4."), an assert
statement, or a program's standard input and the output it must print.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import doctest
import re
import secrets
import warnings
from itertools import islice
from typing import Any, Literal

from pydantic import BaseModel

from cepo.checks.code import parses, without_main_block
from cepo.errors import CepoError
from cepo.sandbox import Limits, RunResult, run_code_async


class Example(BaseModel):
    """One public test case. `call`: `input` is an expression such as `f(2)`, `output` its value;
    `assert`: `input` is an assert statement; `stdio`: the program reads `input` and prints `output`."""

    kind: Literal["call", "assert", "stdio"]
    input: str
    output: str = ""

    @classmethod
    def coerce(cls, item: Example | str | tuple[str, str] | list[str] | dict[str, Any]) -> Example:
        """An example from what a request may pass: an Example or its dict, an assert string, or an
        (input, expected output) pair: a call when the input is a call expression, else standard input."""
        if isinstance(item, Example):
            return item
        if isinstance(item, dict):
            return cls.model_validate(item)
        if isinstance(item, str):
            if not item.lstrip().startswith("assert"):
                raise CepoError(f"a test given as text must be an assert statement: {item[:80]!r}")
            return cls(kind="assert", input=item.strip())
        if isinstance(item, list | tuple) and len(item) == 2:
            given, expected = (str(part) for part in item)
            return cls(kind="call" if _is_call(given) else "stdio", input=given, output=expected)
        raise CepoError(f"not a test case: {item!r}", hint="pass an assert string or an (input, output) pair")


class ExampleResult(BaseModel):
    example: Example
    passed: bool
    detail: str = ""  # what went wrong: the value printed, an error line, "timed out"


# A call in a line of prose, then how it relates to its value: "Example: f(2) -> 4", "any_int(5, 2, 7) ➞
# True", "decimal_to_binary(15)  # returns "db1111db"", "...so f(2) = 4 and f(3) = 9.".
_CALL_START = re.compile(r"(?<![\w.])(?P<name>[A-Za-z_]\w*)\(")
_RELATION = re.compile(
    r"`?[ \t]*(?:#[ \t]*)?(?:(?:==>|=>|==|=|->|→|➞|⇒)"
    r"|(?:(?:should|must|will) (?:return|be)|returns|gives|yields|outputs|evaluates to|is)\b:?)[ \t]*`?",
    re.IGNORECASE,
)
# What may follow a value: the line's or a clause's end, or a clause ("True when n is even"). Not more of
# an expression ("19 - 5 - 6 = 8" is a sum, not 19), a number's next digits ("1,000") or other words
# ("returns 6 instead of 5", "returns 5 numbers").
_AFTER_VALUE = re.compile(
    r"\s*$|,(?!\s*\d)|[;:!?)`'\"—]|\.(?!\d)"
    r"|\s+(?:[(#`—]|(?:when|if|since|because|for|and|or|as|while|so|given|otherwise|which)\b)",
    re.IGNORECASE,
)
# A value that is not a literal ("Hello, Bob") counts only where the call opens its line, and when it
# reads as a value: not a type ("-> int"), not a description ("returns an empty list", "is not 9").
_LINE_OPENING = re.compile(
    r"[\s*•-]*(?:\d+[.)]\s*)?(?:e\.g\.|for example|example\s*\d*)?\s*[:,]?\s*`?", re.IGNORECASE
)
_NOT_A_TEXT_VALUE = re.compile(
    r"[()\[\]{}=+*/]|^(?:a|an|the|not|no|at|any|some)\b|^(?:int|float|str|bool|list|dict|tuple|set|bytes)$",
    re.IGNORECASE,
)
_NOT_PROSE = re.compile(r"^\s*(?:>>>|assert\s|(?:async\s+)?def\s|class\s)")  # doctests, asserts, code
_DEFINED = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.MULTILINE)
_BUILTINS = frozenset(dir(builtins))
# An example's call and its value are short, and a question holds a few: looking no further keeps the
# scan of a long question short.
_MOST_CHARS = 200
_MOST_CLOSES = 8
_MOST_CALLS = 1000
_LITERAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)
_ASSERT = re.compile(r"^\s*(assert\s.+?)\s*$", re.MULTILINE)
_STDIO_QUESTION = re.compile(r"standard input|stdin|\binput\(\)|reads? (?:from |the )?input", re.IGNORECASE)
_STDIO_BLOCK = re.compile(
    r"(?:sample\s+)?input\s*\d*\s*:?\s*\n(?P<input>.*?)\n\s*(?:sample\s+)?output\s*\d*\s*:?\s*\n"
    r"(?P<output>.*?)(?=\n\s*\n|\n\s*(?:sample\s+)?(?:input|example)|\Z)",
    re.IGNORECASE | re.DOTALL,
)


def examples_in(question: str) -> list[Example]:
    """Every example `question` itself gives, without duplicates."""
    found = _doctest_examples(question)
    found += _prose_examples(question)
    found += [Example(kind="assert", input=m) for m in _ASSERT.findall(question) if parses(m)]
    if _STDIO_QUESTION.search(question):
        found += [
            Example(kind="stdio", input=m["input"].strip("\n") + "\n", output=m["output"].strip())
            for m in _STDIO_BLOCK.finditer(question)
        ]
    return unique(found)


def _prose_examples(question: str) -> list[Example]:
    """Calls on literal values and the values they give, written in the question's lines. Only calls to
    the functions or classes the question defines count when it defines some, and never a builtin's
    otherwise: "ord('a') = 0" describes ord; it is no example."""
    defined = set(_DEFINED.findall(question))
    lines = [line for line in question.splitlines() if not _NOT_PROSE.match(line)]
    starts = ((line, start) for line in lines for start in _CALL_START.finditer(line))
    found = []
    for line, start in islice(starts, _MOST_CALLS):
        name = start["name"]
        if (name not in defined) if defined else (name in _BUILTINS):
            continue
        related = _related_call(line, start.start())
        if related is None:
            continue
        call, relation = related
        rest = line[relation.end() : relation.end() + _MOST_CHARS]
        value = _literal_start(rest)
        if value is None and _LINE_OPENING.fullmatch(line, 0, start.start()):
            value = _text_value(rest)
        if value is not None:
            found.append(Example(kind="call", input=call, output=value))
    return found


def _related_call(line: str, start: int) -> tuple[str, re.Match[str]] | None:
    """The shortest call on literal values that starts at `start` and is followed by a relation:
    "C().m(2) -> 4" is tried as "C()", then as "C().m(2)"."""
    text = line[start : start + _MOST_CHARS]
    closes = [i + 1 for i, ch in enumerate(text) if ch == ")"][:_MOST_CLOSES]
    for end in closes:
        if _is_example_call(_expression(text[:end])) and (relation := _RELATION.match(line, start + end)):
            return text[:end], relation
    return None


def _is_example_call(node: ast.AST | None) -> bool:
    """A call whose arguments are all literals, on a name or a chain of such calls: "f(n) = f(n - 1)"
    defines, it is no example."""
    if not isinstance(node, ast.Call):
        return False
    arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
    if not all(_is_literal(argument) for argument in arguments):
        return False
    func = node.func
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) or _is_example_call(func)


def _literal_start(text: str) -> str | None:
    """The shortest start of `text` that is a Python literal (or true, false) and ends where a value may
    end. A tuple needs its parentheses: "returns 1, 3" is too ambiguous to check."""
    for end in range(1, len(text) + 1):
        value = text[:end]
        if not _AFTER_VALUE.match(text, end):
            continue
        if value.lower() in ("true", "false"):
            return value
        literal, parsed = _parsed(value)
        if literal and not (isinstance(parsed, tuple) and not value.startswith("(")):
            return value
    return None


def _text_value(text: str) -> str | None:
    """A value in words ("Hello, Bob"), to the line's end. Text that starts like a number, a string or a
    list without being a literal, or that holds calls or sums, is an explanation ("1 + 9 + 0 = 10",
    "tri(2) + tri(1)") or a typo, not a value."""
    value = text.strip().rstrip(".").strip("`").strip()
    return value if value[:1].isalpha() and not _NOT_A_TEXT_VALUE.search(value) else None


def _expression(text: str) -> ast.AST | None:
    """`text` parsed as one expression; None when it is not one (or holds what Python cannot encode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an invalid escape in a string ("f('\\d')") only warns
        try:
            return ast.parse(text, mode="eval").body
        except (SyntaxError, ValueError):
            return None


def _parsed(literal: ast.AST | str) -> tuple[bool, Any]:
    """Whether `literal` is a Python literal, and its value if it is."""
    try:
        return True, ast.literal_eval(literal)
    except _LITERAL_ERRORS:
        return False, None


def _is_literal(node: ast.AST | str) -> bool:
    return _parsed(node)[0]


def unique(examples: list[Example]) -> list[Example]:
    """`examples` without repeats, in order."""
    return list({(e.kind, e.input, e.output): e for e in reversed(examples)}.values())[::-1]


def called_names(examples: list[Example]) -> list[str]:
    """The functions the call and assert examples call: the code must define them."""
    names = []
    for example in examples:
        if example.kind == "stdio":
            continue
        try:
            tree = ast.parse(example.input)
        except SyntaxError:
            continue
        names += [
            n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        ]
    return list(dict.fromkeys(names))


async def run_examples(code: str, examples: list[Example], limits: Limits) -> list[ExampleResult]:
    """Run `code` against every example, concurrently, each in its own sandboxed process."""
    return list(await asyncio.gather(*(run_example(code, example, limits) for example in examples)))


async def run_example(code: str, example: Example, limits: Limits) -> ExampleResult:
    if example.kind == "stdio":
        result = await run_code_async(code, stdin=example.input, limits=limits)
        if not result.ok:
            return ExampleResult(example=example, passed=False, detail=failure(result))
        passed = _lines(result.stdout) == _lines(example.output)
        return ExampleResult(example=example, passed=passed, detail="" if passed else _shown(result.stdout))
    library = without_main_block(code)
    # A marker printed after the check proves the run reached it: code calling exit() passes nothing.
    marker = f"checked {secrets.token_hex(6)}"
    # The call on its own line: a comment after it ("f(2)  # 4") would swallow the closing parentheses.
    shown = f"print({marker!r}, repr(\n{example.input}\n))"
    probe = f"print({marker!r})" if example.kind == "assert" else shown
    body = f"{example.input}\n" if example.kind == "assert" else ""
    result = await run_code_async(f"{library}\n\n{body}{probe}\n", limits=limits)
    reached = result.ok and marker in result.stdout
    if not reached:
        return ExampleResult(example=example, passed=False, detail=failure(result))
    if example.kind == "assert":
        return ExampleResult(example=example, passed=True)
    got = result.stdout.rsplit(marker, 1)[1].strip()
    passed = same_value(got, example.output)
    return ExampleResult(example=example, passed=passed, detail="" if passed else f"returned {_shown(got)}")


def same_value(got_repr: str, expected: str) -> bool:
    """Whether a printed repr equals an expected value written as a Python literal or as plain text. A
    literal is compared as a value ('True' is a string, not True); plain text with what was returned
    printed ("Hello, Bob"; "true" for True, as prose writes it)."""
    got, expected = _literal(got_repr), expected.strip()
    literal, want = _parsed(expected)
    if not literal:
        shown = str(got).strip()
        return shown.lower() == expected.lower() if isinstance(got, bool) else shown == expected
    if isinstance(got, float) and isinstance(want, int | float):
        return abs(got - want) <= 1e-9 * max(1.0, abs(want))
    return bool(got == want)


def failure(result: RunResult) -> str:
    """One line saying why a run failed."""
    if result.timed_out:
        return "timed out"
    if result.killed_reason:
        return f"killed: {result.killed_reason}"
    lines = result.stderr.strip().splitlines()
    return lines[-1][:200] if lines else f"exit code {result.exit_code}"


def _doctest_examples(question: str) -> list[Example]:
    # A code fence, or a docstring's closing quotes, right under a doctest would read as its value.
    text = _FENCE_LINE.sub("", question)
    try:
        parsed = doctest.DocTestParser().get_examples(text)
    except ValueError:  # inconsistent indentation in the question's text
        return []
    examples = []
    for item in parsed:
        source = item.source.strip()
        # A value's repr is one line; doctest would also take the prose that follows it without a gap.
        want = item.want.strip().split("\n")[0]
        if want and _is_expression(source):
            examples.append(Example(kind="call", input=source, output=want))
        elif source.startswith("assert"):
            examples.append(Example(kind="assert", input=source))
        elif not want and isinstance(_expression(source), ast.Compare):  # ">>> f([]) == 0", no value shown
            examples.append(Example(kind="assert", input=f"assert {source}"))
    return examples


_FENCE_LINE = re.compile(r"^[ \t]*(?:```.*|\"\"\"|\'\'\')[ \t]*$", re.MULTILINE)


def _is_call(text: str) -> bool:
    return isinstance(_expression(text.strip()), ast.Call)


def _is_expression(text: str) -> bool:
    return _expression(text.strip()) is not None


def _literal(text: str) -> Any:
    literal, value = _parsed(text.strip())
    return value if literal else text.strip()


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def _shown(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= 80 else text[:77] + "...")
