"""Picking the answer: cross-checks first (examples passed, votes on normalized answers), the model's
rating only to break the ties they leave; no rating at all when every candidate agrees."""

from __future__ import annotations

from typing import Any

from cepo.methods.context import RunContext
from cepo.methods.events import Candidate
from cepo.methods.rating import rate
from cepo.methods.settings import RatingType


async def choose(
    ctx: RunContext[Any], candidates: list[Candidate], rating: RatingType | None
) -> tuple[int, bool]:
    """The index of the chosen candidate, and whether all of them agreed. `rating`: how the model breaks
    ties (absolute, pairwise); majority, execution or None leave ties to the first candidate."""
    score_checks(ctx, candidates)
    agreed = all_agree(ctx, candidates)
    if not agreed and rating in ("absolute", "pairwise"):
        best = max(c.score.key() for c in candidates)
        tied = [c for c in candidates if c.score.key() == best]
        if len(tied) > 1 and not all_agree(ctx, tied):
            await rate(ctx, tied, rating)
    return best_of(candidates), agreed


def best_of(candidates: list[Candidate]) -> int:
    """The highest-scored candidate; the first of equals."""
    return max(candidates, key=lambda c: c.score.key()).index


def score_checks(ctx: RunContext[Any], candidates: list[Candidate]) -> None:
    for candidate in candidates:
        checks, score = candidate.checks, candidate.score
        if ctx.kind == "code":
            score.parses = checks.parses
            if ctx.examples:
                score.examples_passed, score.examples_total = checks.examples_passed, len(checks.examples)
        elif checks.answer is not None:
            score.votes = sum(other.checks.answer == checks.answer for other in candidates)
        else:
            score.votes = 0


def all_agree(ctx: RunContext[Any], candidates: list[Candidate]) -> bool:
    """Same normalized answer everywhere, or (code) every candidate passes every example."""
    if len(candidates) == 1:
        return True
    if ctx.kind == "code":
        return bool(ctx.examples) and all(c.checks.examples_passed == len(ctx.examples) for c in candidates)
    answers = {c.checks.answer for c in candidates}
    return len(answers) == 1 and None not in answers
