"""The inference widget: GET / serves a page (plus its script and stylesheet) that drives /fill-mask
and /embed (and, for classifiers, /classify and /token-classification) from a browser, like the model
hub's widget. Everything ships with the package: no CDN.

These routes never need the API key; the page has a key field and sends it on its own requests.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSETS = Path(__file__).parent
MEDIA_TYPES = {"widget.js": "text/javascript; charset=utf-8", "widget.css": "text/css; charset=utf-8"}
# no-cache: browsers revalidate (cheap, ETag) so a server upgrade never pairs an old script with a new API.
CACHE = {"Cache-Control": "no-cache"}


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", media_type="text/html; charset=utf-8", headers=CACHE)


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    media_type = MEDIA_TYPES.get(name)
    if media_type is None:
        raise NotFound(f"no static file {name!r}")
    return FileResponse(ASSETS / name, media_type=media_type, headers=CACHE)
