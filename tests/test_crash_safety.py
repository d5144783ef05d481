"""`cepo eval` killed with SIGKILL mid-way and rerun: nothing written is lost or repeated, and the scores
equal those of a run that was never interrupted.

The eval runs as a real subprocess against the fake OpenAI server, which answers the first requests and
then holds every later one, so the kill always lands while some generations are written and others are in
flight. Each job of plain and self-consistency is one request, so the answered requests are the records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from fastapi import Request
from fastapi.responses import Response
from live_server import wait_until

from cepo.evals.results import ResultsFile

CEPO = [sys.executable, "-c", "from cepo.cli import main; main()"]
PROBLEMS, METHODS, SAMPLES = 8, ["plain", "self-consistency"], 2
JOBS = PROBLEMS * len(METHODS) * SAMPLES
CONCURRENCY = 3
ANSWERED_BEFORE_KILL = 11
# Which reply a request gets depends on its seed, so samples differ and some answers are right.
REPLIES = ["The answer is 1.", "The answer is 2.", "The answer is 3.", "The answer is 0."]
TORN_LINE = b'{"dataset":"letters","problem":"letters-0'


class GatedServer(FakeOpenAIServer):
    """Answers the first `answer_first` requests, then holds the rest (none held when None)."""

    answer_first: int | None = None

    async def _complete(self, request: Request, chat: bool) -> Response:
        # Read (and cache) the body first: the base class then counts and checks `hang` without waiting in
        # between, so no request already let through is held by a later one.
        await request.body()
        self.behaviour.hang = self.answer_first is not None and len(self.requests) >= self.answer_first
        return await super()._complete(request, chat)


@pytest.fixture
def server() -> Iterator[GatedServer]:
    server = GatedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def eval_command(server: GatedServer, out: Path, config: Path) -> list[str]:
    return [
        *CEPO,
        "eval",
        "--dataset",
        "letters",
        "--limit",
        str(PROBLEMS),
        "--methods",
        ",".join(METHODS),
        "--samples",
        str(SAMPLES),
        "--config",
        str(config),
        "--concurrency",
        str(CONCURRENCY),
        "--base-url",
        server.base_url,
        "--api-key-upstream",
        "unused",
        "--out",
        str(out),
    ]


def run_to_completion(command: list[str]) -> str:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def records_in(out: Path) -> int:
    return len(ResultsFile(out).read())


def scores(report: str) -> list[list[str]]:
    """The report's table rows without the seconds column, which measures wall time."""
    rows = [line.split("|")[1:-1] for line in report.splitlines() if line.startswith("| ")]
    return [[cell.strip() for index, cell in enumerate(row) if index != 5] for row in rows]


def test_a_killed_eval_resumes_without_losing_or_repeating_anything(
    server: GatedServer, tmp_path: Path
) -> None:
    config = tmp_path / "seeded.yaml"
    config.write_text("seed: 3\n")
    server.behaviour.replies = REPLIES
    out = tmp_path / "killed"
    command = eval_command(server, out, config)

    server.answer_first = ANSWERED_BEFORE_KILL
    killed = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: records_in(out) == ANSWERED_BEFORE_KILL, what="the answered jobs recorded")
        held = ANSWERED_BEFORE_KILL + CONCURRENCY
        wait_until(lambda: len(server.requests) == held, what="every job in flight waiting for its answer")
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert "another `cepo eval` is writing to" in second.stderr
        assert len(server.requests) == held  # the second run asked for nothing
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    written = (out / "results.jsonl").read_bytes()
    with (out / "results.jsonl").open("ab") as results:
        results.write(TORN_LINE)  # as if the kill had cut the next record short

    server.reset()
    server.answer_first = None
    server.behaviour.replies = REPLIES
    resumed_report = run_to_completion(command)
    assert len(server.requests) == JOBS - ANSWERED_BEFORE_KILL  # only the missing jobs ran

    resumed = (out / "results.jsonl").read_bytes()
    assert resumed.startswith(written)
    records = ResultsFile(out).read()
    assert len(resumed.splitlines()) == len(records) == JOBS
    keys = Counter((record.problem, record.method, record.sample) for record in records)
    assert set(keys.values()) == {1}
    assert {(method, sample) for _, method, sample in keys} == {
        (method, sample) for method in METHODS for sample in range(SAMPLES)
    }

    uninterrupted_report = run_to_completion(eval_command(server, tmp_path / "uninterrupted", config))
    assert scores(resumed_report) == scores(uninterrupted_report)
    passed = {
        (record.problem, record.method, record.sample): record.passed
        for record in ResultsFile(tmp_path / "uninterrupted").read()
    }
    assert passed == {(record.problem, record.method, record.sample): record.passed for record in records}
    assert 0 < sum(passed.values()) < JOBS  # the scores compared tell right answers from wrong ones

    reported = subprocess.run([*CEPO, "eval", "report", str(out)], capture_output=True, text=True, timeout=60)
    assert reported.returncode == 0, reported.stderr
    assert scores(reported.stdout) == scores(uninterrupted_report)
