"""cepo's own event stream (POST /v1/cepo/runs) and its methods' declarations (GET /v1/cepo/methods), on
scripted backends: every branch's tokens, the same request checks, auth, queue, metrics and disconnects
as chat completions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from live_server import live_server, raw_post, wait_until
from scripted_backend import ScriptedBackend
from test_server_api import CEPO_SCRIPT, QUESTION, GatedBackend, health, metric

from cepo.errors import GenerationError
from cepo.methods import prompts, run
from cepo.methods.events import BranchEnded, BranchToken, Event, EventAdapter, Finished
from cepo.server.settings import ServerSettings

CEPO = {"model": "cepo", "messages": QUESTION}


@pytest.fixture
def url() -> Iterator[str]:
    with live_server(ScriptedBackend(CEPO_SCRIPT)) as url:
        yield url


def post_run(url: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/cepo/runs", json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


def events_of(response: httpx.Response) -> list[Event]:
    lines = response.text.splitlines()
    return [
        EventAdapter.validate_json(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")
    ]


def without_times(events: list[Event]) -> list[dict[str, object]]:
    return [event.model_dump(exclude={"seconds"}) for event in events if not isinstance(event, Finished)]


async def test_a_run_streams_the_methods_own_events_every_branch_whole(url: str) -> None:
    response = post_run(url, CEPO)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response)

    direct = [event async for event in run("cepo", ScriptedBackend(CEPO_SCRIPT), QUESTION)]
    assert without_times(events) == without_times(direct)  # the very stream the method emits
    texts: dict[tuple[str, int | None, int], str] = {}
    for event in events:
        if isinstance(event, BranchToken):
            key = (event.stage, event.candidate, event.branch)
            texts[key] = texts.get(key, "") + event.text
    plans = [text for (stage, _, _), text in texts.items() if stage == "plan"]
    assert plans == ["1. Spell the word. 2. Count the r letters."] * 3  # one wave: its candidates agree
    ended = [event for event in events if isinstance(event, BranchEnded)]
    assert len(ended) == len(texts)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.result.answer == "The answer is 3"


def test_it_takes_the_chat_requests_fields_and_limits(url: str) -> None:
    effort = events_of(post_run(url, {**CEPO, "reasoning_effort": "none"}))[-1]
    assert isinstance(effort, Finished) and effort.result.method == "plain"
    for body, param in [
        ({**CEPO, "n": 2}, "n"),
        ({**CEPO, "model": "gpt-4o"}, "model"),
        ({**CEPO, "cepo": {"bogus": 1}}, "cepo"),
        ({**CEPO, "max_tokens": 10**6}, "max_tokens"),
        ({**CEPO, "reasoning_effort": "extreme"}, "reasoning_effort"),
    ]:
        refused = post_run(url, body)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param
    assert post_run(url, {**CEPO, "n": 2}).json()["error"]["message"] == (
        "n is 2; cepo's event stream carries one run (n = 1)"
    )
    assert metric(url, 'cepo_requests_total{method="cepo",status="400"}') == 5  # gpt-4o's is "none"
    assert metric(url, 'cepo_requests_total{method="plain",status="200"}') == 1
    assert metric(url, 'cepo_time_to_first_token_seconds_count{method="plain"}') == 1
    assert metric(url, 'cepo_tokens_total{kind="completion",method="plain"}') > 0


def test_a_refusal_before_any_token_gets_its_status_and_a_later_failure_an_error_event() -> None:
    too_long = GenerationError("prompt (9000 tokens) + max_tokens (256) exceeds the model's context")
    with live_server(ScriptedBackend([("", too_long)])) as url:
        response = post_run(url, CEPO)
        assert response.status_code == 400 and str(too_long) in response.json()["error"]["message"]
    failing = [*CEPO_SCRIPT[:2], (re.escape(prompts.FINAL), GenerationError("the upstream refused it"))]
    with live_server(ScriptedBackend(failing)) as url:
        response = post_run(url, CEPO)
        assert response.status_code == 200
        last = response.text.strip().split("\n\n")[-1].splitlines()
        assert last[0] == "event: error"
        assert "the upstream refused it" in json.loads(last[1].removeprefix("data: "))["error"]["message"]


def test_the_api_key_guards_the_runs_and_the_methods() -> None:
    with live_server(ScriptedBackend(CEPO_SCRIPT), ServerSettings(api_key="s3cret")) as url:
        assert post_run(url, CEPO).status_code == 401
        assert httpx.get(f"{url}/v1/cepo/methods").status_code == 401
        key = {"Authorization": "Bearer s3cret"}
        assert post_run(url, CEPO, headers=key).status_code == 200
        assert httpx.get(f"{url}/v1/cepo/methods", headers=key).status_code == 200


def test_runs_share_the_queue_and_a_disconnect_cancels_the_run() -> None:
    gated = GatedBackend()
    with live_server(gated, ServerSettings(max_concurrent=1, max_queued=0)) as url:
        body = json.dumps(CEPO).encode()
        with raw_post(url, body, path="/v1/cepo/runs"):
            wait_until(lambda: health(url)["running"] == 1, what="run started")
            busy = httpx.post(f"{url}/v1/chat/completions", json=CEPO, timeout=30)
            assert busy.status_code == 429  # one slot, held by the run
        wait_until(lambda: None in gated.cancelled, what="the backend streams cancelled")
        wait_until(lambda: health(url)["running"] == 0, what="slot freed")
        wait_until(
            lambda: metric(url, 'cepo_requests_total{method="cepo",status="499"}') == 1, what="counted"
        )


def test_the_methods_declarations_and_efforts(url: str) -> None:
    listing = httpx.get(f"{url}/v1/cepo/methods").json()
    cepo = next(method for method in listing["data"] if method["name"] == "cepo")
    assert cepo["stage_titles"]["execute"] == "Execution"
    assert cepo["numbered_stages"] == ["execute", "plan", "repair"]
    assert cepo["answer_stage"] == "final" and not cepo["live_answer"]
    assert [effort["name"] for effort in listing["efforts"]] == ["none", "minimal", "low", "medium", "high"]
    assert listing["efforts"][0]["method"] == "plain" and listing["effort_method"] == "cepo"


def test_the_page_is_open_and_loads_nothing_from_elsewhere() -> None:
    with live_server(ScriptedBackend(CEPO_SCRIPT), ServerSettings(api_key="s3cret")) as url:
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assets = sorted(re.findall(r'(?:src|href)="([^"]+)"', page.text))
        assert assets == ["data:,", "web/app.css", "web/app.js"]  # its own files only: it works offline
        for asset in assets[1:]:
            served = httpx.get(f"{url}/{asset}")
            assert served.status_code == 200 and not re.search(r"https?:|@import|url\(", served.text)
