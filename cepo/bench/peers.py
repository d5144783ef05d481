"""`cepo bench peers`: the same questions through every way a user could run them, in one run.

The ways, on one model file and one thread count:
- llama-server: plain answers, one streamed chat request per question;
- optillm: the reference CePO (PyPI optillm, approach `cepo`) in front of that llama-server, with its own
  default config but for its per-step token limits and counts, set to cepo's (`optillm_settings`);
- cepo: cepo on its embedded engine;
- cepo-remote: cepo in front of the same llama-server, through its remote backend.

The questions are the first `limit` HumanEval problems and letter questions, scored as `cepo eval` scores
them; cepo's settings (and so optillm's) are cepo's defaults, or what --config sets. The ways take turns
on each question (see `bench_peers`). Per way: wall seconds per question (median, p90), tokens generated
(counted by llama-server's /metrics, or by the embedded engine, cancelled branches included), failed
requests, the time to the first streamed byte of reasoning or answer, and accuracy. The ratios sum it up
(see PeerFigures).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
from rich.progress import Progress
from rich.table import Table

from cepo.backends import Backend, Sampling
from cepo.backends.llama import EngineConfig, LlamaEngine
from cepo.backends.remote import RemoteBackend
from cepo.bench import servers
from cepo.bench.native import NativeSetup, peer
from cepo.errors import CepoError
from cepo.evals.base import Dataset, Problem
from cepo.evals.humaneval import HumanEval
from cepo.evals.letters import Letters
from cepo.methods import configure, get_method, run
from cepo.methods.cepo_method import CepoSettings
from cepo.methods.events import BranchToken, Finished
from cepo.methods.plain import PlainSettings
from cepo.methods.settings import Options

SERVER, OPTILLM, EMBEDDED, REMOTE = "llama-server", "optillm", "cepo", "cepo-remote"
DATASETS: tuple[Callable[[], Dataset], ...] = (HumanEval, Letters)
WARM_UP = "Is 7 a prime number?"
SETTLE_POLLS, SETTLE_POLL_S = 100, 0.05  # up to 5 s for cancelled branches to stop


def optillm_settings(config: CepoSettings) -> dict[str, int]:
    """optillm's per-step token limits and counts, by its config's names, at cepo's `config`. Its flat
    names are those cepo's settings read as aliases; answering without a plan is cepo's `sample` step."""
    steps = {old: step for old, (step, part) in CepoSettings.ALIASES.items() if part == "max_tokens"}
    steps["planning_max_tokens_direct_resp"] = "sample"
    budgets = {old: getattr(config, step).max_tokens for old, step in steps.items()}
    return {**{name: getattr(config, name) for name in ("bestofn_n", "planning_n", "planning_m")}, **budgets}


def server_slots(config: CepoSettings) -> int:
    """llama-server's slots: as many requests as a cepo run (or optillm's) may have in flight, one per
    plan attempt of every candidate, so neither waits for a slot."""
    return config.bestofn_n * config.planning_m


@dataclass(frozen=True)
class Outcome:
    """One question through one way."""

    seconds: float
    first_byte_s: float | None  # None: nothing streamed
    tokens: int
    passed: bool
    error: str | None = None  # the request failed


@dataclass
class WayFigures:
    way: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(o.seconds for o in self.outcomes)

    @property
    def p90_s(self) -> float:
        return percentile([o.seconds for o in self.outcomes], 0.9)

    @property
    def first_byte_s(self) -> float | None:
        streamed = [o.first_byte_s for o in self.outcomes if o.first_byte_s is not None]
        return statistics.median(streamed) if streamed else None

    @property
    def tokens(self) -> int:
        return sum(o.tokens for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(o.error is not None for o in self.outcomes)

    @property
    def accuracy(self) -> float:
        return sum(o.passed for o in self.outcomes) / len(self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": len(self.outcomes),
            "median_s": self.median_s,
            "p90_s": self.p90_s,
            "first_byte_s": self.first_byte_s,
            "tokens": self.tokens,
            "failed": self.failed,
            "accuracy": self.accuracy,
            "errors": [o.error for o in self.outcomes if o.error is not None],
            "outcomes": [asdict(o) for o in self.outcomes],  # in the order of PeerFigures.questions
        }


@dataclass
class PeerFigures:
    model: str
    threads: int
    questions: list[str]
    ways: dict[str, WayFigures]

    def _ratio(self, over: str, under: str, figure: Callable[[WayFigures], float]) -> float | None:
        numerator, denominator = figure(self.ways[over]), figure(self.ways[under])
        return numerator / denominator if denominator else None

    @property
    def speedup_vs_optillm(self) -> float | None:
        """optillm's median wall time per question over embedded cepo's."""
        return self._ratio(OPTILLM, EMBEDDED, lambda w: w.median_s)

    @property
    def tokens_vs_optillm(self) -> float | None:
        """optillm's tokens over embedded cepo's: above 1, optillm generated more."""
        return self._ratio(OPTILLM, EMBEDDED, lambda w: w.tokens)

    @property
    def remote_speedup_vs_optillm(self) -> float | None:
        """Both in front of one llama-server: optillm's median wall time over cepo-remote's."""
        return self._ratio(OPTILLM, REMOTE, lambda w: w.median_s)

    @property
    def embedded_vs_remote(self) -> float | None:
        """cepo-remote's median wall time over embedded cepo's: what the embedded engine gains."""
        return self._ratio(REMOTE, EMBEDDED, lambda w: w.median_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "threads": self.threads,
            "questions": self.questions,
            "ways": {name: way.to_json() for name, way in self.ways.items()},
            "speedup_vs_optillm": self.speedup_vs_optillm,
            "tokens_vs_optillm": self.tokens_vs_optillm,
            "remote_speedup_vs_optillm": self.remote_speedup_vs_optillm,
            "embedded_vs_remote": self.embedded_vs_remote,
        }


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile of `values`, linear between the nearest ranks."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# A way answers one problem: its answer's text, and the seconds until its first streamed byte.
Ask = Callable[[Problem, Dataset], Awaitable[tuple[str, float | None]]]
Count = Callable[[], Awaitable[int]]  # tokens generated so far, where the way generates them


@dataclass(frozen=True)
class Way:
    name: str
    ask: Ask
    count: Count


def chat_way(name: str, client: openai.AsyncOpenAI, model: str, params: dict[str, Any], count: Count) -> Way:
    """A way that is one streamed chat request per question to an OpenAI-compatible server."""

    async def ask(problem: Problem, dataset: Dataset) -> tuple[str, float | None]:
        started, first, parts = time.perf_counter(), None, []
        chunks = await client.chat.completions.create(
            model=model,
            messages=problem.messages,
            stream=True,
            **params,  # type: ignore[arg-type]
        )
        async for chunk in chunks:
            for choice in chunk.choices:
                if choice.delta.content:
                    if first is None:
                        first = time.perf_counter() - started
                    parts.append(choice.delta.content)
        return "".join(parts), first

    return Way(name, ask, count)


def cepo_way(name: str, backend: Backend, options: Options, count: Count) -> Way:
    """cepo on `backend` with `options`, told the dataset's kind of question as `cepo eval` tells it,
    and the problem's public examples."""

    async def ask(problem: Problem, dataset: Dataset) -> tuple[str, float | None]:
        config = configure(get_method("cepo"), {**options, "task": dataset.task})
        started, first = time.perf_counter(), None
        async for event in run("cepo", backend, problem.messages, config, problem.tests or None):
            if first is None and isinstance(event, BranchToken):
                first = time.perf_counter() - started
            if isinstance(event, Finished):
                return event.result.answer, first
        raise AssertionError("a run always ends with Finished")

    return Way(name, ask, count)


def plain_params(options: Options) -> dict[str, Any]:
    """llama-server's plain answer: the sampling of cepo's own plain method."""
    config = configure(get_method("plain"), options)
    assert isinstance(config, PlainSettings)
    return {"temperature": config.sample.temperature, "max_tokens": config.sample.max_tokens}


def engine_count(engine: LlamaEngine) -> Count:
    async def read() -> tuple[bool, int]:
        stats = engine.stats()
        return stats["active_requests"] + stats["waiting_requests"] == 0, engine.load().tokens

    return partial(settled, read)


def server_count(client: httpx.AsyncClient, server: str) -> Count:
    async def read() -> tuple[bool, int]:
        samples = await servers.metrics(client, server)
        return samples[servers.BUSY_METRIC] == 0, int(samples[servers.TOKENS_METRIC])

    return partial(settled, read)


async def settled(read: Callable[[], Awaitable[tuple[bool, int]]]) -> int:
    """The token count once the generator is idle: branches a run cancelled may still be stopping when it
    returns, and their tokens are that run's."""
    for _ in range(SETTLE_POLLS):
        idle, tokens = await read()
        if idle:
            break
        await asyncio.sleep(SETTLE_POLL_S)
    return tokens


async def answer(way: Way, problem: Problem, dataset: Dataset) -> Outcome:
    """Time one way on one problem and score its answer; a failed request scores as wrong."""
    before = await way.count()
    started = time.perf_counter()
    try:
        text, first = await way.ask(problem, dataset)
        error = None
    except (CepoError, openai.APIError, httpx.HTTPError) as failure:
        text, first, error = "", None, f"{problem.id}: {_described(failure)}"
    seconds = time.perf_counter() - started
    tokens = await way.count() - before
    passed = error is None and (await dataset.score(problem, text)).passed
    return Outcome(seconds, first, tokens, passed, error)


def _described(error: Exception) -> str:
    """The error, with the server's own words where it sent some (optillm answers 500 with its error)."""
    body = getattr(error, "body", None)
    return f"{error} {body}" if body else str(error)


def load_questions(limit: int) -> list[tuple[Dataset, Problem]]:
    questions = []
    for make in DATASETS:
        dataset = make()
        questions += [(dataset, problem) for problem in dataset.load(None, "stop").problems[:limit]]
    return questions


async def bench_peers(
    ways: list[Way],
    questions: list[tuple[Dataset, Problem]],
    model: str,
    threads: int,
    progress: Progress,
    answered: Callable[[PeerFigures], None] = lambda figures: None,
) -> PeerFigures:
    """Every way on every question. The ways take turns on each question, the first of them rotating from
    one question to the next: whatever favours a place in the turn (what a server's cache still holds from
    the way before, a slow spell of a shared machine) falls on every way alike. `answered` gets the figures
    so far after each question, so a run stopped part way keeps what it measured."""
    figures = PeerFigures(
        model, threads, [p.id for _, p in questions], {w.name: WayFigures(w.name) for w in ways}
    )
    task = progress.add_task("peers", total=len(ways) * len(questions))
    for index, (dataset, problem) in enumerate(questions):
        start = index % len(ways)
        for way in ways[start:] + ways[:start]:
            progress.update(task, description=f"{way.name}: {problem.id}")
            figures.ways[way.name].outcomes.append(await answer(way, problem, dataset))
            progress.advance(task)
        answered(figures)
    return figures


async def warm_up(engine: LlamaEngine, server: openai.AsyncOpenAI, model: str) -> None:
    """One token from the engine and from llama-server: first-call allocations are not a question's."""
    await engine.generate(WARM_UP, 1, Sampling(max_tokens=1))
    await server.chat.completions.create(
        model=model, messages=[{"role": "user", "content": WARM_UP}], max_tokens=1
    )


def peers_table(figures: PeerFigures) -> Table:
    table = Table(title=f"{len(figures.questions)} questions on {figures.model}, {figures.threads} threads")
    columns = ("way", "median s", "p90 s", "first byte s", "tokens", "failed", "accuracy")
    for column in columns:
        table.add_column(column, justify="left" if column == "way" else "right")
    for way in figures.ways.values():
        first = way.first_byte_s
        table.add_row(
            way.way,
            f"{way.median_s:.1f}",
            f"{way.p90_s:.1f}",
            "-" if first is None else f"{first:.2f}",
            str(way.tokens),
            str(way.failed),
            f"{100 * way.accuracy:.0f}%",
        )
    return table


def peers_summary(figures: PeerFigures) -> str:
    lines = [
        ("speedup_vs_optillm", figures.speedup_vs_optillm, "optillm's median s / cepo's (embedded)"),
        ("tokens_vs_optillm", figures.tokens_vs_optillm, "optillm's tokens / cepo's (embedded)"),
        (
            "remote_speedup_vs_optillm",
            figures.remote_speedup_vs_optillm,
            "optillm's / cepo-remote's, one server",
        ),
        ("embedded_vs_remote", figures.embedded_vs_remote, "cepo-remote's median s / cepo's (embedded)"),
    ]
    return "\n".join(f"{name}: {value:.2f}x ({what})" for name, value, what in lines if value is not None)


async def run_peers(
    model: Path | None,
    threads: int | None,
    limit: int,
    timeout: float,
    options: Options,
    logs: Path,
    progress: Progress,
    answered: Callable[[PeerFigures], None] = lambda figures: None,
) -> PeerFigures:
    """Start the engine, llama-server on its file and optillm in front of that, run every way on the
    questions (`answered`: as in `bench_peers`), and stop them all, however the run ends."""
    for name in ("llama-server", "optillm"):
        peer(name)  # fail before loading anything when the peers are not built
    questions = load_questions(limit)
    config = configure(get_method("cepo"), options)
    assert isinstance(config, CepoSettings)
    async with AsyncExitStack() as stack:
        engine = LlamaEngine(EngineConfig(model_path=model, n_threads=threads))
        stack.callback(engine.close)
        server = stack.enter_context(servers.llama_server(NativeSetup.of(engine), server_slots(config), logs))
        upstream = await stack.enter_async_context(_client(f"{server}/v1", timeout))
        served = (await upstream.models.list()).data[0].id
        proxy = stack.enter_context(servers.optillm(server, served, optillm_settings(config), logs))
        reference = await stack.enter_async_context(_client(f"{proxy}/v1", timeout))
        remote = RemoteBackend(f"{server}/v1", served, timeout=timeout)
        stack.push_async_callback(remote.aclose)
        metrics = await stack.enter_async_context(httpx.AsyncClient())
        counted = server_count(metrics, server)
        ways = [
            chat_way(SERVER, upstream, served, plain_params(options), counted),
            chat_way(OPTILLM, reference, served, {}, counted),
            cepo_way(EMBEDDED, engine, options, engine_count(engine)),
            cepo_way(REMOTE, remote, options, counted),
        ]
        await warm_up(engine, upstream, served)
        return await bench_peers(ways, questions, engine.model, engine.threads, progress, answered)


def _client(base_url: str, timeout: float) -> openai.AsyncOpenAI:
    # No retries: a request the way failed to answer counts as failed, not as a second try.
    return openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", timeout=timeout, max_retries=0)
