"""The HTTP API: OpenAI's chat completions, with the reasoning methods as the models; cepo's own stream of
a run's events (/v1/cepo/runs) and its methods' declarations (/v1/cepo/methods); and at / a page that
shows a run's branches as they grow, built on those two.

Stateless: every request carries its whole conversation and settings, so any number of these servers
can sit behind a load balancer, in front of one shared backend.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from cepo import __version__
from cepo.backends.base import Backend
from cepo.methods import METHODS
from cepo.methods.effort import EFFORT_METHOD, EFFORTS
from cepo.server.admission import Admission, QueueFull
from cepo.server.chat_run import ChatRun
from cepo.server.choices import Output, shows_text
from cepo.server.errors import ApiError, install_handlers, invalid
from cepo.server.metrics import CONTENT_TYPE, HasStats, Metrics
from cepo.server.running import CLIENT_GONE, RunningChat
from cepo.server.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    EffortCard,
    ErrorBody,
    MethodCard,
    MethodList,
    ModelCard,
    ModelList,
)
from cepo.server.settings import ServerSettings
from cepo.server.sse import ChunkWriter, CompletionBuilder, EventWriter, StreamWriter

WEB = Path(__file__).parent / "web"  # the page at /: static files, no build step

log = logging.getLogger("cepo.server")
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
    }
}
_ERROR_STATUSES = {
    400: "malformed or unservable request",
    401: "missing or wrong API key",
    408: "the body took longer than the server's body timeout",
    413: "body over the server's limit",
    429: "too many requests running and waiting",
    502: "the backend failed",
    504: "the backend stayed silent too long",
}
_RUNS = (
    "one `data:` line per method event (cepo.methods.events), the last `finished`; on failure `event: error`"
)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "the completion; with stream, its chunks"},
    **{status: {"model": ErrorBody, "description": text} for status, text in _ERROR_STATUSES.items()},
}


def create_app(backend: Backend, settings: ServerSettings | None = None) -> FastAPI:
    """The API serving every method on `backend`. The caller owns the backend (and closes it)."""
    settings = settings or ServerSettings()
    admission = Admission(settings.max_concurrent, settings.max_queued)
    metrics = Metrics(admission, backend if isinstance(backend, HasStats) else None)
    started = int(time.time())
    app = FastAPI(title="cepo", version=__version__, description=__doc__)
    install_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            FastAPI.openapi(app)["components"]["schemas"].update(_request_schemas())
        return app.openapi_schema  # type: ignore[return-value]  # set just above

    app.openapi = openapi  # type: ignore[method-assign]

    def authorized(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
            raise ApiError(
                401,
                "missing or wrong API key: send it as 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": backend.model,
            "running": admission.running,
            "queued": admission.queued,
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=name, created=started, root=backend.model) for name in METHODS])

    async def admit(request: Request, steps: bool) -> tuple[ChatCompletionRequest, RunningChat] | Response:
        """The request's run, started (or waiting for its slot); or the response refusing it."""
        arrived = time.perf_counter()
        method = "none"  # the metrics label of a request that names no method
        try:
            raw = await _read_body(request, settings)
            body = ChatCompletionRequest.model_validate_json(raw)
            method = body.model if body.model in METHODS else method
            chat = ChatRun.from_request(body, backend, settings, steps)
            ticket = admission.reserve()
        except ValidationError as error:
            return _refused(invalid(error.errors()), metrics, method, arrived)
        except ApiError as error:
            return _refused(error, metrics, method, arrived)
        except QueueFull:
            busy = ApiError(
                429,
                f"the server is busy: {admission.running} requests running and {admission.queued} waiting",
                code="queue_full",
                headers={"Retry-After": str(settings.retry_after_s)},
            )
            return _refused(busy, metrics, method, arrived)
        except ClientDisconnect:  # while it sent its body: not a failure of the server's, nor a traceback
            log.warning("a client (%s) went away before its request body was all there", _address(request))
            metrics.finished(method, CLIENT_GONE, time.perf_counter() - arrived)
            return Response(status_code=CLIENT_GONE)  # nobody reads it
        return body, RunningChat(chat, ticket, request, metrics, arrived)

    @app.post(
        "/v1/chat/completions",
        dependencies=[Depends(authorized)],
        openapi_extra=_REQUEST_BODY,
        response_model=ChatCompletion,
        responses=_RESPONSES,
    )
    async def chat_completions(request: Request) -> Response:
        admitted = await admit(request, steps=False)
        if isinstance(admitted, Response):
            return admitted
        body, running = admitted
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return await _stream(running, ChunkWriter(body.model, include_usage))
        return await _complete(running, body)

    @app.post(
        "/v1/cepo/runs",
        dependencies=[Depends(authorized)],
        openapi_extra=_REQUEST_BODY,
        responses={**_RESPONSES, 200: {"content": {"text/event-stream": {}}, "description": _RUNS}},
    )
    async def cepo_runs(request: Request) -> Response:
        """One run of the method with every event it emits, every branch's tokens included: the chat
        completion request's fields (`n` must be 1), streamed as server-sent events."""
        admitted = await admit(request, steps=True)
        if isinstance(admitted, Response):
            return admitted
        return await _stream(admitted[1], EventWriter())

    @app.get("/v1/cepo/methods", dependencies=[Depends(authorized)])
    async def cepo_methods() -> MethodList:
        return MethodList(
            data=[MethodCard.of(method) for method in METHODS.values()],
            efforts=[EffortCard(name=name, method=effort.method) for name, effort in EFFORTS.items()],
            effort_method=EFFORT_METHOD,
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The page: open to all, as it holds no data; every API call it makes carries the key."""
        return FileResponse(WEB / "index.html")

    app.mount("/web", StaticFiles(directory=WEB), name="web")

    return app


def _request_schemas() -> dict[str, Any]:
    """The request body's schema and the models it uses, as OpenAPI components; `model` lists the methods."""
    schema = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["properties"]["model"]["enum"] = list(METHODS)
    return {**schema.pop("$defs"), "ChatCompletionRequest": schema}


async def _read_body(request: Request, settings: ServerSettings) -> bytes:
    """The body, refused with a 413 once over the size limit: by its declared length before any of it is
    read, else (a chunked body declares none) as soon as the bytes received pass the limit. A 408 once it
    takes longer than the body timeout, so that stalled uploads do not hold connections for good. A client
    that goes away meanwhile raises ClientDisconnect."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)

    async def received() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
        return bytes(body)

    try:
        return await asyncio.wait_for(received(), settings.body_timeout_s)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
        raise ApiError(
            408,
            f"the body did not arrive within {settings.body_timeout_s:g} s",
            code="body_timeout",
            headers={"Connection": "close"},  # what is left of the body would keep the connection
        ) from None


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown address"


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the body is over this server's limit of {limit} bytes", code="body_too_large")


def _refused(error: ApiError, metrics: Metrics, method: str, arrived: float) -> Response:
    metrics.finished(method, error.status, time.perf_counter() - arrived)
    return error.response()


async def _complete(running: RunningChat, body: ChatCompletionRequest) -> Response:
    reply = CompletionBuilder(body.model, body.n)
    try:
        while (output := await running.next()) is not None:
            reply.add(output)
    except ApiError as error:
        return error.response()
    if running.status == CLIENT_GONE:
        return Response(status_code=CLIENT_GONE)  # nobody reads it
    completion = reply.build(running.usage, running.chat.reasoning)
    return Response(completion.model_dump_json(exclude_none=True), media_type="application/json")


async def _stream(running: RunningChat, writer: StreamWriter) -> Response:
    """Commits to a 200 stream only once the run shows text (or ends without): a request that fails
    before (the prompt does not fit, the backend refuses it) gets a proper error status instead."""
    held: list[Output] = []
    try:
        while (output := await running.next()) is not None:
            held.append(output)
            if shows_text(output):
                break
    except ApiError as error:
        return error.response()
    if not held:
        return Response(status_code=CLIENT_GONE)

    async def events() -> AsyncIterator[str]:
        try:
            for output in held:
                for item in writer.events(output):
                    yield item
            while (output := await running.next()) is not None:
                for item in writer.events(output):
                    yield item
            for item in writer.end(running.usage):
                yield item
        except ApiError as error:
            for item in writer.error(error):
                yield item
        finally:
            await running.cancel()  # the client went away mid-stream: stop the branches now

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy may hold events back
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
