"""cepo: for each of `bestofn_n` candidates, plan and execute `planning_n` times, refine the executions
into one solution, answer; then cross-check the candidates and pick one.

For speed, every plan of every candidate starts at once as a branch of one prefilled prompt (one request
per candidate with plan diversity). Each plan's execution starts the moment that plan ends, each
candidate refines the moment its own executions are in, and nothing waits for the slowest branch.

A plan or execution cut by its token limit is rejected and a new attempt started (up to `planning_m` per
candidate). With `planning_spares`, that many extra attempts run from the start, so a rejected one costs
no wait; once `planning_n` are complete the rest are cancelled and their tokens booked as wasted. A
candidate with one complete execution has nothing to compare and skips refine; one with none answers
directly. A plan that comes back empty is no plan: its execution answers the question directly.

A candidate whose backend request fails (the server errs, times out, breaks its answer off) is out of the
run, recorded with its error; the others go on and one of them is chosen. The run fails only when every
candidate does, with the first candidate's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from cepo.backends.base import Branch, Message
from cepo.checks import SHORT_KINDS, Checks, extract_answer
from cepo.errors import BackendError
from cepo.methods import prompts, rating, repair, stopping
from cepo.methods.context import Lane, RunContext
from cepo.methods.events import Attempt, Candidate, MethodResult, RepairRound
from cepo.methods.method import Method
from cepo.methods.parsing import cut_repetition, parse_approaches
from cepo.methods.selection import choose
from cepo.methods.settings import RatingType, RunSettings, StepConfig
from cepo.methods.stopping import StopWhen
from cepo.tasks import TaskSet

NAME = "cepo"
# A reply that writes code is done once its code block closes: what a small model writes after it (an
# explanation, the same code again) costs tokens, and often runs into the limit that rejects an attempt.
CODE_END = "\n```\n"


class CepoSettings(RunSettings):
    """The defaults are the settings that measured best for accuracy against tokens on SmolLM2-135M
    (docs/results.md, "The closed loop"): each candidate is one plan and its execution, a second wave
    starts while nothing is verified or agreed, no repair rounds, and short answers are voted on.
    Temperatures are the published CePO values (0.55 / 0.25 / 0.1 / 0); the published counts and 4096-token
    budgets load from `--config published`. The budgets here are sized for SmolLM2-class models. The
    published flat names (`planning_temperature_step1: ...`) load too."""

    ALIASES: ClassVar[dict[str, tuple[str, str | None]]] = {
        "bestofn_temperature": ("rating", "temperature"),
        "bestofn_max_tokens": ("rating", "max_tokens"),
        "bestofn_rating_type": ("rating_type", None),
        "use_plan_diversity": ("plan_diversity", None),
        **{
            f"planning_{name}_step{step}": (section, name)
            for step, section in enumerate(("plan", "execute", "refine", "final"), start=1)
            for name in ("temperature", "max_tokens")
        },
    }
    IGNORED: ClassVar[frozenset[str]] = frozenset({"rating_model", "print_output"})  # the backend's model

    bestofn_n: int = Field(3, ge=1, le=16, description="candidates, each from its own plans")
    planning_n: int = Field(1, ge=1, le=16, description="complete plans kept per candidate")
    planning_m: int = Field(2, ge=1, le=64, description="most plan attempts per candidate")
    planning_spares: int = Field(
        0, ge=0, le=16, description="extra attempts kept running, so a cut plan costs no wait"
    )
    # A plan holds no code: a small model that starts writing code has finished planning, and cutting the
    # plan there keeps it, where running on into the token limit would reject it.
    plan: StepConfig = StepConfig(temperature=0.55, max_tokens=128, stop=["```"])
    execute: StepConfig = StepConfig(temperature=0.25, max_tokens=256)
    refine: StepConfig = StepConfig(temperature=0.1, max_tokens=256)
    final: StepConfig = StepConfig(temperature=0.0, max_tokens=96)
    approaches: StepConfig = StepConfig(temperature=0.7, max_tokens=128)  # plan diversity's request
    sample: StepConfig = StepConfig(temperature=0.7, max_tokens=256)  # answering directly: no plan completed
    repair: StepConfig = StepConfig(temperature=0.3, max_tokens=256)  # each repair turn's reply
    rating: StepConfig = rating.STEP
    # Programs for short answers measured worse on SmolLM2-135M: on 74 letter questions 6 of the 173 answers
    # candidates' programs printed were right, against 53 of the 248 they stated. For code, majority and
    # execution are the same: neither asks the model, and the examples decide.
    rating_type: RatingType = Field(
        "majority",
        description="how candidates are compared: rated by the model, or short answers computed by programs",
    )
    plan_diversity: bool = Field(False, description="ask for distinct approaches first, one per candidate")
    # Measured on SmolLM2-135M (HumanEval's first 30): no round of 138 fixed a candidate's code, and
    # a round costs a full reply, so the loop's checks steer by stopping early and adding waves instead.
    repair_rounds: int = Field(
        0, ge=0, le=8, description="turns a candidate whose check failed gets to fix its answer"
    )
    stop_when: StopWhen = Field(
        "agreed", description="end the run once an answer is verified (verified), or that or agreed (agreed)"
    )
    agree_n: int = Field(2, ge=2, le=16, description="candidates that agree settle the answer (stop_when)")
    max_candidates: int | None = Field(
        None,
        ge=1,
        le=32,
        description="while nothing is settled, more waves of bestofn_n start, up to this; none: two waves",
    )

    @property
    def candidate_cap(self) -> int:
        # Two waves by default, so `bestofn_n` alone scales the run: a second wave is what the first
        # leaves unsettled.
        return 2 * self.bestofn_n if self.max_candidates is None else self.max_candidates

    @property
    def plans_in_flight(self) -> int:
        """The attempts a candidate keeps running: each plan, then its execution, is one branch."""
        return min(self.planning_n + self.planning_spares, self.planning_m)

    def fan_out(self) -> dict[str, int]:
        # A wave's candidates plan together; the ratings break ties among every candidate of the run.
        return {
            "bestofn_n": self.bestofn_n * self.plans_in_flight,
            "max_candidates": rating.width(self.rating_type, self.candidate_cap),
        }

    @model_validator(mode="after")
    def _enough_attempts(self) -> CepoSettings:
        if self.planning_m < self.planning_n:
            raise ValueError(f"planning_m ({self.planning_m}) is below planning_n ({self.planning_n})")
        if self.candidate_cap < self.bestofn_n:
            raise ValueError(f"max_candidates ({self.max_candidates}) is below bestofn_n ({self.bestofn_n})")
        return self


async def cepo(ctx: RunContext[CepoSettings]) -> MethodResult:
    config = ctx.config
    program = ctx.kind in SHORT_KINDS and config.rating_type == "execution"
    finished: list[Candidate] = []  # standing candidates, in the order they finished

    def settled(candidate: Candidate) -> None:
        """Called as each candidate finishes: a settled answer ends the run at once."""
        if candidate.error is None and not candidate.stopped:
            finished.append(candidate)
        reason = stopping.settled(finished, ctx.examples, config.stop_when, config.agree_n, program)
        if reason is not None:
            ctx.stop(reason)

    runs: list[CandidateRun] = []
    # Compute follows doubt: another wave starts only while nothing is verified or agreed.
    while ctx.stopped is None and len(runs) < config.candidate_cap:
        wave = min(config.bestofn_n, config.candidate_cap - len(runs))
        runs += await _run_wave(
            ctx, [CandidateRun(ctx, len(runs) + i, program, settled) for i in range(wave)]
        )
    candidates = [run.candidate for run in runs if run.candidate is not None]
    errors = [run.error for run in runs if run.error is not None]
    if len(errors) == len(runs):
        raise errors[0]
    standing = [c for c in candidates if c.error is None and not c.stopped]
    # A stopped run's answer is settled by the checks: no rating is asked for.
    chosen, agreed = await choose(ctx, standing, None if ctx.stopped else config.rating_type)
    return ctx.result(NAME, candidates, chosen, agreed)


async def _run_wave(ctx: RunContext[CepoSettings], runs: list[CandidateRun]) -> list[CandidateRun]:
    """Start `runs` together (their plans share prefills) and wait until each has finished."""
    config = ctx.config
    if config.plan_diversity:
        for run, approach in zip(runs, await _approaches(ctx, len(runs)), strict=True):
            run.approach = approach
        groups = [[run] for run in runs]
    else:
        groups = [runs]  # same prompt for all: one request, one prefill
    tasks = TaskSet()
    for group in groups:
        _start_plans(ctx, [run.new_attempt() for run in group for _ in range(config.plans_in_flight)], tasks)
    for run in runs:
        tasks.spawn(run.finish())
    await tasks.join()
    return runs


@dataclass
class AttemptRun:
    """One plan and its execution while they run."""

    run: CandidateRun
    index: int
    plan: Branch | None = None
    execution: Branch | None = None
    status: Literal["running", "executing", "complete", "rejected", "cancelled"] = "running"
    reason: str = ""
    cancel: Callable[[], None] = lambda: None

    @property
    def conversation(self) -> list[Message]:
        """The execution's conversation, up to and including the execution."""
        assert self.plan is not None and self.execution is not None
        return [
            *self.run.execute_prompt(self.plan.text),
            {"role": "assistant", "content": self.execution.text},
        ]

    def record(self) -> Attempt:
        assert self.plan is not None and self.status in ("complete", "rejected", "cancelled")
        return Attempt(
            index=self.index,
            plan=self.plan.text,
            plan_tokens=self.plan.tokens,
            execution=None if self.execution is None else self.execution.text,
            execution_tokens=0 if self.execution is None else self.execution.tokens,
            status=self.status,
            reason=self.reason,
        )


class CandidateRun:
    """One candidate from its first plan to its checked answer."""

    def __init__(
        self,
        ctx: RunContext[CepoSettings],
        index: int,
        program: bool,
        settled: Callable[[Candidate], None],
    ) -> None:
        """`settled`: told of the candidate once it has finished (it may stop the run)."""
        self.ctx, self.index, self.program, self.settled = ctx, index, program, settled
        self.candidate: Candidate | None = None  # once finished
        self.approach: str | None = None
        self.attempts: list[AttemptRun] = []
        self.executing = False  # an execution has started
        self.tasks = TaskSet()  # its attempts: they start along the way (top-ups)
        self.error: BackendError | None = None  # why it failed, if it did

    @property
    def plan_prompt(self) -> list[Message]:
        return prompts.with_question(self.ctx.messages, prompts.plan_instruction(self.approach))

    def execute_prompt(self, plan: str) -> list[Message]:
        """What carrying out `plan` asks. A plan that came back empty leaves nothing to carry out (a small
        model goes straight to its code, and the plan stops at the fence): the question is then asked
        directly, which such a model answers better than a request to follow a plan it did not write."""
        if not plan.strip():
            return prompts.direct(self.ctx.messages, self.program)
        execute = prompts.execute_instruction(self.ctx.kind, self.program)
        return prompts.continued(self.plan_prompt, plan, execute)

    def execute_step(self, plan: str) -> StepConfig:
        """The execution's sampling. Without a plan, the execution is the attempt's only draw, so it samples
        at the plan's temperature, and the attempts still differ from one another."""
        step = self.writing(self.ctx.config.execute)
        if plan.strip():
            return step
        return step.model_copy(update={"temperature": self.ctx.config.plan.temperature})

    def writing(self, step: StepConfig) -> StepConfig:
        """`step` for a reply that holds the answer: one that writes code stops where its code block ends."""
        if self.ctx.kind != "code" and not self.program:
            return step
        return step.model_copy(update={"stop": [*step.stop, CODE_END]})

    @property
    def complete(self) -> list[AttemptRun]:
        return [a for a in self.attempts if a.status == "complete"]

    def new_attempt(self) -> AttemptRun:
        if not self.attempts:
            self.ctx.stage_started("plan", self.index)
        attempt = AttemptRun(self, len(self.attempts))
        self.attempts.append(attempt)
        return attempt

    def follow(self, attempt: AttemptRun, plan: asyncio.Future[Branch]) -> None:
        self.tasks.spawn(self._attempt(attempt, plan))

    async def _attempt(self, attempt: AttemptRun, plan: asyncio.Future[Branch]) -> None:
        attempt.plan = await plan
        if not self._usable(attempt, attempt.plan, "plan"):
            return
        if not self.executing:
            self.executing = True
            self.ctx.stage_started("execute", self.index)
        attempt.status = "executing"
        plan = attempt.plan.text
        request = self.ctx.call(
            "execute", self.execute_prompt(plan), self.execute_step(plan), [Lane(self.index, attempt.index)]
        )
        attempt.cancel = request.cancel
        [attempt.execution] = await request.all()
        if self._usable(attempt, attempt.execution, "execution"):
            attempt.status = "complete"
            if len(self.complete) == self.ctx.config.planning_n:
                for other in self.attempts:
                    if other.status in ("running", "executing"):
                        other.cancel()

    def _usable(self, attempt: AttemptRun, branch: Branch, what: str) -> bool:
        """Whether the attempt goes on; if not, it is dropped, its tokens wasted, and maybe replaced."""
        planning_n = self.ctx.config.planning_n
        if self.ctx.stopped is not None:
            self._drop(attempt, "cancelled", "the run stopped")
            return False
        if branch.finish_reason == "cancelled" or len(self.complete) >= planning_n:
            self._drop(attempt, "cancelled", f"{planning_n} attempts already complete")
            return False
        if branch.finish_reason == "length":
            self._drop(attempt, "rejected", f"{what} cut at its limit of {branch.tokens} tokens")
            self._top_up()
            return False
        return True

    def _drop(self, attempt: AttemptRun, status: Literal["rejected", "cancelled"], reason: str) -> None:
        attempt.status, attempt.reason = status, reason
        if attempt.plan is not None:
            self.ctx.waste("plan", attempt.plan.tokens, self.index)
        if attempt.execution is not None:
            self.ctx.waste("execute", attempt.execution.tokens, self.index)

    def _top_up(self) -> None:
        """Start another attempt, so that planning_n (plus spares) stay complete or running."""
        config = self.ctx.config
        live = [a for a in self.attempts if a.status in ("running", "executing", "complete")]
        if len(self.attempts) < config.planning_m and len(live) < config.planning_n + config.planning_spares:
            _start_plans(self.ctx, [self.new_attempt()], self.tasks)

    async def finish(self) -> None:
        """Run the candidate to its checked answer (`self.candidate`); a failed one if one of its requests
        failed in the backend, a stopped one if the run stopped first. Then tell `settled`."""
        try:
            self.candidate = await self._finish()
        except BackendError as error:
            self.error = error
            self.candidate = self._out(error=str(error))
            self.ctx.candidate_failed(self.index, error)
        self.settled(self.candidate)

    def _out(self, error: str | None = None) -> Candidate:
        """The candidate leaves the run unfinished: every token it generated is wasted."""
        for attempt in self.attempts:
            if attempt.plan is not None and attempt.status in ("running", "executing", "complete"):
                attempt.status = "cancelled"
                attempt.reason = "the run stopped" if error is None else "its candidate failed"
        self.ctx.waste_candidate(self.index)
        return Candidate(
            index=self.index,
            approach=self.approach,
            attempts=[a.record() for a in self.attempts if a.plan is not None],
            final="",
            checks=Checks(kind=self.ctx.kind),
            error=error,
            stopped=error is None,
        )

    async def _finish(self) -> Candidate:
        await self.tasks.join()
        self.ctx.stage_ended("plan", self.index)
        if self.executing:
            self.ctx.stage_ended("execute", self.index)
        complete = self.complete
        refined: str | None = None
        if self.ctx.stopped is not None:
            return self._out()
        if not complete:
            conversation = await self._direct_answer()
        elif len(complete) == 1:
            conversation = complete[0].conversation
        else:
            conversation = await self._refine(complete)
            refined = conversation[-1]["content"]
        conversation = await self._final(conversation)
        if self.ctx.stopped is not None:
            return self._out()
        # The final answer first; a small model may drop the code or the answer line there.
        texts = [conversation[-1]["content"], conversation[-3]["content"]]
        texts += [a.execution.text for a in reversed(complete) if a.execution is not None]
        checks = await self._check(texts)
        repairs: list[RepairRound] = []
        while (failure := repair.failure_of(checks, self.program)) and len(
            repairs
        ) < self.ctx.config.repair_rounds:
            conversation, reply = await self._repair(conversation, failure, len(repairs))
            if self.ctx.stopped is not None:
                return self._out()
            texts.insert(0, reply.text)
            checks = await self._check(texts)
            passed = repair.failure_of(checks, self.program) is None
            repairs.append(
                RepairRound(
                    index=len(repairs), failure=failure, reply=reply.text, tokens=reply.tokens, passed=passed
                )
            )
        return Candidate(
            index=self.index,
            approach=self.approach,
            attempts=[a.record() for a in self.attempts if a.plan is not None],
            fallback=not complete,
            refined=refined,
            final=clean_final(texts[0], checks),
            checks=checks,
            repairs=repairs,
        )

    async def _check(self, texts: list[str]) -> Checks:
        return await self.ctx.check(self.index, list(dict.fromkeys(texts)), run=True, program=self.program)

    async def _repair(
        self, conversation: list[Message], failure: str, turn: int
    ) -> tuple[list[Message], Branch]:
        """One repair turn in the candidate's own conversation, so the engine reuses its cached prefix."""
        instruction = prompts.repair_instruction(failure, self.program)
        messages = [*conversation, {"role": "user", "content": instruction}]
        step = self.writing(self.ctx.config.repair)
        [reply] = await self.ctx.ask(repair.STAGE, messages, step, [Lane(self.index, turn)], self.index)
        return [*messages, {"role": "assistant", "content": reply.text}], reply

    async def _direct_answer(self) -> list[Message]:
        """No plan completed: the model answers the question directly, as the plain method would."""
        question = prompts.direct(self.ctx.messages, self.program)
        step = self.writing(self.ctx.config.sample)
        [answer] = await self.ctx.ask("answer", question, step, [Lane(self.index, 0)], self.index)
        return [*question, {"role": "assistant", "content": answer.text}]

    async def _refine(self, complete: list[AttemptRun]) -> list[Message]:
        executions = [a.execution.text for a in complete if a.execution is not None]
        conversation = prompts.continued(
            self.ctx.messages,
            prompts.numbered("Solution", executions),
            prompts.refine_instruction(len(executions), self.ctx.kind, self.program),
        )
        step = self.writing(self.ctx.config.refine)
        [refined] = await self.ctx.ask("refine", conversation, step, [Lane(self.index, 0)], self.index)
        return [*conversation, {"role": "assistant", "content": refined.text}]

    async def _final(self, conversation: list[Message]) -> list[Message]:
        """The conversation with the final answer. A short answer is one line: it stops at the line's end."""
        instruction = prompts.final_instruction(self.ctx.kind, self.ctx.question)
        messages = [*conversation, {"role": "user", "content": instruction}]
        step = self.writing(self.ctx.config.final)
        if self.ctx.kind in SHORT_KINDS:
            step = step.model_copy(update={"stop": [*step.stop, "\n"]})
        [reply] = await self.ctx.ask("final", messages, step, [Lane(self.index, 0)], self.index)
        return [*messages, {"role": "assistant", "content": reply.text}]


def clean_final(text: str, checks: Checks) -> str:
    """The answer as it is shown: a short answer is one line stating it (the one its program computed,
    when it did); any other text stops where it starts repeating itself."""
    if checks.kind not in SHORT_KINDS:
        return text if checks.kind == "code" else cut_repetition(text)
    line = cut_repetition(next((line.strip() for line in text.splitlines() if line.strip()), ""))
    if checks.answer is None:
        return line
    if checks.computed or extract_answer(line, checks.kind) != checks.answer:
        return f"Answer: {checks.answer}"
    return line


def _start_plans(ctx: RunContext[CepoSettings], attempts: list[AttemptRun], tasks: TaskSet) -> None:
    """One request for `attempts` (all with the same plan prompt), each branch feeding its attempt."""
    request = ctx.call(
        "plan", attempts[0].run.plan_prompt, ctx.config.plan, [Lane(a.run.index, a.index) for a in attempts]
    )
    plans: list[asyncio.Future[Branch]] = [asyncio.get_running_loop().create_future() for _ in attempts]
    for branch, (attempt, plan) in enumerate(zip(attempts, plans, strict=True)):
        attempt.cancel = partial(request.cancel, branch)
        attempt.run.follow(attempt, plan)

    async def deliver() -> None:
        try:
            async for branch in request.branches():
                plans[branch.index].set_result(branch)
        except BackendError as error:  # the attempts waiting for a plan fail, and with them their candidates
            for plan in plans:
                if not plan.done():
                    plan.set_exception(error)
        except BaseException:  # a bug, or the run is cancelled: the attempts stop with the request
            for plan in plans:
                plan.cancel()
            raise

    tasks.spawn(deliver())


async def _approaches(ctx: RunContext[CepoSettings], n: int) -> list[str | None]:
    """Plan diversity: n distinct approaches in one request; a candidate left without one plans freely."""
    prompt = prompts.with_question(ctx.messages, prompts.APPROACHES.format(n=n))
    [reply] = await ctx.ask("approaches", prompt, ctx.config.approaches, [Lane(None, 0)])
    found: list[str | None] = list(parse_approaches(reply.text, n))
    return found + [None] * (n - len(found))


METHOD = Method(
    name=NAME,
    # 2: code replies stop where their code block ends. 3: a code answer's examples run after the
    # question's own imports and helper definitions. 4: an empty plan's execution answers the question
    # directly, at the plan's temperature. 5: a short answer ends by stating the answer chosen, when its
    # program computed it or an earlier step stated it; before, the final text alone was scored.
    # 6: the closed loop (repair rounds, stop_when, max_candidates) and a one-line short answer.
    # 7: the measured defaults: one plan per candidate, two waves, no repair, programs for short answers.
    # 8: under execution, a short answer its program computed outranked stated ones.
    # 9: short answers are stated and voted on (rating_type majority), and 8 is undone: on letters the
    # programs' answers were right far less often than the stated ones.
    # 10: a list's "1." or a "Step 2" is no longer read as a short answer's number, "once", "twice" and
    # "thrice" are, and the final step asks a short answer's question again.
    # 11: examples written in prose anywhere in a line ("any_int(5, 2, 7) ➞ True", "f(2) = 4") are found,
    # and broken ones ("==> True" read as "> True", a doctest's value read from the docstring's end) are
    # not: right solutions now pass the examples of 135 HumanEval problems, against 101 before.
    version=11,
    run=cepo,
    settings=CepoSettings,
    answer_stage="final",
    answer_step="final",
    request_temperature=False,  # cepo keeps its per-step temperatures
    stage_titles={
        "approaches": "Approaches",
        "plan": "Plan",
        "execute": "Execution",
        "refine": "Refined solution",
        "final": "Final answer",
        "answer": "Answer",
        **repair.TITLES,
        **rating.TITLES,
    },
    numbered_stages=frozenset({"plan", "execute", repair.STAGE}),
)
