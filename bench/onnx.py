"""torch vs onnxruntime CPU inference throughput at batch 1 and 64, on ~20-atom crystals.

Both runtimes are timed as the service runs them: through its backends' predictors
(``service.backends``: the torch one pads every batch for batch-invariant float32 answers,
the onnxruntime one converts tensors to numpy), float32, one intra-op thread each (the
service's ``CRYSTAL_TORCH_THREADS`` default; the inter-op pool is 1 for onnxruntime), on the
same prepared graphs: graph building is not timed. The exporter's plain graph
(``fast=False``) is timed too, to show what the kernel rewrites buy. The faster backend is
what ``CRYSTAL_BACKEND=auto`` serves with on a CPU. Models are fresh default CGCNN and SR-CGCNN with two targets:
speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from pymatgen.core.lattice import Lattice
from pymatgen.core.structure import Structure

import crystalgraph as cg
from service.backends._onnx import OnnxBackendPredictor
from service.backends._torch import TorchPredictor

__all__ = ["run", "THREADS"]

THREADS = 1
N_CRYSTALS = 64
SITES = range(18, 23)
REPEATS = 5


def _real_crystals(data: Path) -> list[Structure]:
    """The first ``N_CRYSTALS`` CIFs (sorted by name) with 18-22 sites that make a graph."""
    found: list[Structure] = []
    for path in sorted((data / "cifs").glob("*.cif")):
        try:
            structure = cg.parse_cif(path.read_bytes())[0][1]
            if len(structure) in SITES:
                cg.structure_to_graph(structure)
                found.append(structure)
        except cg.StructureError:
            continue
        if len(found) == N_CRYSTALS:
            break
    return found


def _built_crystals() -> list[Structure]:
    """20-atom cells: displaced 2x2x1 supercells of SrTiO3, lattice scaled a little each."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(N_CRYSTALS):
        a = 3.9 * (0.97 + 0.06 * i / N_CRYSTALS)
        cell = Structure(
            Lattice.cubic(a),
            ["Sr", "Ti", "O", "O", "O"],
            [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]],
        )
        cell.make_supercell([2, 2, 1])
        shifted = cell.cart_coords + rng.normal(scale=0.05, size=(len(cell), 3))
        out.append(Structure(cell.lattice, cell.species, shifted, coords_are_cartesian=True))
    return out


def _throughputs(
    calls: Mapping[str, Callable[[cg.ModelInputs], object]], batches: list[cg.ModelInputs]
) -> dict[str, float]:
    """Structures per second for each call: median of ``REPEATS`` passes over ``batches``.

    The calls take turns pass by pass, so that load from other processes hits them alike.
    """
    n_structures = sum(int(batch.num_atoms.shape[0]) for batch in batches)
    for call in calls.values():
        for inputs in batches[:3]:
            call(inputs)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(REPEATS):
        for name, call in calls.items():
            t0 = time.perf_counter()
            for inputs in batches:
                call(inputs)
            times[name].append(time.perf_counter() - t0)
    return {name: n_structures / statistics.median(t) for name, t in times.items()}


def run(args: argparse.Namespace) -> None:
    """Print this section's figures for ``args.data`` (see the module docstring)."""
    data = Path(args.data)
    structures = _real_crystals(data) if (data / "cifs").is_dir() else []
    source = f"{len(structures)} Materials Project CIFs with 18-22 sites"
    if len(structures) < N_CRYSTALS:
        structures, source = _built_crystals(), f"{N_CRYSTALS} built 20-atom SrTiO3 supercells"
    graphs = [cg.structure_to_graph(s) for s in structures]
    sizes = [g.num_nodes for g in graphs]
    print(f"{source} (mean {np.mean(sizes):.1f} atoms); {THREADS} threads for torch and onnxruntime")
    print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    singles = [cg.collate([g]) for g in graphs]
    full = [cg.collate(graphs)]

    targets = (cg.KNOWN_TARGETS["formation_energy_per_atom"], cg.KNOWN_TARGETS["band_gap"])
    configs = {name: arch.config(targets=targets) for name, arch in cg.ARCHITECTURES.items()}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, config in configs.items():
                torch.manual_seed(0)
                model = cg.build_model(config).eval()
                fast_path = cg.export_onnx(model, Path(tmp) / f"{name}.onnx")
                fast = OnnxBackendPredictor(cg.OnnxPredictor(fast_path, num_threads=THREADS))
                plain_path = cg.export_onnx(model, Path(tmp) / f"{name}-plain.onnx", fast=False)
                plain = OnnxBackendPredictor(cg.OnnxPredictor(plain_path, num_threads=THREADS))
                padded = TorchPredictor(model, "cpu", "float32")
                with torch.inference_mode():
                    diff = float(np.abs(fast.predict(full[0]) - padded.predict(full[0])).max())
                    calls = {"torch": padded.predict, "onnx": fast.predict, "plain": plain.predict}
                    for batch_size, batches in ((1, singles), (N_CRYSTALS, full)):
                        speed = _throughputs(calls, batches)
                        rows.append((name, batch_size, speed["torch"], speed["onnx"], speed["plain"], diff))
    finally:
        torch.set_num_threads(previous_threads)

    print("structures/s; 'ort plain': the exporter's own graph (fast=False), for reference")
    print(f"{'model':<10}{'batch':>6}{'torch':>9}{'onnxruntime':>13}{'ort/torch':>11}{'ort plain':>11}  max|diff|")
    for name, batch_size, t, o, ort_plain, diff in rows:
        print(f"{name:<10}{batch_size:>6}{t:>9.0f}{o:>13.0f}{o / t:>10.2f}x{ort_plain:>11.0f}  {diff:.1e}")
    onnx_wins = sum(o > t for _, _, t, o, _, _ in rows)
    if onnx_wins == len(rows):
        verdict = "onnxruntime is faster in every case: CPU default onnx (CRYSTAL_BACKEND=auto)"
    elif onnx_wins == 0:
        verdict = "torch is faster in every case: CPU default torch"
    else:
        verdict = f"mixed: onnxruntime faster in {onnx_wins} of {len(rows)} cases"
    print(verdict)
