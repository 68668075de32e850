"""Hot reload: model folders added, changed, corrupted and removed under a running server.

One live server (watching its repository every 0.5 s, with an admin key and a user key) serves a
temporary copy of two test models; the tests add a shipped model folder, a corrupt one, change
and remove folders, while requests keep coming.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import Settings

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "cgcnn-mp-formation-energy" / "2"  # has a model.onnx: the parity check runs
ADMIN, USER = {"X-API-Key": "admin-key"}, {"X-API-Key": "user-key"}


def _corrupt(folder: Path) -> None:
    data = bytearray((folder / "weights.pt").read_bytes())
    data[-100] ^= 0xFF
    (folder / "weights.pt").write_bytes(bytes(data))


def _swap_onnx(folder: Path) -> None:
    """Another model's ``model.onnx``, its sha256 in the manifest: every file checks out, the answers do not."""
    other = ROOT / "models" / "cgcnn-mp-band-gap" / "1" / "model.onnx"
    shutil.copyfile(other, folder / "model.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["onnx"]["sha256"] = hashlib.sha256(other.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _add(repo: Path, source: Path, name: str, prepare: Callable[[Path], None] | None = None) -> Path:
    """Copy a model folder in as ``name/1``: copied aside (and ``prepare``d), then renamed into place (one step)."""
    staging = repo / f".staging-{name}"
    shutil.copytree(source, staging)
    if prepare is not None:
        prepare(staging)
    (repo / name).mkdir(exist_ok=True)
    return staging.rename(repo / name / "1")


def _wait(client: httpx.Client, ok: Any, timeout: float = 90.0) -> float:
    started = time.monotonic()
    while not ok(client.get("/v1/models").json()):
        assert time.monotonic() - started < timeout, client.get("/v1/models").json()
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def repo(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reload-models")
    for name, version in (("cgcnn-formation-energy", "1"), ("sr-cgcnn-band-gap", "2")):
        shutil.copytree(models_dir / name / version, root / name / version)
    return root


@pytest.fixture(scope="module")
def live(repo: Path, tmp_path_factory: pytest.TempPathFactory, live_server_class: type[Any]) -> Iterator[Any]:
    settings = Settings(
        models_dir=repo,
        parse_workers=1,
        data_dir=tmp_path_factory.mktemp("reload-data"),
        api_keys={"admin": "admin-key", "user": "user-key"},
        admin_keys=["admin"],
        models_watch_s=0.5,
    )
    server = live_server_class(settings).start()
    yield server
    server.stop()


@pytest.fixture
def client(live: Any) -> Iterator[httpx.Client]:
    with live.client(headers=USER) as c:
        yield c


def test_a_new_folder_serves_within_seconds_while_requests_go_on(
    live: Any, client: httpx.Client, repo: Path, cifs: dict
) -> None:
    assert client.post("/v1/predict", params={"models": "my-model"}, files={"file": cifs["nacl"]}).status_code == 404
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with live.client(headers=USER) as c:
            while not stop.is_set():
                statuses.append(c.post("/v1/predict", files={"file": ("nacl.cif", cifs["nacl"])}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        _add(repo, SHIPPED, "my-model")
        took = _wait(client, lambda m: any(x["ref"] == "my-model@1" for x in m["models"]))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"my-model served {took:.1f} s after its folder appeared; {len(statuses)} requests meanwhile")
    assert took < 60, f"{took:.1f} s"  # generous: the machine is loaded
    assert len(statuses) > 5 and set(statuses) == {200}, statuses
    assert client.get("/v1/models/my-model@latest").json()["ref"] == "my-model@1"
    served = client.post("/v1/predict", params={"models": "my-model@latest"}, files={"file": cifs["nacl"]}).json()
    assert served["predictions"]["formation_energy_per_atom"]["model"] == "my-model"
    # the new model has the lower validation MAE: it is now the default (`default` resolves to it)
    assert client.get("/v1/models").json()["defaults"]["formation_energy_per_atom"] == "my-model@1"
    params = {"models": "default,cgcnn-formation-energy"}
    both = client.post("/v1/predict", params=params, files={"file": cifs["nacl"]}).json()
    assert both["predictions"]["formation_energy_per_atom"]["model"] == "my-model"
    assert [a["model"] for a in both["alternatives"]["formation_energy_per_atom"]] == ["cgcnn-formation-energy"]


def test_reload_endpoint_refuses_a_corrupt_folder_and_the_rest_serve(
    live: Any, client: httpx.Client, repo: Path, models_dir: Path, cifs: dict
) -> None:
    assert client.post("/v1/models/reload").status_code == 403, "a user key may not reload"
    broken = _add(repo, models_dir / "cgcnn-formation-energy" / "1", "broken", _corrupt)
    swapped = _add(repo, SHIPPED, "swapped-onnx", _swap_onnx)
    with live.client(headers=ADMIN) as admin:
        report = admin.post("/v1/models/reload")
    assert report.status_code == 200, report.text
    assert set(report.json()) == {"added", "replaced", "removed", "refused", "defaults", "models"}
    listed = client.get("/v1/models").json()
    refused = {r["path"]: r["reason"] for r in listed["refused"]}
    assert "sha256" in refused[str(broken)]
    assert "OnnxParityError" in refused[str(swapped)] and "torch - onnxruntime" in refused[str(swapped)]
    assert not {"broken@1", "swapped-onnx@1"} & {m["ref"] for m in listed["models"]}
    assert client.post("/v1/predict", files={"file": cifs["nacl"]}).status_code == 200

    # A changed folder that fails keeps its loaded version serving; a removed one stops.
    band_gap = repo / "sr-cgcnn-band-gap" / "2" / "weights.pt"
    band_gap.write_bytes(band_gap.read_bytes()[:-10])
    shutil.rmtree(repo / "my-model")
    with live.client(headers=ADMIN) as admin:
        assert admin.post("/v1/models/reload").status_code == 200
    listed = client.get("/v1/models").json()
    refs = {m["ref"] for m in listed["models"]}
    assert "sr-cgcnn-band-gap@2" in refs and "my-model@1" not in refs
    reason = {r["path"]: r["reason"] for r in listed["refused"]}[str(band_gap.parent)]
    assert "goes on serving" in reason
    answer = client.post("/v1/predict", files={"file": cifs["nacl"]}).json()
    assert answer["predictions"]["band_gap"]["model"] == "sr-cgcnn-band-gap"
