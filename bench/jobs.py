"""Batch-screening jobs: throughput of a 5,000-CIF job next to the offline pipeline on the same files.

Starts the real server (``python -m service``, 2 parse workers, job data in a temporary folder)
on the models in ``--models`` (stand-ins when there are none, as in ``bench.service``) and
measures, with httpx from this process:

- job throughput (structures/s): 5,000 CIFs of the data set packed in one ``.tar.gz``, from the
  ``POST /v1/jobs`` until the job is ``done`` (upload and storage included), and the server's
  CPU seconds per structure (its parse workers included);
- the offline pipeline's throughput on the same 5,000 CIFs, by ``bench.service``'s own
  function (parse pool of 2, then in-process prediction), in rounds alternating with the job
  (``ROUNDS`` each, median reported) so that load from other processes hits both alike;
- the latency of ``POST /v1/predict`` (one 20-atom CIF, every 0.2 s) while a 1,000-CIF job
  runs, next to the same requests on the idle server: what a job costs interactive users.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .service import (
    PARSE_WORKERS,
    _cpu_seconds,
    _default_models,
    _models_or_stand_ins,
    _offline_graphs,
    _offline_throughput,
    _sample,
    _server,
    _twenty_atom_cif,
)

__all__ = ["run"]

N_JOB = 5000
N_PROBE_JOB = 1000
ROUNDS = 2
PROBE_EVERY_S = 0.2
TARGET_RATIO = 0.70


def _tar_gz(cifs: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for name, data in cifs:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _submit(client: httpx.Client, archive: bytes) -> str:
    r = client.post("/v1/jobs", content=archive, headers={"Content-Type": "application/gzip"})
    r.raise_for_status()
    return str(r.json()["id"])


def _wait(client: httpx.Client, job_id: str, on_tick: Callable[[], object] | None = None) -> dict[str, Any]:
    while True:
        status = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if status["state"] in {"done", "failed", "cancelled"}:
            if status["state"] != "done":
                raise RuntimeError(f"the bench job ended {status['state']}: {status['error']}")
            return status
        if on_tick is not None:
            on_tick()
        else:
            time.sleep(0.1)


def _probe(client: httpx.Client, cif: bytes, out: list[float]) -> None:
    t0 = time.perf_counter()
    client.post("/v1/predict", files={"file": ("probe.cif", cif, "chemical/x-cif")}).raise_for_status()
    out.append(time.perf_counter() - t0)
    time.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - t0)))


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    paths = sorted((args.data / "cifs").glob("*.cif"))
    cifs = _sample(paths, N_JOB)
    _, probe = _twenty_atom_cif(paths)
    archive = _tar_gz(cifs)
    jobs: list[tuple[float, float]] = []
    offline: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = _models_or_stand_ins(Path(args.models), Path(tmp) / "models")
        import torch

        torch.set_num_threads(1)  # this process is the client and the offline predictor
        offline_models = _default_models(models)
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(ProcessPoolExecutor(PARSE_WORKERS, mp_context=get_context("spawn")))
            warm = [c for _, c in cifs[: PARSE_WORKERS * 4]]
            list(pool.map(_offline_graphs, warm, [offline_models[0].config.graph] * len(warm)))
            url, pid = stack.enter_context(_server(models, CRYSTAL_DATA_DIR=str(Path(tmp) / "data")))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=600))
            _wait(client, _submit(client, _tar_gz(cifs[:64])))  # warm the job path
            for _ in range(ROUNDS):
                cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
                status = _wait(client, _submit(client, archive))
                seconds, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - cpu0
                jobs.append((len(cifs) / seconds, cpu / len(cifs) * 1000))
                offline.append(_offline_throughput(pool, offline_models, [c for _, c in cifs]))
            idle: list[float] = []
            for _ in range(25):
                _probe(client, probe, idle)
            busy: list[float] = []
            loaded = _wait(
                client, _submit(client, _tar_gz(cifs[:N_PROBE_JOB])), on_tick=lambda: _probe(client, probe, busy)
            )

    (job_rate, job_cpu), (off_rate, off_cpu) = _median(jobs), _median(offline)
    ratio = job_rate / off_rate
    rounds = ", ".join(f"{j[0] / o[0]:.0%}" for j, o in zip(jobs, offline, strict=True))
    rows = [
        (
            f"job, {len(cifs)} CIFs ({len(archive) / 1e6:.1f} MB .tar.gz), POST to done",
            f"{job_rate:.0f} structures/s  ({job_cpu:.1f} CPU ms/structure)",
        ),
        (f"  rows: {status['counts']['ok']} ok, {status['counts']['failed']} failed", ""),
        (
            f"offline pipeline (pool of {PARSE_WORKERS} + in-process predict)",
            f"{off_rate:.0f} structures/s  ({off_cpu:.1f} CPU ms/structure)",
        ),
        ("job / offline", f"{ratio:.0%}  (rounds: {rounds})"),
        ("POST /v1/predict p50 / p99, idle server", f"{_ms(idle, 50):.0f} / {_ms(idle, 99):.0f} ms"),
        (
            f"POST /v1/predict p50 / p99, during a {N_PROBE_JOB}-CIF job ({len(busy)} requests)",
            f"{_ms(busy, 50):.0f} / {_ms(busy, 99):.0f} ms" if busy else "n/a",
        ),
        ("  that job's throughput meanwhile", f"{N_PROBE_JOB / _seconds(loaded):.0f} structures/s"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}".rstrip())
    print(
        f"target: job >= {TARGET_RATIO:.0%} of offline: {'met' if ratio >= TARGET_RATIO else 'MISSED'} "
        f"(median of {ROUNDS} alternating rounds; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})"
    )


def _median(values: list[tuple[float, float]]) -> tuple[float, float]:
    return float(np.median([v[0] for v in values])), float(np.median([v[1] for v in values]))


def _seconds(status: dict[str, Any]) -> float:
    return (datetime.fromisoformat(status["finished"]) - datetime.fromisoformat(status["started"])).total_seconds()
