"""What a sandboxed run may use, what it did, and what the sandbox can enforce on this machine."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from cepo.errors import CepoError

# What a terminal acts on rather than shows: C0 controls but tab and newline (a carriage return too, unless
# a newline follows it), DEL, C1 controls (CSI, OSC and the like), and the bidirectional controls.
_TERMINAL_CONTROLS = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]|\r(?!\n)"
)


class Limits(BaseModel):
    """Resource limits of one run. CPU time is enforced in whole seconds, rounded up. The disk limits hold
    with namespaces only, where the run's files are one tmpfs: they are held in memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu_s: float = Field(5, gt=0, description="CPU time of the program's process (all its threads)")
    wall_s: float = Field(10, gt=0, description="wall-clock time of the whole run")
    memory_mb: int = Field(512, gt=0, description="address space of each process")
    file_mb: int = Field(16, gt=0, description="size of any one file written")
    disk_mb: int = Field(64, gt=0, description="all the run's files together: work dir and scratch dirs")
    disk_files: int = Field(4096, gt=0, description="files and directories there, the sandbox's own included")
    processes: int = Field(32, gt=0, description="processes and threads of the run's uid")
    output_bytes: int = Field(64_000, gt=0, description="stdout plus stderr; the run is killed beyond it")


class RunResult(BaseModel):
    """What happened to one run. `ok` means exit code 0 and nothing stopped it.

    stdout and stderr hold the program's output with every terminal control made visible as Python's repr
    writes it (ESC as the four characters `\\x1b`, U+202E as `\\u202e`); newlines, tabs and CR LF stay.
    The output reaches terminals by many ways (check details, the live view, `extract_answer`, eval reports,
    logs); here, where it enters cepo, one rule covers them all, so no escape sequence in it can retitle or
    repaint a terminal. What a program printed with repr() holds no control, so it comes out unchanged."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    exit_code: int | None  # None when a signal ended the program
    stdout: str
    stderr: str
    timed_out: bool
    # Why the run did not end normally: "wall-clock timeout", "cpu time limit", "memory limit", "processes
    # limit", "disk limit", "output limit", "signal SIGSEGV", "cancelled", ...
    killed_reason: str | None
    truncated: bool  # output went over Limits.output_bytes; what fitted is kept
    seconds: float

    @field_validator("stdout", "stderr")
    @classmethod
    def _controls_made_visible(cls, text: str) -> str:
        return _TERMINAL_CONTROLS.sub(_visible, text)


class IsolationReport(BaseModel):
    """What the sandbox enforces on this machine, found by trying it (see `isolation_report()`)."""

    model_config = ConfigDict(frozen=True)

    separate_user: bool = Field(
        description="each run has a fresh unprivileged uid: it cannot write the caller's files or signal its "
        "processes, and the processes limit counts only the run's own"
    )
    namespaces: bool = Field(
        description="own PID, network, IPC and mount namespaces: no network, every process and IPC object "
        "(System V, POSIX message queues) dies with the run, private /tmp, /var/tmp, /dev/shm, /run and "
        "/proc, and those and the work dir on one tmpfs of Limits.disk_mb and Limits.disk_files"
    )

    @computed_field
    @property
    def not_enforced(self) -> list[str]:
        """What the sandbox cannot enforce on this machine, in words."""
        missing = []
        if not self.separate_user:
            missing.append(
                "the program runs as the caller's user: it can read and write the caller's files and signal "
                "its processes, and the processes limit counts all of that user's processes"
            )
        if not self.namespaces:
            missing.append(
                "no network isolation; /tmp, /var/tmp, /dev/shm and /run are shared with the host, "
                "/proc shows the host's processes, System V IPC objects and POSIX message queues are "
                "the host's and outlive the run, and the work directory is on the host's disk, "
                "with no cap on the total size and number of the files written"
            )
        if not (self.separate_user or self.namespaces):
            missing.append("a process that kills the supervisor first can outlive the run")
        return missing


def _visible(control: re.Match[str]) -> str:
    character = control.group()
    if character == "\r":
        return "\\r"
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class SandboxError(CepoError):
    """The sandbox itself could not be set up; the program never ran."""
