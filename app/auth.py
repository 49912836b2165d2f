"""The optional API key: when `settings.api_key` is set, inference routes need `Authorization: Bearer <key>`.

Only inference routes take the dependency; health, readiness, metrics, info and the widget page stay
open so probes, scrapers and a person's browser work without the key.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends, Security
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from app.errors import Unauthorized

# auto_error=False: a missing or malformed header must reach our check, which raises the service
# error (rendered TEI- or OpenAI-style by the handlers) instead of FastAPI's own 403 body.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="api_key",
    description="The server's API key (DISTILSERVE_API_KEY), as `Authorization: Bearer <key>`.",
)

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def key_matches(presented: str, expected: SecretStr) -> bool:
    """Constant-time comparison, so response timing does not leak how much of the key matched."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.get_secret_value().encode("utf-8"))


def api_key_checker(api_key: SecretStr) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[None]]:
    async def require_api_key(credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme)) -> None:
        if credentials is None:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>`", headers=CHALLENGE)
        if not key_matches(credentials.credentials, api_key):
            raise Unauthorized("invalid API key", headers=CHALLENGE)

    return require_api_key


def auth_dependencies(api_key: SecretStr | None) -> list[DependsParam]:
    """What to pass as `dependencies=` when including an inference router: nothing when no key is set,
    so the OpenAPI document shows a security requirement only when one is enforced."""
    if api_key is None or not api_key.get_secret_value():
        return []
    return [Depends(api_key_checker(api_key))]
