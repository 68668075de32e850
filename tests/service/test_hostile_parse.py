"""Hostile CIFs against a real server: every parse has a deadline and a memory cap, and stops with its client.

The inputs are slow or memory-hungry today for reasons the CIF reader may fix (a big P1 cell,
a 0.05 Å cell); the deadline and the memory cap are the safety net that holds whatever the
reader does, so the tests use small limits and inputs far over them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from service import Settings

MIB = 1 << 20


def p1_grid(n: int) -> str:
    """A P1 rock-salt-like grid of ``n**3`` atoms 2.82 Å apart (``n=30``: 27,000 atoms, ~0.9 MB)."""
    a = n * 2.82
    lines = ["data_grid"] + [f"_cell_length_{x} {a:.4f}" for x in "abc"]
    lines += [f"_cell_angle_{x} 90" for x in ("alpha", "beta", "gamma")]
    lines += ["_symmetry_space_group_name_H-M 'P 1'", "loop_"]
    lines += [f"_atom_site_{x}" for x in ("label", "type_symbol", "fract_x", "fract_y", "fract_z")]
    k = 0
    for i in range(n):
        for j in range(n):
            for m in range(n):
                k += 1
                el = "Na" if (i + j + m) % 2 == 0 else "Cl"
                lines.append(f"{el}{k} {el} {i / n:.5f} {j / n:.5f} {m / n:.5f}")
    return "\n".join(lines) + "\n"


#: A 0.05 Å cubic cell: the neighbour search enumerates ~10^8 images (5-6 GB without a cap).
TINY_CELL = """data_tiny
_cell_length_a 0.05
_cell_length_b 0.05
_cell_length_c 0.05
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 Na 0 0 0
"""


@pytest.fixture(scope="module")
def slow_cif() -> str:
    return p1_grid(30)


class PeakRss:
    """Samples ``measure()`` (the ``tree_rss`` fixture) every 50 ms in a thread while in the ``with`` block."""

    def __init__(self, measure: Callable[[], int]) -> None:
        self.measure = measure
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def assert_nacl_prompt(client: httpx.Client, nacl: str, bound_s: float = 15.0) -> None:
    start = time.monotonic()
    response = client.post("/v1/predict", json={"cif": nacl})
    assert response.status_code == 200, response.text
    assert time.monotonic() - start < bound_s


@pytest.fixture
def serve(live_server_factory: Callable[..., object], models_dir: Path) -> Iterator[Callable[..., object]]:
    def start(**overrides: object) -> object:
        return live_server_factory(Settings(models_dir=models_dir, parse_workers=1, **overrides))

    yield start


def test_parse_deadline_stops_a_slow_file(serve, slow_cif: str, cifs: dict[str, str]) -> None:
    """A file past ``parse_timeout_s`` is a 422 ``parse_timeout`` soon after the deadline; the server goes on."""
    live = serve(parse_timeout_s=1.0, max_atoms=30_000)
    with live.client() as client:
        start = time.monotonic()
        response = client.post("/v1/predict", json={"cif": slow_cif})
        elapsed = time.monotonic() - start
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "parse_timeout"
        assert elapsed < 10.0  # 1 s of parsing, plus upload and a loaded machine
        # The same file inside a batch fails alone; the others are predicted.
        files = [("files", ("slow.cif", slow_cif)), ("files", ("nacl.cif", cifs["nacl"]))]
        batch = client.post("/v1/predict/batch", files=files).json()
        codes = {r["filename"]: (r["ok"], r.get("error", {}) and r["error"]["code"]) for r in batch["results"]}
        assert codes["slow.cif"] == (False, "parse_timeout")
        assert codes["nacl.cif"][0] is True
        # The replacement worker has to start (imports) before it answers.
        assert_nacl_prompt(client, cifs["nacl"], bound_s=60.0)
        assert_nacl_prompt(client, cifs["nacl"])


def test_parse_memory_cap_holds_the_process_tree(serve, cifs: dict[str, str], tree_rss: Callable[[], int]) -> None:
    """A 0.05 Å cell (5-6 GB without a cap): 422, and the whole process tree stays within the cap plus slack."""
    live = serve(parse_max_memory_bytes=512 * MIB, parse_timeout_s=120)
    with live.client() as client:
        assert_nacl_prompt(client, cifs["nacl"])
        before = tree_rss()
        with PeakRss(tree_rss) as peak:
            start = time.monotonic()
            response = client.post("/v1/predict", json={"cif": TINY_CELL})
            elapsed = time.monotonic() - start
        assert response.status_code == 422, response.text
        assert elapsed < 60.0
        assert peak.peak - before < 1024 * MIB, f"the process tree grew by {(peak.peak - before) / MIB:.0f} MiB"
        assert_nacl_prompt(client, cifs["nacl"], bound_s=60.0)


@pytest.fixture(scope="module")
def patient(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, live_server_class: type) -> Iterator[object]:
    """A server whose parse deadline (600 s) never fires here: only a disconnect or a deletion stops a parse."""
    settings = Settings(
        models_dir=models_dir,
        parse_workers=1,
        data_dir=tmp_path_factory.mktemp("patient-data"),
        parse_timeout_s=600,
        max_atoms=30_000,
    )
    live = live_server_class(settings).start()
    yield live
    live.stop()


def test_disconnect_stops_the_parse(patient, slow_cif: str, cifs: dict[str, str]) -> None:
    """A client that gives up frees its parse worker at once: NaCl is answered long before the slow file ends."""
    live = patient
    pool = live_pool(live)
    with live.client() as client:
        assert_nacl_prompt(client, cifs["nacl"])
        busy_pid = pool.pids()[0]
        with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=live.url, timeout=3.0) as impatient:
            impatient.post("/v1/predict", json={"cif": slow_cif})
        # The slow parse would hold the only worker for minutes; it is killed within the grace period.
        deadline = time.monotonic() + 10
        while psutil.pid_exists(busy_pid) and psutil.Process(busy_pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the parse worker still runs after its client left"
            time.sleep(0.1)
        assert_nacl_prompt(client, cifs["nacl"], bound_s=60.0)


def live_pool(live: object):
    app = live._server.config.app  # type: ignore[attr-defined]
    return app.state.service.engine._pools[False]


def test_deleting_a_job_stops_its_parse(patient, slow_cif: str, cifs: dict[str, str]) -> None:
    live = patient
    engine = live._server.config.app.state.service.engine  # type: ignore[attr-defined]
    with live.client() as client:
        job = client.post("/v1/jobs", files=[("files", ("slow.cif", slow_cif))]).json()
        deadline = time.monotonic() + 60
        while not (True in engine._pools and client.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"):
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
        time.sleep(2.0)  # the bulk worker starts and takes the file
        busy_pid = engine._pools[True].pids()[0]
        start = time.monotonic()
        assert client.delete(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
        assert time.monotonic() - start < 10
        while psutil.pid_exists(busy_pid) and psutil.Process(busy_pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() - start < 10, "the job's parse worker still runs after the job was deleted"
            time.sleep(0.1)
        assert_nacl_prompt(client, cifs["nacl"])
