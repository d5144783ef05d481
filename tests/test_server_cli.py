"""`cepo serve` and `cepo models` from the command line: what they print, and one-line errors with hints."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cepo.cli import main
from cepo.server.settings import ServerSettings


def test_models_lists_the_methods_served() -> None:
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()[1:]]
    assert names == ["plain", "self-consistency", "best-of-n", "cepo"]


def test_models_of_an_unreachable_upstream_is_one_line_with_a_hint() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # a port nobody listens on
        port = closed.getsockname()[1]
        result = CliRunner().invoke(main, ["models", "--base-url", f"http://127.0.0.1:{port}/v1"])
    assert result.exit_code == 1
    assert f"Error: cannot reach http://127.0.0.1:{port}/v1" in result.output
    assert "Hint: check that an OpenAI-compatible server is up" in result.output
    assert "Traceback" not in result.output


def test_serve_on_a_taken_port_says_so_before_loading_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use",
        "Hint: another server may hold the port: choose another with --port",
    ]


def test_serve_with_a_bad_config_file_names_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "cepo.yaml"
    config.write_text("planning_n: 0\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: invalid config: planning_n: Input should be greater than or equal to 1"
    )


def test_serve_passes_its_limits_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from cepo.cli import serve as server_cli

    served: list[ServerSettings] = []

    async def record(listener: socket.socket, backend: object, settings: ServerSettings, level: str) -> None:
        listener.close()
        served.append(settings)

    monkeypatch.setattr(server_cli, "_serve", record)
    limits = ["--max-concurrent", "3", "--max-queued", "5", "--max-n", "2", "--max-tokens", "300"]
    ceilings = ["--max-branches", "20", "--max-sandbox-seconds", "7.5", "--body-timeout", "4"]
    result = CliRunner().invoke(
        main, ["serve", "--port", "0", *limits, *ceilings, "--max-body-bytes", "4096"]
    )

    assert result.exit_code == 0, result.output
    [settings] = served
    assert (settings.max_concurrent, settings.max_queued, settings.max_n) == (3, 5, 2)
    assert (settings.max_tokens, settings.max_body_bytes) == (300, 4096)
    assert (settings.max_branches, settings.max_sandbox_seconds, settings.body_timeout_s) == (20, 7.5, 4)


OVER_THE_CEILINGS = [
    # (the config file, the server's options, the first line of the error)
    ("sample: {max_tokens: 8000}", [],
     "Error: the plain method's sample.max_tokens is 8000; this server allows at most 4096 tokens per step"),
    ("planning_max_tokens_step1: 4096", ["--max-tokens", "1024"],
     "Error: the cepo method's plan.max_tokens is 4096; this server allows at most 1024 tokens per step"),
    ("k: 64\nrating_type: pairwise", [],
     "Error: the best-of-n method's k makes 4032 branches at once; "
     "this server allows at most 64 per request"),
    ("sandbox_seconds: 60", [],
     "Error: the plain method's sandbox_seconds is 60; this server allows at most 10 seconds per code run"),
    ("", ["--max-sandbox-seconds", "2"],
     "Error: the plain method's sandbox_seconds is 5; this server allows at most 2 seconds per code run"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "options", "error"),
    OVER_THE_CEILINGS,
    ids=["tokens", "alias", "branches", "sandbox", "default"],
)
def test_serve_refuses_settings_over_its_own_ceilings_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str, options: list[str], error: str
) -> None:
    from cepo.cli import serve as server_cli

    started: list[ServerSettings] = []

    async def record(listener: socket.socket, backend: object, settings: ServerSettings, level: str) -> None:
        listener.close()
        started.append(settings)

    monkeypatch.setattr(server_cli, "_serve", record)
    path = tmp_path / "cepo.yaml"
    path.write_text(config)
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--config", str(path), *options])

    assert result.exit_code == 1 and started == []
    first, hint = result.output.splitlines()
    assert first == error
    assert hint.startswith("Hint: lower it in --config, or raise the server's limit")
    assert "Traceback" not in result.output


def test_serve_help_has_examples() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert "cepo serve --base-url http://vllm:8000/v1" in result.output
    assert "--api-key-upstream" in result.output
    for ceiling in ("--max-tokens", "--max-branches", "--max-sandbox-seconds", "--body-timeout", "4 stop"):
        assert ceiling in result.output


@pytest.mark.model
def test_serve_runs_the_embedded_model_until_interrupted() -> None:
    cepo = [sys.executable, "-c", "from cepo.cli import main; main()"]
    options = ["--port", "0", "--api-key", "k", "--log-level", "warning"]
    server = subprocess.Popen([*cepo, "serve", *options], stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # printed once the model is loaded and the socket listens
        port = re.search(r"at http://127\.0\.0\.1:(\d+)/v1", line)
        assert port, line
        url = f"http://127.0.0.1:{port[1]}"
        assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"
        models = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k"}, timeout=30)
        assert [m["id"] for m in models.json()["data"]] == ["plain", "self-consistency", "best-of-n", "cepo"]
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
