"""When a run has its answer: a candidate verified by the question's examples, or enough candidates
agreeing. The checks then end the run (`stop_when`) and decide whether more candidates are worth starting.

- verified: a candidate's code passes every example the question (or the request's tests) gives, when it
  gives at least one;
- agreed: that, or `agree_n` candidates reach the same normalized answer; where the method asks for
  programs, only answers their programs computed count;
- never: the run always spends its whole budget.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from cepo.checks import Example
from cepo.methods.events import Candidate

StopWhen = Literal["verified", "agreed", "never"]


def verified(candidate: Candidate, examples: list[Example]) -> bool:
    checks = candidate.checks
    return (
        checks.kind == "code"
        and bool(examples)
        and bool(checks.parses)
        and (checks.examples_passed == len(examples))
    )


def settled(
    candidates: list[Candidate], examples: list[Example], when: StopWhen, agree_n: int, program: bool
) -> str | None:
    """Why the answer is settled among the finished `candidates` under `when`; None while it is not."""
    if when == "never":
        return None
    for candidate in candidates:
        if verified(candidate, examples):
            return f"candidate {candidate.index + 1} passed every example"
    if when != "agreed":
        return None
    answers = Counter(
        c.checks.answer
        for c in candidates
        if c.checks.answer is not None and (not program or c.checks.computed)
    )
    if answers:
        answer, votes = answers.most_common(1)[0]
        if votes >= agree_n:
            return f"{votes} candidates agreed on {answer[:40]!r}"
    return None
