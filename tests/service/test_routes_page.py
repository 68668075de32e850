"""``GET /`` and ``/static/*``: the page and every file it loads come from the service itself."""

from __future__ import annotations

import re

import httpx

_REFS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
_IMPORTS = re.compile(r"""^import\s.*?from\s+["']([^"']+)["'];""", re.MULTILINE)


def test_the_page_and_all_it_loads_are_served_here_with_no_other_host(client: httpx.Client) -> None:
    html = client.get("/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    todo = [u for u in _REFS.findall(html.text) if u.startswith("/static/")]
    assert {"/static/app.js", "/static/app.css"} <= set(todo)
    seen: dict[str, str] = {}
    while todo:  # follow the ES module imports too
        url = todo.pop()
        if url in seen:
            continue
        r = client.get(url)
        assert r.status_code == 200, url
        kind = "text/css" if url.endswith(".css") else "text/javascript"
        assert r.headers["content-type"].startswith(kind), (url, r.headers["content-type"])
        seen[url] = r.text
        todo += ["/static/" + m.removeprefix("./") for m in _IMPORTS.findall(r.text)]
    assert {"/static/rows.js", "/static/table.js", "/static/scatter.js"} <= set(seen)
    for url, text in [("/", html.text), *seen.items()]:
        # no URL of another host anywhere (the SVG namespace is a name, never fetched)
        hosts = set(re.findall(r"\b[a-z]+://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not hosts, (url, hosts)


def test_other_static_names_are_not_found(client: httpx.Client) -> None:
    for name in ("index.html", "app.py", "..%2F..%2Fsettings.py", "missing.js"):
        assert client.get(f"/static/{name}").status_code == 404, name
