"""best-of-n: k samples, the model rates every one (absolute 0-10, or pairwise when the config says so)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cepo.methods import rating
from cepo.methods.context import RunContext
from cepo.methods.events import MethodResult
from cepo.methods.method import Method
from cepo.methods.sampling import STAGE, TITLES, SamplingSettings, samples
from cepo.methods.selection import best_of
from cepo.methods.settings import RatingType, StepConfig

NAME = "best-of-n"


class BestOfNSettings(SamplingSettings):
    rating: StepConfig = rating.STEP
    rating_type: RatingType = Field("absolute", description="pairwise: every ordered pair; else absolute")

    @property
    def rating_how(self) -> Literal["absolute", "pairwise"]:
        return "pairwise" if self.rating_type == "pairwise" else "absolute"

    def fan_out(self) -> dict[str, int]:
        return {"k": max(self.k, rating.width(self.rating_how, self.k))}  # the samples, then their ratings


async def best_of_n(ctx: RunContext[BestOfNSettings]) -> MethodResult:
    candidates = await samples(ctx)
    await rating.rate(ctx, candidates, ctx.config.rating_how)
    return ctx.result(NAME, candidates, best_of(candidates), agreed=False)


METHOD = Method(
    name=NAME,
    version=4,  # as plain's
    run=best_of_n,
    settings=BestOfNSettings,
    answer_stage=STAGE,
    answer_step="sample",
    stage_titles={**TITLES, **rating.TITLES},
)
