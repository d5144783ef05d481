"""Outputs of a running chat as server-sent `chat.completion.chunk` events, as one `chat.completion`, and
as cepo's own stream of the method's events.

A chat stream: per choice a first chunk with the role, then one chunk per piece of text (reasoning, under
both its names, or content) as it is produced, a chunk with the finish reason; then, when asked for, a
chunk with no choices and the usage; then `data: [DONE]`. An error after the stream has begun goes out as
a chunk holding only {"error": ...}, as OpenAI does, and the stream ends.

cepo's event stream (/v1/cepo/runs): one `data:` line per method event, `event.model_dump_json()` (read it
back with `cepo.methods.events.EventAdapter`), the last one `finished`; an error after it has begun is an
`event: error` whose data is {"error": ...}.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol

from pydantic import BaseModel

from cepo.server.choices import Ended, Output, Step, Text
from cepo.server.errors import ApiError
from cepo.server.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
)

DONE = "data: [DONE]\n\n"


def event(payload: BaseModel) -> str:
    return f"data: {payload.model_dump_json(exclude_none=True)}\n\n"


class StreamWriter(Protocol):
    """What a stream's wire format makes of a running chat's outputs, its end and its failure."""

    def events(self, output: Output) -> list[str]: ...
    def end(self, usage: Usage) -> list[str]: ...
    def error(self, error: ApiError) -> list[str]: ...


def delta(text: Text) -> Delta:
    if text.field == "content":
        return Delta(content=text.text)
    return Delta(reasoning=text.text, reasoning_content=text.text)


class Reply:
    """What the chunks or the completion share: the reply's id, time and model."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model


class ChunkWriter(Reply):
    def __init__(self, model: str, include_usage: bool) -> None:
        super().__init__(model)
        self.include_usage = include_usage
        self._begun: set[int] = set()  # choices whose role chunk went out

    def events(self, output: Output) -> list[str]:
        out = []
        if output.choice not in self._begun:
            self._begun.add(output.choice)
            out.append(self._chunk(ChunkChoice(index=output.choice, delta=Delta(role="assistant"))))
        if isinstance(output, Text):
            out.append(self._chunk(ChunkChoice(index=output.choice, delta=delta(output))))
        elif isinstance(output, Ended):
            choice = ChunkChoice(index=output.choice, delta=Delta(), finish_reason=output.finish_reason)
            out.append(self._chunk(choice))
        return out

    def end(self, usage: Usage) -> list[str]:
        return [self._chunk(usage=usage), DONE] if self.include_usage else [DONE]

    def error(self, error: ApiError) -> list[str]:
        return [event(error.body()), DONE]

    def _chunk(self, *choices: ChunkChoice, usage: Usage | None = None) -> str:
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=list(choices), usage=usage
        )
        return event(chunk)


class CompletionBuilder(Reply):
    """Gathers every output of a chat run into one non-streamed reply."""

    def __init__(self, model: str, choices: int) -> None:
        super().__init__(model)
        self._texts: list[dict[str, list[str]]] = [{"content": [], "reasoning": []} for _ in range(choices)]
        self._ends: dict[int, Ended] = {}

    def add(self, output: Output) -> None:
        if isinstance(output, Text):
            self._texts[output.choice][output.field].append(output.text)
        elif isinstance(output, Ended):
            self._ends[output.choice] = output

    def build(self, usage: Usage, reasoning: bool) -> ChatCompletion:
        choices = []
        for index, texts in enumerate(self._texts):
            thought = "".join(texts["reasoning"]) if reasoning else None
            message = AssistantMessage(
                content="".join(texts["content"]), reasoning=thought, reasoning_content=thought
            )
            choices.append(
                Choice(index=index, message=message, finish_reason=self._ends[index].finish_reason)
            )
        return ChatCompletion(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )


class EventWriter:
    """cepo's own stream: the method's events as they are; the text and usage outputs are the chat
    stream's."""

    def events(self, output: Output) -> list[str]:
        return [f"data: {output.event.model_dump_json()}\n\n"] if isinstance(output, Step) else []

    def end(self, usage: Usage) -> list[str]:
        return []  # the `finished` event, already sent, ends the stream

    def error(self, error: ApiError) -> list[str]:
        return [f"event: error\ndata: {error.body().model_dump_json(exclude_none=True)}\n\n"]
