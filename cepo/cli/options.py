"""The options every command shares: which backend to open, and which method settings to load."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cepo.backends import Backend, open_backend
from cepo.errors import BackendUnavailable, CepoError
from cepo.methods import check_all
from cepo.methods.settings import Options, read_options


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
            model=self.model_path,
            base_url=self.base_url,
            api_key=self.api_key,
            model_name=model_name,
            timeout=self.timeout,
            threads=self.threads,
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
    """The options choosing the backend, the same for every command that opens one; they reach the
    command as `backend`. The upstream's key comes only from --api-key-upstream or CEPO_UPSTREAM_API_KEY:
    CEPO_API_KEY is `cepo serve`'s own clients' key, and never leaves for another server."""

    @functools.wraps(command)
    def with_backend(
        model_path: str | None,
        base_url: str | None,
        api_key_upstream: str | None,
        model_name: str | None,
        upstream_timeout: float | None,
        threads: int | None,
        **rest: Any,
    ) -> None:
        choice = BackendChoice(model_path, base_url, api_key_upstream, model_name, upstream_timeout, threads)
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
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            help="Decoding threads of the embedded engine (default: one per core; fewer on a shared CPU).",
        ),
    ]
    return functools.reduce(lambda decorated, option: option(decorated), reversed(options), with_backend)


SHIPPED = Path(__file__).parent.parent / "methods"  # settings files that ship with cepo, by name


def load_options(path: Path | None) -> Options:
    """The method settings of one YAML file (none: every default), checked against every method. A name
    without a file of its own is one of the files shipped with cepo: `published`."""
    if path is None:
        return {}
    shipped = SHIPPED / f"{path}.yaml"
    options = read_options(shipped if not path.exists() and shipped.is_file() else path)
    if isinstance(options, list):
        raise CepoError(f"config file {path} holds a list; this command takes one mapping of settings")
    return check_all(options)


def config_option(command: Callable[..., None]) -> Callable[..., None]:
    """--config FILE: the methods' settings, which reach the command as `options`."""

    @functools.wraps(command)
    def with_options(config_path: Path | None, **rest: Any) -> None:
        command(options=load_options(config_path), **rest)

    option = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="YAML method settings (each method's settings model in cepo/methods/ lists them), or "
        "`published` for the published CePO settings.",
    )
    return option(with_options)
