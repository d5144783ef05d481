"""self-consistency: k samples, the majority over their normalized answers (the first of equals wins)."""

from __future__ import annotations

from cepo.methods.context import RunContext
from cepo.methods.events import MethodResult
from cepo.methods.method import Method
from cepo.methods.sampling import STAGE, TITLES, SamplingSettings, samples
from cepo.methods.selection import choose

NAME = "self-consistency"


async def self_consistency(ctx: RunContext[SamplingSettings]) -> MethodResult:
    candidates = await samples(ctx)
    chosen, agreed = await choose(ctx, candidates, rating=None)
    return ctx.result(NAME, candidates, chosen, agreed)


METHOD = Method(
    name=NAME,
    version=4,  # as plain's
    run=self_consistency,
    settings=SamplingSettings,
    answer_stage=STAGE,
    answer_step="sample",
    stage_titles=TITLES,
)
