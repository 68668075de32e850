"""Fixtures for the service tests: small real models, CIFs built with pymatgen, live servers.

The model repository holds three small models built with ``crystalgraph.build_model`` and
exported with ``export_model`` (untrained weights, normaliser set so values are not trivial),
a second version of one of them, a folder with tampered weights and one of an unknown format.
Servers are real uvicorn servers on a free loopback port, each in a thread, talked to with httpx;
each one keeps its jobs in its own temporary ``data_dir`` (:func:`with_temporary_data_dir`).
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import torch
import uvicorn
from fastapi import FastAPI
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import crystalgraph as cg
from service import Settings, create_app

FE = cg.KNOWN_TARGETS["formation_energy_per_atom"]
BG = cg.KNOWN_TARGETS["band_gap"]
P_METAL = cg.KNOWN_TARGETS["p_metal"]
SMALL = {"atom_fea_len": 16, "h_fea_len": 32}
TRAINING_ELEMENTS = ["Na", "Cl", "Cu", "Sr", "Ti", "O", "K", "Br", "Li", "F"]


def _export(models_dir: Path, name: str, version: str, model: cg.CrystalGraphNet, metadata: dict) -> Path:
    torch.manual_seed(zlib.crc32(f"{name}@{version}".encode()))
    for p in model.parameters():  # deterministic, non-trivial weights
        torch.nn.init.normal_(p, std=0.2)
    n = len(model.config.targets)
    model.set_normalizer(torch.full((n,), -1.0) + torch.arange(n) * 2.5, torch.full((n,), 0.7))
    return cg.export_model(model.eval(), models_dir, name, version, metadata)


def _metrics(val: dict[str, float]) -> dict:
    return {
        "val": {p: {"mae": mae, "rmse": mae * 1.4, "r2": 0.9, "n": 50} for p, mae in val.items()},
        "test": {p: {"mae": mae * 1.1, "rmse": mae * 1.5, "r2": 0.88, "n": 50} for p, mae in val.items()},
    }


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository: 3 good models (one in two versions), 1 tampered, 1 unknown format."""
    root = tmp_path_factory.mktemp("models")
    dataset = {"fingerprint": "abc123", "n_train": 800, "n_val": 100, "n_test": 100, "split_seed": 42}
    _export(
        root,
        "cgcnn-formation-energy",
        "1",
        cg.build_model(cg.CGCNNConfig(targets=(FE,), **SMALL)),
        {"elements": TRAINING_ELEMENTS, "metrics": _metrics({FE.name: 0.05}), "dataset": dataset},
    )
    for version, mae in (("1", 0.40), ("2", 0.30)):
        _export(
            root,
            "sr-cgcnn-band-gap",
            version,
            cg.build_model(cg.SRCGCNNConfig(targets=(BG,), **SMALL)),
            {"elements": TRAINING_ELEMENTS, "metrics": _metrics({BG.name: mae})},
        )
    _export(
        root,
        "cgcnn-multitask",
        "1",
        cg.build_model(cg.CGCNNConfig(targets=(FE, BG, P_METAL), **SMALL)),
        {"metrics": _metrics({FE.name: 0.08, BG.name: 0.35})},
    )
    broken = _export(root, "tampered", "1", cg.build_model(cg.CGCNNConfig(targets=(FE,), **SMALL)), {})
    weights = broken / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    alien = root / "alien" / "1"
    alien.mkdir(parents=True)
    (alien / "manifest.json").write_text(json.dumps({"format": "tensorflow-savedmodel", "format_version": 3}))
    return root


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small models, each with a parity-checked ``model.onnx``: ``cg-fe`` (CGCNN) and ``sr-bg`` (SR-CGCNN).

    Exporting to ONNX is the slow part (about 30 s of CPU for both): one repository for the session.
    """
    from crystalgraph.onnx_export import export_onnx_checked

    root = tmp_path_factory.mktemp("onnx-models")
    for name, config in (
        ("cg-fe", cg.CGCNNConfig(targets=(FE,), **SMALL)),
        ("sr-bg", cg.SRCGCNNConfig(targets=(BG,), **SMALL)),
    ):
        torch.manual_seed(zlib.crc32(name.encode()))
        model = cg.build_model(config)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.2)
        model.set_normalizer(torch.tensor([-1.0]), torch.tensor([0.7]))
        folder = cg.export_model(model.eval(), root, name, "1", {})
        cg.write_manifest(folder, name, "1", extra_files={"onnx": export_onnx_checked(model, folder)})
    return root


def _cif(structure: Structure) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(CifWriter(structure))


@pytest.fixture(scope="session")
def cifs() -> dict[str, str]:
    """CIF texts of small crystals (good and bad), keyed by a short name."""
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cu = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    srtio3 = Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    triclinic = Structure(
        Lattice.from_parameters(4.1, 4.7, 5.3, 82, 97, 105), ["K", "Br"], [[0.1, 0.2, 0.3], [0.55, 0.6, 0.8]]
    )
    big = nacl.copy()
    big.make_supercell([2, 2, 2])  # 64 atoms
    return {
        "nacl": _cif(nacl),
        "cu": _cif(cu),
        "cscl": _cif(cscl),
        "srtio3": _cif(srtio3),
        "triclinic": _cif(triclinic),
        "big": _cif(big),
        "two_blocks": _cif(nacl) + "\n" + _cif(srtio3),
        "disordered": _cif(Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])),
        "unsupported": _cif(Structure(Lattice.cubic(3.5), ["Md"], [[0, 0, 0]])),
        "isolated": _cif(Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]])),
        "overlapping": _cif(Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [0.05, 0, 0]])),
        "garbage": "this is not a crystal\n",
        "empty": "",
    }


def with_temporary_data_dir(settings: Settings, folder: Path) -> Settings:
    """``settings`` with ``data_dir=folder`` unless the test chose a data folder itself."""
    if "data_dir" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"data_dir": folder})


@dataclass
class LiveServer:
    """A uvicorn server running ``create_app(settings)`` in a thread on 127.0.0.1."""

    settings: Settings
    url: str = ""
    #: /readyz status codes seen from the moment the socket accepted connections until 200.
    startup_statuses: list[int] = field(default_factory=list)
    #: The app being served (its ``state`` holds the service and the job service).
    app: FastAPI | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def start(self, ready_timeout: float = 180.0, until: Callable[[httpx.Response], bool] | None = None) -> LiveServer:
        """Start, then poll ``/readyz`` until ``until(response)`` (default: 200) or the timeout."""
        until = until or (lambda r: r.status_code == 200)
        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn-test", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + ready_timeout
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while time.monotonic() < deadline:
                response = client.get("/readyz")
                self.startup_statuses.append(response.status_code)
                if until(response):
                    return self
                time.sleep(0.05)
        raise RuntimeError(f"the test server did not get ready: {self.startup_statuses[-3:]}")

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=60)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The main server: default limits, one parse worker."""
    data_dir = tmp_path_factory.mktemp("server-data")
    live = LiveServer(Settings(models_dir=models_dir, parse_workers=1, data_dir=data_dir)).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
def strict_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with an API key and small limits."""
    settings = Settings(
        models_dir=models_dir,
        parse_workers=1,
        data_dir=tmp_path_factory.mktemp("strict-server-data"),
        api_key="s3cret",
        max_files=3,
        max_file_bytes=32 << 10,
        max_request_bytes=1 << 20,
        max_unpacked_bytes=96 << 10,
        max_atoms=8,
        defaults={"formation_energy_per_atom": "cgcnn-multitask"},
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


def _tree_rss() -> int:
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


@pytest.fixture(scope="session")
def tree_rss() -> Callable[[], int]:
    """Resident bytes of the test process (servers run in its threads) and all its children, as a function."""
    return _tree_rss


@pytest.fixture(scope="session")
def live_server_class() -> type[LiveServer]:
    """:class:`LiveServer`, for fixtures in other conftest files (which cannot import this one)."""
    return LiveServer


@pytest.fixture
def live_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveServer]]:
    """Start extra servers in a test (each with a temporary ``data_dir`` unless given one); they stop when it ends."""
    started: list[LiveServer] = []

    def start(settings: Settings, until: Callable[[httpx.Response], bool] | None = None) -> LiveServer:
        live = LiveServer(with_temporary_data_dir(settings, tmp_path_factory.mktemp("server-data")))
        started.append(live)
        return live.start(until=until)

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def strict_client(strict_server: LiveServer) -> Iterator[httpx.Client]:
    with strict_server.client(headers={"X-API-Key": "s3cret"}) as c:
        yield c


@pytest.fixture
def make_archive() -> Callable[[dict[str, str], str], bytes]:
    """``make_archive({name: text}, "zip" | "tar.gz")``: the archive's bytes."""

    def make(members: dict[str, str], kind: str = "zip") -> bytes:
        buf = io.BytesIO()
        if kind == "zip":
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, text in members.items():
                    zf.writestr(name, text)
        else:
            with tarfile.open(fileobj=buf, mode="w:gz") as tf:
                for name, text in members.items():
                    data = text.encode()
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    return make
