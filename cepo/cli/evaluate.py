"""`cepo eval`: run methods over a dataset into an out directory; `cepo eval report DIR` summarizes it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from cepo.backends.llama import LlamaEngine
from cepo.cli.options import BackendChoice, backend_options
from cepo.evals.base import Dataset, Problem
from cepo.evals.datasets import DATASETS, get_dataset
from cepo.evals.harness import EvalPlan, run_eval
from cepo.evals.progress import RichProgress
from cepo.evals.report import write_report
from cepo.evals.results import ResultsFile
from cepo.methods import METHODS, check_all, solve
from cepo.methods.effort import EFFORT_METHOD, EFFORTS
from cepo.methods.settings import read_options


@click.group("eval", invoke_without_command=True)
@click.option("--dataset", type=click.Choice(list(DATASETS)), help="The benchmark to run.")
@click.option(
    "--path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The dataset's JSONL file (cruxeval-o, cruxeval-i, livecodebench; optional for humaneval).",
)
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Comma-separated methods.")
@click.option(
    "--efforts",
    help="Comma-separated reasoning_effort levels to run instead of --methods and --config: each runs the "
    "method and settings cepo.methods.effort gives it.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Run only the first N problems.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True, help="Runs per problem.")
@click.option(
    "--config",
    "config_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML settings: a mapping, or a list of mappings to sweep (repeatable). Each is one setting.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Directory for results.")
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=8, show_default=True, help="Problems in flight."
)
@click.option(
    "--on-bad-line",
    type=click.Choice(["skip", "stop"]),
    default="stop",
    show_default=True,
    help="What a dataset line that cannot be read does: skipped with a warning, or stops the run.",
)
@backend_options
@click.pass_context
def eval_group(ctx: click.Context, backend: BackendChoice, **options: Any) -> None:
    """Run reasoning methods over a benchmark and record every generation; rerunning resumes.

    \b
    Examples:
      cepo eval --dataset humaneval --methods plain,cepo --limit 40 --out runs/humaneval
      cepo eval --dataset cruxeval-o --path cruxeval.jsonl --methods plain,cepo --out runs/crux
      cepo eval --dataset letters --limit 200 --base-url http://127.0.0.1:8000/v1 --out runs/letters
      cepo eval --dataset humaneval --efforts none,low,medium,high --limit 40 --out runs/effort
    """
    if ctx.invoked_subcommand is not None:
        return
    if options["dataset"] is None or options["out"] is None:
        raise click.UsageError("--dataset and --out are needed (or `cepo eval report DIR`)", ctx=ctx)
    if options["efforts"] is None:
        methods, settings = parse_methods(options["methods"]), load_settings(options["config_files"])
    elif options["config_files"] or ctx.get_parameter_source("methods") != ParameterSource.DEFAULT:
        raise click.UsageError(
            "--efforts gives the methods and settings: leave out --methods and --config", ctx=ctx
        )
    else:
        methods, settings = parse_efforts(options["efforts"])
    dataset = get_dataset(options["dataset"])
    problems = load_problems(dataset, options["path"], options["on_bad_line"], options["limit"])
    plan = EvalPlan(dataset, problems, methods, settings, samples=options["samples"])
    asyncio.run(_run(plan, backend, options))
    click.echo(write_report(options["out"]))


@eval_group.command("report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_command(directory: Path) -> None:
    """Write report.md and accuracy-against-compute plots for the results in DIRECTORY.

    \b
    Example:
      cepo eval report runs/humaneval
    """
    click.echo(write_report(directory))


def load_problems(dataset: Dataset, path: Path | None, on_bad_line: str, limit: int | None) -> list[Problem]:
    if dataset.needs_path and path is None:
        raise click.UsageError(f"--dataset {dataset.name} needs --path FILE (a JSONL file of its problems)")
    loaded = dataset.load(path, on_bad_line)  # type: ignore[arg-type]  # click.Choice checked it
    for message in loaded.skipped:
        click.echo(f"skipped {message}", err=True)
    return loaded.problems[:limit]


def parse_methods(text: str) -> list[str]:
    return list(dict.fromkeys(parse_names(text, list(METHODS), "method")))


def parse_efforts(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The methods and settings the reasoning_effort levels in `text` run. The plan runs each method with
    each setting, once per distinct setting of its own, so plain runs once and two levels alike run once."""
    efforts = [EFFORTS[name] for name in parse_names(text, list(EFFORTS), "effort", "--efforts")]
    methods = list(dict.fromkeys(effort.method for effort in efforts))
    return methods, [dict(e.options) for e in efforts if e.method == EFFORT_METHOD] or [{}]


def parse_names(text: str, choices: list[str], what: str, option: str | None = None) -> list[str]:
    """The comma-separated names in `text`, each one of `choices`, at least one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        problem = f"unknown {what}(s) {', '.join(unknown)}" if unknown else f"no {what} given"
        raise click.BadParameter(f"{problem}; choose from {', '.join(choices)}", param_hint=option)
    return names


def load_settings(files: tuple[Path, ...]) -> list[dict[str, Any]]:
    """Every setting the config files give, each checked now so a typo stops the run before it starts."""
    settings: list[dict[str, Any]] = []
    for path in files:
        data = read_options(path)
        for entry in data if isinstance(data, list) else [data]:
            check_all(entry)
            if entry not in settings:
                settings.append(entry)
    return settings or [{}]


async def _run(plan: EvalPlan, choice: BackendChoice, options: dict[str, Any]) -> None:
    backend = await choice.open()
    engine = backend if isinstance(backend, LlamaEngine) else None
    before, started = engine.load() if engine else None, time.perf_counter()
    try:
        with RichProgress() as progress:
            await run_eval(
                plan,
                backend=backend,
                solve=solve,
                results=ResultsFile(options["out"]),
                concurrency=options["concurrency"],
                progress=progress,
            )
        if engine and before:  # how full the run kept the engine
            click.echo(engine.load().since(before).describe(time.perf_counter() - started))
    finally:
        await backend.aclose()
