"""`cepo bench engine` and `cepo bench method`: print a table, and with --json write the figures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cepo.bench.engine import BRANCHES, REFERENCE, EngineBench, run_engine_bench
from cepo.bench.method import QUESTIONS, SEQUENTIAL, MethodFigures, bench_methods, method_table, summary
from cepo.cli.options import BackendChoice, backend_options, config_option
from cepo.methods import METHODS
from cepo.methods.settings import Options


@click.group()
def bench() -> None:
    """Measure speed. Figures come from one run, so their ratios compare like with like."""


@bench.command("engine")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="a GGUF file (default: SmolLM2)")
@click.option("--tokens", default=128, show_default=True, help="tokens decoded per branch")
@click.option("--repeats", default=3, show_default=True, help="runs per figure; the median is reported")
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), default=None, help="write the figures here"
)
def engine_command(model: Path | None, tokens: int, repeats: int, json_path: Path | None) -> None:
    """The embedded engine against llama-cpp-python's high-level Llama, and N branches against one.

    \b
    Example:
      cepo bench engine --json bench-engine.json
    """
    console = Console()
    with console.status("benchmarking the engine (about a minute)..."):
        result = run_engine_bench(model, tokens, repeats)
    console.print(engine_table(result))
    if json_path:
        json_path.write_text(json.dumps(result.to_json(), indent=2))
        console.print(f"figures written to {json_path}")


def engine_table(r: EngineBench) -> Table:
    table = Table(title=f"engine: {r.model}, {r.threads} threads, {r.prompt_tokens}-token prompt")
    for column in ("figure", "cepo", "Llama class", "ratio", "llama.cpp tools"):
        table.add_column(column, justify="right")
    table.add_row(
        "decode tok/s, 1 stream",
        f"{r.ours_decode_tok_s:.1f}",
        f"{r.llama_decode_tok_s:.1f}",
        f"{r.single_stream_ratio:.2f}x",
        f"{REFERENCE['decode_tok_s']:.0f}",
    )
    table.add_row(
        "prefill tok/s",
        f"{r.ours_prefill_tok_s:.1f}",
        f"{r.llama_prefill_tok_s:.1f}",
        f"{r.ours_prefill_tok_s / r.llama_prefill_tok_s:.2f}x",
        f"{REFERENCE['prefill_tok_s']:.0f}",
    )
    for n in BRANCHES:
        reference = REFERENCE.get(f"aggregate_tok_s_n{n}")
        table.add_row(
            f"aggregate tok/s, N={n}",
            f"{r.aggregate_tok_s[n]:.1f}",
            "",
            f"{r.aggregate_tok_s[n] / r.aggregate_tok_s[1]:.2f}x",
            f"{reference:.0f}" if reference else "",
        )
    table.add_row(
        "first tokens, N=8 (s)",
        f"{r.first_tokens_s[8]:.3f}",
        "",
        f"{r.prefill_ratio_n8:.2f}x",
        "",
    )
    return table


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
    if json_path:
        json_path.write_text(json.dumps(figures.to_json(), indent=2))
        console.print(f"figures written to {json_path}")
