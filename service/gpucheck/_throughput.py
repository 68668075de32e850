"""In-process timing and batch-invariance of each model's predictor, as the service loads it.

Graphs are built in advance (graph building is the parse pool's work, not the device's) and
collated in advance; what is timed is ``Predictor.predict`` on collated ``ModelInputs``, result
copied back to the host, as the inference worker calls it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from crystalgraph import ModelInputs, StructureError, cif_to_graphs, collate

from ..backends import resolve_precision
from ..registry import ModelEntry
from ..repository import load_registry
from ..settings import Settings

__all__ = ["ModelTiming", "graphs_for", "time_models"]


@dataclass
class ModelTiming:
    """One model on one backend and device.

    Attributes:
        rates: Structures per second, by batch size.
        bit_identical: Each structure's answer alone equals its answer in one full batch, bit for bit.
        max_batch_diff: Largest |difference| between the two.
        repeatable: The same batch predicted twice gives the same bits.
    """

    ref: str
    backend: str
    device: str
    precision: str
    rates: dict[int, float]
    bit_identical: bool
    max_batch_diff: float
    repeatable: bool

    def line(self) -> str:
        rates = ", ".join(f"batch {b}: {r:,.0f}/s" for b, r in sorted(self.rates.items()))
        invariant = "bit-identical" if self.bit_identical else f"max |diff| {self.max_batch_diff:.2g}"
        return (
            f"    {self.ref:<36} {self.backend:<5} {self.device:<7} {self.precision:<8} {rates}; "
            f"alone = in a batch: {invariant}; "
            f"repeatable: {'yes' if self.repeatable else 'no'}"
        )


def graphs_for(entry: ModelEntry, cifs: Sequence[bytes]) -> list[Data]:
    """The graphs of every block of ``cifs`` that the model can take."""
    graphs: list[Data] = []
    for data in cifs:
        try:
            graphs.extend(graph for _, graph in cif_to_graphs(data, entry.graph))
        except StructureError:
            continue
    return graphs


def _rate(entry: ModelEntry, batches: Sequence[ModelInputs], structures: int, min_seconds: float) -> float:
    predict = entry.predictor.predict
    for batch in batches[:2]:  # warm-up: kernels, allocator
        predict(batch)
    done, start = 0, time.perf_counter()
    while True:
        for batch in batches:
            predict(batch)
        done += structures
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def time_models(
    models_dir: Path,
    backend: str,
    device: str,
    cifs: Sequence[bytes],
    batch_sizes: Sequence[int] = (1, 256),
    min_seconds: float = 2.0,
) -> list[ModelTiming]:
    """Time every model of ``models_dir`` with ``backend`` on ``device`` at each batch size.

    ``device`` is a resolved device; the structures of ``cifs`` are repeated to fill a batch.

    Raises:
        RuntimeError: a model folder was refused, or no structure could be made into a graph.
    """
    torch.set_num_threads(Settings().torch_threads)  # as the service's inference worker runs
    precision = resolve_precision("auto", device)
    registry = load_registry(models_dir, backend=backend, device=device, precision=precision)
    if registry.refused:
        raise RuntimeError(f"{backend}/{device}: refused {[(r.path, r.reason) for r in registry.refused]}")
    out = []
    for entry in registry.entries:
        graphs = graphs_for(entry, cifs)
        if not graphs:
            raise RuntimeError(f"{entry.ref}: no structure of the sample makes a graph for it")
        rates = {}
        for size in batch_sizes:
            n = max(size, len(graphs)) if size == 1 else size
            cycled = [graphs[i % len(graphs)] for i in range(n)]
            batches = [collate(cycled[i : i + size]) for i in range(0, n, size)]
            rates[size] = _rate(entry, batches, n, min_seconds)
        full = collate(graphs[: max(batch_sizes)])
        alone = np.concatenate([entry.predictor.predict(collate([g])) for g in graphs[: max(batch_sizes)]])
        together = entry.predictor.predict(full)
        again = entry.predictor.predict(full)
        out.append(
            ModelTiming(
                ref=entry.ref,
                backend=entry.predictor.backend,
                device=entry.predictor.device,
                precision=entry.predictor.precision,
                rates=rates,
                bit_identical=bool(np.array_equal(alone, together)),
                max_batch_diff=float(np.max(np.abs(alone.astype(np.float64) - together))),
                repeatable=bool(np.array_equal(together, again)),
            )
        )
    return out
