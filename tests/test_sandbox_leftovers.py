"""What a sandboxed run could leave behind in the kernel or on disk for good, and what it may write meanwhile:
each attack runs, and the host is checked afterwards for its traces (never for how long anything took)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_runs import program, record_sandbox_runs

from cepo.sandbox import IsolationReport, Limits, run_code
from cepo.sandbox.runner import _execute

libc = ctypes.CDLL(None, use_errno=True)
librt = ctypes.CDLL("librt.so.1", use_errno=True)
IPC_RMID = 0
SYSV_KINDS = ("shm", "msg", "sem")


# ------------------------------------------------------------------------------------------------- IPC
def sysv_keys(kind: str) -> set[int]:
    """Keys of the host's System V IPC objects of `kind` ("shm", "msg" or "sem")."""
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {int(line.split()[0]) & 0xFFFFFFFF for line in lines}


def remove_sysv(key: int) -> None:
    """Remove the host's System V objects of `key`: what a failing run left behind."""
    for get, control in ((libc.shmget, libc.shmctl), (libc.msgget, libc.msgctl)):
        identifier = get(key, 0, 0)
        if identifier >= 0:
            control(identifier, IPC_RMID, None)
    identifier = libc.semget(key, 0, 0)
    if identifier >= 0:
        libc.semctl(identifier, 0, IPC_RMID)


@pytest.fixture
def ipc_key() -> Iterator[int]:
    key = random.randrange(1, 2**31)
    yield key
    remove_sysv(key)


def test_system_v_ipc_objects_die_with_the_run(namespaces: None, ipc_key: int) -> None:
    # A shared memory segment filled and detached outlives its process, and holds memory no rlimit counts.
    source = program(f"""
        import ctypes
        libc = ctypes.CDLL(None)
        libc.shmat.restype = ctypes.c_void_p
        segment = libc.shmget({ipc_key}, 8 << 20, 0o1666)
        address = libc.shmat(segment, None, 0)
        ctypes.memset(address, 1, 8 << 20)
        libc.shmdt(ctypes.c_void_p(address))
        print(segment >= 0, libc.msgget({ipc_key}, 0o1666) >= 0, libc.semget({ipc_key}, 1, 0o1666) >= 0)
    """)
    result = run_code(source)
    assert result.ok and result.stdout == "True True True\n", result.stderr
    assert [kind for kind in SYSV_KINDS if ipc_key in sysv_keys(kind)] == []


@pytest.fixture
def queue_name() -> Iterator[bytes]:
    name = f"/cepo-sandbox-test-{random.randrange(2**32)}".encode()
    yield name
    librt.mq_unlink(name)


def test_posix_message_queues_die_with_the_run(namespaces: None, queue_name: bytes) -> None:
    source = program(f"""
        import ctypes, os
        librt = ctypes.CDLL("librt.so.1")
        print(librt.mq_open({queue_name!r}, os.O_CREAT | os.O_RDWR, 0o666, None) >= 0)
    """)
    result = run_code(source)
    assert result.ok and result.stdout == "True\n", result.stderr
    assert librt.mq_open(queue_name, os.O_RDONLY) == -1 and ctypes.get_errno() == errno.ENOENT


def test_the_hosts_queue_directory_is_the_runs_own(namespaces: None, queue_name: bytes) -> None:
    if not Path("/dev/mqueue").is_dir():
        pytest.skip("no /dev/mqueue here")
    path = "/dev/mqueue" + queue_name.decode()
    result = run_code(f"open({path!r}, 'w').close()\nprint('created')")
    assert result.ok and result.stdout == "created\n", result.stderr
    assert not Path(path).exists()


# ----------------------------------------------------------------------------------------- kernel keys
ADD_KEY = {"x86_64": 248, "aarch64": 217}
KEY_SPEC_USER_KEYRING, KEY_SPEC_SESSION_KEYRING = -4, -3


def test_kernel_keys_are_out_of_reach_and_none_outlive_the_run(isolation: IsolationReport) -> None:
    # The uid's own keyring, and the session keyring the program would share with the caller.
    if not isolation.separate_user:
        pytest.skip("runs do not get a uid of their own here: " + "; ".join(isolation.not_enforced))
    if os.uname().machine not in ADD_KEY:
        pytest.skip(f"no key syscalls filter on {os.uname().machine}")
    source = program(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        print(os.getuid())
        for keyring in ({KEY_SPEC_USER_KEYRING}, {KEY_SPEC_SESSION_KEYRING}):
            added = libc.syscall({ADD_KEY[os.uname().machine]}, b"user", b"cepo-test", b"secret", 6, keyring)
            print(added, ctypes.get_errno())
    """)
    result = run_code(source)
    assert result.ok, result.stderr
    uid, *added = result.stdout.splitlines()
    assert added == [f"-1 {errno.ENOSYS}"] * 2
    key_users = Path("/proc/key-users").read_text().splitlines()
    assert [line for line in key_users if line.split(":")[0].strip() == uid] == []


# -------------------------------------------------------------------------------- the caller's own uid
# A caller that is not root runs the sandbox inside a user namespace, where the program would hold every
# capability. Root plays that caller from a user namespace of its own, as uid 1000 there.
AS_A_USER = """
import ctypes, json
from cepo.sandbox import isolation_report, run_code
program = '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
status = open("/proc/self/status").read().splitlines()
print([line.split()[1] for line in status if line.startswith("CapEff")][0])
print(libc.umount2(b"/tmp", 2), ctypes.get_errno())  # MNT_DETACH: would uncover the host's /tmp
'''
print(json.dumps([isolation_report().namespaces, run_code(program).model_dump()]))
"""


def test_the_program_holds_no_capabilities_in_a_user_namespace() -> None:
    command = [sys.executable, "-c", AS_A_USER]
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("no unshare(1) to play a caller that is not root")
        command = [unshare, "--user", "--map-user=1000", "--map-group=1000", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no user namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    namespaces, result = json.loads(done.stdout)
    if not namespaces:
        pytest.skip("no user namespaces for a caller that is not root here")
    assert result["ok"], result["stderr"]
    assert result["stdout"].splitlines() == ["0000000000000000", f"-1 {errno.EPERM}"]


# ------------------------------------------------------------------------------------------------ disk
def test_the_work_and_scratch_directories_share_one_cap_on_bytes(namespaces: None) -> None:
    # Files of 1 MB, well below the file size limit: only the cap on them all stops them.
    cap = Limits().disk_mb
    source = program(f"""
        for n in range({cap // 2}):
            with open(f"/tmp/{{n}}", "wb", buffering=0) as file:
                file.write(bytes(1 << 20))
        print("scratch written", flush=True)
        for n in range({2 * cap}):
            with open(str(n), "wb", buffering=0) as file:
                file.write(bytes(1 << 20))
            print(n + 1, flush=True)
    """)
    result = run_code(source)
    assert (result.ok, result.killed_reason) == (False, "disk limit")
    assert result.stderr.endswith("OSError: [Errno 28] No space left on device\n")
    scratch, *work = result.stdout.splitlines()
    assert scratch == "scratch written" and len(work) <= cap - cap // 2  # what /tmp left of the cap


def test_the_number_of_files_is_capped(namespaces: None) -> None:
    cap = Limits().disk_files
    source = program(f"""
        import os
        for count in range({2 * cap}):
            try:
                os.mkdir(str(count)) if count % 2 else open(str(count), "w").close()
            except OSError:
                print(count, flush=True)
                raise
    """)
    result = run_code(source)
    assert (result.ok, result.killed_reason) == (False, "disk limit")
    assert cap - 100 < int(result.stdout) < cap  # the sandbox's own directories and main.py count too


# -------------------------------------------------------------------------------------------- clean-up
# Leaves what shutil.rmtree cannot remove: a tree too deep for its recursion and beyond PATH_MAX,
# directories without permissions, many files, a FIFO, and a link to a directory outside.
TANGLE = """
    import os
    os.symlink({outside!r}, "link")
    os.mkfifo("fifo")
    os.mkdir("many")
    for n in range(2000):
        open(f"many/{{n}}", "w").close()
    for name, mode in (("locked", 0), ("read-only", 0o500)):
        os.mkdir(name)
        open(f"{{name}}/file", "w").close()
        os.chmod(name, mode)
    for name in ["d"] * 1000 + ["x" * 255] * 20:
        os.mkdir(name)
        os.chdir(name)
    open("deepest", "w").close()
    os.chmod(".", 0)
    print("left")
"""
WEAKEST = IsolationReport(separate_user=os.geteuid() == 0, namespaces=False)


@pytest.mark.parametrize("forced", [None, WEAKEST], ids=["as isolated as here", "without namespaces"])
def test_whatever_a_run_leaves_its_work_directory_is_removed(
    forced: IsolationReport | None,
    isolation: IsolationReport,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = record_sandbox_runs(monkeypatch)  # after the isolation probe, so only this run is recorded
    marker = tmp_path / "outside" / "marker.txt"
    marker.parent.mkdir()
    marker.write_text("kept")
    source = program(TANGLE.format(outside=str(marker.parent)))
    result = run_code(source) if forced is None else _execute(source, "", Limits(), {}, forced)
    assert result.ok and result.stdout == "left\n", result.stderr
    [(workdir, _)] = runs.started
    assert not Path(workdir).exists()
    assert marker.read_text() == "kept"


def make_chain(top: Path, name: str, depth: int) -> None:
    """`depth` directories `name` inside each other below `top`, the last one without permissions; made
    through directory handles, since the path may be longer than PATH_MAX."""
    handle = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=handle)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=handle)
        os.close(handle)
        handle = inner
    os.close(os.open("file", os.O_CREAT | os.O_WRONLY, dir_fd=handle))
    os.fchmod(handle, 0)
    os.close(handle)


def test_a_tree_the_caller_cannot_enter_is_removed_all_the_same(tmp_path: Path) -> None:
    # As a caller that is not root, for whom permissions hold: root plays one without its overrides.
    top = tmp_path / "workdir"
    top.mkdir()
    make_chain(top, "x" * 255, 20)  # beyond PATH_MAX
    for directory, mode in ((top / "read-only", 0o500), (top / "locked", 0), (top, 0)):
        directory.mkdir(exist_ok=True)
        (directory / "file").touch()
        directory.chmod(mode)
    remove = f"from cepo.sandbox.runner import _remove_tree; _remove_tree({str(top)!r})"
    command = [sys.executable, "-c", remove]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("no setpriv(1) to drop root's permission overrides")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert not top.exists()
