"""Jobs on Ray next to jobs in process, and what more Ray workers would give (a model, not a cluster).

Needs the ``[ray]`` extra (skipped without it). On this machine:

- the same 5,000 CIFs of the data set as one job (``POST /v1/jobs`` of a ``.tar.gz`` until
  ``done``) on the real server (``python -m service``, 2 parse workers), once with the
  in-process executor and once with ``CRYSTAL_JOBS_EXECUTOR=ray`` against a local Ray instance
  started here (``ray.init(num_cpus=3)``: 2 parse tasks at a time plus 1 inference actor, the
  in-process executor's 2 parse workers plus 1 inference thread). Reported: structures/s, the
  start-up seconds (a 5-CIF job on a fresh server: Ray's connect and the actor's model loading
  land there), and peak RSS of every process this bench started (server, parse workers, Ray's
  GCS, raylet and workers; RSS counts shared pages in each process, so Ray's shared memory is
  counted more than once: an upper bound);
- for the scale-out model: one parse task's files/s per CPU (the same 1,000 files, 16 per task,
  2 at a time), one actor's structures/s on pre-parsed files, the head's rate of tiny tasks
  (2,000 no-op tasks), and the job store's commit rate (the service's SQLite, one process).

The scale-out figure multiplies and takes minima; its assumptions are printed with it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from .service import _models_or_stand_ins, _sample, _server

__all__ = ["run"]

N_JOB = 5000
N_PARSE = 1000
N_TINY = 2000
PARSE_BATCH = 16
RAY_CPUS = 3
WORKERS = (1, 8, 32, 128, 512)


def _tar_gz(cifs: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for name, data in cifs:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _job(client: httpx.Client, archive: bytes) -> tuple[float, dict[str, Any]]:
    """Seconds from ``POST /v1/jobs`` to ``done``, and the final status."""
    t0 = time.perf_counter()
    r = client.post("/v1/jobs", content=archive, headers={"Content-Type": "application/gzip"})
    job_id = r.raise_for_status().json()["id"]
    while True:
        status = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if status["state"] in {"done", "failed", "cancelled"}:
            if status["state"] != "done":
                raise RuntimeError(f"the bench job ended {status['state']}: {status['error']}")
            return time.perf_counter() - t0, status
        time.sleep(0.1)


@contextlib.contextmanager
def _peak_rss() -> Iterator[list[int]]:
    """Samples (every 0.2 s) the summed RSS of this process's descendants; ``[peak]`` when done."""
    import psutil

    me, peak, stop = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            total = 0
            for p in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            peak[0] = max(peak[0], total)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def _executor_run(models: Path, data: Path, archive: bytes, warm: bytes, **env: str) -> dict[str, float]:
    with _peak_rss() as peak:
        t0 = time.perf_counter()
        with _server(models, CRYSTAL_DATA_DIR=str(data), **env) as (url, _):
            ready = time.perf_counter() - t0
            with httpx.Client(base_url=url, timeout=600) as client:
                first, _ = _job(client, warm)
                seconds, status = _job(client, archive)
    return {
        "rate": status["counts"]["total"] / seconds,
        "ready": ready,
        "first": first,
        "peak": peak[0] / 2**20,
        "ok": status["counts"]["ok"],
        "failed": status["counts"]["failed"],
    }


def _cluster_rates(models: Path, cifs: list[tuple[str, bytes]], data: Path) -> dict[str, float]:
    """Per-CPU parse rate, one actor's rate, tiny-task rate of the head, store commit rate (Ray running)."""
    import ray

    from service import Settings
    from service.jobs._ray_workers import InferenceActor, parse_files, selection_spec
    from service.jobs._store import FileResult, InputRow, JobStore
    from service.repository import load_registry

    settings = Settings(models_dir=models, data_dir=data)
    selection = load_registry(models, backend="auto", device="cpu").select(None)
    configs = list(selection.graph_configs)
    items = [(name, data, None) for name, data in cifs[:N_PARSE]]
    parse = ray.remote(parse_files).options(num_cpus=1)
    batches = [items[i : i + PARSE_BATCH] for i in range(0, len(items), PARSE_BATCH)]
    ray.get([parse.remote(b, configs, 500, False, 10.0) for b in batches[:4]])  # warm the workers
    t0 = time.perf_counter()
    refs = [parse.remote(b, configs, 500, False, 10.0) for b in batches]
    ray.wait(refs, num_returns=len(refs))
    parse_rate = len(items) / (time.perf_counter() - t0) / 2  # 2 parse tasks ran at a time

    actor: Any = ray.remote(InferenceActor).options(num_cpus=1).remote(settings)
    ray.get(actor.ready.remote())
    spec = selection_spec(selection)
    rows = [[InputRow(k, n, 0, 0) for k, (n, _, _) in enumerate(b, i * PARSE_BATCH)] for i, b in enumerate(batches)]
    ray.get(actor.predict.remote(spec, rows[0], refs[0]))
    t0 = time.perf_counter()
    out = ray.get([actor.predict.remote(spec, r, ref) for r, ref in zip(rows, refs, strict=True)])
    actor_rate = sum(len(f.rows) for chunk in out for f in chunk) / (time.perf_counter() - t0)
    ray.kill(actor)

    # One CPU each, as parse tasks: the workers are started and reused, so this times the scheduling
    # round trip, not worker start-up (tasks of 0.01 CPU made Ray start a worker process for each).
    noop = ray.remote(lambda: None).options(num_cpus=1)
    ray.get([noop.remote() for _ in range(100)])
    t0 = time.perf_counter()
    ray.get([noop.remote() for _ in range(N_TINY)])
    tiny_rate = N_TINY / (time.perf_counter() - t0)

    store = JobStore(settings.data_dir / "jobs.sqlite3")
    store.open()
    results = [f for chunk in out for f in chunk]
    inputs = [InputRow(f.idx, "x.cif", 0, 0) for f in results]
    store.create(job_id="b", created=0, models=[], properties=[], inputs=inputs, input_bytes=0, idempotency_key=None)
    t0 = time.perf_counter()
    for i in range(0, len(results), 64):
        store.record("b", [FileResult(f.idx, f.rows) for f in results[i : i + 64]])
    commit_rate = len(results) / (time.perf_counter() - t0)
    store.close()
    return {"parse": parse_rate, "actor": actor_rate, "tiny": tiny_rate, "commit": commit_rate}


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    if importlib.util.find_spec("ray") is None:
        print("skipped: Ray is not installed (pip install '.[ray]')")
        return
    import ray

    cifs = _sample(sorted((args.data / "cifs").glob("*.cif")), N_JOB)
    archive, warm = _tar_gz(cifs), _tar_gz(cifs[:5])
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        models = _models_or_stand_ins(Path(args.models), Path(tmp) / "models")
        here = _executor_run(models, Path(tmp) / "data-inprocess", archive, warm)
        # A local instance on this machine only: no token, which Ray would otherwise write to ~/.ray.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            num_cpus=RAY_CPUS, include_dashboard=False, _temp_dir=str(Path(tmp) / "ray"), logging_level=logging.WARNING
        )
        try:
            address = ray.get_runtime_context().gcs_address
            on_ray = _executor_run(
                models,
                Path(tmp) / "data-ray",
                archive,
                warm,
                CRYSTAL_JOBS_EXECUTOR="ray",
                CRYSTAL_RAY_ADDRESS=address,
                CRYSTAL_RAY_PARSE_BATCH=str(PARSE_BATCH),
            )
            rates = _cluster_rates(models, cifs, Path(tmp) / "data-rates")
        finally:
            ray.shutdown()

    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load:.1f} (two training runs and other engineers' "
        "tests share it: absolute figures are low and noisy, compare the two executors)"
    )
    print(f"{N_JOB} CIFs, one job each ({len(archive) / 1e6:.1f} MB .tar.gz); rows ok/failed: ", end="")
    print(f"in process {here['ok']}/{here['failed']}, ray {on_ray['ok']}/{on_ray['failed']}")
    rows = [
        ("", "in process", "ray"),
        ("job throughput (structures/s)", f"{here['rate']:.1f}", f"{on_ray['rate']:.1f}"),
        ("server start to /readyz (s)", f"{here['ready']:.1f}", f"{on_ray['ready']:.1f}"),
        ("first 5-CIF job, POST to done (s)", f"{here['first']:.1f}", f"{on_ray['first']:.1f}"),
        ("peak RSS, all processes (MiB)", f"{here['peak']:.0f}", f"{on_ray['peak']:.0f}"),
    ]
    for name, a, b in rows:
        print(f"{name:<36}{a:>12}{b:>12}")
    print(f"ray / in process throughput: {on_ray['rate'] / here['rate']:.0%}")
    print(
        f"\nscale-out model, measured here: parse {rates['parse']:.1f} files/s per CPU ({PARSE_BATCH} per task); "
        f"one CPU actor {rates['actor']:.0f} structures/s; head {rates['tiny']:.0f} tiny tasks/s; "
        f"job store commits {rates['commit']:.0f} files/s"
    )
    columns = ("parse CPUs", "parse-bound", "head-bound", "commit-bound", "actors", "estimate")
    print("  ".join(f"{c:>12}" for c in columns))
    head_bound = rates["tiny"] * PARSE_BATCH / 2  # each 16-file batch is two tasks: parse, predict
    for n in WORKERS:
        parse_bound = rates["parse"] * n
        actors = max(1, round(parse_bound / rates["actor"] + 0.5))
        estimate = min(parse_bound, head_bound, rates["commit"])
        print("  ".join(f"{v:>12.0f}" for v in (n, parse_bound, head_bound, rates["commit"], actors, estimate)))
    print(
        "assumptions: parsing scales linearly with CPUs (files are independent; per-CPU rate measured here, "
        "under load, so an idle cluster does better); inference scales with actors (ray_actors, one per GPU on "
        "GPU nodes), sized so they keep up; each 16-file batch costs the head 2 tasks, the tiny-task rate "
        "measured here on a 2-CPU head being its ceiling; the service commits every row in one SQLite "
        "process (the job store), measured here; network transfer of graphs (~tens of kB per structure) is "
        "not modelled. Figures in structures/s."
    )
