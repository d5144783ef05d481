"""Run methods over a dataset's problems, many at once, recording every generation as it finishes.

All jobs start together and wait on a semaphore, so up to `concurrency` problems are in flight and the
engine can batch across them. A job already in the results file (same dataset, problem, method, settings
and sample) is skipped, so rerunning an interrupted command resumes it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cepo.backends import Backend
from cepo.config import CepoConfig
from cepo.errors import GenerationError
from cepo.evals.base import Dataset, Problem
from cepo.evals.results import Record, ResultsFile, settings_hash, settings_label
from cepo.events import MethodResult
from cepo.methods.context import delivered_answer

# cepo.methods.solve, or a scripted stand-in in tests: (method, backend, messages, config=, tests=).
SolveFn = Callable[..., Awaitable[MethodResult]]
SAMPLE_SEED_STRIDE = 1000  # sample s runs with seed + s * stride, so samples of a seeded run differ


class Progress(Protocol):
    """Told about each group (one method with one setting) before it runs, and about every record."""

    def begin(self, group: str, total: int, done: list[Record]) -> None: ...

    def advance(self, group: str, record: Record) -> None: ...


@dataclass(frozen=True)
class EvalPlan:
    """What to run: every problem with every method and setting, `samples` times each."""

    dataset: Dataset
    problems: list[Problem]
    methods: list[str]
    settings: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    samples: int = 1


@dataclass(frozen=True)
class Setting:
    """One configuration: the overrides as given (they name it in results), and the config they make."""

    overrides: dict[str, Any]
    config: CepoConfig
    digests: dict[str, str]  # per method: its results' `settings_hash` under this configuration


@dataclass(frozen=True)
class Job:
    problem: Problem
    method: str
    setting: Setting
    sample: int

    @property
    def group(self) -> str:
        return group_name(self.method, self.setting.overrides)

    @property
    def digest(self) -> str:
        return self.setting.digests[self.method]

    @property
    def config(self) -> CepoConfig:
        config = self.setting.config
        if self.sample and config.seed is not None:
            return config.merged({"seed": config.seed + self.sample * SAMPLE_SEED_STRIDE})
        return config


def group_name(method: str, settings: dict[str, Any]) -> str:
    return f"{method} ({settings_label(settings)})" if settings else method


async def run_eval(
    plan: EvalPlan,
    *,
    backend: Backend,
    solve: SolveFn,
    results: ResultsFile,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> list[Record]:
    """Run every job of `plan` not already in `results`; returns the records written by this run."""
    runner = _Runner(plan, backend, solve, results, concurrency)
    with results:  # taken first: what is pending is only known once no other run can be writing
        jobs = runner.pending_jobs(progress)
        tasks = [asyncio.create_task(runner.run(job, progress)) for job in jobs]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            # One failure (a backend gone, Ctrl-C) stops the run: what is written stays, the rest resumes.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


class _Runner:
    def __init__(
        self, plan: EvalPlan, backend: Backend, solve: SolveFn, results: ResultsFile, concurrency: int
    ) -> None:
        self.plan = plan
        self.backend = backend
        self.solve = solve
        self.results = results
        self.generating = asyncio.Semaphore(concurrency)
        # Scoring runs programs on the CPU; more at once than cores only slows each down.
        self.scoring = asyncio.Semaphore(os.cpu_count() or 1)
        task = plan.dataset.task
        configs = [CepoConfig().merged({"task": task, **overrides}) for overrides in plan.settings]
        self.settings = [
            Setting(
                overrides,
                config,
                {
                    method: settings_hash(config.model_dump(mode="json"), backend.model, method)
                    for method in plan.methods
                },
            )
            for overrides, config in zip(plan.settings, configs, strict=True)
        ]

    def pending_jobs(self, progress: Progress | None) -> list[Job]:
        """Jobs without a record yet, problem by problem, so every method advances together."""
        done = {record.key: record for record in self.results.read()}
        pending: list[Job] = []
        totals: dict[str, int] = {}
        finished: dict[str, list[Record]] = {}
        for sample in range(self.plan.samples):
            for setting in self.settings:
                for problem in self.plan.problems:
                    for method in self.plan.methods:
                        job = Job(problem, method, setting, sample)
                        totals[job.group] = totals.get(job.group, 0) + 1
                        record = done.get((self.plan.dataset.name, problem.id, method, job.digest, sample))
                        if record is None:
                            pending.append(job)
                        else:
                            finished.setdefault(job.group, []).append(record)
        if progress is not None:
            for group, total in totals.items():
                progress.begin(group, total, finished.get(group, []))
        return pending

    async def run(self, job: Job, progress: Progress | None) -> Record:
        record = await self._attempt(job)
        self.results.append(record)
        if progress is not None:
            progress.advance(job.group, record)
        return record

    async def _attempt(self, job: Job) -> Record:
        async with self.generating:
            started = time.perf_counter()
            try:
                result = await self.solve(
                    job.method,
                    self.backend,
                    job.problem.messages,
                    config=job.config,
                    tests=job.problem.tests or None,
                )
            except GenerationError as error:  # this problem can never run (too long for the context)
                return self._failed(job, error, time.perf_counter() - started)
        async with self.scoring:
            score = await self.plan.dataset.score(job.problem, result.answer)
        usage = result.usage
        return Record(
            **self._identity(job),
            answer=result.answer,
            candidates=[candidate.model_dump(mode="json") for candidate in result.candidates],
            chosen=result.chosen,
            passed=score.passed,
            candidates_passed=await self._score_candidates(job, result, score.passed),
            detail=score.detail,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            wasted_tokens=usage.wasted_tokens,
            stages={stage: used.model_dump(mode="json") for stage, used in result.stages.items()},
            seconds=result.seconds,
        )

    async def _score_candidates(self, job: Job, result: MethodResult, chosen_passed: bool) -> list[bool]:
        """Whether each candidate would have passed had it been chosen: with the chosen one's score, this
        tells a selection that missed a right candidate from candidates that were all wrong."""
        verdicts = {result.answer: chosen_passed}  # candidates often agree: each answer is run once
        passed = []
        for candidate in result.candidates:
            if candidate.error is not None:  # lost to a backend error: it has no answer
                passed.append(False)
                continue
            answer = delivered_answer(candidate, result.kind)
            if answer not in verdicts:
                async with self.scoring:
                    verdicts[answer] = (await self.plan.dataset.score(job.problem, answer)).passed
            passed.append(verdicts[answer])
        return passed

    def _failed(self, job: Job, error: GenerationError, seconds: float) -> Record:
        return Record(
            **self._identity(job),
            answer="",
            passed=False,
            candidates_passed=[],  # no candidates, and none passed: the report counts it as a miss
            detail="the method failed",
            error=str(error),
            prompt_tokens=0,
            completion_tokens=0,
            seconds=seconds,
        )

    def _identity(self, job: Job) -> dict[str, Any]:
        return {
            "dataset": self.plan.dataset.name,
            "problem": job.problem.id,
            "method": job.method,
            "settings": job.setting.overrides,
            "settings_hash": job.digest,
            "sample": job.sample,
            "model": self.backend.model,
        }
