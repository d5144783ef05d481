"""The sandbox: ordinary runs, and each way model-written code could harm the caller, stopped and reported."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from sandbox_runs import processes_of, program, record_sandbox_runs

from cepo.sandbox import IsolationReport, Limits, run_code, run_code_async
from cepo.sandbox.runner import _execute

ROOT = os.geteuid() == 0


# Ordinary runs


def test_stdout_is_captured() -> None:
    result = run_code('print("hello")')
    assert (result.ok, result.exit_code, result.stdout, result.stderr) == (True, 0, "hello\n", "")
    assert (result.timed_out, result.killed_reason, result.truncated) == (False, None, False)


def test_program_runs_as_python_main_py_would() -> None:
    source = program("""
        import sys
        def f(x: int) -> None:
            pass
        print(__name__, sys.argv, f.__annotations__["x"])
        exit(4)
    """)
    result = run_code(source)
    assert (result.stdout, result.exit_code) == ("__main__ ['main.py'] <class 'int'>\n", 4)


def test_stdin_reaches_the_program_even_beyond_a_pipe_buffer() -> None:
    result = run_code("import sys\nprint(len(sys.stdin.read()))", stdin="line\n" * 50_000)
    assert result.ok and result.stdout == "250000\n"


def test_stdin_the_program_never_reads_does_not_block_the_run() -> None:
    result = run_code("print('done')", stdin="x" * 1_000_000)
    assert result.ok and result.stdout == "done\n"


def test_exit_code_of_a_failing_program() -> None:
    result = run_code("import sys\nsys.exit(3)")
    assert (result.ok, result.exit_code, result.killed_reason) == (False, 3, None)


def test_traceback_starts_in_main_py() -> None:
    result = run_code('def f():\n    raise ValueError("bad input")\n\nf()\n')
    assert (result.ok, result.exit_code) == (False, 1)
    assert 'File "main.py", line 2, in f' in result.stderr
    assert result.stderr.endswith("ValueError: bad input\n")
    assert "child.py" not in result.stderr


def test_syntax_error_is_reported_in_stderr() -> None:
    result = run_code("def f(:\n    pass\n")
    assert (result.ok, result.exit_code) == (False, 1)
    assert 'File "main.py", line 1' in result.stderr and "SyntaxError" in result.stderr


def test_files_are_written_next_to_main_and_removed_afterwards() -> None:
    source = program("""
        import os
        from tools.helper import VALUE
        print(open("data.txt").read().strip(), VALUE)
        print(os.getcwd())
    """)
    result = run_code(source, files={"data.txt": "42\n", "tools/helper.py": "VALUE = 7\n"})
    assert result.ok, result.stderr
    answer, workdir = result.stdout.splitlines()
    assert answer == "42 7"
    assert not Path(workdir).exists()


def test_source_that_is_not_valid_unicode_is_reported_as_a_syntax_error() -> None:
    result = run_code("print('\udc80')")
    assert (result.ok, result.exit_code) == (False, 1)
    assert "SyntaxError" in result.stderr


def test_terminal_controls_in_the_output_are_made_visible() -> None:
    # Retitles the terminal (OSC ... BEL), clears it (CSI), reverses the text (U+202E), overwrites the line
    # (CR), a C1 CSI and NUL; tab, newline and CR LF stay as they are.
    source = program(r"""
        import sys
        hostile = "\x1b]0;pwned\x07\x1b[2J\u202eevil\rover\x9b\x00\ttab\r\n"
        print(hostile, end="")
        sys.stderr.write(hostile)
    """)
    result = run_code(source)
    visible = r"\x1b]0;pwned\x07\x1b[2J\u202eevil\rover\x9b\x00" + "\ttab\r\n"
    assert result.ok and (result.stdout, result.stderr) == (visible, visible)


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "main.py", "./main.py"])
def test_file_names_must_stay_inside_the_work_directory(name: str) -> None:
    with pytest.raises(ValueError, match="relative path"):
        run_code("pass", files={name: "x"})


async def test_run_code_async_runs_eight_at_once() -> None:
    results = await asyncio.gather(*(run_code_async(f"print({n} * {n})") for n in range(8)))
    assert [result.stdout for result in results] == [f"{n * n}\n" for n in range(8)]


def test_isolation_report_is_full_as_root(isolation: IsolationReport) -> None:
    if not ROOT:
        pytest.skip("only root gets a uid per run")
    assert (isolation.separate_user, isolation.namespaces, isolation.not_enforced) == (True, True, [])


# Threats: each is stopped or fails inside the sandbox, is reported, and leaves nothing behind


def test_deep_recursion_crashes_only_the_program() -> None:
    source = program("""
        import sys
        sys.setrecursionlimit(10**7)
        def down(depth):
            return list(map(down, [depth + 1]))  # through C, so the C stack overflows
        down(0)
    """)
    result = run_code(source)
    assert (result.ok, result.exit_code, result.killed_reason) == (False, None, "signal SIGSEGV")


def test_memory_hog_hits_the_memory_limit() -> None:
    result = run_code("hog = bytearray(2 * 1024**3)", limits=Limits(memory_mb=256))
    assert (result.ok, result.killed_reason) == (False, "memory limit")
    assert result.stderr.endswith("MemoryError\n")


def test_fork_bomb_is_capped_and_leaves_no_process(
    separate_user: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every process forks until one fork of its own is refused; the program's first process then ends the
    # run, and with it every process still forking. Time limits it never reaches.
    source = program("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                print("fork refused", flush=True)
                break
    """)
    runs = record_sandbox_runs(monkeypatch)
    result = run_code(source, limits=Limits(wall_s=600, cpu_s=600, processes=16))
    assert (result.ok, result.killed_reason) == (True, None), result.stderr
    assert "fork refused" in result.stdout.splitlines()  # the processes limit held
    [(_, uid)] = runs.started
    assert uid is not None and processes_of(uid) == []


def test_cpu_burn_in_several_threads_hits_the_cpu_limit() -> None:
    # However busy the machine, the program gets its second of CPU time long before the wall-clock limit.
    source = program("""
        import threading
        def burn():
            while True:
                pass
        for _ in range(4):
            threading.Thread(target=burn).start()
    """)
    result = run_code(source, limits=Limits(cpu_s=1, wall_s=600))
    assert (result.ok, result.timed_out, result.killed_reason) == (False, False, "cpu time limit")


def test_infinite_loop_hits_the_wall_clock_timeout(
    separate_user: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed by the limit whatever it is, and however far the program got: a short one will do.
    runs = record_sandbox_runs(monkeypatch)
    result = run_code("while True:\n    pass\n", limits=Limits(wall_s=1, cpu_s=600))
    assert (result.ok, result.timed_out, result.killed_reason) == (False, True, "wall-clock timeout")
    [(_, uid)] = runs.started
    assert uid is not None and processes_of(uid) == []


def test_huge_print_is_cut_at_the_output_limit() -> None:
    result = run_code("print('x' * 100_000_000)")
    assert (result.ok, result.truncated, result.killed_reason) == (False, True, "output limit")
    assert result.stdout == "x" * Limits().output_bytes


def test_big_file_hits_the_file_size_limit() -> None:
    result = run_code('open("big.bin", "wb").write(bytes(2 * 1024 * 1024))', limits=Limits(file_mb=1))
    assert (result.ok, result.exit_code) == (False, 1)
    assert result.stderr.endswith("OSError: [Errno 27] File too large\n")


def test_files_outside_the_work_directory_are_untouched(isolation: IsolationReport) -> None:
    if not (isolation.separate_user or isolation.namespaces):
        pytest.skip("the program runs as the caller's user, with the caller's file system")
    outside = Path(tempfile.mkdtemp())  # in /tmp, open to everyone, unlike pytest's tmp_path
    outside.chmod(0o755)
    marker = outside / "marker.txt"
    marker.write_text("original")
    source = program(f"""
        import os
        for action in (
            lambda: os.remove({str(marker)!r}),
            lambda: open({str(marker)!r}, "w").write("changed"),
            lambda: open({str(outside / "new.txt")!r}, "w").write("new"),
            lambda: open("/etc/cepo-sandbox-test", "w").write("new"),
        ):
            try:
                action()
                print("done")
            except OSError as error:
                print(type(error).__name__)
    """)
    try:
        result = run_code(source)
        assert result.ok, result.stderr
        assert "done" not in result.stdout.splitlines()
        assert marker.read_text() == "original"
        assert not (outside / "new.txt").exists() and not Path("/etc/cepo-sandbox-test").exists()
    finally:
        shutil.rmtree(outside)


def test_scratch_files_stay_inside_the_sandbox(namespaces: None, tmp_path: Path) -> None:
    scratch = Path("/tmp", f"cepo-sandbox-test-{tmp_path.name}.txt")
    result = run_code(f"open({str(scratch)!r}, 'w').write('written')\nprint(open({str(scratch)!r}).read())")
    assert result.ok and result.stdout == "written\n"
    assert not scratch.exists()


def test_parent_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEPO_SANDBOX_TEST_SECRET", "s3cret-key")
    source = program(f"""
        import os
        print(sorted(os.environ))
        try:
            print(open("/proc/{os.getpid()}/environ", "rb").read())
        except OSError as error:
            print(type(error).__name__)
    """)
    result = run_code(source)
    assert result.ok, result.stderr
    assert result.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH']"
    assert "s3cret-key" not in result.stdout


def test_network_connections_fail(namespaces: None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        source = program(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=5)
                print("connected")
            except OSError as error:
                print(type(error).__name__)
        """)
        result = run_code(source)
        assert result.ok and result.stdout == "OSError\n"  # ENETUNREACH: not even loopback exists
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()


def test_signalling_the_parent_fails(separate_user: None) -> None:
    source = program(f"""
        import os, signal
        for target in ({os.getpid()}, os.getppid()):
            try:
                os.kill(target, signal.SIGKILL)
                print("killed")
            except OSError as error:
                print(type(error).__name__)
    """)
    result = run_code(source)
    assert result.ok, result.stderr
    assert set(result.stdout.splitlines()) <= {"PermissionError", "ProcessLookupError"}


DAEMON = program("""
    import os, time
    print(os.getuid(), flush=True)
    ready, announce = os.pipe()
    if os.fork() == 0:
        os.setsid()  # leaves the run's session and process group
        if os.fork() == 0:
            os.write(announce, b"daemon running")
            time.sleep(600)
        os._exit(0)
    print(os.read(ready, 100).decode())
""")


def test_daemon_does_not_outlive_the_run(separate_user: None) -> None:
    result = run_code(DAEMON)
    uid, announced = result.stdout.splitlines()
    assert result.ok and announced == "daemon running"
    assert processes_of(int(uid)) == []


def test_daemon_does_not_outlive_the_run_without_namespaces(separate_user: None) -> None:
    result = _execute(DAEMON, "", Limits(), {}, IsolationReport(separate_user=True, namespaces=False))
    uid, announced = result.stdout.splitlines()
    assert result.ok and announced == "daemon running"
    assert processes_of(int(uid)) == []


def test_a_refused_fork_is_found_among_tracebacks_written_over_each_other() -> None:
    from cepo.sandbox.runner import _limit_refused

    stderr = (
        'Traceback (most recent call last):\n  File "main.py", line 4, in <module>\n    os.fork()\n'
        "BlockingIOError: [Errno 11] Resource temporarily unavailable\nTraceback (most recent call last):\n"
        '  File "main.py", line 4, in <module>\n    os.fork()\n    ^^^^^^^^^\n'
    )
    assert _limit_refused(stderr) == "processes limit"
    assert _limit_refused("Traceback (most recent call last):\nValueError: no\n") is None
