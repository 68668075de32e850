"""Prediction service over HTTP: latency of one ~20-atom CIF, batch throughput, offline pipeline.

Starts the real server (``python -m service``, 2 parse workers) on the models in ``--models``
(default settings: float32 with batch padding on a CPU) and measures, with httpx from this process:

- latency p50/p99 of ``POST /v1/predict`` (multipart upload) of one 20-atom CIF of the data
  set, at concurrency 1 and 8 (every request answers both properties from the default models);
- throughput (structures/s) of 1,000 CIFs of the data set in one ``POST /v1/predict/batch``;
- the offline pipeline's throughput on the same 1,000 CIFs with the same models: parse and
  build graphs in a process pool of 2, then ``crystalgraph.predict_graphs`` in-process (float32).

HTTP batch and offline runs alternate (``ROUNDS`` each; the median is reported) so that load from
other processes hits both alike, and each also reports its CPU seconds per structure (server or
this process, plus their pool workers; via psutil, a torch-geometric dependency), a figure that
contention on a shared machine distorts less than wall time. The server with
``CRYSTAL_PRECISION=float64`` is measured once for comparison.

When ``--models`` holds no model, untrained default-size CGCNN (formation energy) and SR-CGCNN
(band gap) stand-ins are exported to a temporary folder: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import numpy as np

import crystalgraph as cg

__all__ = ["run"]

N_BATCH = 1000
ROUNDS = 2
N_LATENCY = 200
CONCURRENCY = 8
PARSE_WORKERS = 2
TARGET_P50_MS = 25.0
TARGET_RATIO = 0.70


def _has_models(models: Path) -> bool:
    return any(models.glob("*/*/manifest.json"))


def _stand_in_models(folder: Path) -> Path:
    fe, bg = cg.KNOWN_TARGETS["formation_energy_per_atom"], cg.KNOWN_TARGETS["band_gap"]
    cg.export_model(cg.build_model(cg.CGCNNConfig(targets=(fe,))), folder, "cgcnn-formation-energy", "1", {})
    cg.export_model(cg.build_model(cg.SRCGCNNConfig(targets=(bg,))), folder, "sr-cgcnn-band-gap", "1", {})
    return folder


def _sample(paths: Sequence[Path], n: int) -> list[tuple[str, bytes]]:
    """``n`` CIFs spread evenly over the sorted data set, as ``(file name, bytes)``."""
    step = max(1, len(paths) // n)
    return [(p.name, p.read_bytes()) for p in paths[::step][:n]]


def _models_or_stand_ins(models: Path, folder: Path) -> Path:
    """``models`` if it holds exported models, else default-size stand-ins exported to ``folder``."""
    if _has_models(models):
        return models
    print(f"no models in {models}: untrained default-size stand-ins (speed does not depend on weights)")
    return _stand_in_models(folder)


def _twenty_atom_cif(paths: Sequence[Path]) -> tuple[Path, bytes]:
    for path in paths:
        data = path.read_bytes()
        try:
            blocks = cg.parse_cif(data)
        except cg.StructureError:
            continue
        if len(blocks) == 1 and len(blocks[0][1]) == 20:
            return path, data
    raise RuntimeError("no 20-atom CIF in the data set")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def _server(models: Path, **env: str) -> Iterator[tuple[str, int]]:
    """``python -m service`` on a free loopback port, until it is ready; stopped on exit."""
    port = _free_port()
    environ = {
        **os.environ,
        "CRYSTAL_MODELS_DIR": str(models),
        "CRYSTAL_PARSE_WORKERS": str(PARSE_WORKERS),
        "CRYSTAL_MAX_REQUEST_BYTES": str(1 << 30),
        **env,
    }
    cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=environ)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the service exited with status {proc.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not get ready in 300 s")
                time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _latencies(url: str, data: bytes, concurrency: int, total: int) -> tuple[list[float], float]:
    """Per-request seconds of ``total`` uploads by ``concurrency`` clients, and the wall time."""
    files = {"file": ("bench.cif", data, "chemical/x-cif")}
    out: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        for _ in range(10):  # warm connections and code paths
            (await client.post("/v1/predict", files=files)).raise_for_status()

        async def one_client(n: int) -> None:
            for _ in range(n):
                t0 = time.perf_counter()
                r = await client.post("/v1/predict", files=files)
                out.append(time.perf_counter() - t0)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(total // concurrency) for _ in range(concurrency)))
        return out, time.perf_counter() - t0


def _batch_throughput(url: str, pid: int, cifs: list[tuple[str, bytes]]) -> tuple[float, float, int, int]:
    """Structures/s and server CPU ms per structure of one batch request with every CIF."""
    with httpx.Client(base_url=url, timeout=600) as client:
        client.post("/v1/predict/batch", files=[("files", c) for c in cifs[:32]]).raise_for_status()
        cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
        r = client.post("/v1/predict/batch", files=[("files", c) for c in cifs])
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - cpu0
        r.raise_for_status()
    body = r.json()
    n = len(body["results"])
    return n / seconds, cpu / n * 1000, body["n_ok"], body["n_failed"]


def _offline_graphs(data: bytes, config: cg.GraphConfig) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Worker: every block's graph as numpy arrays (``[]`` when the CIF cannot be predicted)."""
    import warnings

    warnings.simplefilter("ignore")
    try:
        graphs = cg.cif_to_graphs(data, config)
    except cg.StructureError:
        return []
    return [(g.z.numpy(), g.edge_index.numpy(), g.edge_dist.numpy()) for _, g in graphs]


def _offline_throughput(
    pool: ProcessPoolExecutor, models: Sequence[cg.CrystalGraphNet], cifs: list[bytes]
) -> tuple[float, float]:
    """Structures/s and CPU ms per structure of parse + graph (pool) then in-process prediction."""
    import torch
    from torch_geometric.data import Data

    configs = {m.config.graph.fingerprint: m.config.graph for m in models}
    if len(configs) != 1:
        raise RuntimeError("the offline pipeline here expects models sharing one graph config")
    config = next(iter(configs.values()))
    cpu0, t0 = _cpu_seconds(os.getpid()), time.perf_counter()
    arrays = [g for gs in pool.map(_offline_graphs, cifs, [config] * len(cifs), chunksize=8) for g in gs]
    graphs = [
        Data(z=torch.from_numpy(z), edge_index=torch.from_numpy(ei), edge_dist=torch.from_numpy(d), num_nodes=len(z))
        for z, ei, d in arrays
    ]
    for model in models:
        cg.predict_graphs(model, graphs, batch_size=64)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds(os.getpid()) - cpu0
    return len(cifs) / seconds, cpu / len(cifs) * 1000


def _breakdown(models: Sequence[cg.CrystalGraphNet], cifs: list[bytes]) -> dict[str, float]:
    """CPU ms per CIF of each step, in this process, one core: parse (gemmi -> arrays), graph, inference."""
    import torch

    config = models[0].config.graph
    t0 = time.process_time()
    crystals = [
        b.value for data in cifs for b in cg.read_structures(data, fmt="cif") if isinstance(b.value, cg.Crystal)
    ]
    t1 = time.process_time()
    graphs = []
    for crystal in crystals:
        with contextlib.suppress(cg.StructureError):
            graphs.append(cg.crystal_graph(crystal, config).to_data())
    t2 = time.process_time()
    with torch.inference_mode():
        for model in models:
            cg.predict_graphs(model, graphs, batch_size=64)
    t3 = time.process_time()
    n = len(cifs) / 1000
    return {"parse": (t1 - t0) / n, "graph": (t2 - t1) / n, "inference": (t3 - t2) / n}


def _default_models(models: Path) -> list[cg.CrystalGraphNet]:
    """The models the service answers with by default, loaded for the offline pipeline."""
    from service.repository import load_registry

    registry = load_registry(models, backend="torch", device="cpu")
    return [cg.load_exported(entry.folder).model for entry in registry.select(None).entries]


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    data: Path = args.data
    paths = sorted((data / "cifs").glob("*.cif"))
    batch = _sample(paths, N_BATCH)
    single_path, single = _twenty_atom_cif(paths)
    http: list[tuple[float, float]] = []
    offline: list[tuple[float, float]] = []
    steps: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = _models_or_stand_ins(Path(args.models), Path(tmp))
        import torch

        torch.set_num_threads(1)  # this process is the client and the offline predictor
        offline_models = _default_models(models)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(PARSE_WORKERS, mp_context=ctx) as pool:
            warm = [c for _, c in batch[: PARSE_WORKERS * 4]]
            list(pool.map(_offline_graphs, warm, [offline_models[0].config.graph] * len(warm)))
            with _server(models) as (url, pid):
                lat1, _ = asyncio.run(_latencies(url, single, 1, N_LATENCY))
                lat8, wall8 = asyncio.run(_latencies(url, single, CONCURRENCY, N_LATENCY * 2))
                for _ in range(ROUNDS):
                    rate, cpu, n_ok, n_failed = _batch_throughput(url, pid, batch)
                    http.append((rate, cpu))
                    offline.append(_offline_throughput(pool, offline_models, [c for _, c in batch]))
                    steps.append(_breakdown(offline_models, [c for _, c in batch]))
        with _server(models, CRYSTAL_PRECISION="float64") as (url, pid):
            rate64, cpu64, _, _ = _batch_throughput(url, pid, batch)

    def median(values: list[tuple[float, float]]) -> tuple[float, float]:
        return float(np.median([v[0] for v in values])), float(np.median([v[1] for v in values]))

    (http_rate, http_cpu), (off_rate, off_cpu) = median(http), median(offline)
    ratio = http_rate / off_rate
    rows = [
        (f"latency c=1, p50 / p99 ({single_path.name}, 20 atoms)", f"{_ms(lat1, 50):.1f} / {_ms(lat1, 99):.1f} ms"),
        (f"latency c={CONCURRENCY}, p50 / p99", f"{_ms(lat8, 50):.1f} / {_ms(lat8, 99):.1f} ms"),
        (f"requests/s at c={CONCURRENCY}", f"{len(lat8) / wall8:.0f}"),
        (
            f"HTTP batch, {len(batch)} CIFs ({n_ok} ok, {n_failed} refused)",
            f"{http_rate:.0f} structures/s  ({http_cpu:.1f} CPU ms/structure)",
        ),
        ("HTTP batch, CRYSTAL_PRECISION=float64", f"{rate64:.0f} structures/s  ({cpu64:.1f} CPU ms/structure)"),
        (
            f"offline pipeline (pool of {PARSE_WORKERS} + in-process predict)",
            f"{off_rate:.0f} structures/s  ({off_cpu:.1f} CPU ms/structure)",
        ),
        (
            "HTTP batch / offline",
            f"{ratio:.0%}  (rounds: "
            + ", ".join(f"{h[0] / o[0]:.0%}" for h, o in zip(http, offline, strict=True))
            + ")",
        ),
    ]
    step = {k: float(np.median([s[k] for s in steps])) for k in steps[0]}
    rest = http_cpu - sum(step.values())
    rows.append(
        (
            "breakdown, CPU ms per structure",
            f"parse {step['parse']:.2f}, graph {step['graph']:.2f}, inference {step['inference']:.2f} (torch, "
            f"in-process, every default model), HTTP and serving the rest {rest:.2f} (server CPU minus those)",
        )
    )
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    p50 = _ms(lat1, 50)
    print(
        f"targets: p50 <= {TARGET_P50_MS:.0f} ms at c=1: {'met' if p50 <= TARGET_P50_MS else 'MISSED'}; "
        f"HTTP batch >= {TARGET_RATIO:.0%} of offline: {'met' if ratio >= TARGET_RATIO else 'MISSED'} "
        f"(median of {ROUNDS} alternating rounds; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})"
    )
