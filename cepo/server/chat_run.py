"""A chat completion request, checked and ready to run: its method, settings and one run per choice.

How the OpenAI fields map onto the methods: `max_tokens` / `max_completion_tokens` is the answer's
budget (the `sample` step of plain, self-consistency and best-of-n; cepo's `final` step); `temperature`
is the sampling temperature of plain, self-consistency and best-of-n (cepo keeps its per-step ones);
`top_p` applies to every generation; `seed` is the runs' base seed; `stop` ends plain's answer in the
backend and cuts the other methods' chosen answer; `reasoning_effort` sets cepo's compute
(cepo.methods.effort). The `cepo` field overrides any setting on top. The server's ceilings hold for the
settings all of these make together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

from cepo.backends.base import Backend, GenerationStream, Message, Prompt, Sampling
from cepo.errors import CepoError
from cepo.methods import METHODS, configure, prepare, run
from cepo.methods.effort import EFFORTS, at_effort
from cepo.methods.method import Method
from cepo.methods.settings import ConfigError, Options, RunSettings, merge_options
from cepo.server.choices import ChoiceRun, Output, Step
from cepo.server.errors import ApiError, from_cepo_error
from cepo.server.schemas import ChatCompletionRequest
from cepo.server.settings import ServerSettings
from cepo.tasks import TaskSet

# Choice i's runs draw seeds from seed + i * stride; a run uses far fewer, so no two choices share one.
_SEED_STRIDE = 100_003

T = TypeVar("T")


@dataclass
class ChatRun:
    method: Method
    backend: Backend
    messages: list[Message]
    configs: list[RunSettings]  # one per choice
    stops: list[str]
    reasoning: bool  # send the reasoning text
    steps: bool = False  # send the method's events themselves (cepo's own event stream), not text

    @classmethod
    def from_request(
        cls, request: ChatCompletionRequest, backend: Backend, settings: ServerSettings, steps: bool = False
    ) -> ChatRun:
        """The run `request` asks for; an ApiError (400) naming the field when it cannot be served.
        `steps`: for cepo's own event stream, which carries one run (n = 1) and no text."""
        if request.model not in METHODS:
            raise ApiError(
                400,
                f"unknown model {request.model!r}; the models are the methods: {', '.join(METHODS)}",
                param="model",
                code="model_not_found",
            )
        if request.reasoning_effort is not None and request.reasoning_effort not in EFFORTS:
            raise ApiError(
                400,
                f"reasoning_effort is {request.reasoning_effort!r}; choose one of: {', '.join(EFFORTS)}",
                param="reasoning_effort",
            )
        if steps and request.n != 1:
            raise ApiError(400, f"n is {request.n}; cepo's event stream carries one run (n = 1)", param="n")
        effort = at_effort(request.model, request.reasoning_effort)
        method = METHODS[effort.method]
        _check_supported(request, settings)
        config = method_config(request, method, merge_options(settings.options, effort.options))
        _check_ceilings(config, request.n, settings)
        messages = [message.plain() for message in request.messages]
        try:
            prepare(method.name, backend, messages, config, None)
        except CepoError as error:
            raise ApiError(400, str(error), param="messages") from None
        sampling: dict[str, Any] = {}
        if request.top_p is not None:
            sampling["top_p"] = request.top_p
        if method.live_answer and request.stops:
            sampling["stop"] = request.stops
        if sampling:
            backend = WithSampling(backend, sampling)
        configs = [
            config
            if config.seed is None
            else config.model_copy(update={"seed": config.seed + i * _SEED_STRIDE})
            for i in range(request.n)
        ]
        reasoning = request.stream if request.include_reasoning is None else request.include_reasoning
        return cls(method, backend, messages, configs, request.stops, reasoning and not steps, steps)

    async def outputs(self) -> AsyncIterator[Output]:
        """Every choice's reasoning and answer text as it is produced (with `steps`, each event before
        them); each choice ends with `Ended`."""
        choices = [ChoiceRun(i, self.method, self.stops, self.reasoning) for i in range(len(self.configs))]
        runs = [run(self.method.name, self.backend, self.messages, config) for config in self.configs]
        async for index, event in merge(runs):
            if self.steps:
                yield Step(index, event)
            for output in choices[index].outputs(event):
                yield output


def method_config(request: ChatCompletionRequest, method: Method, base: Options) -> RunSettings:
    """`method`'s settings: `base` (the server's options, with the request's effort over them), then the
    request's OpenAI fields, then its `cepo` field."""
    step: dict[str, Any] = {}
    if request.answer_tokens is not None:
        step["max_tokens"] = request.answer_tokens
    if request.temperature is not None and method.request_temperature:
        step["temperature"] = request.temperature
    overrides: dict[str, Any] = {method.answer_step: step} if step else {}
    if request.seed is not None:
        overrides["seed"] = request.seed
    try:
        return configure(method, merge_options(merge_options(base, overrides), request.cepo))
    except ConfigError as error:
        raise from_cepo_error(error) from None


def _check_supported(request: ChatCompletionRequest, settings: ServerSettings) -> None:
    unsupported = {
        "tools": bool(request.tools),
        "logprobs": bool(request.logprobs),
        "response_format": (request.response_format or {}).get("type", "text") != "text",
    }
    for param, asked in unsupported.items():
        if asked:
            raise ApiError(
                400, f"{param} is not supported by cepo's methods", param=param, code="unsupported"
            )
    if request.n > settings.max_n:
        raise ApiError(400, f"n is {request.n}; this server allows at most {settings.max_n}", param="n")
    budget = request.answer_tokens
    if budget is not None and budget > settings.max_tokens:
        param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise ApiError(400, f"{param} is {budget}; this server allows at most {settings.max_tokens}", param)
    if len(request.stops) > settings.max_stops:
        raise ApiError(
            400, f"at most {settings.max_stops} stop strings, got {len(request.stops)}", param="stop"
        )


def _check_ceilings(config: RunSettings, n: int, settings: ServerSettings) -> None:
    """A 400 naming the field when `n` runs with `config` would pass one of the server's ceilings."""
    overrun = settings.overrun(config, n)
    if overrun is not None:
        param = "n" if overrun.setting is None else f"cepo.{overrun.setting}"
        raise ApiError(400, f"{param} {overrun.problem}", param=param)


class WithSampling(Backend):
    """`inner`, with some sampling settings of the request applied to every generation."""

    def __init__(self, inner: Backend, settings: dict[str, Any]) -> None:
        self.inner = inner
        self.model = inner.model
        self.settings = settings

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        return self.inner.stream(prompt, n, (sampling or Sampling()).model_copy(update=self.settings))


async def merge(iterators: list[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """The items of all `iterators` as they come, with the index of the one each came from. An error in
    one ends the whole; leaving early (or being cancelled) closes every one."""
    queue: asyncio.Queue[tuple[int, T] | Exception | None] = asyncio.Queue()

    async def pump(index: int, iterator: AsyncIterator[T]) -> None:
        try:
            async for item in iterator:
                queue.put_nowait((index, item))
        except Exception as error:
            queue.put_nowait(error)
        else:
            queue.put_nowait(None)

    pumps = TaskSet()
    for index, iterator in enumerate(iterators):
        pumps.spawn(pump(index, iterator))
    try:
        running = len(iterators)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        await pumps.cancel()
