"""``GET /docs``: the interactive API reference (Swagger UI), served whole by the service.

FastAPI's own ``/docs`` loads Swagger UI from a CDN and is blank on a closed network. Here the
Swagger UI files come from the ``swagger-ui-py`` package (its ``static`` folder, Swagger UI 5,
which reads OpenAPI 3.1) and the page from FastAPI's :func:`get_swagger_ui_html`; nothing is
fetched from another host. That page starts Swagger UI with one inline script: its response
carries the service's Content-Security-Policy with that one script allowed by its SHA-256 hash
(the security middleware keeps a policy a route has set), so no other page gets a looser policy.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from ...errors import NotFound
from ...security import SECURITY_HEADERS

router = APIRouter(tags=["docs"])

#: The files of Swagger UI the page uses, and their media types.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _swagger_ui_dir() -> Path:
    return Path(str(files("swagger_ui") / "static"))


def _page_csp(html: str) -> str:
    """The service's policy, with the page's inline scripts allowed by hash (and nothing else)."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    return policy.replace("script-src 'self';", f"script-src 'self' {hashes};", 1)


@cache
def _page() -> tuple[bytes, str]:
    response = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Crystal property prediction: API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png",
    )
    body = bytes(response.body)
    return body, _page_csp(body.decode())


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    """The Swagger UI page, reading ``/openapi.json``."""
    body, csp = _page()
    return HTMLResponse(body, headers={"Content-Security-Policy": csp})


@router.get("/docs/assets/{name}", include_in_schema=False)
async def docs_asset(name: str) -> FileResponse:
    """One of Swagger UI's files; any other name is ``404``."""
    if name not in _ASSETS:
        raise NotFound(f"No docs asset {name!r}.")
    return FileResponse(_swagger_ui_dir() / name, media_type=_ASSETS[name])
