"""The server in front of a misbehaving upstream (tests/faulty_openai_server.py): a total failure is a 502
(a 504 when the upstream stays silent past the timeout) in the OpenAI shape, a stream broken mid-way ends
with an error event, one failed candidate does not fail the request, and the server keeps serving. A
server killed mid-stream leaves its clients a clean error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import openai
import pytest
from fake_openai_server import MODEL
from faulty_openai_server import Fault, FaultyOpenAIServer, faulty_server
from live_server import live_server
from test_server_api import metric, post

from cepo.backends.base import TokenEvent
from cepo.backends.remote import RemoteBackend
from cepo.errors import BackendUnavailable
from cepo.methods import prompts

pytestmark = pytest.mark.timeout(60)

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
TIMEOUT = 0.3  # how long the upstream may stay silent
FEW_PLANS = {"planning_n": 1, "plan": {"max_tokens": 16}, "execute": {"max_tokens": 16}}


@pytest.fixture(scope="module")
def running() -> Iterator[FaultyOpenAIServer]:
    yield from faulty_server()


@pytest.fixture
def upstream(running: FaultyOpenAIServer) -> FaultyOpenAIServer:
    running.reset()
    return running


@pytest.fixture
def url(upstream: FaultyOpenAIServer) -> Iterator[str]:
    with live_server(RemoteBackend(upstream.base_url, MODEL, timeout=TIMEOUT, max_retries=0)) as url:
        yield url


def ask(model: str, stream: bool = False, **fields: object) -> dict[str, object]:
    return {"model": model, "messages": QUESTION, "stream": stream, **fields}


def assert_serves(url: str, upstream: FaultyOpenAIServer) -> None:
    upstream.reset()
    response = post(url, ask("plain", seed=0))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "The answer is 4."


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("model", "fault", "message"),
    [
        ("plain", Fault("status", status=500), "kept failing after 0 retries: injected 500"),
        ("plain", Fault("malformed", after=0), "sent an event that is not JSON"),
        ("plain", Fault("choices", choices=0), "answered no choice"),
        ("cepo", Fault("status", status=503), "kept failing after 0 retries: injected 503"),
    ],
    ids=["500", "malformed", "no-choice", "cepo"],
)
def test_a_total_backend_failure_is_a_502_and_the_server_keeps_serving(
    url: str, upstream: FaultyOpenAIServer, model: str, fault: Fault, message: str, stream: bool
) -> None:
    upstream.fail(fault, times=None)
    response = post(url, ask(model, stream))

    assert response.status_code == 502
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "backend_unavailable")
    assert upstream.base_url in error["message"] and message in error["message"]
    assert metric(url, f'cepo_requests_total{{method="{model}",status="502"}}') == 1
    assert_serves(url, upstream)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", ["plain", "cepo"])
def test_an_upstream_that_never_answers_is_a_504_after_the_timeout(
    url: str, upstream: FaultyOpenAIServer, model: str, stream: bool
) -> None:
    upstream.fail(Fault("hang"), times=None)
    response = post(url, ask(model, stream))

    assert response.status_code == 504
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "backend_timeout")
    assert f"{upstream.base_url} did not answer within {TIMEOUT:g} s" in error["message"]
    assert_serves(url, upstream)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("drop", after=2), "dropped the connection mid-answer"),
        (Fault("stall", after=2), f"went silent mid-answer for {TIMEOUT:g} s"),
        (Fault("cut", after=2), "ended the stream before choice 0 finished"),
    ],
    ids=lambda value: value.kind if isinstance(value, Fault) else "",
)
def test_a_stream_broken_mid_way_ends_with_an_error_event(
    url: str, upstream: FaultyOpenAIServer, fault: Fault, message: str
) -> None:
    upstream.fail(fault, times=None)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="plain", messages=QUESTION, seed=0, stream=True)  # type: ignore[arg-type]
    received: list[str] = []
    with pytest.raises(openai.APIError, match=message):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "The answer "  # the two words sent before the fault
    status = "504" if fault.kind == "stall" else "502"
    assert metric(url, f'cepo_requests_total{{method="plain",status="{status}"}}') == 1
    assert_serves(url, upstream)


@pytest.mark.parametrize(
    "fault", [Fault("status", status=400), Fault("drop", after=1)], ids=["refused", "dropped"]
)
def test_one_failed_candidate_does_not_fail_the_request(
    url: str, upstream: FaultyOpenAIServer, fault: Fault
) -> None:
    upstream.fail(fault, times=1, matching=re.escape(prompts.FINAL))  # one candidate's final answer
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="cepo",
        messages=QUESTION,
        stream=True,
        extra_body={"cepo": FEW_PLANS},  # type: ignore[arg-type]
    )
    reasoning, content = [], []
    for chunk in stream:
        delta = chunk.choices[0].delta
        reasoning.append(getattr(delta, "reasoning_content", None) or "")
        content.append(delta.content or "")

    transcript = "".join(reasoning)
    [failure] = re.findall(r"\[Failed · candidate (\d)\] (.*)", transcript)
    assert upstream.base_url in failure[1]
    assert (" [failed]" in transcript) == (fault.kind == "drop")  # the word it had streamed ends there
    assert "[Final answer · candidate" in transcript
    assert "".join(content)
    assert metric(url, 'cepo_requests_total{method="cepo",status="200"}') == 1


async def test_a_server_killed_mid_stream_leaves_its_clients_a_clean_error(
    upstream: FaultyOpenAIServer,
) -> None:
    upstream.fail(Fault("stall", after=2), times=None)  # the answers stop after two words
    command = [sys.executable, "-c", "from cepo.cli import main; main()", "serve", "--port", "0"]
    options = ["--base-url", upstream.base_url, "--model-name", MODEL, "--log-level", "warning"]
    server = subprocess.Popen([*command, *options], stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # printed once the socket listens
        port = re.search(r"at http://127\.0\.0\.1:(\d+)/v1", line)
        assert port, line
        url = f"http://127.0.0.1:{port[1]}/v1"
        # Timeouts far beyond the test's: only the kill can end the stalled streams in time.
        ours = RemoteBackend(url, "plain", timeout=300, max_retries=0)
        theirs = openai.AsyncOpenAI(base_url=url, api_key="unused", timeout=300, max_retries=0)
        async with ours.stream(QUESTION) as our_stream:
            assert isinstance(await anext(our_stream), TokenEvent)
            their_stream = await theirs.chat.completions.create(
                model="plain",
                messages=QUESTION,  # type: ignore[arg-type]
                stream=True,
            )
            while not (await anext(their_stream)).choices[0].delta.content:
                pass
            os.kill(server.pid, signal.SIGKILL)
            with pytest.raises(BackendUnavailable, match=f"{url} dropped the connection mid-answer"):
                async for _ in our_stream:
                    pass
        with pytest.raises(openai.APIConnectionError):
            async for _ in their_stream:
                pass
        await ours.aclose()
        await theirs.close()
    finally:
        server.kill()
        server.wait()
