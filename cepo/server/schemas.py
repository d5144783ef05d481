"""The OpenAI chat completions wire format, as far as cepo serves it.

Requests are validated strictly ("0.7" is not a temperature); fields of the OpenAI schema that cepo does
not use (user, presence_penalty, ...) are accepted and ignored, as vLLM does, so stock clients work.
Replies carry the reasoning beside `content` under both of its names: `reasoning` (vLLM since late
2025, Ollama, OpenRouter) and `reasoning_content` (DeepSeek, older vLLM); clients read either one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cepo.backends.base import Message
from cepo.methods.effort import EFFORTS
from cepo.methods.method import Method


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    # An earlier reply's reasoning, sent back under either name. Never part of the prompt: as the chat
    # templates of reasoning models do, a conversation carries the answers, not the thinking behind them.
    reasoning: str | None = None
    reasoning_content: str | None = None

    def plain(self) -> Message:
        """The message as the methods take it: a role they know and its text (without its reasoning)."""
        if isinstance(self.content, list):
            text = "".join(part.text for part in self.content)
        else:
            text = self.content or ""
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(description="the method: cepo, plain, self-consistency or best-of-n")
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    cepo: dict[str, Any] | None = Field(None, description="method settings, as in a config file")
    reasoning_effort: str | None = Field(
        None, description=f"cepo's compute, one of: {', '.join(EFFORTS)} (cepo.methods.effort)"
    )
    include_reasoning: bool | None = Field(
        None, description="send the reasoning; default: when streaming, not otherwise"
    )
    # Accepted so that a request using them is refused clearly, not served as if they were not there.
    tools: list[Any] | None = None
    logprobs: bool | None = None
    response_format: dict[str, Any] | None = None

    @property
    def answer_tokens(self) -> int | None:
        """The answer's token budget: max_completion_tokens, or the older max_tokens."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    """Every generated token is completion (kept or thrown away); all but the answer's are reasoning."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)
    completion_tokens_details: CompletionTokensDetails = Field(default_factory=CompletionTokensDetails)

    @classmethod
    def of(cls, prompt: int, cached: int, completion: int, reasoning: int) -> Usage:
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning),
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage.of(
            self.prompt_tokens + other.prompt_tokens,
            self.prompt_tokens_details.cached_tokens + other.prompt_tokens_details.cached_tokens,
            self.completion_tokens + other.completion_tokens,
            self.completion_tokens_details.reasoning_tokens
            + other.completion_tokens_details.reasoning_tokens,
        )


FinishReason = Literal["stop", "length"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning: str | None = None
    reasoning_content: str | None = None  # the same text as `reasoning`, under its older name


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None  # the same text as `reasoning`, under its older name


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "cepo"
    root: str = Field(description="the backend model the method runs on")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class MethodCard(BaseModel):
    """What a client needs to show a method's events: its stages' headings, and which it numbers."""

    name: str
    summary: str
    answer_stage: str
    live_answer: bool
    stage_titles: dict[str, str] = Field(description="a stage not listed is titled by its capitalized name")
    numbered_stages: list[str]

    @classmethod
    def of(cls, method: Method) -> MethodCard:
        return cls(
            name=method.name,
            summary=method.summary,
            answer_stage=method.answer_stage,
            live_answer=method.live_answer,
            stage_titles=dict(method.stage_titles),
            numbered_stages=sorted(method.numbered_stages),
        )


class EffortCard(BaseModel):
    name: str = Field(description="a value of reasoning_effort")
    method: str = Field(description="the method it runs")


class MethodList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MethodCard]
    efforts: list[EffortCard] = Field(description="the values of reasoning_effort, least compute first")
    effort_method: str = Field(description="the method whose compute reasoning_effort sets")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
