"""Today's reasoning conventions, through the official `openai` client on a scripted backend: the reasoning
under both its names, either name sent back and left out of the prompt; `reasoning_effort` as compute."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from live_server import live_server
from scripted_backend import ScriptedBackend
from test_methods_cepo import FINAL, PLAN
from test_server_api import CEPO_SCRIPT, PLAIN_REPLY, QUESTION

from cepo.methods.effort import EFFORTS


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend(CEPO_SCRIPT, default=PLAIN_REPLY)


@pytest.fixture
def client(backend: ScriptedBackend) -> Iterator[openai.OpenAI]:
    with live_server(backend) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


# ------------------------------------------------------------------------------------ both names
def test_streamed_reasoning_goes_out_under_both_names(client: openai.OpenAI) -> None:
    pieces = []
    for chunk in client.chat.completions.create(model="cepo", messages=QUESTION, stream=True):  # type: ignore[arg-type]
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            assert extra.get("reasoning") == extra.get("reasoning_content")
            pieces.append(extra.get("reasoning") or "")
    reasoning = "".join(pieces)
    assert reasoning.startswith("[Plan 1 · candidate 1]") and "[Chosen: candidate 1]" in reasoning


def test_a_non_streamed_reply_carries_both_names_when_asked(client: openai.OpenAI) -> None:
    def message(**extra: object) -> dict[str, object]:
        reply = client.chat.completions.create(model="cepo", messages=QUESTION, extra_body=extra)  # type: ignore[arg-type]
        return reply.choices[0].message.model_extra or {}

    asked = message(include_reasoning=True)
    assert asked["reasoning"] == asked["reasoning_content"]
    assert str(asked["reasoning"]).startswith("[Plan 1 · candidate 1]\n1. Spell the word.")
    assert "reasoning" not in message() and "reasoning_content" not in message()


@pytest.mark.parametrize("name", ["reasoning", "reasoning_content"])
def test_reasoning_sent_back_under_either_name_stays_out_of_the_prompt(
    client: openai.OpenAI, backend: ScriptedBackend, name: str
) -> None:
    conversation = [
        *QUESTION,
        {"role": "assistant", "content": "3", name: "[Plan 1 · candidate 1] secret working"},
        {"role": "user", "content": "And in raspberry?"},
    ]
    reply = client.chat.completions.create(model="plain", messages=conversation)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == PLAIN_REPLY
    [call] = backend.calls
    assert call.prompt == [
        QUESTION[0],
        {"role": "assistant", "content": "3"},
        {"role": "user", "content": "And in raspberry?"},
    ]


# ----------------------------------------------------------------------------------- reasoning_effort
def finals(backend: ScriptedBackend) -> int:
    """cepo's candidates: each ends with one final answer."""
    return len(backend.calls_to(FINAL))


# The script's answers agree; with nothing stopping early, medium and high run both their waves.
NEVER_STOP = {"cepo": {"stop_when": "never"}}


@pytest.mark.parametrize(("effort", "candidates"), [("minimal", 1), ("low", 1), ("medium", 6), ("high", 10)])
def test_reasoning_effort_sets_cepos_candidates(
    client: openai.OpenAI, backend: ScriptedBackend, effort: str, candidates: int
) -> None:
    reply = client.chat.completions.create(
        model="cepo",
        messages=QUESTION,  # type: ignore[arg-type]
        reasoning_effort=effort,  # type: ignore[arg-type]
        extra_body=NEVER_STOP,
    )
    assert reply.choices[0].message.content == "The answer is 3"
    assert finals(backend) == candidates
    assert reply.model == "cepo"


def test_no_effort_answers_with_plain(client: openai.OpenAI, backend: ScriptedBackend) -> None:
    reply = client.chat.completions.create(model="cepo", messages=QUESTION, reasoning_effort="none")  # type: ignore[arg-type]
    assert reply.choices[0].message.content == PLAIN_REPLY
    [call] = backend.calls
    assert call.prompt == QUESTION and not backend.calls_to(PLAN)


def test_an_explicit_cepo_field_overrides_the_effort(client: openai.OpenAI, backend: ScriptedBackend) -> None:
    client.chat.completions.create(
        model="cepo",
        messages=QUESTION,  # type: ignore[arg-type]
        reasoning_effort="high",
        extra_body={"cepo": {**NEVER_STOP["cepo"], "bestofn_n": 2}},
    )
    assert finals(backend) == 4  # two waves of two


def test_an_effort_leaves_the_other_methods_as_asked(client: openai.OpenAI, backend: ScriptedBackend) -> None:
    client.chat.completions.create(model="self-consistency", messages=QUESTION, reasoning_effort="none")  # type: ignore[arg-type]
    assert [call.n for call in backend.calls] == [5]  # its k samples, not plain's one


def test_an_unknown_effort_is_a_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="cepo", messages=QUESTION, reasoning_effort="extreme")  # type: ignore[arg-type]
    assert refused.value.param == "reasoning_effort"  # type: ignore[attr-defined]
    assert refused.value.message.endswith(
        f"reasoning_effort is 'extreme'; choose one of: {', '.join(EFFORTS)}"
    )
