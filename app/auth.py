"""The optional API key: when `settings.api_key` is set, inference routes need `Authorization: Bearer <key>`.

The key is checked by `ApiKeyGuard`, an ASGI layer in front of the routes, so a request without it is
answered 401 before anything reads its body: a malformed body cannot turn a 401 into a 422, and an
unauthenticated client gets nothing parsed. The routers only carry `openapi_security`, which declares
the scheme in the OpenAPI document.

Health, readiness, the docs and the widget page stay open. `/info` and `/metrics` stay open unless
`protect_info_metrics` is set: Prometheus scrapes and the widget's model list work without the key.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import TypeGuard

from fastapi import Security
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPBearer
from pydantic import SecretStr
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response

# auto_error=False: the scheme only documents the header; ApiKeyGuard does the checking.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="api_key",
    description="The server's API key (DISTILSERVE_API_KEY), as `Authorization: Bearer <key>`.",
)

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def key_enforced(api_key: SecretStr | None) -> TypeGuard[SecretStr]:
    return api_key is not None and bool(api_key.get_secret_value())


def key_matches(presented: str, expected: SecretStr) -> bool:
    """Constant-time comparison, so response timing does not leak how much of the key matched."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.get_secret_value().encode("utf-8"))


def refusal(authorization: bytes | None, api_key: SecretStr) -> str | None:
    """Why a request's Authorization header does not carry the key, or None when it does."""
    if authorization is None:
        return "missing API key: send `Authorization: Bearer <key>`"
    scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return "missing API key: send `Authorization: Bearer <key>`"
    return None if key_matches(credentials.strip(), api_key) else "invalid API key"


def openapi_security(api_key: SecretStr | None) -> list[DependsParam]:
    """What to pass as `dependencies=` when including a protected router: the security scheme for the
    OpenAPI document, only when a key is enforced. It checks nothing (ApiKeyGuard does)."""
    return [Security(bearer_scheme)] if key_enforced(api_key) else []


class ApiKeyGuard:
    """Answers 401 to a request for a protected route that lacks the key, before routing reads its body.

    `protected` are the app's routes that need the key; a request is theirs when one matches it fully
    (path and method), exactly as the router will decide. The matched route is recorded in the scope,
    so the request counter labels a refused request with its route, as it would any other.
    """

    def __init__(
        self, app: ASGIApp, api_key: SecretStr, protected: Sequence[BaseRoute], on_refused: Callable[[], None]
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.protected = list(protected)
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = next((route for route in self.protected if route.matches(scope)[0] is Match.FULL), None)
            if route is not None:
                reason = refusal(dict(scope["headers"]).get(b"authorization"), self.api_key)
                if reason is not None:
                    scope["route"] = route
                    self.on_refused()
                    await error_response("unauthorized", reason, scope["path"], CHALLENGE)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
