"""Service errors and the one table from error kind to HTTP status and body.

Routes and runtimes raise these; handlers installed by `install_error_handlers` render them.
Anything else becomes a generic 500 whose traceback goes to the log and never to the client.
`error_responses` documents the same table in OpenAPI, so /docs cannot drift from what is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.schemas import ErrorBody, OpenAIErrorBody

log = logging.getLogger("distilserve.errors")

# kind -> (HTTP status, OpenAI error type). The kinds are TEI's error_type vocabulary plus ours.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "validation": (422, "invalid_request_error"),
    "tokenizer": (422, "invalid_request_error"),
    "empty": (400, "invalid_request_error"),
    "bad_request": (400, "invalid_request_error"),  # HTTP the server cannot parse (app/connections.py)
    "payload_too_large": (413, "invalid_request_error"),
    "unsupported_media": (415, "invalid_request_error"),
    "timeout": (408, "invalid_request_error"),
    "unauthorized": (401, "authentication_error"),
    "not_found": (404, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "overloaded": (429, "rate_limit_error"),
    "unhealthy": (503, "server_error"),
    "backend": (500, "server_error"),
    "internal": (500, "server_error"),
    "client_closed": (499, "invalid_request_error"),  # nginx's code; nobody is there to read it
}

# Paths whose clients (the openai package) read {"error": {"message", "type", "code"}}.
OPENAI_STYLE_PATHS = frozenset({"/v1/embeddings", "/embeddings", "/v1/models", "/models"})

GENERIC_500 = "internal server error"

# What can go wrong on any route that reads a body, beyond the route's own kinds. 401 is not here:
# the server adds it (`auth_responses`) only when an API key is configured.
COMMON_ERRORS = ("validation", "payload_too_large", "unsupported_media", "timeout", "internal")


class ServiceError(Exception):
    kind = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return ERROR_TABLE[self.kind][0]


class InvalidInput(ServiceError):
    """A request that is well-formed JSON but asks for something we do not do (or over a limit)."""

    kind = "validation"


class TokenizerError(ServiceError):
    kind = "tokenizer"


class EmptyInput(ServiceError):
    kind = "empty"


class PayloadTooLarge(ServiceError):
    kind = "payload_too_large"


class UnsupportedMedia(ServiceError):
    """A body this server cannot read as sent: compressed, or not JSON."""

    kind = "unsupported_media"


class RequestTimeout(ServiceError):
    """The client did not deliver its request in time; the connection closes after the answer."""

    kind = "timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class Unauthorized(ServiceError):
    kind = "unauthorized"


class NotFound(ServiceError):
    kind = "not_found"


class ModelNotFound(ServiceError):
    """The request names a model this server does not serve (OpenAI's code `model_not_found`)."""

    kind = "model_not_found"


class Overloaded(ServiceError):
    kind = "overloaded"


class Unhealthy(ServiceError):
    kind = "unhealthy"


class ClientDisconnected(ServiceError):
    kind = "client_closed"


class BackendError(ServiceError):
    """Inference itself failed; the message is generic, the cause is in the log."""

    kind = "backend"


def status_for(kind: str) -> int:
    return ERROR_TABLE.get(kind, ERROR_TABLE["internal"])[0]


def error_body(kind: str, message: str, path: str) -> dict[str, Any]:
    if path in OPENAI_STYLE_PATHS:
        return {"error": {"message": message, "type": ERROR_TABLE.get(kind, ERROR_TABLE["internal"])[1], "code": kind}}
    return {"error": message, "error_type": kind}


def error_body_model(path: str) -> type[BaseModel]:
    """The body model `error_body` renders on `path`."""
    return OpenAIErrorBody if path in OPENAI_STYLE_PATHS else ErrorBody


def error_responses(
    *kinds: str, body: type[BaseModel] = ErrorBody, common: tuple[str, ...] = COMMON_ERRORS
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: one entry per HTTP status, listing the error kinds that produce it.

    Listing 422 also replaces FastAPI's default 422 (HTTPValidationError), which the handlers never send.
    """
    by_status: dict[int, list[str]] = {}
    for kind in dict.fromkeys(kinds + common):
        by_status.setdefault(ERROR_TABLE[kind][0], []).append(kind)
    return {
        status: {"model": body, "description": "error kind: " + ", ".join(f"`{kind}`" for kind in kinds_here)}
        for status, kinds_here in sorted(by_status.items())
    }


def error_response(kind: str, message: str, path: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(kind, message, path), status_code=status_for(kind), headers=headers)


MAX_DESCRIBED_ERRORS = 5


def describe_validation(errors: Iterable[Any]) -> str:
    """FastAPI/pydantic errors as one line that names each field: `body.inputs: Input should be ...`.

    At most MAX_DESCRIBED_ERRORS are spelled out: a list of 4,000 wrong items is one mistake."""
    errors = list(errors)
    parts = []
    for error in errors[:MAX_DESCRIBED_ERRORS]:
        location = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            parts.append(f"malformed JSON body: {error.get('ctx', {}).get('error', error.get('msg'))}")
            continue
        field = ".".join(location) or "body"
        parts.append(f"{field}: {error.get('msg')}")
    if len(errors) > MAX_DESCRIBED_ERRORS:
        parts.append(f"and {len(errors) - MAX_DESCRIBED_ERRORS} more")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, on_error: Any = None) -> None:
    """Register the renderers. `on_error(kind, model)` is called once per error response (metrics), with
    the model the route had resolved (`request.state.model`, empty before that)."""

    def respond(request: Request, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        if on_error is not None:
            on_error(kind, getattr(request.state, "model", ""))
        return error_response(kind, message, request.url.path, headers)

    async def service_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ServiceError)
        return respond(request, error.kind, error.message, error.headers)

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return respond(request, "validation", describe_validation(error.errors()))

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        if isinstance(error.__cause__, ServiceError):  # FastAPI wraps errors raised while reading the body
            return await service_error(request, error.__cause__)
        kind = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "payload_too_large"}.get(
            error.status_code, "validation" if error.status_code < 500 else "internal"
        )
        return respond(request, kind, str(error.detail), dict(error.headers or {}))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
