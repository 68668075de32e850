"""What sigma and the domain checks cost: HTTP batch throughput with and without them.

Two services run side by side on the same models: the repository as shipped (every default
model with its ``uncertainty.npz``), and a temporary copy whose manifests list no uncertainty
files (so the same ONNX graphs answer without sigma or domain warnings). Batches of ``N_BATCH``
CIFs from the data set alternate between them for ``ROUNDS`` rounds, so that load from other
processes falls on both alike; the median of each is reported, with the server's CPU
milliseconds per structure. The issue's rule: above 30% slower, uncertainty would become opt-in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from .service import _cpu_seconds, _sample, _server

__all__ = ["run"]

N_BATCH = 200
ROUNDS = 2
OPT_IN_ABOVE = 0.30


def _without_uncertainty(models: Path, folder: Path) -> Path:
    """A copy of the repository whose manifests list no uncertainty files."""
    shutil.copytree(models, folder, ignore=shutil.ignore_patterns("*.png", "*.md", "uncertainty.*"))
    for path in folder.glob("*/*/manifest.json"):
        manifest = json.loads(path.read_text())
        for key in ("uncertainty", "uncertainty_info"):
            manifest.get("files", {}).pop(key, None)
        manifest.pop("uncertainty", None)
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def _throughput(url: str, pid: int, cifs: list[tuple[str, bytes]], params: dict[str, str]) -> tuple[float, float]:
    """Structures/s and server CPU ms per structure of one batch request with every CIF."""
    with httpx.Client(base_url=url, timeout=900) as client:
        cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
        r = client.post("/v1/predict/batch", files=[("files", c) for c in cifs], params=params)
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - cpu0
        r.raise_for_status()
    return len(cifs) / seconds, cpu / len(cifs) * 1000


def run(args: argparse.Namespace) -> None:
    """Print throughput without uncertainty, with the default sigma, and with the ensemble (see above)."""
    models = Path(args.models)
    if not any(models.glob("*/*/uncertainty.npz")):
        print(f"no calibrated model in {models}: run `python -m training.uncertainty` first")
        return
    batch = _sample(sorted((Path(args.data) / "cifs").glob("*.cif")), N_BATCH)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        bare = _without_uncertainty(models, Path(tmp) / "models")
        with _server(models) as (url_u, pid_u), _server(bare) as (url_b, pid_b):
            for url, pid in ((url_u, pid_u), (url_b, pid_b)):  # warm both
                _throughput(url, pid, batch[:32], {})
            for _ in range(ROUNDS):
                for name, (params, bare_server) in MODES.items():
                    url, pid = (url_b, pid_b) if bare_server else (url_u, pid_u)
                    runs[name].append(_throughput(url, pid, batch, params))
    base = float(np.median([r[0] for r in runs["without uncertainty files"]]))
    print(
        f"HTTP batch, {len(batch)} CIFs, median of {ROUNDS} alternating rounds (load average {os.getloadavg()[0]:.1f})"
    )
    for name, values in runs.items():
        rate, cpu = (float(np.median([v[i] for v in values])) for i in (0, 1))
        cost = 1 - rate / base
        verdict = (
            ""
            if name.startswith("without")
            else f"  cost {cost:.0%}: {'opt-in' if cost > OPT_IN_ABOVE else 'always on'}"
        )
        rounds = ", ".join(f"{v[0]:.0f}" for v in values)
        print(f"  {name:<42} {rate:6.1f} structures/s  ({cpu:.1f} server CPU ms/structure; rounds {rounds}){verdict}")
    print(f"rule: above {OPT_IN_ABOVE:.0%} of the throughput without uncertainty, a mode is opt-in")


#: Mode name -> (query parameters, served by the copy without uncertainty files).
MODES = {
    "without uncertainty files": ({}, True),
    "default: sigma from embedding distance": ({}, False),
    "?uncertainty=ensemble: partner model too": ({"uncertainty": "ensemble"}, False),
}
