"""The server in front of an upstream OpenAI-compatible server (tests/fake_openai_server.py stands in for
vLLM): answers come from upstream, a client's disconnect closes the upstream streams, an upstream that
keeps failing is a 502."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest
from fake_openai_server import MODEL, FakeOpenAIServer, running_server
from live_server import live_server

from cepo.backends.remote import RemoteBackend
from cepo.cli.serve import BackendChoice

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    yield from running_server()


@pytest.fixture
def url(upstream: FakeOpenAIServer) -> Iterator[str]:
    upstream.reset()
    with live_server(RemoteBackend(upstream.base_url, MODEL, max_retries=1)) as url:
        yield url


def test_the_upstream_answers_through_the_method(url: str, upstream: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="plain", messages=QUESTION, seed=0, top_p=0.5)  # type: ignore[arg-type]

    assert reply.choices[0].message.content == "The answer is 4."
    [sent] = upstream.requests
    assert (sent["model"], sent["messages"], sent["top_p"]) == (MODEL, QUESTION, 0.5)


def test_a_client_disconnect_closes_the_upstream_stream(url: str, upstream: FakeOpenAIServer) -> None:
    upstream.behaviour.stall_after = {0: 2}  # reply 0 sends two words, then waits
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="plain", messages=QUESTION, seed=0, stream=True)  # type: ignore[arg-type]
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()

    assert upstream.wait_closed_early(1, timeout=30)


def test_an_upstream_that_keeps_failing_is_a_502(url: str, upstream: FakeOpenAIServer) -> None:
    upstream.behaviour.failures = [500, 500]
    response = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "plain", "messages": QUESTION}, timeout=60
    )

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "backend_unavailable"
    assert "kept failing" in response.json()["error"]["message"]


def test_serve_takes_the_upstream_model_when_it_serves_one(upstream: FakeOpenAIServer) -> None:
    backend = asyncio.run(BackendChoice(base_url=upstream.base_url).open())
    assert isinstance(backend, RemoteBackend) and backend.model == MODEL
