"""Every error as an OpenAI-style error body: request errors, invalid bodies, unknown routes and crashes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from recagent.config import describe_validation_error
from recagent.serve.protocol import RequestError, StrictJSONResponse, error_body

log = logging.getLogger("recagent.serve")


def error_response(
    status: int,
    message: str,
    kind: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
) -> StrictJSONResponse:
    """An error body with the status's kind (and the headers a 401 or a 503 needs)."""
    kind = kind or {
        401: "authentication_error",
        404: "not_found_error",
        409: "conflict_error",
        413: "invalid_request_error",
        503: "overloaded_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Basic realm="recagent", charset="UTF-8"'}
    if status == 503:
        headers = {**(headers or {}), "Retry-After": "2"}
    return StrictJSONResponse(error_body(message, kind, param, code), status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line for an invalid body (at most five problems, locations without ``body``) and the first location."""
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            return f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})", None
    message, param = describe_validation_error(exc, drop=("body",), limit=5)
    return "invalid request: " + message, param


async def _request_error(request: Request, exc: RequestError) -> StrictJSONResponse:
    return error_response(exc.status, exc.message, param=exc.param, code=exc.code)


async def _invalid(request: Request, exc: RequestValidationError) -> StrictJSONResponse:
    message, param = validation_message(exc)
    return error_response(400, message, param=param)


async def _http(request: Request, exc: StarletteHTTPException) -> StrictJSONResponse:
    message = {
        404: f"no route {request.url.path}",
        405: f"method {request.method} not allowed on {request.url.path}",
    }
    return error_response(exc.status_code, message.get(exc.status_code, str(exc.detail)))


async def _crash(request: Request, exc: Exception) -> StrictJSONResponse:
    log.exception("unhandled error")
    return error_response(500, f"internal error ({type(exc).__name__}); the server keeps running")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error ``app`` meets with an error body."""
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _crash)
