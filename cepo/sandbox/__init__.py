"""Run model-written Python where it cannot harm the caller: `run_code(source, stdin=, limits=, files=)`.

cepo runs code a small model wrote (does a candidate parse, run, pass the question's examples?) and the
evaluation harness scores benchmarks by running code. That code never runs in the caller's process. Each run:

- is a fresh `python -I -S` process (same interpreter, standard library only) in its own session, with a new
  temporary work directory as cwd and HOME, removed afterwards, holding main.py and the `files` given;
- sees only PATH, LANG and HOME in its environment, none of the caller's variables (API keys included);
- runs under resource limits (`Limits`): CPU time (RLIMIT_CPU), address space (RLIMIT_AS), file size
  (RLIMIT_FSIZE), processes and threads (RLIMIT_NPROC), a wall-clock timeout, and an output cap (stdout and
  stderr together; the run is killed once it is exceeded and the result marked truncated);
- cannot use the kernel's keyrings (a seccomp filter fails their syscalls), whose keys outlive the run;
- as root (cepo's machines and CI): runs as a fresh unprivileged uid of its own, so it cannot write outside
  its directory, signal the caller or another run, and the processes limit counts only its own processes;
  and in new PID, network, IPC and mount namespaces: no network at all (not even loopback), a private /proc,
  empty private /tmp, /var/tmp, /dev/shm and /run, and every process it starts, daemons that left its
  session included, and every System V IPC object and POSIX message queue it creates, die when the run
  ends or is stopped; its work directory and those scratch directories are one in-memory tmpfs that bounds
  the total bytes and files it writes (Limits.disk_mb, Limits.disk_files);
- as another user: the same namespaces inside a user namespace where the kernel allows one, else a plain
  child process whose leftover processes a supervisor (a subreaper) kills. `isolation_report()` says which
  applies; gaps are logged as warnings once.

A program that exits non-zero on MemoryError is reported with killed_reason "memory limit"; one whose fork or
thread start the processes limit refused, "processes limit"; one out of disk space (ENOSPC), "disk limit".
Cancelling `run_code_async` kills the run. A
trivial run costs about three bare interpreter starts (tens of milliseconds). If cepo itself is killed, the
run's processes die with it but its work directory stays behind. Linux only. docs/sandbox.md has more.

Not protected against: kernel or CPU exploits and side channels (timing, cache, Spectre-style); reading files
that everyone may read (source trees, /etc); Unix sockets in the file system that anyone may connect to (the
network namespace does not cover them); without namespaces, the total size of the work directory (each
file is limited, their number is not); shared kernel resources beyond the limits above (disk I/O bandwidth,
page cache, kernel memory); memory beyond RLIMIT_AS per process times the processes limit. This is
containment for careless or buggy code, not a boundary against a determined attacker: use a virtual machine
for that.
"""

from cepo.sandbox.models import IsolationReport, Limits, RunResult, SandboxError
from cepo.sandbox.runner import isolation_report, run_code, run_code_async

__all__ = [
    "IsolationReport",
    "Limits",
    "RunResult",
    "SandboxError",
    "isolation_report",
    "run_code",
    "run_code_async",
]
