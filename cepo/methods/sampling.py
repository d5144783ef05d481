"""k completions of the conversation from one prefilled prompt: the candidates of the sampling baselines."""

from __future__ import annotations

import asyncio

from pydantic import Field

from cepo.methods.context import Lane, RunContext
from cepo.methods.events import Candidate
from cepo.methods.settings import RunSettings, StepConfig

STAGE = "sample"
TITLES = {STAGE: "Sample"}


class SamplingSettings(RunSettings):
    k: int = Field(5, ge=1, le=64, description="samples drawn")
    sample: StepConfig = StepConfig(temperature=0.7, max_tokens=256)  # each sample's sampling

    def fan_out(self) -> dict[str, int]:
        return {"k": self.k}


async def samples(ctx: RunContext[SamplingSettings]) -> list[Candidate]:
    lanes = [Lane(i, 0) for i in range(ctx.config.k)]
    replies = await ctx.ask(STAGE, ctx.messages, ctx.config.sample, lanes)
    checks = await asyncio.gather(*(ctx.check(r.index, [r.text], run=False) for r in replies))
    return [Candidate(index=r.index, final=r.text, checks=c) for r, c in zip(replies, checks, strict=True)]
