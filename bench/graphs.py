"""CIF -> crystal graph throughput on 2,000 shared CIFs: one process, and a process pool."""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from crystalgraph import GraphConfig, cif_to_graphs

N_CIFS = 2000


def _build(data: bytes) -> int:
    return sum(g.num_nodes for _, g in cif_to_graphs(data, GraphConfig()))


def cif_sample(data_dir: Path, n: int) -> list[bytes]:
    """The first ``n`` CIFs of the folder in name order (a fixed, mixed sample of sizes)."""
    paths = sorted((data_dir / "cifs").glob("*.cif"))[:n]
    return [p.read_bytes() for p in paths]


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    cifs = cif_sample(args.data, N_CIFS)
    t0 = time.perf_counter()
    atoms = sum(_build(c) for c in cifs)
    serial = len(cifs) / (time.perf_counter() - t0)
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_build, cifs[:workers], chunksize=1))  # start the workers first
        t0 = time.perf_counter()
        list(pool.map(_build, cifs, chunksize=32))
        pooled = len(cifs) / (time.perf_counter() - t0)
    print(f"{len(cifs)} CIFs, {atoms / len(cifs):.1f} atoms each on average")
    print(f"{'CIF -> graph, 1 process':32s} {serial:8.0f} structures/s")
    print(f"{f'CIF -> graph, {workers} processes':32s} {pooled:8.0f} structures/s")
