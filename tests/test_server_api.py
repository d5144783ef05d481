"""The server over HTTP on scripted backends: the OpenAI wire format, streaming order, usage, field
mapping, errors, auth, the queue, disconnects and metrics. The real model is in test_server_model.py."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator

import httpx
import openai
import pytest
from live_server import live_server, raw_post, wait_until
from scripted_backend import ScriptedBackend
from test_methods_cepo import PUBLISHED

from cepo.backends.base import Backend, Branch, BranchEnd, GenerationStream, Prompt, Sampling, TokenEvent
from cepo.errors import BackendUnavailable, GenerationError
from cepo.methods import prompts
from cepo.server.settings import ServerSettings

QUESTION = [{"role": "user", "content": "How many r's are in the word strawberry?"}]
CEPO_SCRIPT: list[tuple[str, object]] = [
    (re.escape(prompts.PLAN), "1. Spell the word. 2. Count the r letters."),
    (re.escape(prompts.EXECUTE), "s-t-r-a-w-b-e-r-r-y has three r. Answer: 3"),
    (re.escape(prompts.REFINE.split("{n}")[1]), "They agree. Answer: 3"),
    (re.escape(prompts.FINAL), "The answer is 3"),
]
PLAIN_REPLY = "There are three r letters in strawberry."


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend(CEPO_SCRIPT, default=PLAIN_REPLY)


@pytest.fixture
def url(backend: ScriptedBackend) -> Iterator[str]:
    with live_server(backend) as url:
        yield url


@pytest.fixture
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def post(url: str, body: object, **kwargs: object) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{url}/v1/chat/completions", content=content, timeout=30, **kwargs)  # type: ignore[arg-type]


def metric(url: str, name: str) -> float:
    """One sample of /metrics, by its name with labels as Prometheus writes it; 0 when absent."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


# ------------------------------------------------------------------------------------------ the happy path
def test_models_are_the_methods_on_the_backend_model(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["plain", "self-consistency", "best-of-n", "cepo"]
    assert {m.root for m in models} == {"scripted"}  # type: ignore[attr-defined]


def test_plain_answer_with_usage(client: openai.OpenAI, backend: ScriptedBackend) -> None:
    reply = client.chat.completions.create(model="plain", messages=QUESTION)  # type: ignore[arg-type]

    assert reply.object == "chat.completion" and reply.model == "plain"
    [choice] = reply.choices
    assert (choice.message.content, choice.finish_reason) == (PLAIN_REPLY, "stop")
    assert getattr(choice.message, "reasoning_content", None) is None
    usage = reply.usage
    assert usage is not None
    assert usage.prompt_tokens == backend.prompt_tokens
    assert usage.completion_tokens == len(PLAIN_REPLY.split()) == backend.produced_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details.reasoning_tokens == 0  # type: ignore[union-attr]


def test_plain_streams_its_answer_as_content_token_by_token(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="plain",
        messages=QUESTION,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == len(PLAIN_REPLY.split()) and "".join(pieces) == PLAIN_REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(pieces)  # type: ignore[union-attr]


def test_cepo_streams_reasoning_first_then_the_answer(
    client: openai.OpenAI, backend: ScriptedBackend
) -> None:
    stream = client.chat.completions.create(
        model="cepo",
        messages=QUESTION,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"cepo": PUBLISHED},  # three plans a candidate, as the headings below name them
    )
    fields = []  # (field, text) in arrival order
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            for field in ("reasoning_content", "content"):
                if text := getattr(choice.delta, field, None):
                    fields.append((field, text))

    kinds = [field for field, _ in fields]
    assert kinds[0] == "reasoning_content" and kinds[-1] == "content"
    assert kinds.index("content") > max(i for i, kind in enumerate(kinds) if kind == "reasoning_content")
    assert "".join(text for field, text in fields if field == "content") == "The answer is 3"
    reasoning = "".join(text for field, text in fields if field == "reasoning_content")
    for heading in ("[Plan 1 · candidate 1]", "[Execution 3 · candidate 3]", "[Final answer · candidate 2]"):
        assert heading in reasoning
    # Two candidates agreeing settle the answer: the third is stopped, and is not scored.
    assert "[Stopped early: 2 candidates agreed on '3']" in reasoning
    assert "[Check · candidate 1] answer '3'; votes 2" in reasoning
    assert "[Check · candidate 3]" not in reasoning
    assert reasoning.endswith("[Chosen: candidate 1] (every candidate agrees)\n")
    assert usage is not None
    assert usage.completion_tokens == backend.produced_tokens
    answer_tokens = 4  # The answer is 3
    assert usage.completion_tokens_details.reasoning_tokens == usage.completion_tokens - answer_tokens  # type: ignore[union-attr]


def test_reasoning_in_a_non_streamed_reply_only_when_asked(client: openai.OpenAI) -> None:
    def create(**extra: object) -> object:
        return client.chat.completions.create(model="cepo", messages=QUESTION, extra_body=extra)  # type: ignore[arg-type]

    without = create().choices[0].message  # type: ignore[attr-defined]
    asked = create(include_reasoning=True).choices[0].message  # type: ignore[attr-defined]

    assert without.content == asked.content == "The answer is 3"
    assert getattr(without, "reasoning_content", None) is None
    assert asked.reasoning_content.startswith("[Plan 1 · candidate 1]\n1. Spell the word.")


def test_n_choices_each_from_its_own_run(client: openai.OpenAI, backend: ScriptedBackend) -> None:
    reply = client.chat.completions.create(model="plain", messages=QUESTION, n=3, seed=7)  # type: ignore[arg-type]

    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content == PLAIN_REPLY for c in reply.choices)
    assert reply.usage.completion_tokens == 3 * len(PLAIN_REPLY.split())  # type: ignore[union-attr]
    assert len({call.sampling.seed for call in backend.calls}) == 3  # no two choices share a seed


def test_openai_fields_map_onto_the_method_settings(client: openai.OpenAI, backend: ScriptedBackend) -> None:
    client.chat.completions.create(
        model="plain",
        messages=QUESTION,  # type: ignore[arg-type]
        temperature=0.3,
        top_p=0.9,
        max_tokens=4,
        seed=11,
        stop=["END"],
    )
    [call] = backend.calls
    assert call.sampling.model_dump(include={"temperature", "top_p", "max_tokens", "seed", "stop"}) == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 4,
        "seed": 11,
        "stop": ["END"],
    }


def test_a_cut_answer_finishes_with_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="plain", messages=QUESTION, max_completion_tokens=2)  # type: ignore[arg-type]
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("There are", "length")


def test_cepo_settings_per_request_and_stop_cuts_the_chosen_answer(
    client: openai.OpenAI, backend: ScriptedBackend
) -> None:
    reply = client.chat.completions.create(
        model="cepo",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=50,
        stop=" is",
        extra_body={"cepo": {"bestofn_n": 1, "max_candidates": 1, "plan": {"max_tokens": 30}}},
    )
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("The answer", "stop")
    plans = [c for c in backend.calls if re.search(re.escape(prompts.PLAN), c.last_message)]
    # 1 candidate of one plan; the request's stop cuts only the answer, a plan stops only at its own fence
    assert [(c.n, c.sampling.max_tokens, c.sampling.stop) for c in plans] == [(1, 30, ["```"])]
    final = [c for c in backend.calls if re.search(re.escape(prompts.FINAL), c.last_message)]
    assert [c.sampling.max_tokens for c in final] == [50]


# ------------------------------------------------------------------------------------------------ errors
def plain(**fields: object) -> dict[str, object]:
    return {"model": "plain", "messages": QUESTION, **fields}


def cepo(settings: dict[str, object]) -> dict[str, object]:
    return {"model": "cepo", "messages": QUESTION, "cepo": settings}


def asking(*messages: dict[str, object]) -> dict[str, object]:
    return {"model": "plain", "messages": list(messages)}


BAD_REQUESTS = [
    ("malformed JSON", '{"model": "plain", "messages": [', None),
    ("body not an object", "[1, 2]", None),
    ("no messages", asking(), "messages"),
    ("messages not a list", plain(messages="hi"), "messages"),
    ("message without role", asking({"content": "hi"}), "messages.0.role"),
    ("unknown role", asking({"role": "tool", "content": "hi"}), "messages.0.role"),
    ("image content", asking({"role": "user", "content": [{"type": "image_url"}]}), "messages.0.content"),
    ("ends with the assistant", asking({"role": "assistant", "content": "hi"}), "messages"),
    ("empty question", asking({"role": "user", "content": "  "}), "messages"),
    ("unknown model", plain(model="gpt-4o"), "model"),
    ("no model", {"messages": QUESTION}, "model"),
    ("temperature as text", plain(temperature="hot"), "temperature"),
    ("temperature too high", plain(temperature=3), "temperature"),
    ("n as text", plain(n="2"), "n"),
    ("n beyond the limit", plain(n=99), "n"),
    ("n zero", plain(n=0), "n"),
    ("max_tokens beyond the limit", plain(max_tokens=10**6), "max_tokens"),
    ("too many stops", plain(stop=list("abcde")), "stop"),
    ("stream not a bool", plain(stream="yes"), "stream"),
    (
        "include_usage not a bool",
        plain(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
    ),
    ("tools", plain(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
    ("logprobs", plain(logprobs=True), "logprobs"),
    ("json output", plain(response_format={"type": "json_object"}), "response_format"),
    ("unknown reasoning_effort", plain(reasoning_effort="extreme"), "reasoning_effort"),
    ("reasoning_effort not text", plain(reasoning_effort=3), "reasoning_effort"),
    (
        "reasoning not text",
        asking({"role": "assistant", "content": "3", "reasoning": 3}, QUESTION[0]),
        "messages.0.reasoning",
    ),
    ("unknown cepo setting", cepo({"bogus": 1}), "cepo"),
    ("cepo setting out of range", cepo({"plan": {"max_tokens": 0}}), "cepo"),
]


@pytest.mark.parametrize(
    ("body", "param"), [(b, p) for _, b, p in BAD_REQUESTS], ids=[n for n, _, _ in BAD_REQUESTS]
)
def test_bad_requests_get_a_400_with_an_openai_error_body(url: str, body: object, param: str | None) -> None:
    response = post(url, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"] and "Traceback" not in error["message"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # still serving


def test_bad_requests_are_counted_by_method_and_status(url: str) -> None:
    post(url, plain(n=99))
    post(url, plain(model="nope"))
    post(url, asking())  # unreadable: its method is not known either
    assert metric(url, 'cepo_requests_total{method="plain",status="400"}') == 1
    assert metric(url, 'cepo_requests_total{method="none",status="400"}') == 2


def test_unknown_routes_and_verbs_get_error_bodies(url: str) -> None:
    assert httpx.get(f"{url}/v1/nothing").json()["error"]["type"] == "not_found_error"
    response = httpx.get(f"{url}/v1/chat/completions")
    assert response.status_code == 405 and response.json()["error"]["message"]


def test_the_error_messages_say_what_to_fix(url: str) -> None:
    assert post(url, plain(model="gpt-4o")).json()["error"]["message"] == (
        "unknown model 'gpt-4o'; the models are the methods: plain, self-consistency, best-of-n, cepo"
    )
    assert post(url, plain(n=99)).json()["error"]["message"] == ("n is 99; this server allows at most 4")
    message = post(url, cepo({"bogus": 1})).json()["error"]["message"]
    assert message.startswith("invalid config: bogus: unknown setting")


@pytest.mark.parametrize(
    ("failure", "status", "kind"),
    [
        (GenerationError("prompt (9000 tokens) + max_tokens (256) exceeds the model's context"), 400,
         "invalid_request_error"),
        (BackendUnavailable("cannot reach http://upstream/v1"), 502, "server_error"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("stream", [False, True])
def test_a_backend_refusal_before_any_output_gets_its_status(
    failure: Exception, status: int, kind: str, stream: bool
) -> None:
    with live_server(ScriptedBackend([("", failure)])) as url:
        response = post(url, plain(stream=stream))
        assert response.status_code == status
        assert response.json()["error"]["type"] == kind
        assert str(failure) in response.json()["error"]["message"]


def test_a_failure_mid_stream_ends_the_stream_with_an_error_event() -> None:
    script = [*CEPO_SCRIPT[:2], (re.escape(prompts.FINAL), GenerationError("the upstream refused it"))]
    with live_server(ScriptedBackend(script)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model="cepo", messages=QUESTION, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError, match="the upstream refused it"):
            for _ in stream:
                pass
        assert metric(url, 'cepo_requests_total{method="cepo",status="400"}') == 1


# -------------------------------------------------------------------------------------------------- auth
def test_api_key_guards_the_api_but_not_health() -> None:
    with live_server(ScriptedBackend([], default="ok"), ServerSettings(api_key="s3cret")) as url:
        body = plain()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = post(url, body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/health").status_code == 200

        client = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert (
            client.chat.completions.create(model="plain", messages=QUESTION).choices[0].message.content
            == "ok"
        )  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).models.list()


# ------------------------------------------------------------------------------ queue and disconnects
class GatedBackend(Backend):
    """Says "ok" on every branch once the test calls `open`; records the branches it is told to cancel."""

    model = "gated"

    def __init__(self, first_word: str = "") -> None:
        self.first_word = first_word  # said at once, before the gate
        self.cancelled: list[int | None] = []
        self._lock = threading.Lock()
        self._open = False
        self._gates: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        with self._lock:
            self._open = True
            for loop, gate in self._gates:
                loop.call_soon_threadsafe(gate.set)

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        stream = GenerationStream(n, on_cancel=self.cancelled.append)
        loop, gate = asyncio.get_running_loop(), asyncio.Event()
        with self._lock:
            gate.set() if self._open else self._gates.append((loop, gate))

        async def answer() -> None:
            if self.first_word:
                stream.push([TokenEvent(i, self.first_word) for i in range(n)])
            await gate.wait()
            stream.push([TokenEvent(i, "ok") for i in range(n)])
            stream.push([BranchEnd(Branch(i, "ok", 1, "stop")) for i in range(n)])
            stream.end()

        task = loop.create_task(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return stream


@pytest.fixture
def gated() -> GatedBackend:
    return GatedBackend()


def health(url: str) -> dict[str, object]:
    return httpx.get(f"{url}/health").json()


def test_a_full_queue_answers_429_with_retry_after(gated: GatedBackend) -> None:
    settings = ServerSettings(max_concurrent=1, max_queued=1, retry_after_s=7)
    with live_server(gated, settings) as url:
        body = plain()
        responses: list[httpx.Response] = []
        first = threading.Thread(target=lambda: responses.append(post(url, body)))
        first.start()
        wait_until(lambda: health(url)["running"] == 1, what="first request running")
        second = threading.Thread(target=lambda: responses.append(post(url, body)))
        second.start()
        wait_until(lambda: health(url)["queued"] == 1, what="second request queued")

        refused = post(url, body)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert metric(url, "cepo_requests_queued") == 1 and metric(url, "cepo_requests_running") == 1

        gated.open()
        first.join(timeout=30)
        second.join(timeout=30)
        assert [r.status_code for r in responses] == [200, 200]
        assert health(url) == {"status": "ok", "model": "gated", "running": 0, "queued": 0}
        assert post(url, body).status_code == 200


def test_the_first_reasoning_token_reaches_the_client_while_the_run_goes_on() -> None:
    backend = GatedBackend(first_word="Thinking")
    with live_server(backend) as url:
        body = {"model": "cepo", "messages": QUESTION, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            chunks = (json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: {"))
            assert next(chunks)["choices"][0]["delta"] == {"role": "assistant"}
            first = next(chunks)["choices"][0]["delta"]  # read while every branch waits at the gate
            text = "[Plan 1 · candidate 1]\nThinking"
            assert first == {"reasoning": text, "reasoning_content": text}
            backend.open()
            assert [line for line in lines if line][-1] == "data: [DONE]"  # and the run goes on to its end


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_disconnects_cancels_its_run(gated: GatedBackend, stream: bool) -> None:
    with live_server(gated) as url:
        body = json.dumps(plain(stream=stream)).encode()
        with raw_post(url, body):
            wait_until(lambda: health(url)["running"] == 1, what="request running")
        wait_until(lambda: None in gated.cancelled, what="the backend stream cancelled")
        wait_until(lambda: health(url)["running"] == 0, what="slot freed")
        wait_until(
            lambda: metric(url, 'cepo_requests_total{method="plain",status="499"}') == 1, what="counted"
        )


# ----------------------------------------------------------------------------------------------- metrics
def test_metrics_count_requests_tokens_latency_and_first_token(client: openai.OpenAI, url: str) -> None:
    client.chat.completions.create(model="plain", messages=QUESTION)  # type: ignore[arg-type]
    list(client.chat.completions.create(model="cepo", messages=QUESTION, stream=True))  # type: ignore[arg-type]

    text = httpx.get(f"{url}/metrics").text
    assert "# TYPE cepo_requests_total counter" in text
    assert metric(url, 'cepo_requests_total{method="plain",status="200"}') == 1
    assert metric(url, 'cepo_requests_total{method="cepo",status="200"}') == 1
    assert metric(url, 'cepo_tokens_total{kind="completion",method="plain"}') == len(PLAIN_REPLY.split())
    assert metric(url, 'cepo_tokens_total{kind="reasoning",method="plain"}') == 0
    assert metric(url, 'cepo_tokens_total{kind="reasoning",method="cepo"}') > 0
    assert metric(url, 'cepo_request_duration_seconds_count{method="cepo"}') == 1
    assert metric(url, 'cepo_time_to_first_token_seconds_count{method="plain"}') == 1
    assert metric(url, "cepo_requests_queued") == 0
