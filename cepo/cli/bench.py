"""`cepo bench engine`, `cepo bench method` and `cepo bench peers`: print a table, and with --json write
the figures."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cepo.bench.engine import BRANCHES, PREFILL_SIZES, EngineBench, run_engine_bench
from cepo.bench.method import QUESTIONS, SEQUENTIAL, MethodFigures, bench_methods, method_table, summary
from cepo.bench.peers import PeerFigures, peers_summary, peers_table, run_peers
from cepo.cli.options import BackendChoice, backend_options, config_option
from cepo.methods import METHODS
from cepo.methods.settings import Options


@click.group()
def bench() -> None:
    """Measure speed. Figures come from one run, so their ratios compare like with like."""


@bench.command("engine")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="a GGUF file (default: SmolLM2)")
@click.option("--tokens", default=128, show_default=True, help="tokens decoded per branch")
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="runs per figure; the median is reported",
)
@click.option(
    "--prefill",
    "prefill_sizes",
    multiple=True,
    type=click.IntRange(min=1),
    default=PREFILL_SIZES,
    show_default=True,
    help="long-prompt sizes in tokens (repeat the option for several)",
)
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), default=None, help="write the figures here"
)
def engine_command(
    model: Path | None, tokens: int, repeats: int, prefill_sizes: tuple[int, ...], json_path: Path | None
) -> None:
    """The embedded engine against llama.cpp's own tools and llama-cpp-python's high-level Llama.

    \b
    Needs llama.cpp's tools, built once with `make bench-tools`. Example:
      cepo bench engine --json bench-engine.json
    """
    console = Console()
    with console.status("benchmarking the engine and llama.cpp's tools (a few minutes)..."):
        result = run_engine_bench(model, tokens, repeats, prefill_sizes)
    console.print(engine_table(result))
    console.print(
        f"N=8 against N=1: {result.speedup_n8:.2f}x the aggregate tok/s; all first tokens in "
        f"{result.prefill_ratio_n8:.2f}x the time"
    )
    write_figures(console, result.to_json(), json_path)


def engine_table(r: EngineBench) -> Table:
    """Each figure: cepo, then its peers (llama.cpp's tools, the high-level Llama) and cepo over each."""
    table = Table(title=f"engine: {r.model}, {r.threads} threads, {r.decode_tokens} new tokens per branch")
    table.add_column("figure", no_wrap=True)
    for column in ("cepo", "llama.cpp tool", "ratio", "Llama class", "ratio"):
        table.add_column(column, justify="right")

    def row(figure: str, ours: float, tool: float | None = None, high_level: float | None = None) -> None:
        peers = [
            (tool, ours / tool if tool else None),
            (high_level, ours / high_level if high_level else None),
        ]
        cells = [cell for peer, ratio in peers for cell in (_cell(peer, ".1f"), _cell(ratio, ".2f", "x"))]
        table.add_row(figure, f"{ours:.1f}", *cells)

    row("decode tok/s, 1 stream", r.ours_decode_tok_s, high_level=r.llama_decode_tok_s)
    row(f"prefill tok/s, {r.prompt_tokens} tokens", r.ours_prefill_tok_s, high_level=r.llama_prefill_tok_s)
    for n in BRANCHES:
        row(f"aggregate tok/s, N={n}", r.aggregate_tok_s[n], tool=r.native_tok_s.get(n))
    for size, tok_s in r.long_prefill_tok_s.items():
        row(f"prefill tok/s, {size} tokens", tok_s, tool=r.native_prefill_tok_s.get(size))
    return table


def _cell(value: float | None, spec: str, unit: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{unit}"


@bench.command("method")
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice([*METHODS, SEQUENTIAL]),
    help=f"default: plain, cepo, {SEQUENTIAL}",
)
@click.option("--question", "questions", multiple=True, help="default: a letter count and a code question")
@backend_options
@config_option
@click.option("--runs", default=1, show_default=True, help="runs per question and method (seeds 0, 1, ...)")
@click.option(
    "--demo-runs", default=5, show_default=True, help="cepo on the demo question, once per seed (0: none)"
)
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), default=None, help="write the figures here"
)
def method_command(
    methods: tuple[str, ...],
    questions: tuple[str, ...],
    backend: BackendChoice,
    options: Options,
    runs: int,
    demo_runs: int,
    json_path: Path | None,
) -> None:
    """Time methods end to end, cepo against cepo with every call made one after another; then cepo on
    the demo question, once per seed: right answers, median seconds, and whether each answer is one line.

    \b
    Example:
      cepo bench method --json bench-method.json
      cepo bench method --method plain --method cepo --question "What is 17 * 23?" --runs 3
    """
    chosen = list(methods or ("plain", "cepo", SEQUENTIAL))

    async def measure(progress: Progress) -> MethodFigures:
        opened = await backend.open()
        try:
            return await bench_methods(
                opened, chosen, list(questions or QUESTIONS), options, runs, progress, demo_runs
            )
        finally:
            await opened.aclose()

    console = Console()
    with Progress(console=console, transient=True) as progress:
        figures = asyncio.run(measure(progress))
    console.print(method_table(figures))
    if text := summary(figures):
        console.print(text)
    write_figures(console, figures.to_json(), json_path)


@bench.command("peers")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="a GGUF file (default: SmolLM2)")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="default: one per core")
@config_option
@click.option("--limit", default=20, show_default=True, help="HumanEval problems, and as many letters")
@click.option("--timeout", default=600.0, show_default=True, help="seconds a server may stay silent")
@click.option(
    "--logs",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="keep llama-server's and optillm's logs here (default: a temporary folder)",
)
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), default=None, help="write the figures here"
)
def peers_command(
    model: Path | None,
    threads: int | None,
    options: Options,
    limit: int,
    timeout: float,
    logs: Path | None,
    json_path: Path | None,
) -> None:
    """The same questions through llama-server, optillm's CePO in front of it, cepo embedded, and cepo
    in front of that llama-server.

    \b
    Needs the peers, built once with `make bench-tools`. Example:
      cepo bench peers --json bench-peers.json
      cepo bench peers --limit 2 --config small-budgets.yaml
    """
    # A SIGTERM (a timeout, `kill`) ends the run as Ctrl-C does, so the servers it started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="cepo-peers-") as scratch:
        folder = logs or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)

        # --json is written after each question, so a run stopped part way keeps what it measured; the
        # last question's write holds the final figures.
        def answered(figures: PeerFigures) -> None:
            if json_path:
                save_figures(json_path, figures.to_json())

        with Progress(console=console, transient=True) as progress:
            figures = asyncio.run(
                run_peers(model, threads, limit, timeout, options, folder, progress, answered)
            )
    console.print(peers_table(figures))
    if text := peers_summary(figures):
        console.print(text)
    if json_path:
        console.print(f"figures written to {json_path}")


def write_figures(console: Console, figures: dict[str, Any], path: Path | None) -> None:
    """`--json`: the figures, written where asked."""
    if path:
        save_figures(path, figures)
        console.print(f"figures written to {path}")


def save_figures(path: Path, figures: dict[str, Any]) -> None:
    """Write `figures` to `path` whole or not at all: a run killed while writing leaves the last copy."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(figures, indent=2))
    part.replace(path)
