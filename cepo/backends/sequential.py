"""A backend that makes every call one after another: how the reference CePO implementation ran.

Each branch of a request becomes its own single-branch call to the wrapped backend, and calls from all
requests take turns, so nothing ever decodes in parallel and nothing shares a prefill. `cepo bench method`
runs cepo on it to show what batching the branches buys.
"""

from __future__ import annotations

import asyncio
import dataclasses

from cepo.backends.base import Backend, Branch, BranchEnd, GenerationStream, Prompt, Sampling, TokenEvent
from cepo.tasks import detach


class SequentialBackend(Backend):
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.model = inner.model
        self._turn: asyncio.Lock | None = None  # made on first use, inside the caller's event loop

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        sampling = sampling or Sampling()
        if self._turn is None:
            self._turn = asyncio.Lock()
        relay = _Relay(self.inner, self._turn, prompt, n, sampling)
        detach(relay.run())
        return relay.out

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Relay:
    """Runs one request's branches as calls in turn, passing their events on under the right index."""

    def __init__(
        self, inner: Backend, turn: asyncio.Lock, prompt: Prompt, n: int, sampling: Sampling
    ) -> None:
        self.inner, self.turn, self.prompt, self.sampling = inner, turn, prompt, sampling
        self.out = GenerationStream(n, on_cancel=self.cancel)
        self.cancelled: set[int] = set()
        self.current: tuple[int, GenerationStream] | None = None

    def cancel(self, branch: int | None) -> None:
        self.cancelled.update(range(self.out.n) if branch is None else [branch])
        if self.current is not None and self.current[0] in self.cancelled:
            self.current[1].cancel()

    async def run(self) -> None:
        try:
            for index in range(self.out.n):
                await self._branch(index)
        except Exception as error:
            self.out.end(error)
        else:
            self.out.end()

    async def _branch(self, index: int) -> None:
        if index not in self.cancelled:
            async with self.turn:
                if index not in self.cancelled:  # it may have been cancelled while it waited
                    await self._call(index)
                    return
        self.out.push([BranchEnd(Branch(index, "", 0, "cancelled"))])

    async def _call(self, index: int) -> None:
        seed = None if self.sampling.seed is None else self.sampling.seed + index
        sampling = self.sampling.model_copy(update={"seed": seed})
        async with self.inner.stream(self.prompt, 1, sampling) as call:
            self.current = (index, call)
            async for event in call:
                if isinstance(event, TokenEvent):
                    self.out.push([TokenEvent(index, event.text, event.tokens)])
                else:
                    self.out.push([BranchEnd(dataclasses.replace(event.result, index=index))])
        self.current = None
        self.out.prompt_tokens += call.prompt_tokens  # every call reads the prompt again
        self.out.cached_tokens += call.cached_tokens
