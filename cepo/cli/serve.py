"""`cepo serve`: the OpenAI-compatible reasoning server; `cepo models`: what it serves."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import click

from cepo.cli.options import BackendChoice, backend_options, config_option
from cepo.errors import CepoError
from cepo.methods import METHODS
from cepo.methods.settings import Options
from cepo.server.settings import ServerSettings

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _limit(
    flag: str, field: str, kind: click.ParamType, text: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """An option for one of the server's limits; its default is the server setting's own, so the two
    never drift apart."""
    default = ServerSettings.model_fields[field].default
    return click.option(flag, default=default, show_default=True, type=kind, help=text)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@backend_options
@click.option("--api-key", envvar="CEPO_API_KEY", help="Clients must send it as a bearer token.")
@config_option
@_limit("--max-concurrent", "max_concurrent", click.IntRange(min=1), "Requests run at once.")
@_limit("--max-queued", "max_queued", click.IntRange(min=0), "Requests that may wait.")
@_limit("--max-n", "max_n", click.IntRange(1, 16), "Most choices per request.")
@_limit(
    "--max-tokens",
    "max_tokens",
    click.IntRange(1, 65536),
    "Most tokens of any one step: the answer's budget and every step of the method's settings.",
)
@_limit(
    "--max-branches",
    "max_branches",
    click.IntRange(min=1),
    "Most branches one request keeps decoding at once: n times the method's widest phase.",
)
@_limit(
    "--max-sandbox-seconds",
    "max_sandbox_seconds",
    click.FloatRange(0, 600, min_open=True),
    "Longest time one code run of a request may take (its sandbox_seconds).",
)
@_limit(
    "--max-body-bytes",
    "max_body_bytes",
    click.IntRange(min=1024),
    "Largest request body; a larger one is refused with 413 unread.",
)
@_limit(
    "--body-timeout",
    "body_timeout_s",
    click.FloatRange(min=0, min_open=True),
    "Seconds a client has to send its whole body; then 408.",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def serve(
    host: str,
    port: int,
    backend: BackendChoice,
    api_key: str | None,
    options: Options,
    max_concurrent: int,
    max_queued: int,
    max_n: int,
    max_tokens: int,
    max_branches: int,
    max_sandbox_seconds: float,
    max_body_bytes: int,
    body_timeout: float,
    log_level: str,
) -> None:
    """Serve the reasoning methods as an OpenAI-compatible API: POST /v1/chat/completions with the
    method as the model (cepo, plain, self-consistency, best-of-n); the reasoning streams as
    reasoning (and reasoning_content), the answer as content. POST /v1/cepo/runs streams every event
    of a run, every branch's tokens included. Also GET /v1/models, /v1/cepo/methods, /health, /metrics.

    \b
    The server's ceilings hold for a request's own fields, its `cepo` settings and
    the --config file alike; a request over one gets a 400 naming the field, a
    config file over one is refused here:
      --max-tokens            tokens of any one step (the answer's included)
      4 stop strings          per step, and in the request's `stop`
      --max-branches          branches decoding at once (n x the widest phase)
      --max-sandbox-seconds   time of one code run (sandbox_seconds)

    \b
    Examples:
      cepo serve                                   # embedded SmolLM2 on 127.0.0.1:8000
      cepo serve --model qwen2.5-1.5b-q4.gguf --port 9000 --api-key secret
      cepo serve --base-url http://vllm:8000/v1 --host 0.0.0.0 --api-key secret --config cepo.yaml
      curl -N localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"model": "cepo", "stream": true, "messages": [{"role": "user", "content": "2+3*4?"}]}'
    """
    settings = ServerSettings(
        api_key=api_key,
        max_concurrent=max_concurrent,
        max_queued=max_queued,
        max_n=max_n,
        max_tokens=max_tokens,
        max_branches=max_branches,
        max_sandbox_seconds=max_sandbox_seconds,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout,
        options=options,
    )
    if host not in _LOOPBACK and api_key is None:
        click.secho(
            f"Warning: listening on {host} without --api-key: anyone who can reach it may use it.", err=True
        )
    listener = bind(host, port)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server stops; uvicorn shut down in order
        asyncio.run(_serve(listener, backend, settings, log_level))


@click.command()
@backend_options
def models(backend: BackendChoice) -> None:
    """List the methods `cepo serve` offers as models, and with --base-url the models of that server.

    \b
    Examples:
      cepo models
      cepo models --base-url http://127.0.0.1:8000/v1
    """
    click.echo("Methods (the model names `cepo serve` answers to):")
    width = max(len(name) for name in METHODS)
    for name, method in METHODS.items():
        click.echo(f"  {name:<{width}}  {method.summary}")
    if backend.base_url:
        upstream = asyncio.run(backend.upstream_models())
        click.echo(f"Models at {backend.base_url}:")
        for name in upstream:
            click.echo(f"  {name}")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a CepoError saying why not."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as error:
        raise CepoError(
            f"cannot listen on {host}:{port}: {error.strerror}",
            hint="another server may hold the port: choose another with --port",
        ) from None
    return listener


async def _serve(
    listener: socket.socket, choice: BackendChoice, settings: ServerSettings, log_level: str
) -> None:
    from cepo.server.serving import serve_app  # the web stack, only when serving

    backend = await choice.open()
    try:
        await serve_app(listener, backend, settings, log_level)
    finally:
        await backend.aclose()
