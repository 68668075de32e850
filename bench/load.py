"""Load and soak: 8 clients mixing single and batch predictions against the real server.

Starts ``python -m service`` (2 parse workers, the service's own HTTP limits) on ``--models``
(or default-size stand-ins) and runs ``CLIENTS`` asyncio clients for ``LOAD_S`` seconds, then,
with ``--soak-s N`` (``make bench`` passes 600), the same mix for N more seconds. Each client
loops: 4 times in 5 one ``POST /v1/predict`` of a CIF of the data set, else one
``POST /v1/predict/batch`` of 16. Reported per phase: requests and structures per second,
p50/p99 latency per kind, errors (5xx and transport errors; a 422 for a CIF the models cannot
predict is an answer, counted apart), and the resident memory of the server's process tree
(server and parse workers) after warm-up, at the end of the load, every minute of the soak and
at its end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from .service import _models_or_stand_ins, _sample, _server

__all__ = ["run"]

CLIENTS = 8
LOAD_S = 60.0
BATCH = 16
SAMPLE = 400


def _tree_rss(pid: int) -> int:
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


@dataclass
class _Tally:
    single: list[float] = field(default_factory=list)
    batch: list[float] = field(default_factory=list)
    structures: int = 0
    refused: int = 0
    errors: int = 0
    first_error: str = ""


async def _client(
    client: httpx.AsyncClient, cifs: list[tuple[str, bytes]], until: float, tally: _Tally, seed: int
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        batch = rng.random() < 0.2
        t0 = time.perf_counter()
        try:
            if batch:
                files = [("files", cifs[rng.randrange(len(cifs))]) for _ in range(BATCH)]
                r = await client.post("/v1/predict/batch", files=files)
            else:
                r = await client.post("/v1/predict", files={"file": cifs[rng.randrange(len(cifs))]})
        except httpx.HTTPError as exc:
            tally.errors += 1
            tally.first_error = tally.first_error or repr(exc)
            continue
        seconds = time.perf_counter() - t0
        if r.status_code >= 500:
            tally.errors += 1
            tally.first_error = tally.first_error or f"{r.status_code} {r.text[:200]}"
        elif r.status_code == 422 and not batch:
            tally.refused += 1
        elif r.status_code == 200:
            (tally.batch if batch else tally.single).append(seconds)
            tally.structures += r.json()["n_ok"] if batch else 1
        else:
            tally.errors += 1
            tally.first_error = tally.first_error or f"{r.status_code} {r.text[:200]}"


async def _sample_rss(pid: int, tally: _Tally, until: float, every_s: float) -> None:
    """Print the server tree's RSS and the answers so far every ``every_s`` seconds (a leak shows as a trend)."""
    start = time.monotonic()
    while (left := until - time.monotonic()) > every_s / 2:
        await asyncio.sleep(min(every_s, left))
        n = len(tally.single) + len(tally.batch)
        print(
            f"  {time.monotonic() - start:4.0f} s: RSS {_tree_rss(pid) / 2**20:.0f} MiB, {n} answers, "
            f"{tally.errors} errors",
            flush=True,
        )


async def _phase(url: str, cifs: list[tuple[str, bytes]], seconds: float, rss_of: int | None = None) -> _Tally:
    tally = _Tally()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        until = time.monotonic() + seconds
        jobs = [_client(client, cifs, until, tally, seed) for seed in range(CLIENTS)]
        if rss_of is not None:
            jobs.append(_sample_rss(rss_of, tally, until, every_s=60.0))
        await asyncio.gather(*jobs)
    return tally


def _ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "-"


def _report(name: str, tally: _Tally, seconds: float) -> None:
    n = len(tally.single) + len(tally.batch)
    print(
        f"{name}: {n / seconds:.1f} requests/s, {tally.structures / seconds:.1f} structures/s; "
        f"single p50/p99 {_ms(tally.single, 50)}/{_ms(tally.single, 99)} ms ({len(tally.single)}), "
        f"batch of {BATCH} p50/p99 {_ms(tally.batch, 50)}/{_ms(tally.batch, 99)} ms ({len(tally.batch)}); "
        f"errors {tally.errors}{' (first: ' + tally.first_error + ')' if tally.errors else ''}, "
        f"422 refusals {tally.refused}",
        flush=True,
    )


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    paths = sorted((args.data / "cifs").glob("*.cif"))
    cifs = _sample(paths, SAMPLE)
    soak_s = float(getattr(args, "soak_s", 0.0) or 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        models = _models_or_stand_ins(args.models, Path(tmp) / "models")
        with _server(models, CRYSTAL_DATA_DIR=str(Path(tmp) / "data")) as (url, pid):
            asyncio.run(_phase(url, cifs, 5.0))  # warm-up
            rss0 = _tree_rss(pid)
            print(
                f"{CLIENTS} clients, 1 in 5 requests a batch of {BATCH}; server tree RSS after warm-up "
                f"{rss0 / 2**20:.0f} MiB",
                flush=True,
            )
            tally = asyncio.run(_phase(url, cifs, LOAD_S))
            rss1 = _tree_rss(pid)
            _report(f"load {LOAD_S:.0f} s", tally, LOAD_S)
            print(f"RSS after load {rss1 / 2**20:.0f} MiB ({(rss1 - rss0) / 2**20:+.0f} MiB)", flush=True)
            if soak_s > 0:
                tally = asyncio.run(_phase(url, cifs, soak_s, rss_of=pid))
                rss2 = _tree_rss(pid)
                _report(f"soak {soak_s:.0f} s", tally, soak_s)
                print(
                    f"RSS after soak {rss2 / 2**20:.0f} MiB ({(rss2 - rss1) / 2**20:+.0f} MiB over the soak, "
                    f"{(rss2 - rss0) / 2**20:+.0f} MiB since warm-up)",
                    flush=True,
                )
            else:
                print("soak skipped (--soak-s 600 runs the 10-minute soak)", flush=True)
