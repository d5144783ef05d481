"""Any OpenAI-compatible server as a backend: vLLM, SGLang, llama-server, Ollama or a hosted API.

Chat messages go to the chat completions endpoint; a `str` prompt goes to the text completions endpoint
as raw text, so the server applies no chat template to it. Every request streams, asking for usage
(`stream_options.include_usage`) so token counts are the server's own.

Branches come from one request with `n` when the server honours it. A server that refuses `n > 1`
(llama-server answers 400) or silently returns fewer choices gets `n` concurrent single requests instead,
branch i sampling with seed + i, and the backend remembers that for its later calls.

Retries with backoff on 429, 5xx, timeouts and failed connections are the `openai` client's own, and
bounded: `max_retries` of them, each after at most the server's Retry-After (up to two minutes) or the
client's backoff (up to 8 s). A server that never answers fails after `max_retries + 1` silent `timeout`s.

Once an answer streams, nothing is retried (its tokens have gone out already): an answer the server breaks
off (the connection drops, the stream ends before every choice has its finish reason, or stays silent for
`timeout` seconds), garbles (an event that is not JSON, or not a completion chunk) or fails with an error
event ends the request with BackendUnavailable (BackendTimeout when silent), naming the server. Choices past
the `n` asked for are ignored; choices a server leaves out are asked for again one by one, and a single
request that answers no choice is an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import openai
from pydantic import BaseModel, ValidationError

from cepo.backends.base import (
    Backend,
    Branch,
    BranchEnd,
    FinishReason,
    GenerationStream,
    Prompt,
    Sampling,
    Timings,
    TokenEvent,
)
from cepo.errors import BackendTimeout, BackendUnavailable, CepoError, GenerationError
from cepo.tasks import TaskSet, detach

# Local servers mostly ignore the key, but the client insists on one.
_NO_API_KEY = "not-needed"


class RemoteBackend(Backend):
    """Generates on an OpenAI-compatible server at `base_url` (e.g. http://127.0.0.1:8000/v1)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
    ) -> None:
        """`timeout`: seconds the server may stay silent, per attempt; `max_retries`: on 429, 5xx and
        dropped connections, with the client's exponential backoff (honouring Retry-After)."""
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.honours_n = True  # until the server shows otherwise
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or _NO_API_KEY, timeout=timeout, max_retries=max_retries
        )

    def stream(self, prompt: Prompt, n: int = 1, sampling: Sampling | None = None) -> GenerationStream:
        call = _UpstreamCall(self, prompt, sampling or Sampling(), n)
        detach(call.run())
        return call.stream

    async def list_models(self) -> list[str]:
        """The ids of the models the server offers."""
        try:
            page = await self._client.models.list()
        except openai.APIError as error:
            raise self.explain(error) from error
        return [model.id for model in page.data]

    async def aclose(self) -> None:
        await self._client.close()

    def open_stream(
        self, prompt: Prompt, sampling: Sampling, n: int, seed: int | None
    ) -> Awaitable[openai.AsyncStream[Any]]:
        """Start one streamed HTTP request for `n` choices; awaiting it gives the server's chunk stream."""
        params: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "extra_body": _extra_body(sampling),
        }
        if sampling.stop:
            params["stop"] = sampling.stop
        if seed is not None:
            params["seed"] = seed
        if isinstance(prompt, str):
            return self._client.completions.create(prompt=prompt, **params)
        return self._client.chat.completions.create(messages=prompt, **params)  # type: ignore[arg-type]

    def explain(self, error: openai.APIError) -> CepoError:
        """A request that failed before its answer began (after the client's retries), as an error a user
        can act on."""
        if isinstance(error, openai.APITimeoutError):
            attempts = f" in {self.max_retries + 1} attempts" if self.max_retries else ""
            return BackendTimeout(
                f"{self.base_url} did not answer within {self.timeout:g} s{attempts}",
                hint=f"{self._check_server}, or allow it a longer timeout",
            )
        if isinstance(error, openai.APIConnectionError):
            reason = _cause(error)
            return BackendUnavailable(f"cannot reach {self.base_url}: {reason}", hint=self._check_server)
        if isinstance(error, openai.APIStatusError):
            message = _server_message(error)
            if error.status_code == 429:
                return BackendUnavailable(
                    f"{self.base_url} still rate-limits after {self.max_retries} retries: {message}",
                    hint="send it fewer requests at once (fewer candidates or plans), or raise its limits",
                )
            if error.status_code >= 500:
                return BackendUnavailable(
                    f"{self.base_url} kept failing after {self.max_retries} retries: {message}",
                    hint=self._check_server,
                )
            return GenerationError(f"{self.base_url} refused the request: {message}")
        return BackendUnavailable(f"{self.base_url} failed: {error}", hint=self._check_server)

    def broken_off(self, error: openai.APIError | ValueError) -> CepoError:
        """An answer that failed while it streamed, as an error a user can act on."""
        if isinstance(error, openai.APITimeoutError):
            return BackendTimeout(
                f"{self.base_url} went silent mid-answer for {self.timeout:g} s",
                hint=f"{self._check_server}, or allow it a longer timeout",
            )
        if isinstance(error, openai.APIConnectionError):
            what = f"dropped the connection mid-answer: {_cause(error)}"
        elif isinstance(error, ValidationError):
            where = ".".join(str(part) for part in error.errors()[0]["loc"])
            what = f"sent a chunk that is not a completion chunk ({where}: {error.errors()[0]['msg']})"
        elif isinstance(error, ValueError):
            what = f"sent an event that is not JSON ({error})"
        else:
            what = f"failed mid-answer: {error.message}"
        return BackendUnavailable(f"{self.base_url} {what}", hint=self._check_server)

    @property
    def _check_server(self) -> str:
        return f"check that the server at {self.base_url} is up and serves model {self.model!r}"


def _extra_body(sampling: Sampling) -> dict[str, Any]:
    """Samplers outside the OpenAI schema, which vLLM, SGLang and llama-server read from the body.

    Sent only when the caller set them, so hosted APIs that reject unknown fields still work.
    """
    extra: dict[str, Any] = {}
    for name in ("top_k", "min_p"):
        if name in sampling.model_fields_set:
            extra[name] = getattr(sampling, name)
    if sampling.ignore_eos:
        extra["ignore_eos"] = True
    return extra


def _server_message(error: openai.APIStatusError) -> str:
    """The server's own words: OpenAI-style servers put them in {"error": {"message": ...}}."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return error.message


def _cause(error: openai.APIConnectionError) -> str:
    """What broke the connection: the client itself only says "Connection error."."""
    return str(error.__cause__ or "") or error.message


def _finish_reason(server_reason: str) -> FinishReason:
    return "length" if server_reason == "length" else "stop"


class _Delta(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    """What cepo reads of one choice of a chunk: a chat `delta` or a text completion's `text`."""

    index: int
    text: str | None = None
    delta: _Delta | None = None
    finish_reason: str | None = None

    @property
    def new_text(self) -> str:
        return self.text or (self.delta.content if self.delta else None) or ""


class _Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class _Chunk(BaseModel):
    """What cepo reads of a streamed chunk, checked: the client builds chunks without validating them."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None


@dataclass
class _BranchState:
    """What one branch has received so far."""

    parts: list[str] = field(default_factory=list)
    chunks: int = 0
    answered: bool = False  # the server sent anything at all for this branch
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: FinishReason | None = None
    ended: bool = False


class _UpstreamCall:
    """One call to `stream`: the HTTP streams serving its branches, and their cancellation."""

    def __init__(self, backend: RemoteBackend, prompt: Prompt, sampling: Sampling, n: int) -> None:
        self._backend = backend
        self._prompt = prompt
        self._sampling = sampling
        self._branches = [_BranchState() for _ in range(n)]
        self._http_streams: dict[asyncio.Task[None], list[int]] = {}  # each with the branches it feeds
        self.stream = GenerationStream(n, self.cancel)

    async def run(self) -> None:
        try:
            await self._generate()
        except openai.APIError as error:
            self.stream.end(self._backend.explain(error))
        except Exception as error:  # a broken answer's CepoError (or a bug) must reach the caller
            self.stream.end(error)
        else:
            self.stream.end()

    async def _generate(self) -> None:
        if len(self._open_branches()) > 1 and self._backend.honours_n:
            try:
                await self._serve([self._open_branches()])
            except openai.BadRequestError:
                # llama-server: "Only one completion choice is allowed". Were the 400 about anything else,
                # the single requests fail the same way, and the server keeps its credit.
                await self._serve_singly()
                self._backend.honours_n = False
                return
            if self._open_branches():
                self._backend.honours_n = False  # the server silently answered fewer choices
        await self._serve_singly()

    def cancel(self, branch: int | None) -> None:
        for index in range(len(self._branches)) if branch is None else [branch]:
            self._end(index, cancelled=True)
        for task, branches in self._http_streams.items():
            if all(self._branches[index].ended for index in branches):
                task.cancel()  # closes the response: the server stops generating

    def _open_branches(self) -> list[int]:
        return [index for index, state in enumerate(self._branches) if not state.ended]

    async def _serve_singly(self) -> None:
        await self._serve([[index] for index in self._open_branches()])

    async def _serve(self, groups: list[list[int]]) -> None:
        """Run one HTTP stream per group of branches at once; the first failure cancels the others."""
        streams = TaskSet()
        tasks = {streams.spawn(self._http_stream(group)): group for group in groups}
        self._http_streams.update(tasks)
        try:
            await streams.join()
        finally:
            for task in tasks:
                del self._http_streams[task]

    async def _http_stream(self, group: list[int]) -> None:
        """Forward one HTTP stream's deltas to the branches in `group` (its choice i feeds group[i])."""
        seed = self._sampling.seed
        if len(group) == 1 and seed is not None:
            seed += group[0]
        usage = None
        async with await self._backend.open_stream(self._prompt, self._sampling, len(group), seed) as chunks:
            try:
                async for raw in chunks:
                    usage = self._read(_Chunk.model_validate(raw, from_attributes=True), group) or usage
            except (openai.APIError, ValueError) as error:  # ValueError: not JSON, or not a chunk
                raise self._backend.broken_off(error) from error
        self._settle(group, usage)

    def _read(self, chunk: _Chunk, group: list[int]) -> _Usage | None:
        """Forward one chunk's deltas; return its usage, if it has any."""
        if chunk.usage:
            self.stream.prompt_tokens = chunk.usage.prompt_tokens
        for choice in chunk.choices or []:
            if 0 <= choice.index < len(group):  # choices past those asked for go unread
                self._receive(group[choice.index], choice.new_text, choice.finish_reason, len(group))
        return chunk.usage

    def _settle(self, group: list[int], usage: _Usage | None) -> None:
        """At the end of a stream, end its branches; each must have had its finish reason, unless a shared
        stream never began it (`_generate` then asks for it alone)."""
        url = self._backend.base_url
        for index in group:
            state = self._branches[index]
            if state.ended:
                continue
            if state.finish_reason is not None:  # a lone branch, whose tokens usage counts
                self._end(index, tokens=usage.completion_tokens if usage else None)
            elif state.answered:
                raise BackendUnavailable(
                    f"{url} ended the stream before choice {group.index(index)} finished",
                    hint=f"the server broke its answer off: check the log of the server at {url}",
                )
            elif len(group) == 1:
                raise BackendUnavailable(
                    f"{url} answered no choice", hint=f"check the log of the server at {url}"
                )

    def _receive(self, index: int, text: str, finish_reason: str | None, group_size: int) -> None:
        state = self._branches[index]
        if state.ended:
            return  # a cancelled branch of a shared stream: drop its deltas
        state.answered = True
        now = time.perf_counter()
        if text:
            state.parts.append(text)
            state.chunks += 1
            state.first_token_at = state.first_token_at or now
            self.stream.push([TokenEvent(index, text)])
        if finish_reason:
            state.finish_reason = _finish_reason(finish_reason)
            state.finished_at = now
            if group_size > 1:  # no usage to wait for: per-branch counts are the chunks
                self._end(index)

    def _end(self, index: int, tokens: int | None = None, cancelled: bool = False) -> None:
        state = self._branches[index]
        if state.ended:
            return
        state.ended = True
        timings = Timings()
        if state.first_token_at is not None:
            finished_at = state.finished_at or time.perf_counter()
            timings.first_token_s = state.first_token_at - self.stream.submitted_at
            timings.decode_s = finished_at - state.first_token_at
        finish_reason = state.finish_reason or ("cancelled" if cancelled else "stop")
        text = "".join(state.parts)
        branch = Branch(index, text, state.chunks if tokens is None else tokens, finish_reason, timings)
        self.stream.push([BranchEnd(branch)])
