"""``/docs``: Swagger UI served by the service itself, with nothing loaded from another host."""

from __future__ import annotations

import re

import httpx

_URLS = re.compile(r"""(?:src|href|url)\s*[=:]\s*["']([^"']*)["']""")


def test_docs_page_references_only_the_service_itself(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.text
    assert "SwaggerUIBundle" in html
    assert "://" not in html and "cdn" not in html.lower()
    urls = _URLS.findall(html)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/openapi.json"} <= set(urls)
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls


def test_docs_assets_are_served_locally_and_nothing_else(client: httpx.Client) -> None:
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in js.text[:2000]
    css = client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/docs/assets/favicon-32x32.png").headers["content-type"] == "image/png"
    for name in ("swagger-editor-bundle.js", "..%2F..%2Fcore.py", "index.html"):
        assert client.get(f"/docs/assets/{name}").status_code == 404, name
    assert client.get("/redoc").status_code == 404  # ReDoc would load its script from a CDN


def test_only_docs_inline_script_is_allowed_by_hash(client: httpx.Client) -> None:
    docs = client.get("/docs").headers["content-security-policy"]
    page = client.get("/").headers["content-security-policy"]
    assert "script-src 'self';" in page and "sha256-" not in page
    script_src = re.search(r"script-src ([^;]*);", docs)
    assert script_src is not None
    sources = script_src.group(1).split()
    assert sources[0] == "'self'" and len(sources) == 2 and sources[1].startswith("'sha256-")
    assert "unsafe" not in docs
    assert docs.replace(script_src.group(0), "") == page.replace("script-src 'self';", "")
