"""Model-written code that would harm the caller, end to end: each threat, written as a candidate's answer,
goes through the cross-checks (`check_candidate`, as the methods call it). It is stopped or contained in
the sandbox, its Checks record a failed example whose detail names the cause, nothing of its run is left
behind, the host is unharmed, and a candidate checked at the same time passes. Then over HTTP: a request
whose model answers with a fork bomb, beside a request served normally, and a client that goes away."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from live_server import live_server, raw_post, wait_until
from sandbox_runs import SandboxRuns, record_sandbox_runs
from scripted_backend import ScriptedBackend

from cepo.checks import Checks, Example, check_candidate
from cepo.sandbox import IsolationReport, RunResult, isolation_report, runner
from cepo.server.settings import ServerSettings

EXAMPLES = [Example(kind="call", input="double(3)", output="6")]
GOOD = "def double(n):\n    return 2 * n\n"
# The sandbox's time limits for a threat that only they end: it is killed by them, whatever they are.
THREAT_SECONDS = 2.0
# For code that must finish first, however busy the machine: every other threat, and the well-behaved
# candidate checked beside each threat.
GENEROUS_SECONDS = 60.0
SECRET = "s3cret-api-key-of-the-server"
# Starts processes that wait, until the processes limit refuses one.
PROCESS_HOARDER = """
    import os, time

    def double(n):
        while True:
            if os.fork() == 0:
                time.sleep(3600)
"""
# Keeps running whatever fork the processes limit refuses: only the time limit ends it, killing them all.
SLEEPING_FORK_BOMB = """
    import os, time

    def double(n):
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(3600)
"""


def answer(code: str) -> str:
    """A model's answer to a code question: a sentence, then the code in a python block."""
    return f"Here is the solution.\n\n```python\n{textwrap.dedent(code).strip()}\n```\n"


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> SandboxRuns:
    return record_sandbox_runs(monkeypatch)


@dataclass
class Host:
    """What a threat aims at: the serving process, a file of the host, a port listening on loopback."""

    pid: int
    outside: Path
    listener: socket.socket

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def assert_unharmed(self) -> None:
        assert self.outside.read_text() == "original"
        self.listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody connected
            self.listener.accept()


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    monkeypatch.setenv("CEPO_HARDENING_SECRET", SECRET)
    outside = tmp_path / "config.txt"
    outside.write_text("original")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield Host(pid=os.getpid(), outside=outside, listener=listener)


class Threat(NamedTuple):
    name: str
    code: str  # may name {pid}, {outside}, {port}: the host's
    reason: str | None  # the failed example's detail, a regular expression; None: the code passes
    needs: str = ""  # "isolated": a uid or namespaces of its own; "namespaces": namespaces
    seconds: float = GENEROUS_SECONDS  # the sandbox's time limits


THREATS = [
    Threat(
        "infinite loop",
        """
        def double(n):
            while True:
                pass
        """,
        "timed out",
        seconds=THREAT_SECONDS,
    ),
    Threat(
        "cpu burn in threads",
        """
        import hashlib, threading

        def double(n):
            def burn():  # hashing releases the GIL: every core burns
                while True:
                    hashlib.sha256(bytes(1_000_000)).digest()
            workers = [threading.Thread(target=burn) for _ in range(4)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        """,
        "timed out|killed: cpu time limit",  # whichever limit comes first on a busy machine
        seconds=THREAT_SECONDS,
    ),
    Threat(
        "memory hog",
        """
        def double(n):
            table = [0] * 10**10  # a table of every answer
            return table[n] + 2 * n
        """,
        "killed: memory limit",
    ),
    Threat(
        "fork bomb",
        """
        import os

        def double(n):
            while True:
                os.fork()
        """,
        # The first refused fork ends it, unless its processes share the CPU so thinly that time runs out.
        "killed: processes limit|timed out",
        seconds=THREAT_SECONDS,
    ),
    Threat("processes until the limit", PROCESS_HOARDER, "killed: processes limit"),
    Threat(
        "fork bomb that outlasts the processes limit", SLEEPING_FORK_BOMB, "timed out", seconds=THREAT_SECONDS
    ),
    Threat(
        "deep recursion",
        """
        import sys

        def double(n):
            sys.setrecursionlimit(10**7)
            return list(map(double, [n + 1]))  # through C, so the C stack overflows
        """,
        "killed: signal SIGSEGV",
    ),
    Threat(
        "huge print",
        """
        def double(n):
            print("x" * 10**8)
            return 2 * n
        """,
        "killed: output limit",
    ),
    Threat(
        "overwriting a file outside",
        """
        def double(n):
            open("{outside}", "w").write("pwned")
            return 2 * n
        """,
        r"(PermissionError|FileNotFoundError): \[Errno \d+\] .*",
        needs="isolated",
    ),
    Threat(
        "reading the server's environment",
        """
        import os

        def double(n):
            secret = os.environ.get("CEPO_HARDENING_SECRET") or open("/proc/{pid}/environ").read()
            print(secret)
            return 2 * n
        """,
        r"(PermissionError|FileNotFoundError): \[Errno \d+\] .*",
        needs="isolated",
    ),
    Threat(
        "network connection",
        """
        import socket

        def double(n):
            socket.create_connection(("127.0.0.1", {port}), timeout=5).sendall(b"leak")
            return 2 * n
        """,
        r"OSError: \[Errno 101\] Network is unreachable",
        needs="namespaces",
    ),
    Threat(
        "killing the server",
        """
        import os, signal

        def double(n):
            os.kill({pid}, signal.SIGKILL)
            return 2 * n
        """,
        r"(ProcessLookupError|PermissionError): \[Errno \d+\] .*",
        needs="isolated",
    ),
    Threat(
        "terminal escapes in the error",
        r"""
        def double(n):
            raise ValueError("\x1b]0;pwned\x07\x1b[2J\u202e")  # retitles and clears the terminal
        """,
        r"ValueError: \\x1b\]0;pwned\\x07\\x1b\[2J\\u202e",
    ),
    Threat(
        "daemon left running",
        """
        import os, time

        def double(n):
            if os.fork() == 0:
                os.setsid()  # leaves the run's session and process group
                if os.fork() == 0:
                    time.sleep(3600)  # keeps stdout open, too
                os._exit(0)
            return 2 * n
        """,
        None,  # contained, not stopped: the answer is right, and the daemon dies with the run
    ),
]


def require(needs: str, isolation: IsolationReport) -> None:
    missing = {
        "isolated": not (isolation.separate_user or isolation.namespaces),
        "namespaces": not isolation.namespaces,
    }
    if missing.get(needs):
        pytest.skip(f"not enforced here: {'; '.join(isolation.not_enforced)}")


async def check(code: str, seconds: float) -> Checks:
    return await check_candidate([answer(code)], "code", EXAMPLES, run_program=False, seconds=seconds)


@pytest.mark.parametrize("threat", THREATS, ids=[threat.name for threat in THREATS])
async def test_a_threat_fails_its_check_with_the_reason_and_leaves_nothing_behind(
    threat: Threat, runs: SandboxRuns, host: Host, isolation: IsolationReport
) -> None:
    require(threat.needs, isolation)
    code = textwrap.dedent(threat.code).format(pid=host.pid, outside=host.outside, port=host.port)

    harmful, beside = await asyncio.gather(check(code, threat.seconds), check(GOOD, GENEROUS_SECONDS))

    [result] = harmful.examples
    assert harmful.parses and harmful.answer == code.strip()
    if threat.reason is None:
        assert result.passed, result.detail
    else:
        assert not result.passed and re.fullmatch(threat.reason, result.detail), result.detail
    assert beside.examples_passed == 1, beside.examples[0].detail
    assert len(runs.started) == 2 and runs.processes() == []
    host.assert_unharmed()
    assert SECRET not in harmful.model_dump_json()


async def test_a_short_answer_whose_program_hoards_processes_keeps_the_answer_it_states(
    runs: SandboxRuns,
) -> None:
    text = answer(textwrap.dedent(PROCESS_HOARDER) + "print(double(21))") + "\nAnswer: 42"
    checks = await check_candidate([text], "number", [], run_program=True, seconds=GENEROUS_SECONDS)

    assert (checks.program_output, checks.program_error) == (None, "killed: processes limit")
    assert checks.answer == "42"
    assert len(runs.started) == 1 and runs.processes() == []


async def test_a_short_answer_whose_program_prints_terminal_escapes_shows_them_escaped() -> None:
    text = answer(r'print("\x1b]0;pwned\x07\x1b[2J\u202eAnswer: 42")')
    checks = await check_candidate([text], "number", [], run_program=True, seconds=GENEROUS_SECONDS)

    assert checks.program_output == r"\x1b]0;pwned\x07\x1b[2J\u202eAnswer: 42"
    assert checks.answer == "42"


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout:g} s"
        await asyncio.sleep(0.01)


async def test_cancelling_a_check_kills_its_sandbox_before_the_cancellation_returns(
    runs: SandboxRuns,
) -> None:
    checking = asyncio.create_task(check(SLEEPING_FORK_BOMB, seconds=GENEROUS_SECONDS))
    await until(lambda: runs.processes() != [], "the fork bomb running")

    checking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await checking
    assert runs.processes() == []


# ------------------------------------------------------------------------------------------------ HTTP
BOMB_QUESTION = "Write a function triple(n) that returns 3 * n.\nExample: triple(2) -> 6"
GOOD_QUESTION = "Write a function double(n) that returns 2 * n.\nExample: double(3) -> 6"
TRIPLE_BOMB = SLEEPING_FORK_BOMB.replace("double", "triple")


def model_reply(prompt: str) -> str:
    """Every step of a run (plan, executions, refinement, final answer) answers with the same code."""
    return answer(TRIPLE_BOMB if "triple" in prompt else GOOD)


GENEROUS_SERVER = ServerSettings(max_sandbox_seconds=GENEROUS_SECONDS)  # a ceiling the requests stay under


def cepo_request(question: str, sandbox_seconds: float) -> dict[str, object]:
    return {
        "model": "cepo",
        "messages": [{"role": "user", "content": question}],
        "include_reasoning": True,
        "cepo": {"bestofn_n": 1, "sandbox_seconds": sandbox_seconds},
    }


def post(url: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def test_a_fork_bomb_answer_fails_its_check_while_another_request_is_served(runs: SandboxRuns) -> None:
    with live_server(ScriptedBackend([("", model_reply)]), GENEROUS_SERVER) as url:
        bombed: list[httpx.Response] = []
        request = threading.Thread(target=lambda: bombed.append(post(url, cepo_request(BOMB_QUESTION, 3))))
        request.start()
        wait_until(lambda: runs.processes() != [], what="the fork bomb running in the sandbox")

        served = post(url, cepo_request(GOOD_QUESTION, GENEROUS_SECONDS))
        request.join(timeout=120)

        assert served.status_code == 200
        message = served.json()["choices"][0]["message"]
        assert message["content"] == answer(GOOD).strip()
        assert (
            f"[Check · candidate 1] answer {GOOD.strip()!r}; code parses; examples passed 1/1"
            in (message["reasoning_content"])
        )

        [response] = bombed
        assert response.status_code == 200
        message = response.json()["choices"][0]["message"]
        assert message["content"] == answer(TRIPLE_BOMB).strip()  # the only candidate, failed as it is
        assert "code parses; examples passed 0/1" in message["reasoning_content"]
        assert httpx.get(f"{url}/health").json()["running"] == 0
    assert runs.processes() == []


def record_results(monkeypatch: pytest.MonkeyPatch) -> list[RunResult]:
    """The result of every sandbox run that ends from now on, a cancelled one's too (nobody awaits it)."""
    isolation_report()  # its probe run, once per process, is not one of them
    results: list[RunResult] = []
    execute = runner._execute

    def recorded(*arguments: Any, **keywords: Any) -> RunResult:
        result = execute(*arguments, **keywords)
        results.append(result)
        return result

    monkeypatch.setattr(runner, "_execute", recorded)
    return results


def test_a_client_that_goes_away_during_a_fork_bomb_check_ends_its_sandbox(
    runs: SandboxRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = record_results(monkeypatch)
    with live_server(ScriptedBackend([("", model_reply)]), GENEROUS_SERVER) as url:
        body = json.dumps(cepo_request(BOMB_QUESTION, GENEROUS_SECONDS)).encode()
        with raw_post(url, body):
            wait_until(lambda: runs.processes() != [], what="the fork bomb running in the sandbox")
        # The run ends by the cancellation or, failing that, by its own time limit: the result says which.
        wait_until(lambda: results != [], timeout=2 * GENEROUS_SECONDS, what="the sandbox run ended")
        assert [result.killed_reason for result in results] == ["cancelled"]
        assert runs.processes() == []
        wait_until(lambda: httpx.get(f"{url}/health").json()["running"] == 0, what="the slot freed")
