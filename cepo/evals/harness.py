"""Run methods over a dataset's problems, many at once, recording every generation as it finishes.

All trials start together and wait on a semaphore, so up to `concurrency` problems are in flight and the
engine can batch across them. A trial already in the results file (same dataset, problem, method, settings
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
from cepo.errors import GenerationError
from cepo.evals.base import Dataset, Problem
from cepo.evals.results import Record, ResultsFile, settings_hash, settings_label
from cepo.methods import configure, get_method
from cepo.methods.context import delivered_answer
from cepo.methods.events import MethodResult
from cepo.methods.settings import RunSettings
from cepo.tasks import TaskSet

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
    """One method in one configuration: the overrides it takes from those given (they name it in
    results), the settings they make, and the `settings_hash` its results are filed under."""

    method: str
    overrides: dict[str, Any]
    config: RunSettings
    digest: str


@dataclass(frozen=True)
class Trial:
    """One run of one method on one problem, in one setting, as sample `sample`."""

    problem: Problem
    setting: Setting
    sample: int

    @property
    def method(self) -> str:
        return self.setting.method

    @property
    def group(self) -> str:
        return group_name(self.method, self.setting.overrides)

    @property
    def digest(self) -> str:
        return self.setting.digest

    @property
    def config(self) -> RunSettings:
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
    """Run every trial of `plan` not already in `results`; returns the records written by this run. One
    failure (a backend gone, Ctrl-C) stops the run: what is written stays, and the rest resumes."""
    harness = _Harness(plan, backend, solve, results, concurrency)
    with results:  # taken first: what is pending is only known once no other run can be writing
        tasks = TaskSet()
        running = [tasks.spawn(harness.run(trial, progress)) for trial in harness.pending(progress)]
        await tasks.join()
        return [task.result() for task in running]


class _Harness:
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
        self.settings = self._settings()

    def _settings(self) -> list[list[Setting]]:
        """Per configuration, the settings of each method, each method's own once: a sweep of a cepo
        setting does not run plain again for every value."""
        seen: set[tuple[str, str]] = set()
        settings: list[list[Setting]] = []
        for overrides in self.plan.settings:
            settings.append([])
            for method in self.plan.methods:
                known = get_method(method).settings.known()
                own = {name: value for name, value in overrides.items() if name in known}
                config = configure(get_method(method), {"task": self.plan.dataset.task, **overrides})
                digest = settings_hash(config.model_dump(mode="json"), self.backend.model, method)
                if (method, digest) not in seen:
                    seen.add((method, digest))
                    settings[-1].append(Setting(method, own, config, digest))
        return settings

    def pending(self, progress: Progress | None) -> list[Trial]:
        """Trials without a record yet, problem by problem, so every method and setting advances together:
        a run stopped early holds the same problems for each, ready to compare."""
        done = {record.key: record for record in self.results.read()}
        pending: list[Trial] = []
        totals: dict[str, int] = {}
        finished: dict[str, list[Record]] = {}
        for sample in range(self.plan.samples):
            for problem in self.plan.problems:
                for settings in self.settings:
                    for setting in settings:
                        trial = Trial(problem, setting, sample)
                        totals[trial.group] = totals.get(trial.group, 0) + 1
                        key = (self.plan.dataset.name, problem.id, trial.method, trial.digest, sample)
                        record = done.get(key)
                        if record is None:
                            pending.append(trial)
                        else:
                            finished.setdefault(trial.group, []).append(record)
        if progress is not None:
            for group, total in totals.items():
                progress.begin(group, total, finished.get(group, []))
        return pending

    async def run(self, trial: Trial, progress: Progress | None) -> Record:
        record = await self._attempt(trial)
        self.results.append(record)
        if progress is not None:
            progress.advance(trial.group, record)
        return record

    async def _attempt(self, trial: Trial) -> Record:
        async with self.generating:
            started = time.perf_counter()
            try:
                result = await self.solve(
                    trial.method,
                    self.backend,
                    trial.problem.messages,
                    config=trial.config,
                    tests=trial.problem.tests or None,
                )
            except GenerationError as error:  # this problem can never run (too long for the context)
                return self._failed(trial, error, time.perf_counter() - started)
        async with self.scoring:
            score = await self.plan.dataset.score(trial.problem, result.answer)
        usage = result.usage
        return Record(
            **self._identity(trial),
            answer=result.answer,
            candidates=[candidate.model_dump(mode="json") for candidate in result.candidates],
            chosen=result.chosen,
            passed=score.passed,
            candidates_passed=await self._score_candidates(trial, result, score.passed),
            detail=score.detail,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            wasted_tokens=usage.wasted_tokens,
            stages={stage: used.model_dump(mode="json") for stage, used in result.stages.items()},
            seconds=result.seconds,
        )

    async def _score_candidates(self, trial: Trial, result: MethodResult, chosen_passed: bool) -> list[bool]:
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
                    verdicts[answer] = (await self.plan.dataset.score(trial.problem, answer)).passed
            passed.append(verdicts[answer])
        return passed

    def _failed(self, trial: Trial, error: GenerationError, seconds: float) -> Record:
        return Record(
            **self._identity(trial),
            answer="",
            passed=False,
            candidates_passed=[],  # no candidates, and none passed: the report counts it as a miss
            detail="the method failed",
            error=str(error),
            prompt_tokens=0,
            completion_tokens=0,
            seconds=seconds,
        )

    def _identity(self, trial: Trial) -> dict[str, Any]:
        return {
            "dataset": self.plan.dataset.name,
            "problem": trial.problem.id,
            "method": trial.method,
            "settings": trial.setting.overrides,
            "settings_hash": trial.digest,
            "sample": trial.sample,
            "model": self.backend.model,
        }
