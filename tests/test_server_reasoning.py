"""Today's reasoning conventions, through the official `openai` client on a scripted backend: the reasoning
under both its names, either name sent back and left out of the prompt."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from live_server import live_server
from scripted_backend import ScriptedBackend
from test_server_api import CEPO_SCRIPT, PLAIN_REPLY, QUESTION


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
