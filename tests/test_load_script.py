"""scripts/load.py against a server on a scripted backend: the summary, memory samples and the KV check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from live_server import live_server
from scripted_backend import ScriptedBackend

LOAD = Path(__file__).parent.parent / "scripts" / "load.py"


class EngineLike(ScriptedBackend):
    """Reports engine gauges in /metrics as the embedded engine does, holding `held_cells` at the end."""

    def __init__(self, held_cells: int) -> None:
        super().__init__([], default="The answer is 42.")
        self.held_cells = held_cells

    def stats(self) -> dict[str, int]:
        return {"kv_cells_live": self.held_cells, "kv_cells_used": 100, "live_branches": 0}


def run_load(url: str, out: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    command = [sys.executable, str(LOAD), "--url", url, "--pid", str(os.getpid()), "--json", str(out)]
    command += ["--clients", "3", "--seconds", "1", "--sample-every", "0.3", "--cepo-every", "2", *options]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return finished, json.loads(out.read_text())


def test_a_clean_run_passes_with_memory_sampled_and_kv_cells_freed(tmp_path: Path) -> None:
    with live_server(EngineLike(held_cells=0)) as url:
        finished, summary = run_load(f"{url}/v1", tmp_path / "load.json")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "PASSED" in finished.stdout
    assert summary["methods"]["plain"]["ok"] > 0 and summary["methods"]["cepo"]["ok"] > 0
    assert summary["errors"] == {} and summary["cut"] == 0
    assert summary["server_requests"]["plain 200"] == summary["methods"]["plain"]["ok"]
    rss = summary["rss_mib"]
    assert len(rss["samples"]) >= 3  # before the traffic, during it and at the end
    assert rss["start"] > 0 and rss["end"] > 0
    assert summary["engine_end"] == {"kv_cells_live": 0, "kv_cells_used": 100, "live_branches": 0}
    assert summary["kv_freed"] is True


def test_kv_cells_still_held_at_the_end_fail_the_run(tmp_path: Path) -> None:
    with live_server(EngineLike(held_cells=7)) as url:
        finished, summary = run_load(f"{url}/v1", tmp_path / "load.json", "--drain", "1")
    assert finished.returncode == 1
    assert "kv_cells_live 7" in finished.stdout and "FAILED" in finished.stdout
    assert summary["kv_freed"] is False


def test_errors_are_counted_by_method_and_status(tmp_path: Path) -> None:
    with live_server(EngineLike(held_cells=0)) as url:
        finished, summary = run_load(url, tmp_path / "load.json")  # no /v1: every request is a 404
    assert finished.returncode == 1
    assert summary["errors"]["plain: HTTP 404"] == summary["methods"]["plain"]["errors"] > 0
    assert summary["errors"]["cepo: HTTP 404"] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--url", "http://10.0.0.1:8000/v1"], "is not on loopback"),
        (["--url", "http://127.0.0.1:8000/v1", "--threads", "1"], "start a server: leave out --url"),
    ],
)
def test_bad_options_are_refused(options: list[str], message: str) -> None:
    finished = subprocess.run(
        [sys.executable, str(LOAD), *options], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2
    assert message in finished.stderr


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    command = [sys.executable, str(LOAD), "--model", str(missing), "--threads", "1", "--seconds", "1"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1
    assert "cepo serve exited with 1" in finished.stderr
    assert f"model file not found: {missing}" in finished.stderr
