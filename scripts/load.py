"""Bounded load on `cepo serve`: N concurrent streaming clients for T seconds, plain and cepo mixed; a soak.

Loopback only, and it stops by itself: no request starts after T seconds, and whatever still runs
`--grace` seconds later is cut (closing its stream cancels it on the server). Without --url it starts
`cepo serve` itself (embedded engine, `--threads`), on a free port, and stops it at the end.

It samples the server's resident memory (VmRSS, with --url only given --pid) before the traffic, every
`--sample-every` seconds and at the end; once the traffic stops and the server has drained, it reads
/metrics for the engine's KV cells and branches still held. It prints errors by method and kind,
latency and time to first token (p50 / p95), the aggregate generation rate, the memory series and the
end state, and exits 1 when a request failed or was cut, or the server still holds KV cells.

    .venv/bin/python scripts/load.py --clients 4 --seconds 60 --threads 1          # a short check
    .venv/bin/python scripts/load.py --clients 16 --seconds 1800 --threads 1 --json soak.json
    cepo serve --port 9000 & .venv/bin/python scripts/load.py --url http://127.0.0.1:9000/v1 --pid $!
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import httpx
import numpy as np
import openai
from prometheus_client.parser import text_string_to_metric_families

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
QUESTIONS = [
    "What is 17 + 25?",
    "How many r's are in the word strawberry?",
    "Is 91 a prime number? Answer yes or no.",
    "A train travels 60 km in 1.5 hours. What is its speed in km/h?",
    "What is 9 * 8 - 10?",
]
# Budgets small enough that a cepo run on a CPU takes seconds, not minutes.
SMALL_CEPO = {
    "bestofn_n": 2,
    "planning_n": 1,
    "planning_m": 2,
    "plan": {"max_tokens": 32},
    "execute": {"max_tokens": 48},
    "final": {"max_tokens": 24},
    "sample": {"max_tokens": 32},
    "rating": {"max_tokens": 8},
}
CEPO = [sys.executable, "-c", "from cepo.cli import main; main()"]
SERVER_BANNER = re.compile(r"cepo serves .* at (http://\S+/v1)")
SERVER_START_S = 300.0  # loading a large model from a cold disk takes a while
# The engine's gauges that must be back to zero once nothing runs.
HELD_AT_END = ("kv_cells_live", "live_branches", "active_requests", "waiting_requests")


@dataclass
class Outcome:
    method: str
    latency_s: float
    first_token_s: float | None
    completion_tokens: int


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, kind) -> count
    examples: dict[str, str] = field(default_factory=dict)  # kind -> the first message seen
    cut: int = 0  # clients still in a request at the hard deadline

    def failed(self, method: str, error: openai.APIError) -> None:
        kind = error_kind(error)
        self.errors[(method, kind)] += 1
        self.examples.setdefault(kind, str(error)[:200])


def error_kind(error: openai.APIError) -> str:
    """What went wrong, coarse enough to count: `HTTP 429`, `timeout`, `connection`, `stream error`."""
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    return "stream error"  # an error event in the middle of a stream


def rss_mib(pid: int) -> float | None:
    """The resident memory of process `pid` in MiB (VmRSS), None where /proc does not tell."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found[1]) / 1024 if found else None


def read_metrics(text: str) -> tuple[dict[str, float], dict[str, int]]:
    """From /metrics: the engine's gauges without their prefix, and request counts by `method status`."""
    engine: dict[str, float] = {}
    requests: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("cepo_engine_"):
                engine[sample.name.removeprefix("cepo_engine_")] = sample.value
            elif sample.name == "cepo_requests_total":
                requests[f"{sample.labels['method']} {sample.labels['status']}"] = int(sample.value)
    return engine, requests


@dataclass
class Memory:
    """The server's RSS over the run: (seconds since the traffic began, MiB)."""

    pid: int | None
    samples: list[tuple[float, float]] = field(default_factory=list)

    def sample(self, at_s: float) -> float | None:
        mib = None if self.pid is None else rss_mib(self.pid)
        if mib is not None:
            self.samples.append((round(at_s, 1), round(mib, 1)))
        return mib

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        values = [mib for _, mib in self.samples]
        middle = values[len(values) // 2]
        return {
            "start": values[0],
            "end": values[-1],
            "max": max(values),
            "growth": round(values[-1] - values[0], 1),
            "second_half_growth": round(values[-1] - middle, 1),  # past the warm-up: what a leak shows
            "samples": self.samples,
        }


async def one_request(client: openai.AsyncOpenAI, method: str, question: str, max_tokens: int) -> Outcome:
    started = time.perf_counter()
    first_token_s = None
    tokens = 0
    stream = await client.chat.completions.create(
        model=method,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"cepo": SMALL_CEPO} if method == "cepo" else {},
    )
    async with stream:
        async for chunk in stream:
            if first_token_s is None and any(
                choice.delta.content or getattr(choice.delta, "reasoning_content", None)
                for choice in chunk.choices
            ):
                first_token_s = time.perf_counter() - started
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    return Outcome(method, time.perf_counter() - started, first_token_s, tokens)


async def client_loop(
    index: int, client: openai.AsyncOpenAI, stop_at: float, cepo_every: int, max_tokens: int, tally: Tally
) -> None:
    """One client: request after request until `stop_at`; every `cepo_every`-th request is cepo."""
    sent = 0
    while time.perf_counter() < stop_at:
        method = "cepo" if (index + sent) % cepo_every == 0 else "plain"
        question = QUESTIONS[(index + sent) % len(QUESTIONS)]
        sent += 1
        try:
            tally.outcomes.append(await one_request(client, method, question, max_tokens))
        except openai.APIError as error:
            tally.failed(method, error)


async def watch(memory: Memory, tally: Tally, started: float, stop_at: float, every_s: float) -> None:
    """Sample the memory every `every_s` seconds while the traffic runs, with a progress line each time."""
    while (now := time.perf_counter()) < stop_at:
        await asyncio.sleep(min(every_s, stop_at - now))
        mib = memory.sample(time.perf_counter() - started)
        click.echo(
            f"{time.perf_counter() - started:7.0f} s: {len(tally.outcomes)} answered, "
            f"{sum(tally.errors.values())} errors, RSS {'-' if mib is None else f'{mib:.1f} MiB'}",
            err=True,
        )


@dataclass(frozen=True)
class Load:
    """The traffic: how many clients, for how long, with which mix and answer budget."""

    clients: int
    seconds: float
    grace: float
    cepo_every: int
    max_tokens: int


async def run_load(
    url: str, api_key: str, load: Load, memory: Memory, sample_every: float, tally: Tally
) -> None:
    started = time.perf_counter()
    stop_at = started + load.seconds
    memory.sample(0.0)
    timeout = load.seconds + load.grace  # no request outlives the hard deadline anyway
    client = openai.AsyncOpenAI(base_url=url, api_key=api_key, max_retries=0, timeout=timeout)
    watcher = asyncio.create_task(watch(memory, tally, started, stop_at, sample_every))
    try:
        loops = [
            asyncio.create_task(client_loop(i, client, stop_at, load.cepo_every, load.max_tokens, tally))
            for i in range(load.clients)
        ]
        _, running = await asyncio.wait(loops, timeout=timeout)
        tally.cut = len(running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    finally:
        watcher.cancel()
        await client.close()


def end_state(root: str, timeout_s: float) -> dict[str, Any]:
    """Once nothing runs or waits (or `timeout_s` passed): the engine's gauges and the request counts."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            health = httpx.get(f"{root}/health", timeout=30).json()
            metrics = httpx.get(f"{root}/metrics", timeout=30).text
        except httpx.HTTPError as error:  # the server died under the load
            return {"drained": False, "engine": {}, "requests": {}, "unreachable": type(error).__name__}
        drained = health["running"] == 0 and health["queued"] == 0
        engine, requests = read_metrics(metrics)
        settled = drained and all(engine.get(name, 0) == 0 for name in HELD_AT_END)
        if settled or time.monotonic() > deadline:
            return {"drained": drained, "engine": engine, "requests": requests}
        time.sleep(0.5)


@contextmanager
def cepo_server(
    threads: int | None, model: str | None, serve_args: tuple[str, ...]
) -> Iterator[tuple[str, int | None]]:
    """`cepo serve` on a free loopback port: its /v1 URL and pid while it runs; stopped with Ctrl-C."""
    command = [*CEPO, "serve", "--port", "0", "--log-level", "warning", *serve_args]
    command += ["--threads", str(threads)] if threads else []
    command += ["--model", model] if model else []
    with tempfile.NamedTemporaryFile("w+", prefix="cepo-serve-", suffix=".log", delete=False) as log:
        server = subprocess.Popen(command, stdout=log, stderr=log, text=True)
        try:
            yield wait_for_banner(server, Path(log.name)), server.pid
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            click.echo(f"server log: {log.name}", err=True)


def wait_for_banner(server: subprocess.Popen[str], log: Path) -> str:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        found = SERVER_BANNER.search(log.read_text())
        if found:
            return found[1]
        if server.poll() is not None:
            raise click.ClickException(
                f"cepo serve exited with {server.returncode}:\n{log.read_text()[-2000:]}"
            )
        time.sleep(0.1)
    raise click.ClickException(f"cepo serve did not start within {SERVER_START_S:g} s; its log: {log}")


def percentiles(values: list[float]) -> list[float] | None:
    return [round(float(v), 3) for v in np.percentile(values, [50, 95])] if values else None


def summarize(
    tally: Tally, wall_s: float, clients: int, memory: Memory, end: dict[str, Any]
) -> dict[str, Any]:
    methods = {}
    for method in ("plain", "cepo"):
        done = [o for o in tally.outcomes if o.method == method]
        methods[method] = {
            "ok": len(done),
            "errors": sum(count for (m, _), count in tally.errors.items() if m == method),
            "latency_s_p50_p95": percentiles([o.latency_s for o in done]),
            "first_token_s_p50_p95": percentiles(
                [o.first_token_s for o in done if o.first_token_s is not None]
            ),
            "completion_tokens": sum(o.completion_tokens for o in done),
        }
    tokens = sum(o.completion_tokens for o in tally.outcomes)
    engine = end["engine"]
    kv_freed = all(engine.get(name, 0) == 0 for name in HELD_AT_END) if engine else None
    errors = sum(tally.errors.values())
    return {
        "clients": clients,
        "wall_s": round(wall_s, 1),
        "methods": methods,
        "tokens_per_s": round(tokens / wall_s, 1),
        "errors": {f"{method}: {kind}": count for (method, kind), count in tally.errors.most_common()},
        "error_examples": tally.examples,
        "cut": tally.cut,
        "rss_mib": memory.summary(),
        "server_requests": end["requests"],
        "drained": end["drained"],
        "unreachable": end.get("unreachable"),
        "engine_end": engine,
        "kv_freed": kv_freed,
        "passed": errors == 0 and tally.cut == 0 and end["drained"] and kv_freed is not False,
    }


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} MiB"


def print_summary(summary: dict[str, Any]) -> None:
    click.echo(f"\n{summary['clients']} clients, {summary['wall_s']} s wall")
    click.echo(
        f"{'method':<8} {'ok':>6} {'errors':>6} {'latency p50 / p95 s':>21} {'first token p50 / p95 s':>25}"
    )
    for method, row in summary["methods"].items():
        latency, first = (
            "-" if pair is None else f"{pair[0]:7.2f} / {pair[1]:7.2f}"
            for pair in (row["latency_s_p50_p95"], row["first_token_s_p50_p95"])
        )
        click.echo(f"{method:<8} {row['ok']:>6} {row['errors']:>6} {latency:>21} {first:>25}")
    click.echo(
        f"aggregate: {summary['tokens_per_s']} completion tok/s; cut at the deadline: {summary['cut']}"
    )
    for what, count in summary["errors"].items():
        click.echo(f"  {count} x {what}")
    for kind, example in summary["error_examples"].items():
        click.echo(f"  e.g. {kind}: {example}")
    statuses = ", ".join(f"{key}: {count}" for key, count in sorted(summary["server_requests"].items()))
    click.echo(f"server requests by method and status: {statuses}")
    rss = summary["rss_mib"]
    if rss:
        click.echo(
            f"server RSS: start {mib(rss['start'])}, end {mib(rss['end'])}, max {mib(rss['max'])}, "
            f"growth {rss['growth']:+.1f} MiB ({rss['second_half_growth']:+.1f} over the second half)"
        )
    else:
        click.echo("server RSS: not sampled (give --pid with --url)")
    engine = summary["engine_end"]
    held = ", ".join(f"{name} {engine[name]:g}" for name in (*HELD_AT_END, "kv_cells_used") if name in engine)
    if summary["unreachable"]:
        click.echo(f"at the end: the server did not answer ({summary['unreachable']})")
    else:
        click.echo(
            f"at the end: drained {summary['drained']}; {held or 'the server reports no engine gauges'}"
        )
    click.echo("PASSED" if summary["passed"] else "FAILED")


@click.command()
@click.option("--url", help="A running cepo server's /v1 URL, on loopback (default: start one).")
@click.option("--pid", type=int, help="With --url: the server's process id, to sample its memory.")
@click.option("--threads", type=click.IntRange(min=1), help="The started server's decoding threads.")
@click.option("--model", help="The started server's GGUF file (default: SmolLM2-135M).")
@click.option("--serve-arg", "serve_args", multiple=True, help="One more `cepo serve` argument (repeatable).")
@click.option("--clients", default=16, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--seconds", default=60.0, show_default=True, type=click.FloatRange(1, 86400), help="Load time."
)
@click.option(
    "--grace", default=120.0, show_default=True, type=click.FloatRange(0), help="Then cut what runs."
)
@click.option(
    "--cepo-every", default=4, show_default=True, type=click.IntRange(1), help="1 in N requests is cepo."
)
@click.option("--max-tokens", default=48, show_default=True, type=click.IntRange(1), help="Answer budget.")
@click.option(
    "--sample-every",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between RSS samples.",
)
@click.option(
    "--drain",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds the server may take, after the traffic, to free what it holds.",
)
@click.option("--api-key", envvar="CEPO_API_KEY", default="unused")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the summary here."
)
def main(
    url: str | None,
    pid: int | None,
    threads: int | None,
    model: str | None,
    serve_args: tuple[str, ...],
    clients: int,
    seconds: float,
    grace: float,
    cepo_every: int,
    max_tokens: int,
    sample_every: float,
    drain: float,
    api_key: str,
    json_path: Path | None,
) -> None:
    """Load a cepo server with plain and cepo requests; report errors, latency, tok/s, memory and KV cells."""
    if url is not None and urlparse(url).hostname not in LOOPBACK:
        raise click.BadParameter(
            f"{url} is not on loopback; this script only loads a local server", param_hint="--url"
        )
    if url is not None and (threads or model or serve_args):
        raise click.UsageError("--threads, --model and --serve-arg start a server: leave out --url")
    load = Load(clients, seconds, grace, cepo_every, max_tokens)
    server = cepo_server(threads, model, serve_args) if url is None else _running(url, pid)
    with server as (base_url, server_pid):
        memory = Memory(server_pid)
        tally = Tally()
        started = time.perf_counter()
        asyncio.run(run_load(base_url, api_key, load, memory, sample_every, tally))
        wall_s = time.perf_counter() - started
        end = end_state(base_url.rstrip("/").removesuffix("/v1"), drain)
        memory.sample(time.perf_counter() - started)
    summary = summarize(tally, wall_s, clients, memory, end)
    print_summary(summary)
    if json_path is not None:
        outcomes = [asdict(outcome) for outcome in tally.outcomes]
        json_path.write_text(json.dumps({**summary, "outcomes": outcomes}, indent=1))
    sys.exit(0 if summary["passed"] else 1)


@contextmanager
def _running(url: str, pid: int | None) -> Iterator[tuple[str, int | None]]:
    """A server started by someone else: left running."""
    yield url, pid


if __name__ == "__main__":
    main()
