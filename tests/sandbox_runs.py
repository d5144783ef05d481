"""Which processes a sandbox run left behind: by the run's uid, or by its work directory, which every
process of the run names in its command line (a fork keeps it)."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cepo.sandbox import runner


def program(source: str) -> str:
    """A test program written indented in the test, as the sandbox runs it."""
    return textwrap.dedent(source).lstrip()


def processes_of(uid: int) -> list[int]:
    """Pids of the processes whose real, effective, saved or file-system uid is `uid`."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):  # the process ended meanwhile
            uids = next(line for line in status.read_text().splitlines() if line.startswith("Uid:"))
            if str(uid) in uids.split()[1:]:
                pids.append(int(status.parent.name))
    return pids


def processes_naming(argument: str) -> list[int]:
    """Pids of the processes with `argument` in their command line."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if argument in cmdline.read_bytes().decode(errors="replace").split("\0"):
                pids.append(int(cmdline.parent.name))
    return pids


@dataclass
class SandboxRuns:
    """Every sandbox run started in this process while a test runs: its work directory and its uid."""

    started: list[tuple[str, int | None]] = field(default_factory=list)

    def processes(self) -> list[int]:
        """Pids of these runs' processes still there."""
        pids: set[int] = set()
        for workdir, uid in self.started:
            pids.update(processes_naming(f"workdir={workdir}"))
            if uid is not None:
                pids.update(processes_of(uid))
        return sorted(pids)


def record_sandbox_runs(monkeypatch: pytest.MonkeyPatch) -> SandboxRuns:
    """Records the sandbox runs started from now until the test ends."""
    runs = SandboxRuns()
    make_workdir = runner._workdir

    @contextlib.contextmanager
    def recorded(files: dict[str, str], uid: int | None) -> Iterator[str]:
        with make_workdir(files, uid) as workdir:
            runs.started.append((workdir, uid))
            yield workdir

    monkeypatch.setattr(runner, "_workdir", recorded)
    return runs
