"""``GET /``: the screening page, and its script and style sheet (static files, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ...errors import NotFound

router = APIRouter(tags=["page"])

_STATIC = Path(__file__).resolve().parents[2] / "static"
_JS = "text/javascript; charset=utf-8"
#: The page's files: its modules (no build step, no library) and its style sheet.
_ASSETS = {
    "app.js": _JS,
    "rows.js": _JS,
    "table.js": _JS,
    "scatter.js": _JS,
    "app.css": "text/css; charset=utf-8",
}


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The screening page."""
    return FileResponse(_STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """One of the page's scripts or its style sheet; any other name is ``404``."""
    if name not in _ASSETS:
        raise NotFound(f"No static file {name!r}.")
    return FileResponse(_STATIC / name, media_type=_ASSETS[name])
