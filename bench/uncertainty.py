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
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .service import _batch_throughput, _sample, _server

__all__ = ["run"]

N_BATCH = 400
ROUNDS = 3
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


def run(args: argparse.Namespace) -> None:
    """Print throughput with and without uncertainty (see the module docstring)."""
    models = Path(args.models)
    if not any(models.glob("*/*/uncertainty.npz")):
        print(f"no calibrated model in {models}: run `python -m training.uncertainty` first")
        return
    batch = _sample(sorted((Path(args.data) / "cifs").glob("*.cif")), N_BATCH)
    with_u: list[tuple[float, float]] = []
    without: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bare = _without_uncertainty(models, Path(tmp) / "models")
        with _server(models) as (url_u, pid_u), _server(bare) as (url_b, pid_b):
            for _ in range(ROUNDS):
                rate, cpu, n_ok, n_failed = _batch_throughput(url_u, pid_u, batch)
                with_u.append((rate, cpu))
                rate, cpu, _, _ = _batch_throughput(url_b, pid_b, batch)
                without.append((rate, cpu))
    rate_u, cpu_u = (float(np.median([v[i] for v in with_u])) for i in (0, 1))
    rate_b, cpu_b = (float(np.median([v[i] for v in without])) for i in (0, 1))
    cost = 1 - rate_u / rate_b
    print(f"HTTP batch, {len(batch)} CIFs ({n_ok} ok, {n_failed} refused), median of {ROUNDS} alternating rounds")
    print(f"  with sigma and domain checks     {rate_u:6.0f} structures/s  ({cpu_u:.1f} server CPU ms/structure)")
    print(f"  without (no uncertainty files)   {rate_b:6.0f} structures/s  ({cpu_b:.1f} server CPU ms/structure)")
    print(
        "  rounds with / without: " + ", ".join(f"{u[0]:.0f}/{b[0]:.0f}" for u, b in zip(with_u, without, strict=True))
    )
    verdict = "opt-in needed" if cost > OPT_IN_ABOVE else "always on"
    print(f"  throughput cost {cost:.1%} (rule: above {OPT_IN_ABOVE:.0%} -> opt-in): {verdict}")
