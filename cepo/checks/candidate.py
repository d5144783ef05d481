"""Cross-checking one candidate by the kind of question: its code against the examples, or its short
answer normalized (computed by its own program when the method asks for one)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from cepo.checks.answers import SHORT_KINDS, TaskKind, extract_answer
from cepo.checks.code import extract_code, parses
from cepo.checks.examples import Example, ExampleResult, called_names, failure, run_examples
from cepo.sandbox import Limits, run_code_async


class Checks(BaseModel):
    kind: TaskKind
    answer: str | None = None  # the normalized short answer, the code, or the normalized open text
    parses: bool | None = None  # code: the code is valid Python
    examples: list[ExampleResult] = Field(default_factory=list)
    program_output: str | None = None  # short answers: what the candidate's own program printed
    program_error: str | None = None
    source: int = 0  # code: which of the candidate's texts (0: the most final) the checked code came from

    @property
    def examples_passed(self) -> int:
        return sum(result.passed for result in self.examples)

    @property
    def computed(self) -> bool:
        """The short answer is the one the candidate's own program printed (not one its text stated)."""
        return self.program_output is not None and extract_answer(self.program_output, self.kind) is not None


async def check_candidate(
    texts: list[str],
    kind: TaskKind,
    examples: list[Example],
    *,
    run_program: bool,
    seconds: float,
    context: str = "",
) -> Checks:
    """Check a candidate whose texts are given most final first (final answer, refined solution,
    executions). Code: each text's code is run against the examples, most final first, until one passes
    them all; the best one (parses, then passes most) is the candidate's, so a final step that broke
    working code does not sink it. Short answers: the first text holding one is taken.

    `run_program`: for a short answer, run the first Python block found and take the answer it prints.
    `context`: code run ahead of the candidate's code when its examples run (the question's imports and
    helpers, see `definitions_in`); the candidate's own definitions replace any of the same name."""
    limits = Limits(cpu_s=seconds, wall_s=seconds)
    if kind == "code":
        return await _check_code(texts, examples, limits, context)
    checks = Checks(kind=kind)
    if kind in SHORT_KINDS and run_program:
        program = _first(extract_code(text) for text in texts)
        if program is not None:
            result = await run_code_async(program, limits=limits)
            if result.ok:
                checks.program_output = result.stdout.strip()
                checks.answer = extract_answer(result.stdout, kind)
            else:
                checks.program_error = failure(result)
    if checks.answer is None:
        checks.answer = _first(extract_answer(text, kind) for text in texts)
    return checks


async def _check_code(texts: list[str], examples: list[Example], limits: Limits, context: str) -> Checks:
    names = called_names(examples)
    best: Checks | None = None
    seen: set[str] = set()
    for source, text in enumerate(texts):
        code = extract_code(text, names)
        if code is None or code in seen:
            continue
        seen.add(code)
        checks = await _check_one(code, source, examples, limits, context)
        if best is None or _rank(checks) > _rank(best):
            best = checks
        if checks.parses and checks.examples_passed == len(examples):
            break
    return best or Checks(kind="code", parses=False, examples=_failed(examples, "no code found"))


async def _check_one(code: str, source: int, examples: list[Example], limits: Limits, context: str) -> Checks:
    if not parses(code):
        failed = _failed(examples, "not valid Python")
        return Checks(kind="code", answer=code, parses=False, source=source, examples=failed)
    results = await run_examples(f"{context}\n\n{code}" if context else code, examples, limits)
    return Checks(kind="code", answer=code, parses=True, source=source, examples=results)


def _rank(checks: Checks) -> tuple[bool, int]:
    return bool(checks.parses), checks.examples_passed


def _failed(examples: list[Example], detail: str) -> list[ExampleResult]:
    return [ExampleResult(example=example, passed=False, detail=detail) for example in examples]


def _first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value is not None), None)
