"""plain: one completion of the conversation, as the model would answer without any method."""

from __future__ import annotations

from cepo.methods.context import Lane, RunContext
from cepo.methods.events import Candidate, MethodResult
from cepo.methods.method import Method
from cepo.methods.settings import RunSettings, StepConfig

NAME = "plain"
STAGE = "answer"


class PlainSettings(RunSettings):
    sample: StepConfig = StepConfig(temperature=0.7, max_tokens=256)  # the answer's sampling


async def plain(ctx: RunContext[PlainSettings]) -> MethodResult:
    [reply] = await ctx.ask(STAGE, ctx.messages, ctx.config.sample, [Lane(0, 0)])
    checks = await ctx.check(0, [reply.text], run=False)
    return ctx.result(NAME, [Candidate(index=0, final=reply.text, checks=checks)], chosen=0, agreed=True)


METHOD = Method(
    name=NAME,
    # 2: code replies stop where their code block ends. 3: a code answer's examples run after the
    # question's own imports and helper definitions. 4: a list's "1." or a "Step 2" is no longer read as
    # a short answer's number; "once", "twice" and "thrice" are.
    version=4,
    run=plain,
    settings=PlainSettings,
    answer_stage=STAGE,
    answer_step="sample",
    live_answer=True,
    stage_titles={STAGE: "Answer"},
)
