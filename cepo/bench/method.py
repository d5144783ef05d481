"""`cepo bench method`: how fast the methods answer, and how full cepo keeps the engine.

The same questions run in one process as plain, as cepo, and as cepo with every call made one after another
(`SequentialBackend`, how the reference implementation ran), taking turns on each question. Every run starts
from an engine that holds only what any earlier request would have left (see `warm_up`). Per method: the
first streamed token, wall seconds, generated tokens (kept and wasted) and tok/s, the branches it kept
decoding on average, and overlap (stage seconds over wall seconds: above 1, stages ran side by side).
Two ratios sum it up:
- speedup_vs_sequential: sequential cepo's wall time over cepo's;
- engine_utilization (embedded engine): cepo's generated tok/s over the engine's own aggregate tok/s at the
  number of branches cepo kept decoding on average, measured in the same run as `cepo bench engine` does.
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.progress import Progress
from rich.table import Table

from cepo.backends import Backend
from cepo.backends.llama import LlamaEngine
from cepo.backends.sequential import SequentialBackend
from cepo.bench.engine import BRANCHES, aggregate
from cepo.checks import extract_answer
from cepo.methods import configure, get_method, run, solve
from cepo.methods.events import BranchToken, Finished, MethodResult
from cepo.methods.settings import Options, RunSettings

QUESTIONS = (
    'How many times does the letter "r" appear in the word "strawberry"?',
    "Write a Python function `running_max(numbers: list[int]) -> list[int]` that returns, for each "
    "position, the largest number seen so far.\n>>> running_max([1, 3, 2, 5, 4])\n[1, 3, 3, 5, 5]",
)
WARM_UP = "Is 7 a prime number?"
# `make demo`'s question, asked `demo_runs` times with different seeds: is cepo right, fast and clean there?
DEMO_QUESTION = 'How many r\'s are in the word "strawberry"?'
DEMO_ANSWER = "3"
SEQUENTIAL = "cepo-sequential"  # cepo, every call one after another
CURVE_TOKENS = 128  # tokens per branch when measuring the engine's aggregate tok/s


@dataclass
class MethodBench:
    """One method over every question and run: sums, except the median first token."""

    method: str
    runs: int = 0
    first_token_s: float = 0.0
    seconds: float = 0.0
    generated_tokens: int = 0
    wasted_tokens: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    live_branches: float | None = None  # mean branches decoding over its wall time (embedded engine)
    answers: list[str | None] = field(default_factory=list)
    _first_tokens: list[float] = field(default_factory=list, repr=False)
    _branch_s: float = field(default=0.0, repr=False)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0

    @property
    def overlap(self) -> float:
        return sum(self.stage_seconds.values()) / self.seconds if self.seconds else 0.0

    def add(self, result: MethodResult, first_token_s: float, branch_s: float | None) -> None:
        usage = result.usage
        self.runs += 1
        self.seconds += result.seconds
        self.generated_tokens += usage.completion_tokens + usage.wasted_tokens
        self.wasted_tokens += usage.wasted_tokens
        for name, stage in result.stages.items():
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + stage.seconds
        self.answers.append(result.extracted)
        self._first_tokens.append(first_token_s)
        self.first_token_s = statistics.median(self._first_tokens)
        if branch_s is not None:
            self._branch_s += branch_s
            self.live_branches = self._branch_s / self.seconds

    def to_json(self) -> dict[str, Any]:
        figures = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return {**figures, "tokens_per_s": self.tokens_per_s, "overlap": self.overlap}


@dataclass
class DemoRun:
    seconds: float
    answer: str
    correct: bool  # it states the right count
    clean: bool  # the stated answer is one line


@dataclass
class MethodFigures:
    model: str
    questions: list[str]
    config: dict[str, Any]
    methods: list[MethodBench]
    engine_tok_s: dict[int, float] = field(default_factory=dict)  # aggregate tok/s at N branches
    demo: list[DemoRun] = field(default_factory=list)

    @property
    def demo_median_s(self) -> float | None:
        return statistics.median(run.seconds for run in self.demo) if self.demo else None

    def bench(self, method: str) -> MethodBench | None:
        return next((b for b in self.methods if b.method == method), None)

    @property
    def speedup_vs_sequential(self) -> float | None:
        cepo, sequential = self.bench("cepo"), self.bench(SEQUENTIAL)
        if cepo is None or sequential is None or not cepo.seconds:
            return None
        return sequential.seconds / cepo.seconds

    @property
    def engine_at_cepo_width(self) -> float | None:
        """The engine's aggregate tok/s at cepo's mean number of live branches (linear in between)."""
        cepo = self.bench("cepo")
        if cepo is None or cepo.live_branches is None or not self.engine_tok_s:
            return None
        return interpolate(self.engine_tok_s, cepo.live_branches)

    @property
    def engine_utilization(self) -> float | None:
        cepo, capacity = self.bench("cepo"), self.engine_at_cepo_width
        return None if cepo is None or not capacity else cepo.tokens_per_s / capacity

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "questions": self.questions,
            "config": self.config,
            "methods": [b.to_json() for b in self.methods],
            "engine_tok_s": self.engine_tok_s,
            "engine_tok_s_at_cepo_width": self.engine_at_cepo_width,
            "speedup_vs_sequential": self.speedup_vs_sequential,
            "engine_utilization": self.engine_utilization,
            "demo_runs": len(self.demo),
            "demo_correct": sum(run.correct for run in self.demo),
            "demo_median_s": self.demo_median_s,
            "demo_clean": all(run.clean for run in self.demo) if self.demo else None,
            "demo": [asdict(run) for run in self.demo],
        }


def interpolate(curve: dict[int, float], x: float) -> float:
    """`curve` at `x`, linear between its points and flat beyond its ends."""
    points = sorted(curve.items())
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


async def bench_run(
    backend: Backend, method: str, question: str, options: Options, bench: MethodBench
) -> None:
    """One timed run of `method` on `question`, after `warm_up`, added to `bench`."""
    config = configure(get_method(method), options)
    await warm_up(backend, method, config)
    engine = backend.inner if isinstance(backend, SequentialBackend) else backend
    before = engine.load() if isinstance(engine, LlamaEngine) else None
    started, first = time.perf_counter(), None
    async for event in run(method, backend, question, config):
        if first is None and isinstance(event, BranchToken):
            first = time.perf_counter() - started
        if isinstance(event, Finished):
            result = event.result
    branch_s = None if before is None else engine.load().since(before).branch_s
    bench.add(result, first if first is not None else result.seconds, branch_s)


async def warm_up(backend: Backend, method: str, config: RunSettings) -> None:
    """Start a run from what a running server holds, not from an empty engine nor from another method's
    run of the same question: forget every cached prefix, then run the method on another question with
    one-token steps, which leaves the prompts' shared beginnings (chat template, instructions) cached."""
    engine = backend.inner if isinstance(backend, SequentialBackend) else backend
    if isinstance(engine, LlamaEngine):
        engine.clear_cache()
    steps = {name: {"max_tokens": 1} for name in config.steps()}
    await solve(method, backend, WARM_UP, config.merged({**steps, "seed": 0}))


async def bench_methods(
    backend: Backend,
    methods: list[str],
    questions: list[str],
    options: Options,
    runs: int,
    progress: Progress,
    demo_runs: int = 0,
) -> MethodFigures:
    """Every method on every question `runs` times. Methods take turns on each question, so a slow
    spell of a shared machine hits them alike; run r uses seed r, so they see the same seeds."""
    benches = {method: MethodBench(method) for method in methods}
    figures = MethodFigures(backend.model, questions, options, list(benches.values()))
    sequential = SequentialBackend(backend)
    task = progress.add_task("methods", total=len(methods) * len(questions) * runs)
    for question in questions:
        for index in range(runs):
            base = options.get("seed")
            seeded = {**options, "seed": index if base is None else base + index}
            for method, bench in benches.items():
                progress.update(task, description=method)
                if method == SEQUENTIAL:
                    await bench_run(sequential, "cepo", question, seeded, bench)
                else:
                    await bench_run(backend, method, question, seeded, bench)
                progress.advance(task)
    if "cepo" in methods:
        figures.demo = await demo(backend, options, demo_runs, progress)
    if isinstance(backend, LlamaEngine) and "cepo" in methods:
        progress.update(task, description="the engine's aggregate tok/s")
        for n in BRANCHES:
            figures.engine_tok_s[n], _ = await aggregate(backend, n, CURVE_TOKENS)
    return figures


async def demo(backend: Backend, options: Options, runs: int, progress: Progress) -> list[DemoRun]:
    """cepo on the demo question, `runs` times with seeds 0, 1, ..., each after `warm_up`."""
    task = progress.add_task("the demo question", total=runs)
    done = []
    for seed in range(runs):
        config = configure(get_method("cepo"), {**options, "seed": seed})
        await warm_up(backend, "cepo", config)
        result = await solve("cepo", backend, DEMO_QUESTION, config)
        answer = result.answer.strip()
        stated = extract_answer(answer, "number")
        done.append(DemoRun(result.seconds, answer, stated == DEMO_ANSWER, "\n" not in answer))
        progress.advance(task)
    return done


def method_table(figures: MethodFigures) -> Table:
    table = Table(title=f"methods on {figures.model}: {len(figures.questions)} new questions")
    columns = ("method", "first token s", "total s", "tokens", "wasted", "tok/s", "live branches", "overlap")
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    table.add_column("answers", max_width=40, no_wrap=True, overflow="ellipsis")
    for b in figures.methods:
        table.add_row(
            b.method,
            f"{b.first_token_s:.3f}",
            f"{b.seconds:.1f}",
            str(b.generated_tokens),
            str(b.wasted_tokens),
            f"{b.tokens_per_s:.1f}",
            "" if b.live_branches is None else f"{b.live_branches:.1f}",
            f"{b.overlap:.2f}x",
            ", ".join(_short(answer) for answer in b.answers),
        )
    return table


def _short(answer: str | None, width: int = 12) -> str:
    """An answer on one line: short answers whole, code cut to its start."""
    line = str(answer).strip().splitlines()[0] if answer and answer.strip() else str(answer)
    return line if len(line) <= width else line[: width - 1] + "…"


def summary(figures: MethodFigures) -> str:
    lines = []
    if figures.demo:
        correct = sum(run.correct for run in figures.demo)
        clean = "yes" if all(run.clean for run in figures.demo) else "no"
        lines.append(
            f"demo question, {len(figures.demo)} seeds: {correct}/{len(figures.demo)} right, median "
            f"{figures.demo_median_s:.1f} s, every stated answer one line: {clean}"
        )
    if (speedup := figures.speedup_vs_sequential) is not None:
        lines.append(f"speedup_vs_sequential: {speedup:.2f}x (sequential cepo wall time / cepo wall time)")
    if (utilization := figures.engine_utilization) is not None:
        cepo = figures.bench("cepo")
        assert cepo is not None and cepo.live_branches is not None
        lines.append(
            f"engine_utilization: {utilization:.2f} (cepo {cepo.tokens_per_s:.1f} tok/s; the engine alone "
            f"{figures.engine_at_cepo_width:.1f} tok/s at {cepo.live_branches:.1f} branches)"
        )
    return "\n".join(lines)
