"""Repair: a candidate whose check failed gets more turns in its own conversation. Each turn shows the
failure concisely (the failing call, what it should return and what came back, or the error's last line)
and asks for a fixed version, which is checked again; the rounds end once the check passes.

A check fails when code does not parse, raises, or fails one of the question's examples or the request's
public tests, and when a short answer was to be computed by a program that raised, timed out, printed no
answer, or was not written. Only what the request holds reaches the model: its examples and tests, and the
candidate's own output and errors.
"""

from __future__ import annotations

import ast

from cepo.checks import Checks, ExampleResult

STAGE = "repair"
TITLES = {STAGE: "Repair"}
SHOWN_FAILURES = 2  # failing examples a turn shows: enough to see the pattern, short enough for 135M


def failure_of(checks: Checks, program: bool) -> str | None:
    """What went wrong with a checked candidate, in a few lines; None when nothing is to be repaired."""
    if checks.kind == "code":
        if checks.answer is None:
            return "Your reply has no Python code."
        if not checks.parses:
            return "Your code is not valid Python."
        failed = [result for result in checks.examples if not result.passed]
        if not failed:
            return None
        shown = "\n".join(f"- {_describe(result)}" for result in failed[:SHOWN_FAILURES])
        more = len(failed) - SHOWN_FAILURES
        return f"Your code fails {'these examples' if len(failed) > 1 else 'this example'}:\n{shown}" + (
            f"\n(and {more} more)" if more > 0 else ""
        )
    if not program:
        return None
    if checks.program_error is not None:
        return f"Your program failed: {checks.program_error}"
    if checks.program_output is None:
        return "Your reply has no Python program."
    if not checks.computed:
        printed = checks.program_output.strip()
        if not printed:
            return "Your program printed nothing."
        return f"Your program printed no answer (it printed {printed[:80]!r})."
    return None


def _describe(result: ExampleResult) -> str:
    example, detail = result.example, result.detail or "it failed"
    if example.kind == "call":
        if detail.startswith("returned "):  # the check quotes the value's repr: show the repr itself
            return f"{example.input} should return {example.output}, but it returned {_unquoted(detail[9:])}"
        return f"{example.input} should return {example.output}, but it failed: {detail}"
    if example.kind == "assert":
        return f"{example.input} failed: {detail}"
    return f"with input {example.input!r} it should print {example.output!r}, but {detail}"


def _unquoted(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text
