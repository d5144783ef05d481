"""Errors as OpenAI's API reports them: a status and {"error": {"message", "type", "param", "code"}}.

Every failure leaves the server as such a body (never a traceback), and the server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from cepo.errors import BackendTimeout, BackendUnavailable, CepoError
from cepo.methods.settings import ConfigError
from cepo.server.schemas import ErrorBody, ErrorDetail

log = logging.getLogger("cepo.server")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


_PARAM_DEPTH = 3  # down to a message's field; deeper parts name union members (str, list[TextPart])


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> ErrorBody:
        kind = _TYPES.get(self.status, "server_error")
        return ErrorBody(error=ErrorDetail(message=self.message, type=kind, param=self.param, code=self.code))

    def response(self) -> JSONResponse:
        return JSONResponse(self.body().model_dump(), status_code=self.status, headers=self.headers)


def invalid(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> ApiError:
    """A 400 naming a field that failed validation (from pydantic's error list), as `messages.0.role`.

    Of a union's errors (a message's content is text or a list of parts) the deepest says most."""
    first = max(errors, key=lambda item: len(item["loc"]))
    location = [str(part) for part in first["loc"] if part not in prefix]
    param = ".".join(location[:_PARAM_DEPTH]) or None
    if first["type"] == "json_invalid":
        return ApiError(400, f"the body is not valid JSON: {first['ctx']['error']}", code="invalid_json")
    message = f"{param}: {first['msg']}" if param else first["msg"]
    return ApiError(400, message, param=param, code="invalid_value")


def from_cepo_error(error: CepoError) -> ApiError:
    """What a method run's failure means for the client: its request was wrong (400), or the backend
    behind the server failed (502, as a gateway whose upstream does) or stayed silent too long (504)."""
    message = f"{error} ({error.hint})" if error.hint else str(error)
    if isinstance(error, BackendTimeout):
        return ApiError(504, message, code="backend_timeout")
    if isinstance(error, BackendUnavailable):
        return ApiError(502, message, code="backend_unavailable")
    return ApiError(400, message, param="cepo" if isinstance(error, ConfigError) else None)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return ApiError(error.status_code, str(error.detail), headers=error.headers).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return invalid(error.errors(), ("body",)).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s", request.url.path)
        return ApiError(500, "internal server error; the server log has the details").response()
