"""`cepo chat`: answer one question with a reasoning method and watch it work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from rich.console import Console
from rich.live import Live

from cepo.backends import Backend, Message
from cepo.cli.live import LiveView, progress_line, summary
from cepo.cli.options import BackendChoice, backend_options, config_option
from cepo.methods import METHODS, run, solve
from cepo.methods.effort import EFFORT_METHOD, EFFORTS, at_effort
from cepo.methods.events import MethodResult
from cepo.methods.method import Method
from cepo.methods.settings import Options, merge_options

T = TypeVar("T")


@click.command()
@click.argument("question", required=False)
@click.option("--method", type=click.Choice(list(METHODS)), default="cepo", show_default=True)
@click.option(
    "--effort",
    type=click.Choice(list(EFFORTS)),
    help="cepo's compute, as the API's reasoning_effort: none runs plain; --config settings override it.",
)
@backend_options
@config_option
@click.option("--quiet", is_flag=True, help="print only the answer")
@click.option("--json", "as_json", is_flag=True, help="print the whole result as JSON")
def chat(
    question: str | None,
    method: str,
    effort: str | None,
    backend: BackendChoice,
    options: Options,
    quiet: bool,
    as_json: bool,
) -> None:
    """Answer QUESTION with a reasoning method, showing its plans, checks and scores as they happen.
    Without QUESTION, open an interactive session that keeps the conversation (Ctrl-D or "exit" ends it).

    \b
    Examples:
      cepo chat "How many r's are in strawberry?"
      cepo chat --method plain
      cepo chat "What is 17 * 23?" --effort high
      cepo chat "Write a function is_prime(n)." --method self-consistency --quiet
      cepo chat "What is 17 * 23?" --base-url http://127.0.0.1:8080/v1 --json
    """
    if effort is not None and method != EFFORT_METHOD:
        raise click.UsageError(f"--effort sets the compute of --method {EFFORT_METHOD}, not of {method}")
    method, effort_options = at_effort(method, effort)
    options = merge_options(effort_options, options)
    spec = METHODS[method]
    if question is None:
        asyncio.run(_with_backend(backend, lambda opened: _session(Console(), spec, opened, options, quiet)))
        return
    if quiet or as_json:
        result = asyncio.run(_with_backend(backend, lambda opened: solve(method, opened, question, options)))
        click.echo(result.model_dump_json(indent=2) if as_json else result.answer.strip())
        return
    console = Console()
    view = LiveView(question, spec)
    watched = asyncio.run(
        _with_backend(backend, lambda opened: _watch(view, console, spec, opened, question, options))
    )
    console.print(summary(watched))


async def _session(console: Console, method: Method, backend: Backend, options: Options, quiet: bool) -> None:
    """Questions one after another; each answer joins the conversation the next question continues."""
    history: list[Message] = []
    while True:
        try:
            question = (await asyncio.to_thread(console.input, "[bold cyan]you>[/] ")).strip()
        except EOFError:
            console.line()
            return
        if question in ("exit", "quit"):
            return
        if not question:
            continue
        history.append({"role": "user", "content": question})
        if quiet:
            result = await solve(method.name, backend, history, options)
        else:
            result = await _watch(LiveView(question, method), console, method, backend, history, options)
            console.print(summary(result))
        console.print(f"[bold green]cepo>[/] {result.answer.strip()}")
        history.append({"role": "assistant", "content": result.answer})


async def _watch(
    view: LiveView,
    console: Console,
    method: Method,
    backend: Backend,
    question: str | list[Message],
    options: Options,
) -> MethodResult:
    """Run and show the run: the live view where the terminal redraws in place; elsewhere (a pipe, CI, a
    log) a plain line per step, since there the view would end as a wall of every candidate's boxes."""
    events = run(method.name, backend, question, options)
    if console.is_terminal:
        with Live(view, console=console, refresh_per_second=8, vertical_overflow="visible"):
            async for event in events:
                view.update(event)
    else:
        async for event in events:
            view.update(event)
            if (line := progress_line(method, event)) is not None:
                console.out(line, highlight=False)
    if view.result is None:
        raise AssertionError("a run always ends with Finished")
    return view.result


async def _with_backend(choice: BackendChoice, work: Callable[[Backend], Awaitable[T]]) -> T:
    """Open the backend, run `work` on it, then release it (its connections or its engine thread)."""
    backend = await choice.open()
    try:
        return await work(backend)
    finally:
        await backend.aclose()
