"""RemoteBackend against a misbehaving server (tests/faulty_openai_server.py): every fault ends as a cepo
error naming the server, retries stay bounded, and the backend goes on serving the next request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fake_openai_server import MODEL, Behaviour, words
from faulty_openai_server import Fault, FaultyOpenAIServer, faulty_server

from cepo.backends import open_backend
from cepo.backends.base import Prompt, Sampling, StreamEvent, TokenEvent
from cepo.backends.remote import RemoteBackend
from cepo.errors import BackendTimeout, BackendUnavailable, GenerationError

pytestmark = pytest.mark.timeout(30)  # a fault that hangs the client fails the test instead

REPLIES = Behaviour().replies
CHAT: Prompt = [{"role": "user", "content": "What is 2 + 2?"}]
TEXT: Prompt = "Q: 2 + 2 = ?"
TIMEOUT = 0.3  # the backend's: how long the server may stay silent


@pytest.fixture(scope="module")
def running() -> Iterator[FaultyOpenAIServer]:
    yield from faulty_server()


@pytest.fixture
def server(running: FaultyOpenAIServer) -> FaultyOpenAIServer:
    running.reset()
    return running


@pytest.fixture
async def backend(server: FaultyOpenAIServer) -> AsyncIterator[RemoteBackend]:
    backend = RemoteBackend(server.base_url, MODEL, timeout=TIMEOUT, max_retries=2)
    yield backend
    await backend.aclose()


async def still_serves(backend: RemoteBackend) -> None:
    completion = await backend.generate(CHAT, sampling=Sampling(seed=0))
    assert completion.branches[0].text == REPLIES[0]


@pytest.mark.parametrize(
    ("status", "message"), [(500, "kept failing after 2 retries"), (429, "still rate-limits after 2 retries")]
)
async def test_server_errors_are_retried_a_bounded_number_of_times(
    backend: RemoteBackend, server: FaultyOpenAIServer, status: int, message: str
) -> None:
    server.fail(Fault("status", status=status, retry_after="0.01"), times=None)
    with pytest.raises(BackendUnavailable, match=f"{message}: injected {status}") as raised:
        await backend.generate(CHAT)

    assert len(server.requests) == 3
    assert server.base_url in str(raised.value)
    server.reset()
    await still_serves(backend)


async def test_errors_fewer_than_the_retries_are_not_seen(
    backend: RemoteBackend, server: FaultyOpenAIServer
) -> None:
    server.fail(Fault("status", status=429, retry_after="0.01"), times=1)
    server.fail(Fault("status", status=502), times=1)
    completion = await backend.generate(CHAT, sampling=Sampling(seed=0))

    assert completion.branches[0].text == REPLIES[0]
    assert len(server.requests) == 3


async def test_a_request_that_never_gets_an_answer_times_out(
    backend: RemoteBackend, server: FaultyOpenAIServer
) -> None:
    server.fail(Fault("hang"), times=None)
    with pytest.raises(BackendTimeout, match=rf"did not answer within {TIMEOUT:g} s in 3 attempts"):
        await backend.generate(CHAT)

    assert len(server.requests) == 3
    server.reset()
    await still_serves(backend)


async def test_a_hang_fewer_times_than_the_retries_is_not_seen(
    backend: RemoteBackend, server: FaultyOpenAIServer
) -> None:
    server.fail(Fault("hang"), times=1)
    completion = await backend.generate(CHAT, sampling=Sampling(seed=0))

    assert completion.branches[0].text == REPLIES[0]
    assert len(server.requests) == 2


@pytest.mark.parametrize("prompt", [CHAT, TEXT], ids=["chat", "text"])
@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (Fault("stall", after=2), BackendTimeout, rf"went silent mid-answer for {TIMEOUT:g} s"),
        (Fault("cut", after=2), BackendUnavailable, "ended the stream before choice 0 finished"),
        (Fault("drop", after=2), BackendUnavailable, "dropped the connection mid-answer: peer closed"),
        (Fault("malformed", after=2), BackendUnavailable, "sent an event that is not JSON"),
        (
            Fault("malformed", after=2, event='data: {"choices": [{"index": "first"}]}\n\n'),
            BackendUnavailable,
            r"sent a chunk that is not a completion chunk \(choices\.0\.index: Input should be a valid",
        ),
    ],
    ids=lambda value: value.kind if isinstance(value, Fault) else "",
)
async def test_an_answer_broken_mid_stream_fails_once_with_what_went_wrong(
    backend: RemoteBackend,
    server: FaultyOpenAIServer,
    prompt: Prompt,
    fault: Fault,
    error: type[Exception],
    message: str,
) -> None:
    server.fail(fault, times=None)
    received: list[StreamEvent] = []
    with pytest.raises(error, match=message) as raised:
        async with backend.stream(prompt, sampling=Sampling(seed=0)) as stream:
            async for event in stream:
                received.append(event)

    # The words before the fault went out as they came; the answer is not asked for again.
    assert [e.text for e in received if isinstance(e, TokenEvent)] == words(REPLIES[0])[: fault.after]
    assert len(server.requests) == 1
    assert server.base_url in str(raised.value)
    server.reset()
    await still_serves(backend)


async def test_an_answer_with_no_choice_fails(backend: RemoteBackend, server: FaultyOpenAIServer) -> None:
    server.fail(Fault("choices", choices=0))
    with pytest.raises(BackendUnavailable, match=f"{server.base_url} answered no choice"):
        await backend.generate(CHAT)


async def test_choices_beyond_n_are_ignored(backend: RemoteBackend, server: FaultyOpenAIServer) -> None:
    server.fail(Fault("choices", choices=3))
    completion = await backend.generate(CHAT, n=2, sampling=Sampling(seed=0))

    assert [branch.text for branch in completion.branches] == REPLIES[:2]
    assert len(server.requests) == 1


async def test_choices_a_server_leaves_out_are_asked_for_one_by_one(
    backend: RemoteBackend, server: FaultyOpenAIServer
) -> None:
    server.fail(Fault("choices", choices=1))
    completion = await backend.generate(CHAT, n=3, sampling=Sampling(seed=0))

    assert [branch.text for branch in completion.branches] == REPLIES
    assert [(body["n"], body.get("seed")) for body in server.requests] == [(3, 0), (1, 1), (1, 2)]


async def test_one_failing_request_of_several_fails_the_stream(
    backend: RemoteBackend, server: FaultyOpenAIServer
) -> None:
    backend.honours_n = False  # one request per branch
    server.fail(Fault("status", status=400))  # not retried: the request itself is refused
    with pytest.raises(GenerationError, match="refused the request: injected 400"):
        await backend.generate(CHAT, n=3)

    assert {body["n"] for body in server.requests} == {1}


async def test_open_backend_takes_the_timeout(server: FaultyOpenAIServer) -> None:
    backend = open_backend(base_url=server.base_url, model_name=MODEL, timeout=TIMEOUT)
    assert isinstance(backend, RemoteBackend) and backend.timeout == TIMEOUT
    await backend.aclose()


async def test_a_server_killed_mid_stream_gives_a_clean_error_at_once() -> None:
    script = Path(__file__).with_name("faulty_openai_server.py")
    server = subprocess.Popen(
        [sys.executable, str(script), "stall", "--after", "2"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        # A timeout far beyond the test's: only the kill can end the stalled stream in time.
        backend = RemoteBackend(base_url, MODEL, timeout=300, max_retries=0)
        received: list[str] = []
        with pytest.raises(BackendUnavailable, match=f"{base_url} dropped the connection mid-answer"):
            async with backend.stream(CHAT) as stream:
                async for event in stream:
                    assert isinstance(event, TokenEvent)
                    received.append(event.text)
                    if len(received) == 1:
                        os.kill(server.pid, signal.SIGKILL)
        assert server.wait(timeout=10) == -signal.SIGKILL
        with pytest.raises(BackendUnavailable, match=f"cannot reach {base_url}"):
            await backend.generate(CHAT)
        await backend.aclose()
    finally:
        server.kill()
        server.wait()
