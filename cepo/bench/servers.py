"""The servers `cepo bench peers` starts: llama-server and optillm in front of it.

Each binds to 127.0.0.1 on a free port, logs to a file (its last lines explain a failed start), and is
stopped when its `with` block ends, however it ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cepo.bench.native import NativeSetup, peer
from cepo.errors import CepoError

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0  # optillm imports a great deal before it listens
STOP_TIMEOUT_S = 10.0
# Every token llama-server sampled, for every request, since it started; and the requests it is serving.
TOKENS_METRIC = "llamacpp:tokens_predicted_total"
BUSY_METRIC = "llamacpp:requests_processing"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    name: str, command: list[str], health_url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Run `command` until the block ends; enter the block once `health_url` answers 200."""
    with log.open("w") as sink:
        # Its own session: a Ctrl-C meant for the benchmark reaches the server only through the stop below.
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            _wait_healthy(name, process, health_url, log)
            yield
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(name: str, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CepoError(f"{name} exited with status {process.returncode} on start: {_tail(log)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet, or still loading the model
        time.sleep(0.25)
    raise CepoError(f"{name} did not answer {url} within {START_TIMEOUT_S:.0f} s: {_tail(log)}")


def _tail(log: Path, lines: int = 3) -> str:
    return " / ".join(log.read_text(errors="replace").strip().splitlines()[-lines:]) or "no output"


@contextmanager
def llama_server(setup: NativeSetup, slots: int, logs: Path) -> Iterator[str]:
    """llama-server on the engine's model file, threads and cache layout; yields its base URL. `slots`
    requests decode at once, sharing one cache of the engine's size (-kvu), as the engine's do."""
    port = free_port()
    command = [
        str(peer("llama-server")),
        *setup.args(),
        *("-c", str(setup.n_ctx), "-kvu", "-np", str(slots), "--metrics"),
        *("--host", HOST, "--port", str(port)),
    ]
    url = f"http://{HOST}:{port}"
    with serving("llama-server", command, f"{url}/health", logs / "llama-server.log"):
        yield url


@contextmanager
def optillm(upstream: str, model: str, settings: dict[str, int], logs: Path) -> Iterator[str]:
    """optillm's CePO (approach `cepo`, its own default config but for `settings`, by their names in
    that config) in front of the server at `upstream`; yields its base URL."""
    port = free_port()
    command = [
        str(peer("optillm")),
        *("--approach", "cepo", "--model", model, "--base-url", f"{upstream}/v1"),
        *("--host", HOST, "--port", str(port)),
        *(arg for name, value in settings.items() for arg in (f"--cepo_{name}", str(value))),
    ]
    # optillm picks its client by which key is set; llama-server takes any.
    env = {**os.environ, "OPENAI_API_KEY": "not-needed"}
    url = f"http://{HOST}:{port}"
    with serving("optillm", command, f"{url}/health", logs / "optillm.log", env):
        yield url


def parse_metrics(text: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition, by name (labels kept in the name)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name.strip()] = float(value)
    return samples


async def metrics(client: httpx.AsyncClient, server: str) -> dict[str, float]:
    """The /metrics of llama-server at `server` (started with --metrics)."""
    response = await client.get(f"{server}/metrics")
    response.raise_for_status()
    return parse_metrics(response.text)
