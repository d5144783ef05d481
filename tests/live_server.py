"""A cepo server on a free loopback port, in a background thread, for tests that talk HTTP to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from cepo.backends.base import Backend
from cepo.cli.serve import bind
from cepo.server.app import create_app
from cepo.server.settings import ServerSettings


@contextmanager
def live_server(backend: Backend, settings: ServerSettings | None = None) -> Iterator[str]:
    """The server's base URL while it runs."""
    listener = bind("127.0.0.1", 0)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(backend, settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        # The socket listens already, so this request waits in its backlog until the server answers.
        httpx.get(f"{url}/health", timeout=60).raise_for_status()
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        listener.close()
        assert not thread.is_alive(), "the server did not stop"


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s")
        time.sleep(0.01)


@contextmanager
def raw_post(
    url: str, body: bytes = b"", path: str = "/v1/chat/completions", headers: dict[str, str] | None = None
) -> Iterator[socket.socket]:
    """A connection that has sent a JSON POST's head (with `headers`, and the length of a `body` given)
    and `body`; the test may send more, or read, or drop it."""
    host, port = url.removeprefix("http://").split(":")
    headers = {"Content-Length": str(len(body)), **(headers or {})} if body else headers or {}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\n".encode() + body
        )
        yield connection
