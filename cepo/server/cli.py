"""`cepo serve`: the OpenAI-compatible reasoning server; `cepo models`: what it serves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cepo.backends import Backend, open_backend
from cepo.config import CepoConfig
from cepo.errors import BackendUnavailable, CepoError
from cepo.methods import METHODS
from cepo.server.settings import ServerSettings

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class BackendChoice:
    """What the backend options chose: the embedded engine on a model file, or an upstream server."""

    model_path: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    model_name: str | None = None
    timeout: float | None = None  # seconds the upstream may stay silent; None: the backend's default
    threads: int | None = None  # the embedded engine's; None: one per core

    async def open(self) -> Backend:
        """The backend; an upstream's model is the one it serves, unless named."""
        model_name = self.model_name
        if self.base_url and not model_name:
            served = await self.upstream_models()
            if len(served) != 1:
                raise CepoError(
                    f"{self.base_url} serves {len(served)} models: {', '.join(served) or 'none'}",
                    hint="choose one with --model-name",
                )
            model_name = served[0]
        return open_backend(
            self.model_path, self.base_url, self.api_key, model_name, self.timeout, self.threads
        )

    async def upstream_models(self) -> list[str]:
        from cepo.backends.remote import RemoteBackend

        assert self.base_url is not None
        upstream = RemoteBackend(self.base_url, model="", api_key=self.api_key)
        try:
            return await upstream.list_models()
        except BackendUnavailable as error:
            hint = (
                f"check that an OpenAI-compatible server is up at {self.base_url} (its address ends in /v1)"
            )
            raise BackendUnavailable(str(error), hint=hint) from None
        finally:
            await upstream.aclose()


def backend_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options choosing the backend, shared by both commands; they reach it as `backend`."""

    @functools.wraps(command)
    def with_backend(
        model_path: str | None,
        base_url: str | None,
        api_key_upstream: str | None,
        model_name: str | None,
        upstream_timeout: float | None,
        **rest: Any,
    ) -> None:
        choice = BackendChoice(model_path, base_url, api_key_upstream, model_name, upstream_timeout)
        command(backend=choice, **rest)

    options = [
        click.option(
            "--model", "model_path", help="GGUF file for the embedded engine (default: SmolLM2-135M)."
        ),
        click.option("--base-url", help="An OpenAI-compatible server to run on instead (e.g. vLLM's /v1)."),
        click.option(
            "--api-key-upstream", envvar="CEPO_UPSTREAM_API_KEY", help="The --base-url server's key."
        ),
        click.option("--model-name", help="The upstream model to use (default: the one it serves)."),
        click.option(
            "--upstream-timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds the --base-url server may stay silent before a request fails (default: 120).",
        ),
    ]
    return functools.reduce(lambda decorated, option: option(decorated), reversed(options), with_backend)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@backend_options
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Decoding threads of the embedded engine (default: one per core; fewer on a shared CPU).",
)
@click.option("--api-key", envvar="CEPO_API_KEY", help="Clients must send it as a bearer token.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML method settings (see cepo/config.py); requests override them in their `cepo` field.",
)
@click.option(
    "--max-concurrent", default=8, show_default=True, type=click.IntRange(min=1), help="Requests run at once."
)
@click.option(
    "--max-queued", default=32, show_default=True, type=click.IntRange(min=0), help="Requests that may wait."
)
@click.option(
    "--max-n", default=4, show_default=True, type=click.IntRange(1, 16), help="Most choices per request."
)
@click.option(
    "--max-tokens",
    default=4096,
    show_default=True,
    type=click.IntRange(1, 65536),
    help="Largest answer budget.",
)
@click.option(
    "--max-body-bytes",
    default=1 << 20,
    show_default=True,
    type=click.IntRange(min=1024),
    help="Largest request body; a larger one is refused with 413 unread.",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def serve(
    host: str,
    port: int,
    backend: BackendChoice,
    threads: int | None,
    api_key: str | None,
    config_file: Path | None,
    max_concurrent: int,
    max_queued: int,
    max_n: int,
    max_tokens: int,
    max_body_bytes: int,
    log_level: str,
) -> None:
    """Serve the reasoning methods as an OpenAI-compatible API: POST /v1/chat/completions with the
    method as the model (cepo, plain, self-consistency, best-of-n); the reasoning streams as
    reasoning_content, the answer as content. Also GET /v1/models, /health and /metrics.

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
        max_body_bytes=max_body_bytes,
        config=CepoConfig.from_yaml(config_file) if config_file else CepoConfig(),
    )
    if host not in _LOOPBACK and api_key is None:
        click.secho(
            f"Warning: listening on {host} without --api-key: anyone who can reach it may use it.", err=True
        )
    listener = bind(host, port)
    choice = dataclasses.replace(backend, threads=threads)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server stops; uvicorn shut down in order
        asyncio.run(_serve(listener, choice, settings, log_level))


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
        summary = _summary(sys.modules[method.__module__].__doc__ or "")
        click.echo(f"  {name:<{width}}  {summary}")
    if backend.base_url:
        upstream = asyncio.run(backend.upstream_models())
        click.echo(f"Models at {backend.base_url}:")
        for name in upstream:
            click.echo(f"  {name}")


def _summary(docstring: str) -> str:
    """A method module's first paragraph, without the leading "name:"."""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    return paragraph.split(": ", 1)[-1]


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
