"""``/docs`` in a real headless Chromium (Debian's ``chromium``), offline: nothing leaves 127.0.0.1.

Needs ``apt-get install chromium`` (never a browser download); skipped with that reason when it
is absent. Every request the page makes is recorded; any to another host is aborted (as on a
closed network) and fails the test. The screenshot goes to ``$CRYSTAL_ARTIFACTS_DIR``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

CHROMIUM = os.environ.get("CRYSTAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: apt-get install chromium (the docs test needs it)"
)


def test_docs_render_offline_with_the_routes_listed(jobs_server: Any) -> None:
    expect = sync_api.expect
    requests: list[str] = []
    foreign: list[str] = []
    console: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        requests.append(url)
        if urlsplit(url).hostname != "127.0.0.1":
            foreign.append(url)
            r.abort()
        else:
            r.continue_()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.route("**/*", route)
            page.goto(jobs_server.url + "/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Crystal property prediction")
            paths = page.locator(".opblock-summary-path")
            expect(paths.first).to_be_visible(timeout=30_000)
            listed = set(paths.all_inner_texts())
            listed = {p.replace("\u200b", "") for p in listed}
            assert {"/v1/predict", "/v1/predict/batch", "/v1/models", "/v1/jobs", "/healthz", "/readyz"} <= listed

            # an operation opens (Swagger UI's own JavaScript works under the docs page's CSP)
            page.locator(".opblock-summary-path", has_text="/healthz").first.click()
            expect(page.locator(".opblock.is-open")).to_have_count(1)

            folder = Path(os.environ.get("CRYSTAL_ARTIFACTS_DIR") or Path(tempfile.gettempdir()) / "crystal-artifacts")
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / "docs-page.png"), full_page=False)
        finally:
            browser.close()
    assert foreign == []
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in requests)
    assert any(u.endswith("/openapi.json") for u in requests)
    assert errors == []
    assert not [m for m in console if "Content Security Policy" in m or m.startswith("error")], console
