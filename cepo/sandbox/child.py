"""The program cepo.sandbox starts for every run: it isolates itself, then runs the model-written main.py.

Started as `python -I -S child.py key=value ...` (runner.py lists the keys). Every run pays for its imports,
so it uses only small stdlib modules. It works as three processes:

- the supervisor (as started: root or the caller's user, in its own session) enters new PID, network and IPC
  namespaces and forks the init process; on cepo's SIGTERM it kills it. Once the init process has exited,
  it kills and reaps anything left behind (as a subreaper it inherits every orphan) and exits;
- the init process (PID 1 of the new PID namespace, so every process in it dies when it exits) gives the
  namespace its own mounts: a fresh /proc and /dev/mqueue, empty scratch directories, and the interpreter and
  work directory visible even where they sit below a directory others cannot enter. It forks the program,
  reaps orphans until the program has exited, reports how on the status pipe, and exits;
- the program takes the resource limits, drops to the run's uid and every capability, installs a seccomp
  filter, says "ready" on the status pipe, closes it, and runs main.py as __main__.

The status pipe carries "ready" from the program, then "exit N" from the init process (N < 0: killed by
signal -N), or "error: ..." if setup failed. The model-written code never holds it.
"""

from __future__ import annotations

# The C half of `signal`, and no `typing`: their Python halves would add ~15 ms of imports to every run.
import _signal as signal
import builtins
import ctypes
import gc
import os
import resource
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000
LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 22, 36, 38
SECCOMP_MODE_FILTER, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, ENOSYS = 2, 0x7FFF0000, 0x00050000, 38
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x06
X32_SYSCALL_BIT = 0x40000000
# The kernel's key management (add_key, request_key, keyctl) by machine: its audit arch and syscall numbers.
KEY_SYSCALLS = {"x86_64": (0xC000003E, (248, 249, 250)), "aarch64": (0xC00000B7, (217, 218, 219))}
SETUP_FAILED = 125
MEGABYTE = 1024 * 1024
# Shared scratch space and runtime sockets: the sandbox sees each as an empty directory of the run's disk.
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run")

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFilter(ctypes.Structure):
    """One classic BPF instruction: the program a seccomp filter runs on every syscall."""

    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),  # instructions to skip when the test holds
        ("jf", ctypes.c_ubyte),  # ... and when it does not
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    """A BPF program as prctl(PR_SET_SECCOMP) takes it."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _call(function: str, *args: object) -> None:
    if getattr(_libc, function)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{function}: {os.strerror(errno)}")


def _prctl(option: int, value: int) -> None:
    _call("prctl", option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encoded = [None if text is None else os.fsencode(text) for text in (source, target, fstype, data)]
    _call("mount", encoded[0], encoded[1], encoded[2], ctypes.c_ulong(flags), encoded[3])


def _fail(status_fd: int, error: Exception) -> NoReturn:
    os.write(status_fd, f"error: {error}\n".encode())
    os._exit(SETUP_FAILED)


def main() -> None:
    config = dict(argument.split("=", 1) for argument in sys.argv[1:])
    status_fd = int(config["status_fd"])
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # die with cepo
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # adopt whatever the run leaves behind
        if config["namespaces"] == "1":
            _enter_namespaces()
    except OSError as error:
        _fail(status_fd, error)
    # SIGTERM waits until the handler below can kill the init process.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    # Objects the garbage collector never visits again: the program's exit then copies half as many of the
    # memory pages it shares with us (page faults are what makes a forked Python slow to exit).
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        _init(config, status_fd)
    os.close(status_fd)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: _kill_children())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os.waitpid(pid, 0)
    _reap_leftovers()
    os._exit(0)  # nothing to flush; skipping the interpreter's teardown ends the run sooner


def _enter_namespaces() -> None:
    """New PID namespace for the process forked next, new network and IPC namespaces for this one (System V
    IPC objects and POSIX message queues then die with the run); a user namespace first when not root."""
    if os.geteuid() == 0:
        _call("unshare", CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
        return
    uid, gid = os.getuid(), os.getgid()
    _call("unshare", CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
    # Keep our own ids inside; the new user namespace is what grants the mounts their capabilities.
    for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{path}", "w") as file:
            file.write(text)


def _kill_children() -> None:
    pid = os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        for child in file.read().split():
            os.kill(int(child), signal.SIGKILL)  # not reaped yet, so the pid still names this child


def _reap_leftovers() -> None:
    """Kill and reap every process left over; orphans of the run are re-parented to this subreaper."""
    while True:
        _kill_children()
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _init(config: dict[str, str], status_fd: int) -> NoReturn:
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # die with the supervisor
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        if config["namespaces"] == "1":
            _private_mounts(config)
    except OSError as error:
        _fail(status_fd, error)
    program = os.fork()
    if program == 0:
        _program(config, status_fd)
    while True:  # in a PID namespace, orphans come here too: reap them
        pid, status = os.wait()
        if pid == program:
            break
    os.write(status_fd, f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    os._exit(0)  # ends the PID namespace: the kernel kills every process left in it


def _program(config: dict[str, str], status_fd: int) -> NoReturn:
    try:
        _limit_resources(config)
        if config["uid"]:
            os.setgroups([])
            os.setgid(int(config["uid"]))
            os.setuid(int(config["uid"]))
        _drop_capabilities()
        _prctl(PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary gives the privileges back
        _forbid_kernel_keys()
        # Die with the init process; set after setuid, which clears it.
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.chdir(config["workdir"])
    except (OSError, ValueError) as error:
        _fail(status_fd, error)
    os.write(status_fd, b"ready\n")
    os.close(status_fd)
    _run_main(config["workdir"])
    sys.exit(0)


def _private_mounts(config: dict[str, str]) -> None:
    workdir = config["workdir"]
    os.umask(0o022)  # directories created below must stay enterable by the run's uid
    _call("unshare", CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted from here on reaches the host
    kept = _outermost(
        os.path.realpath(path)
        for path in (workdir, sys.base_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable))
    )
    scratch = [path for path in SCRATCH_DIRS if os.path.isdir(path) and not os.path.islink(path)]
    closed = [ancestor for ancestor in map(_closed_ancestor, kept) if ancestor]
    covered = _outermost([*scratch, *closed])
    given = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)  # main.py and the files, before the disk hides it
    *covers, work = _disk(workdir, covered, config)
    for directory, cover in zip(covered, covers, strict=True):
        _cover(directory, cover, [path for path in kept if path.startswith(directory + "/")])
    _mount(f"/proc/self/fd/{work}", workdir, None, MS_BIND)
    _copy_files(given, workdir, config["uid"])
    for handle in (given, *covers, work):
        os.close(handle)
    os.chdir(workdir)  # off the host's work directory, under the disk now: no process of the run keeps it
    if os.path.isdir("/dev/mqueue"):  # the host's queues are there, and a file created there is one of them
        _mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this IPC namespace's
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # shows only this PID namespace


def _outermost(paths: Iterable[str]) -> list[str]:
    """The paths that lie inside no other of them."""
    unique = sorted(set(paths))
    return [path for path in unique if not any(path.startswith(other + "/") for other in unique)]


def _closed_ancestor(path: str) -> str | None:
    """The outermost directory above `path` that users other than its owner cannot enter, if any."""
    parts = path.split("/")
    for end in range(2, len(parts)):
        ancestor = "/".join(parts[:end])
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return ancestor
    return None


def _disk(workdir: str, covered: list[str], config: dict[str, str]) -> list[int]:
    """Mount the run's disk over `workdir`: one tmpfs, of fixed size and number of inodes, for all the run may
    write. It holds an empty directory for each `covered` one, with its mode, and then one for the work
    directory. Returns O_PATH handles of those, in that order; the disk's root ends up hidden below them."""
    limits = f"size={config['disk_mb']}m,nr_inodes={config['disk_files']}"
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"{limits},mode=700")
    modes = [stat.S_IMODE(os.stat(directory).st_mode) | 0o755 for directory in covered]
    handles = []
    for index, mode in enumerate([*modes, 0o700]):
        path = f"{workdir}/{index}"
        os.mkdir(path)
        os.chmod(path, mode)
        handles.append(os.open(path, os.O_PATH))
    return handles


def _cover(directory: str, cover: int, kept: list[str]) -> None:
    """Hide `directory` behind `cover` (a handle of an empty directory), then bind the `kept` paths below it
    back in place."""
    handles = [os.open(path, os.O_PATH) for path in kept]  # still reachable once the cover hides them
    _mount(f"/proc/self/fd/{cover}", directory, None, MS_BIND)
    for path, handle in zip(kept, handles, strict=True):
        os.makedirs(path)
        _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)
        os.close(handle)


def _copy_files(given: int, workdir: str, uid: str) -> None:
    """Copy what the directory `given` (a handle) holds into `workdir`; give it all, and `workdir`, to `uid`
    if there is one."""
    for directory, _, names, handle in os.fwalk(dir_fd=given):
        target = os.path.normpath(os.path.join(workdir, directory))
        if directory != ".":
            os.mkdir(target)
        copies = [os.path.join(target, name) for name in names]
        for name, copy in zip(names, copies, strict=True):
            with open(os.open(name, os.O_RDONLY, dir_fd=handle), "rb") as source, open(copy, "wb") as file:
                file.write(source.read())
        if uid:
            for path in (target, *copies):
                os.chown(path, int(uid), int(uid))


def _drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets. Without a uid change (not root) the program
    would keep every capability of its user namespace: it could unmount the private /tmp and reach the
    host's, or lift the limits of its mounts."""
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)  # version, pid (0: this process)
    _call("capset", header, (ctypes.c_uint32 * 6)())  # three sets, two 32-bit words each: all zero


def _forbid_kernel_keys() -> None:
    """A seccomp filter that fails the key syscalls with ENOSYS, as a kernel without keys would. A uid's
    keyrings outlive its processes: each run's fresh uid would leave its keys in the kernel for good (up to
    its key quota), and the program would hold the caller's session keyring. Syscalls of another ABI (i386,
    x32), where the same calls have other numbers, fail too; the program never needs them."""
    known = KEY_SYSCALLS.get(os.uname().machine)
    if known is None:
        return  # docs/sandbox.md names this gap
    arch, numbers = known
    deny = 5 + len(numbers)  # the index of the last instruction
    instructions = [
        (BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (BPF_JEQ_K, 0, deny - 2, arch),
        (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (BPF_JGE_K, deny - 4, 0, X32_SYSCALL_BIT),
        *((BPF_JEQ_K, deny - 5 - index, 0, number) for index, number in enumerate(numbers)),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
    ]
    program = (_SockFilter * len(instructions))(*(_SockFilter(*instruction) for instruction in instructions))
    fprog = _SockFprog(len(instructions), program)
    zero = ctypes.c_ulong(0)
    _call("prctl", PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), zero, zero)


def _limit_resources(config: dict[str, str]) -> None:
    cpu_s = int(config["cpu_s"])
    _set_limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)  # SIGXCPU, then SIGKILL a second later
    for which, value in (
        (resource.RLIMIT_AS, int(config["memory_mb"]) * MEGABYTE),
        (resource.RLIMIT_FSIZE, int(config["file_mb"]) * MEGABYTE),
        (resource.RLIMIT_NPROC, int(config["processes"])),
        (resource.RLIMIT_CORE, 0),
    ):
        _set_limit(which, value, value)


def _set_limit(which: int, soft: int, hard: int) -> None:
    """Set a limit, never above the hard limit we inherited (only root may raise that)."""
    _, inherited = resource.getrlimit(which)
    if inherited != resource.RLIM_INFINITY:
        soft, hard = min(soft, inherited), min(hard, inherited)
    resource.setrlimit(which, (soft, hard))


def _run_main(workdir: str) -> None:
    """Run main.py as `python main.py` would, with a traceback that starts in main.py."""
    sys.argv = ["main.py"]
    sys.path.insert(0, workdir)  # main.py may import the files written next to it
    builtins.exit = builtins.quit = sys.exit  # -S skips the site module, which defines them
    module = type(sys)("__main__")
    module.__file__ = os.path.join(workdir, "main.py")
    sys.modules["__main__"] = module
    with open("main.py", "rb") as file:
        source = file.read()
    try:
        # dont_inherit: the program must not get this file's `from __future__ import annotations`.
        exec(compile(source, "main.py", "exec", dont_inherit=True), vars(module))
    except SystemExit:
        raise
    except BaseException as error:
        import traceback

        caught_here = error.__traceback__
        traceback.print_exception(type(error), error, caught_here.tb_next if caught_here else None)
        sys.exit(1)


if __name__ == "__main__":
    main()
