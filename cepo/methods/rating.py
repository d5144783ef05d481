"""The model judges candidates: each on its own (absolute, 0-10) or every ordered pair (pairwise wins).

All rating requests start together, so the backend batches them. A rating only ranks candidates the checks
could not tell apart, so a rating request the backend fails costs that opinion, not the run: the error is
kept on the candidate's score (absolute: it stays unrated, below the rated ones; pairwise: that comparison
has no winner).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from cepo.backends.base import Branch
from cepo.errors import BackendError
from cepo.methods.context import Call, Lane, RunContext
from cepo.methods.events import Candidate
from cepo.methods.parsing import parse_preference, parse_rating
from cepo.methods.prompts import COMPARE, RATE, continued
from cepo.methods.settings import RatingType, StepConfig

STAGE = "rate"
TITLES = {STAGE: "Rating"}
STEP = StepConfig(temperature=0.1, max_tokens=128)  # every rating request's sampling


async def rate(
    ctx: RunContext[Any], candidates: list[Candidate], how: Literal["absolute", "pairwise"]
) -> None:
    """Set `score.rating` of each of `candidates`; the method's settings hold the `rating` step."""
    ctx.stage_started(STAGE)
    if how == "absolute":
        await _absolute(ctx, candidates)
    else:
        await _pairwise(ctx, candidates)
    ctx.stage_ended(STAGE)


def width(how: RatingType, candidates: int) -> int:
    """How many rating requests `rate` starts together over `candidates`; none for a rating type that asks
    the model nothing (majority, execution)."""
    if how == "pairwise":
        return candidates * (candidates - 1)
    return candidates if how == "absolute" else 0


def shown(candidate: Candidate) -> str:
    """What the judge reads: the candidate's worked solution, when it has one, then its final answer."""
    if candidate.refined is None or candidate.refined.strip() == candidate.final.strip():
        return candidate.final
    return f"{candidate.refined.strip()}\n\nFinal answer:\n{candidate.final.strip()}"


async def _absolute(ctx: RunContext[Any], candidates: list[Candidate]) -> None:
    requests = [
        ctx.call(STAGE, continued(ctx.messages, shown(c), RATE), ctx.config.rating, [Lane(c.index, 0)])
        for c in candidates
    ]
    for candidate, reply in zip(candidates, await _replies(requests), strict=True):
        if isinstance(reply, BackendError):
            candidate.score.rating_error = str(reply)
        else:
            candidate.score.rating = parse_rating(reply.text)


async def _pairwise(ctx: RunContext[Any], candidates: list[Candidate]) -> None:
    """Each pair is judged in both orders, so that a judge favouring one position cancels out."""
    pairs = [(a, b) for a in candidates for b in candidates if a is not b]
    requests = [
        ctx.call(
            STAGE,
            continued(ctx.messages, f"Answer A:\n{shown(a)}\n\nAnswer B:\n{shown(b)}", COMPARE),
            ctx.config.rating,
            [Lane(a.index, b.index)],
        )
        for a, b in pairs
    ]
    replies = await _replies(requests)
    for candidate in candidates:
        candidate.score.rating = 0.0
    for (a, b), reply in zip(pairs, replies, strict=True):
        if isinstance(reply, BackendError):
            a.score.rating_error = b.score.rating_error = str(reply)
            continue
        preferred = parse_preference(reply.text)
        if preferred is not None:
            winner = (a, b)[preferred]
            winner.score.rating = (winner.score.rating or 0.0) + 1


async def _replies(requests: list[Call]) -> list[Branch | BackendError]:
    """Each request's one reply, or the backend error it failed with (any other error is raised)."""
    results = await asyncio.gather(*(request.all() for request in requests), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, BackendError):
            raise result
    return [result if isinstance(result, BackendError) else result[0] for result in results]
