"""What every method run shares: the backend, the settings, the question, its event queue and its ledger.

Requests go through `Call`, which streams each branch's tokens out as events and books every token
against its stage exactly once: as completion when the branch ends, moved to wasted when the method
throws the branch away. `stop` ends a run's generation early: every request still running is cancelled
(its branches end, and are counted, as cancelled), and a request started after it never reaches the
backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Generic, NamedTuple, TypeVar

from cepo.backends.base import (
    Backend,
    Branch,
    BranchEnd,
    GenerationStream,
    Message,
    Prompt,
    Sampling,
    TokenEvent,
)
from cepo.checks import SHORT_KINDS, Checks, Example, TaskKind, check_candidate, extract_answer
from cepo.checks.code import close_fence, definitions_in
from cepo.methods.events import (
    BranchEnded,
    BranchToken,
    Candidate,
    CandidateFailed,
    CandidateScored,
    Event,
    MethodResult,
    RunStopped,
    Stage,
    StageEnded,
    StageStarted,
    StageUsage,
)
from cepo.methods.settings import RunSettings, StepConfig

S = TypeVar("S", bound=RunSettings)


class Lane(NamedTuple):
    """Where a branch's tokens show: which candidate, and which of its branches (attempt, rating)."""

    candidate: int | None
    branch: int


@dataclass
class RunContext(Generic[S]):
    backend: Backend
    config: S  # the method's own settings
    messages: list[Message]  # the conversation; its last message is the user's question
    kind: TaskKind
    examples: list[Example]
    events: asyncio.Queue[Event | Exception] = field(default_factory=asyncio.Queue)  # an error ends a run
    usage: dict[Stage, StageUsage] = field(default_factory=dict)
    started_at: float = field(default_factory=time.perf_counter)
    _busy: dict[Stage, list[tuple[float, float]]] = field(default_factory=dict)
    _open: dict[tuple[Stage, int | None], float] = field(default_factory=dict)
    _seeds_used: int = 0
    # Completion tokens still kept, per stage and candidate: what `waste_candidate` moves to wasted.
    _kept: dict[tuple[Stage, int | None], int] = field(default_factory=dict)
    _live: set[Call] = field(default_factory=set)
    stopped: str | None = None  # why generation stopped early, once it has

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]

    @cached_property
    def question_code(self) -> str:
        """The imports and definitions of the question's code, which a code answer's examples run after."""
        return definitions_in(self.question)

    def emit(self, event: Event) -> None:
        self.events.put_nowait(event)

    def stage_started(self, stage: Stage, candidate: int | None = None) -> None:
        self._open[(stage, candidate)] = time.perf_counter()
        self.emit(StageStarted(stage=stage, candidate=candidate))

    def stage_ended(self, stage: Stage, candidate: int | None = None) -> None:
        seconds = time.perf_counter() - self._open.pop((stage, candidate))
        self.emit(StageEnded(stage=stage, candidate=candidate, seconds=seconds))

    def candidate_failed(self, candidate: int, error: Exception) -> None:
        """`candidate` is out of the run: its open stages end, and an event says why."""
        for stage, owner in list(self._open):
            if owner == candidate:
                self.stage_ended(stage, candidate)
        self.emit(CandidateFailed(candidate=candidate, error=str(error)))

    def busy(self, stage: Stage, started: float) -> None:
        """Stage `stage` was at work from `started` until now (a request, a check run)."""
        self._busy.setdefault(stage, []).append((started, time.perf_counter()))

    def sampling(self, step: StepConfig, n: int = 1) -> Sampling:
        """`step`'s sampling for a request of `n` branches; with a base seed, no two branches of a run
        share a seed (a top-up plan must not repeat the plan it replaces)."""
        seed = None if self.config.seed is None else self.config.seed + self._seeds_used
        self._seeds_used += n
        return step.sampling(seed)

    def call(self, stage: Stage, prompt: Prompt, step: StepConfig, lanes: list[Lane]) -> Call:
        """Start one backend request under `stage`, its branch i shown as `lanes[i]`."""
        return Call(self, stage, prompt, self.sampling(step, len(lanes)), lanes)

    async def ask(
        self, stage: Stage, prompt: Prompt, step: StepConfig, lanes: list[Lane], candidate: int | None = None
    ) -> list[Branch]:
        """A stage that is one request: it starts, every branch comes back (in branch order), it ends."""
        self.stage_started(stage, candidate)
        branches = await self.call(stage, prompt, step, lanes).all()
        self.stage_ended(stage, candidate)
        return branches

    def waste(self, stage: Stage, tokens: int, candidate: int | None) -> None:
        """Book `tokens` of `candidate`, already counted as completion in `stage`, as wasted instead."""
        usage = self.usage[stage]
        usage.completion_tokens -= tokens
        usage.wasted_tokens += tokens
        self._kept[(stage, candidate)] -= tokens

    def waste_candidate(self, candidate: int) -> None:
        """Book every token `candidate` still keeps as wasted: it is out of the run."""
        for (stage, owner), tokens in list(self._kept.items()):
            if owner == candidate and tokens:
                self.waste(stage, tokens, candidate)

    def stop(self, reason: str) -> None:
        """End the run's generation now: cancel every running request, and start no more."""
        if self.stopped is not None:
            return
        self.stopped = reason
        self.emit(RunStopped(reason=reason))
        for call in list(self._live):
            call.cancel()

    async def check(self, candidate: int, texts: list[str], *, run: bool, program: bool = False) -> Checks:
        """Cross-check a candidate (texts most final first). `run`: run its code against the examples;
        `program`: take a short answer from what its own program prints. Without either, only extract."""
        self.stage_started("check", candidate)
        started = time.perf_counter()
        checks = await check_candidate(
            texts,
            self.kind,
            self.examples if run else [],
            run_program=program,
            seconds=self.config.sandbox_seconds,
            context=self.question_code,
        )
        self.busy("check", started)
        self.stage_ended("check", candidate)
        return checks

    def result(self, method: str, candidates: list[Candidate], chosen: int, agreed: bool) -> MethodResult:
        """The run's result, after telling how each candidate that did not fail scored."""
        for candidate in candidates:
            if candidate.error is not None or candidate.stopped:
                continue
            self.emit(
                CandidateScored(
                    candidate=candidate.index, answer=candidate.checks.answer, score=candidate.score
                )
            )
        return MethodResult(
            method=method,
            kind=self.kind,
            answer=delivered_answer(candidates[chosen], self.kind),
            extracted=candidates[chosen].checks.answer,
            chosen=chosen,
            candidates=candidates,
            agreed=agreed,
            stopped=self.stopped,
            stages=self.stages(),
            seconds=self.seconds(),
        )

    def stages(self) -> dict[Stage, StageUsage]:
        for stage, intervals in self._busy.items():
            self.usage.setdefault(stage, StageUsage()).seconds = _covered(intervals)
        return self.usage

    def seconds(self) -> float:
        return time.perf_counter() - self.started_at


def _never_started(n: int) -> GenerationStream:
    """A request made after the run stopped: each branch ends at once, cancelled, with nothing generated."""
    stream = GenerationStream(n, on_cancel=lambda branch: None)
    stream.push([BranchEnd(Branch(index, "", 0, "cancelled")) for index in range(n)])
    stream.end()
    return stream


def delivered_answer(candidate: Candidate, kind: TaskKind) -> str:
    """The answer the user gets when `candidate` is chosen: its final text, with a code block closed, or
    with the short answer its checks took stated."""
    checks = candidate.checks
    if checks.source and checks.answer is not None:  # its code came from an earlier step
        return f"```python\n{checks.answer}\n```"
    if kind == "code":
        return close_fence(candidate.final)
    if kind in SHORT_KINDS:
        return _with_answer_stated(candidate.final, checks)
    return candidate.final


def _with_answer_stated(text: str, checks: Checks) -> str:
    """`text` ending with the short answer its checks took, where it does not state that answer itself:
    the answer its program printed, or one an earlier step stated before the final one dropped it."""
    computed = checks.program_output is not None
    if checks.answer is None or text.strip() == f"Answer: {checks.answer}":
        return text
    if not computed and extract_answer(text, checks.kind) == checks.answer:
        return text
    return f"{close_fence(text).rstrip()}\n\nAnswer: {checks.answer}".lstrip()


def _covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of `intervals`: overlapping work of a stage counts once."""
    total, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total


class Call:
    """One backend request under a stage, started at once; its branch i shows as `lanes[i]`."""

    def __init__(
        self, ctx: RunContext, stage: Stage, prompt: Prompt, sampling: Sampling, lanes: list[Lane]
    ) -> None:
        self.ctx, self.stage, self.lanes = ctx, stage, lanes
        self.started = time.perf_counter()
        ctx.usage.setdefault(stage, StageUsage())
        if ctx.stopped is not None:
            self.stream = _never_started(len(lanes))
            return
        self.stream = ctx.backend.stream(prompt, len(lanes), sampling)
        ctx.usage[stage].requests += 1
        ctx._live.add(self)

    def cancel(self, branch: int | None = None) -> None:
        """Stop one branch (or all); it still ends through `branches`, so its tokens are counted."""
        self.stream.cancel(branch)

    async def branches(self) -> AsyncIterator[Branch]:
        """Each branch as it finishes, while its tokens go out as events."""
        usage = self.ctx.usage[self.stage]
        async with self.stream:
            async for event in self.stream:
                candidate, branch = self.lanes[event.branch]
                if isinstance(event, TokenEvent):
                    self.ctx.emit(
                        BranchToken(stage=self.stage, candidate=candidate, branch=branch, text=event.text)
                    )
                    continue
                result = event.result
                usage.completion_tokens += result.tokens
                kept = (self.stage, candidate)
                self.ctx._kept[kept] = self.ctx._kept.get(kept, 0) + result.tokens
                self.ctx.emit(
                    BranchEnded(
                        stage=self.stage,
                        candidate=candidate,
                        branch=branch,
                        tokens=result.tokens,
                        finish_reason=result.finish_reason,
                    )
                )
                yield result
        usage.prompt_tokens += self.stream.prompt_tokens
        usage.cached_tokens += self.stream.cached_tokens
        self.ctx._live.discard(self)
        self.ctx.busy(self.stage, self.started)

    async def all(self) -> list[Branch]:
        """Every branch, in branch order, once the request is over."""
        finished = [branch async for branch in self.branches()]
        return sorted(finished, key=lambda branch: branch.index)
