"""Running model-written Python in the sandbox: a fresh work directory, child.py, capped output, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import random
import selectors
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cepo.sandbox.models import IsolationReport, Limits, RunResult, SandboxError

logger = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("child.py")
MAIN = "main.py"
# Each run gets its own uid from this range, unused by distributions, so runs cannot reach each other.
SANDBOX_UIDS = range(1_500_000_000, 1_600_000_000)
ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
STOP_GRACE_S = 5.0  # the supervisor needs milliseconds to kill the sandbox; this only bounds a broken one
READ_CHUNK = 65536
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="cepo-sandbox")
_probe_lock = threading.Lock()


def run_code(
    source: str, *, stdin: str = "", limits: Limits | None = None, files: dict[str, str] | None = None
) -> RunResult:
    """Run Python `source` as main.py in a fresh sandbox, with `files` written next to it."""
    return _run(source, stdin, limits, files, None)


async def run_code_async(
    source: str, *, stdin: str = "", limits: Limits | None = None, files: dict[str, str] | None = None
) -> RunResult:
    """`run_code` on a worker thread, so the event loop keeps serving while the program runs. Cancelling
    the await kills the run: the cancellation goes on once every process of the run is gone (milliseconds),
    so a client that goes away frees its share of the workers and the machine at once."""
    cancel = _Cancel()

    def run() -> RunResult:
        with cancel:
            return _run(source, stdin, limits, files, cancel)

    future = asyncio.get_running_loop().run_in_executor(_executor, run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.wait([future])
        raise


def _run(
    source: str, stdin: str, limits: Limits | None, files: dict[str, str] | None, cancel: _Cancel | None
) -> RunResult:
    files = files or {}
    _check_file_names(files)
    return _execute(source, stdin, limits or Limits(), files, isolation_report(), cancel)


def isolation_report() -> IsolationReport:
    """What the sandbox enforces here: the strongest isolation that worked for a probe run (tried once)."""
    with _probe_lock:
        return _probe()


@functools.cache
def _probe() -> IsolationReport:
    root = os.geteuid() == 0
    candidates = [IsolationReport(separate_user=root, namespaces=True)]
    if root:
        candidates.append(IsolationReport(separate_user=True, namespaces=False))
    candidates.append(IsolationReport(separate_user=False, namespaces=False))
    for candidate in candidates:
        try:
            # Importing a module not loaded yet shows that the run's uid can read the standard library.
            result = _execute("import colorsys", "", Limits(), {}, candidate)
        except SandboxError as error:
            logger.debug("sandbox isolation %s unavailable: %s", candidate, error)
            continue
        if result.ok:
            for gap in candidate.not_enforced:
                logger.warning("sandbox: %s", gap)
            return candidate
        logger.debug("sandbox isolation %s failed its probe: %s", candidate, result.stderr)
    raise SandboxError(
        "no way to run code in a sandbox works on this machine",
        hint=f"check that {sys.executable} can start a Python child process",
    )


def _check_file_names(files: dict[str, str]) -> None:
    for name in files:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not path.parts or path == PurePosixPath(MAIN):
            raise ValueError(f"sandbox file name {name!r} must be a relative path inside the work directory")


class _Cancel:
    """Lets the event loop stop a run going on in a worker thread: `fileno()` turns readable on `set()`.
    Used as a context manager by the worker, which closes it once the run is over."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        self._lock = threading.Lock()  # `set` never writes to a pipe the worker has closed
        self._closed = False

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        with self._lock:
            if not self._closed:
                os.write(self._write, b"x")

    def __enter__(self) -> _Cancel:
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._closed = True
            os.close(self._read)
            os.close(self._write)


def _execute(
    source: str,
    stdin: str,
    limits: Limits,
    files: dict[str, str],
    isolation: IsolationReport,
    cancel: _Cancel | None = None,
) -> RunResult:
    uid = random.choice(SANDBOX_UIDS) if isolation.separate_user else None
    started = time.monotonic()
    output = _Output(limits.output_bytes)
    with (
        _workdir({**files, MAIN: source}, uid) as workdir,
        _spawn(workdir, uid, limits, isolation) as (process, status),
    ):
        try:
            data = stdin.encode(errors="surrogatepass")
            _communicate(process, status, data, output, started + limits.wall_s, cancel)
        except BaseException:
            _stop(process, kill=True)
            raise
        _stop(process, kill=output.timed_out or output.truncated or output.cancelled)
    return _result(output, time.monotonic() - started)


@contextlib.contextmanager
def _workdir(files: dict[str, str], uid: int | None) -> Iterator[str]:
    """A fresh directory holding `files`, owned by the run's uid; removed with all the run wrote there."""
    workdir = tempfile.mkdtemp(prefix="cepo-sandbox-")
    try:
        for name, text in files.items():
            path = Path(workdir, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", errors="surrogatepass")  # the program reports bad text
        if uid is not None:
            for directory, _, names in os.walk(workdir):
                for path in (directory, *(os.path.join(directory, name) for name in names)):
                    os.chown(path, uid, uid)
        yield workdir
    finally:
        _remove_tree(workdir)


def _remove_tree(top: str) -> None:
    """Remove `top` and whatever a run left in it, where shutil.rmtree fails (it recurses, so a deep tree
    raises RecursionError, and it gives up on directories without permissions). One directory handle at a
    time, so neither depth nor PATH_MAX limits it; directories made the caller's to enter and empty again;
    symbolic links removed, never followed. Never raises: what cannot go is logged."""
    try:
        _empty_directory(top)
        os.rmdir(top)
    except OSError as error:
        logger.warning("sandbox: could not remove the work directory %s: %s", top, error)


def _empty_directory(top: str) -> None:
    """Remove everything below `top`, deepest first, walking down and back up through directory handles."""
    handle = _open_directory(top, None)
    names: list[str] = []  # the path from `top` down to `handle`
    identities = [_identity(handle)]  # of each directory on that path: going back up is checked against them
    try:
        while True:
            below = _unlink_all_but_a_directory(handle)
            if below is not None:
                inner = _open_directory(below, handle)
                os.close(handle)
                handle = inner
                names.append(below)
                identities.append(_identity(handle))
                continue
            if not names:
                return
            outer = os.open("..", DIRECTORY_FLAGS, dir_fd=handle)
            os.close(handle)
            handle = outer
            identities.pop()
            if _identity(handle) != identities[-1]:
                raise OSError(f"{os.path.join(top, *names)} was moved during its removal")
            os.rmdir(names.pop(), dir_fd=handle)
    finally:
        os.close(handle)


def _open_directory(name: str, parent: int | None) -> int:
    """A handle of the directory `name` (in `parent`), never through a symbolic link, whose entries the
    caller may remove: its permissions are restored first where the run took them away."""
    try:
        handle = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
    except PermissionError:
        os.chmod(name, stat.S_IRWXU, dir_fd=parent)
        handle = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
    if stat.S_IMODE(os.fstat(handle).st_mode) & stat.S_IRWXU != stat.S_IRWXU:
        os.fchmod(handle, stat.S_IRWXU)
    return handle


def _identity(handle: int) -> tuple[int, int]:
    status = os.fstat(handle)
    return status.st_dev, status.st_ino


def _unlink_all_but_a_directory(handle: int) -> str | None:
    """Unlink the entries of the directory `handle` up to its first subdirectory, whose name is returned;
    None once it held no subdirectory, so is empty."""
    with os.scandir(handle) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=handle)
    return None


@contextlib.contextmanager
def _spawn(
    workdir: str, uid: int | None, limits: Limits, isolation: IsolationReport
) -> Iterator[tuple[subprocess.Popen[bytes], BinaryIO]]:
    """Start child.py for a run in `workdir`; yields it and the read end of its status pipe."""
    settings = {
        "namespaces": int(isolation.namespaces),
        "uid": "" if uid is None else uid,
        "workdir": workdir,
        "cpu_s": math.ceil(limits.cpu_s),
        "memory_mb": limits.memory_mb,
        "file_mb": limits.file_mb,
        "disk_mb": limits.disk_mb,
        "disk_files": limits.disk_files,
        "processes": limits.processes,
    }
    status_read, status_write = os.pipe()
    with os.fdopen(status_read, "rb") as status:
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(CHILD), f"status_fd={status_write}"]
                + [f"{key}={value}" for key, value in settings.items()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env={**ENVIRONMENT, "HOME": workdir},
                start_new_session=True,
                pass_fds=(status_write,),
            )
        finally:
            os.close(status_write)
        with process:
            yield process, status


@dataclass
class _Output:
    """Everything the run wrote, capped at `room` bytes of stdout and stderr together."""

    room: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    status: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    truncated: bool = False
    cancelled: bool = False

    def add(self, stream: bytearray, data: bytes) -> None:
        stream += data[: self.room]
        if len(data) > self.room:
            self.truncated = True
        self.room -= min(len(data), self.room)


def _communicate(
    process: subprocess.Popen[bytes],
    status: BinaryIO,
    stdin: bytes,
    output: _Output,
    deadline: float,
    cancel: _Cancel | None,
) -> None:
    """Feed stdin and read stdout, stderr and the status pipe until all close, time runs out, output is
    over its cap, or the run is cancelled (each marked on `output`)."""
    assert process.stdin and process.stdout and process.stderr
    streams = {process.stdout: output.stdout, process.stderr: output.stderr, status: output.status}
    pending = memoryview(stdin)
    with selectors.DefaultSelector() as selector:
        for stream in streams:
            selector.register(stream, selectors.EVENT_READ)
        if pending:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        never_closes = 0
        if cancel is not None:
            selector.register(cancel, selectors.EVENT_READ)
            never_closes = 1  # the cancel pipe: the run is over when only it is left
        while len(selector.get_map()) > never_closes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                output.timed_out = True
                return
            for key, _ in selector.select(remaining):
                if key.fileobj is cancel:
                    output.cancelled = True
                    return
                if key.fileobj is process.stdin:
                    pending = pending[_write_some(key.fd, pending) :]
                    if not pending:
                        selector.unregister(process.stdin)
                        process.stdin.close()
                    continue
                data = os.read(key.fd, READ_CHUNK)
                if not data:
                    selector.unregister(key.fileobj)
                elif key.fileobj is status:
                    output.status += data
                else:
                    output.add(streams[key.fileobj], data)
                    if output.truncated:
                        return


def _write_some(fd: int, data: memoryview) -> int:
    """Write what the pipe takes now; a program that exits without reading stdin takes all of it."""
    try:
        return os.write(fd, data)
    except BrokenPipeError:
        return len(data)


def _stop(process: subprocess.Popen[bytes], *, kill: bool) -> None:
    """Wait for the supervisor, after asking it to kill the sandbox if `kill`; it exits once nothing of the
    run is left. Never signalled when the run ended by itself: a supervisor that is exiting would die of it.
    Anything still in its process group afterwards (only if it died abnormally) is killed too."""
    if kill:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _result(output: _Output, seconds: float) -> RunResult:
    status = output.status.decode(errors="replace").splitlines()
    stderr = output.stderr.decode(errors="replace")
    if status[:1] != ["ready"] and not (output.timed_out or output.cancelled):
        detail = status[0].removeprefix("error: ") if status else stderr.strip()
        raise SandboxError(
            f"the sandbox could not be set up: {detail}",
            hint="cepo.sandbox.isolation_report() shows what works on this machine",
        )
    exit_code = next((int(line.split()[1]) for line in status if line.startswith("exit ")), None)
    reason = _killed_reason(output, exit_code, stderr)
    return RunResult(
        ok=exit_code == 0 and reason is None,
        exit_code=exit_code if exit_code is not None and exit_code >= 0 else None,
        stdout=output.stdout.decode(errors="replace"),
        stderr=stderr,
        timed_out=output.timed_out,
        killed_reason=reason,
        truncated=output.truncated,
        seconds=seconds,
    )


def _killed_reason(output: _Output, exit_code: int | None, stderr: str) -> str | None:
    """Why the run did not end normally; `exit_code` is negative for a signal, None if it never ended."""
    if output.cancelled:
        return "cancelled"
    if output.timed_out:
        return "wall-clock timeout"
    if output.truncated:
        return "output limit"
    if exit_code is None:
        return "killed outside the sandbox"  # e.g. by the kernel's out-of-memory killer
    if exit_code == -signal.SIGXCPU:
        return "cpu time limit"
    if exit_code < 0:
        return f"signal {_signal_name(-exit_code)}"
    return _limit_refused(stderr) if exit_code != 0 else None


def _limit_refused(stderr: str) -> str | None:
    """The limit behind the uncaught error a program ended with, told by the error it got for it. Any line
    counts, not just the last: the processes of a fork bomb write their tracebacks over each other."""
    lines = stderr.splitlines()
    if any(line.startswith("MemoryError") for line in lines):
        return "memory limit"
    # RLIMIT_NPROC: a fork fails with EAGAIN (the traceback shows the fork call), a thread fails to start.
    fork_refused = "fork" in stderr and any(line.startswith("BlockingIOError: [Errno 11]") for line in lines)
    if fork_refused or any(line.startswith("RuntimeError: can't start new thread") for line in lines):
        return "processes limit"
    if any(line.startswith("OSError: [Errno 28]") for line in lines):  # ENOSPC: out of bytes or of inodes
        return "disk limit"
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
