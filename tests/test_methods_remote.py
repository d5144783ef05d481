"""The methods over HTTP: cepo on an OpenAI-compatible server (the fake one), through RemoteBackend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai_server import MODEL, FakeOpenAIServer, running_server
from test_methods_cepo import FIXED

from cepo.backends.remote import RemoteBackend
from cepo.methods import prompts, run
from cepo.methods.events import BranchEnded, Finished

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    yield from running_server()


@pytest.mark.parametrize("max_n", [None, 1])  # n honoured, or refused and served by single requests
async def test_cepo_runs_on_a_remote_server(server: FakeOpenAIServer, max_n: int | None) -> None:
    server.reset()
    server.behaviour.max_n = max_n
    backend = RemoteBackend(server.base_url, MODEL, timeout=5, max_retries=0)
    try:
        events = [e async for e in run("cepo", backend, "What is 2 + 2?", {**FIXED, "seed": 0})]
    finally:
        await backend.aclose()

    assert isinstance(events[-1], Finished)
    result = events[-1].result
    assert (result.extracted, result.agreed) == ("4", True)  # every reply of the server says 4
    assert all([a.status for a in c.attempts] == ["complete"] * 3 for c in result.candidates)
    ended = sum(e.tokens for e in events if isinstance(e, BranchEnded))
    assert ended == result.usage.completion_tokens + result.usage.wasted_tokens > 0
    plan_requests = [r for r in server.requests if prompts.PLAN in r["messages"][-1]["content"]]
    assert [r.get("n", 1) for r in plan_requests] == ([9] if max_n is None else [9] + [1] * 9)
