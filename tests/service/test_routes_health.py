"""Liveness, readiness and metrics against live servers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from service import Settings


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_readyz_is_503_until_loaded_and_warm_then_200(server: object) -> None:
    statuses = server.startup_statuses  # type: ignore[attr-defined]
    assert statuses[0] == 503, "the first /readyz after the socket opened must come before warm-up ends"
    assert statuses[-1] == 200
    assert set(statuses) == {503, 200}
    with httpx.Client(base_url=server.url) as c:  # type: ignore[attr-defined]
        body = c.get("/readyz").json()
    assert body == {"status": "ready", "models": 4, "properties": ["band_gap", "formation_energy_per_atom"]}


def test_a_repository_without_a_usable_model_is_alive_but_never_ready(
    tmp_path: Path, live_server_factory: Callable[..., Any]
) -> None:
    broken = tmp_path / "models" / "m" / "1"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    settings = Settings(models_dir=tmp_path / "models", parse_workers=1)
    live = live_server_factory(settings, until=lambda r: "no model could be loaded" in r.text)
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "not_ready"
        assert "no model could be loaded" in r.json()["detail"]
        listing = c.get("/v1/models").json()
        assert listing["models"] == [] and len(listing["refused"]) == 1
        predict = c.post("/v1/predict", json={"cif": "data_x"})
        assert predict.status_code == 503 and predict.json()["code"] == "not_ready"


def test_metrics_count_requests_structures_and_failures(client: httpx.Client, cifs: dict) -> None:
    before = client.get("/metrics").text
    client.post("/v1/predict", files={"file": ("nacl.cif", cifs["nacl"])})
    client.post("/v1/predict", files={"file": ("bad.cif", cifs["garbage"])})
    files = [
        ("files", ("a.cif", cifs["cu"])),
        ("files", ("b.cif", cifs["isolated"])),
        ("files", ("c.cif", cifs["srtio3"])),
    ]
    client.post("/v1/predict/batch", files=files)
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def delta(name: str, **labels: str) -> float:
        return _sample(text, name, **labels) - _sample(before, name, **labels)

    assert delta("crystal_http_requests_total", route="/v1/predict", method="POST", status="200") == 1
    assert delta("crystal_http_requests_total", route="/v1/predict", method="POST", status="422") == 1
    assert delta("crystal_http_requests_total", route="/v1/predict/batch", method="POST", status="200") == 1
    assert delta("crystal_http_request_duration_seconds_count", route="/v1/predict", status="200") == 1
    assert delta("crystal_structures_predicted_total", outcome="ok") == 3
    assert delta("crystal_structures_predicted_total", outcome="failed") == 2
    assert delta("crystal_parse_failures_total", code="invalid_cif") == 1
    assert delta("crystal_parse_failures_total", code="isolated_atom") == 1
    assert delta("crystal_batch_files_count") == 1 and delta("crystal_batch_files_sum") == 3
    assert delta("crystal_model_inference_seconds_count", model="cgcnn-formation-energy@1") >= 1
    assert delta("crystal_inference_batch_structures_sum", model="sr-cgcnn-band-gap@2") == 3
    assert _sample(text, "crystal_models_loaded") == 4 and _sample(text, "crystal_ready") == 1


def test_openapi_documents_the_v1_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/models", "/v1/models/{name}", "/healthz", "/readyz"} <= set(
        spec["paths"]
    )
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert client.get("/docs").status_code == 200
