"""Start-up work before ``/readyz`` says 200: warm every parse worker and model, check batch invariance.

The check predicts a few crystals built in code, each alone and all in one batch, with each
model's predictor on its inference thread, and compares the answers bit for bit. It confirms on
the machine at hand what the backend's padding is for (see :mod:`service.backends._padding`); a
model that fails it still serves, with a warning in the log and ``batch_invariant: false`` in
``/v1/models``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crystalgraph import GraphArrays, GraphConfig, collate

from .backends import Predictor
from .engine import Engine
from .registry import ModelEntry

__all__ = ["WarmupReport", "warmup_cifs", "warm_up", "batch_invariant"]

log = logging.getLogger("service.warmup")


def warmup_cifs() -> list[str]:
    """CIFs of small crystals built with pymatgen.

    Rock salt, fcc Cu (one atom), CsCl, a perovskite and a triclinic cell.
    """
    from pymatgen.core.lattice import Lattice
    from pymatgen.core.structure import Structure
    from pymatgen.io.cif import CifWriter

    a = 3.61
    structures = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
        Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Cu"], [[0, 0, 0]]),
        Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
        Structure(
            Lattice.cubic(3.905),
            ["Sr", "Ti", "O", "O", "O"],
            [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]],
        ),
        Structure(
            Lattice.from_parameters(4.1, 5.3, 6.2, 77.0, 84.0, 101.0),
            ["Si", "O", "Mg"],
            [[0.1, 0.2, 0.3], [0.55, 0.35, 0.8], [0.8, 0.7, 0.15]],
        ),
    ]
    return [str(CifWriter(s)) for s in structures]


def _pair_graph() -> GraphArrays:
    """Two atoms (Na, Cl) bonded both ways: a valid input for any model and graph settings."""
    return GraphArrays(
        z=np.array([11, 17], dtype=np.int64),
        edge_index=np.array([[1, 0], [0, 1]], dtype=np.int64),
        edge_dist=np.array([2.82, 2.82], dtype=np.float32),
    )


def batch_invariant(predictor: Predictor, graphs: Sequence[GraphArrays]) -> bool:
    """Whether each graph's predictions alone equal its predictions in one batch, bit for bit."""
    alone = np.concatenate([predictor.predict(collate([g])) for g in graphs])
    together = predictor.predict(collate(graphs))
    backwards = predictor.predict(collate(graphs[::-1]))[::-1]
    return bool(np.array_equal(alone, together) and np.array_equal(alone, backwards))


def _advice(predictor: Predictor) -> str:
    """What to do about a model that failed the batch-invariance check."""
    if predictor.backend == "onnx" and predictor.device.startswith("cuda"):
        return "onnxruntime's CUDA scatter-add uses atomics: CRYSTAL_BACKEND=torch sums deterministically on CUDA"
    if predictor.precision == "float64":
        return "in float64 such differences are ~1e-15, below the 6 decimals returned"
    return "CRYSTAL_PRECISION=float64 makes such differences ~1e-15"


@dataclass
class WarmupReport:
    """Models that could not predict (not served), and the batch-invariance check of the others."""

    failed: dict[ModelEntry, str] = field(default_factory=dict)
    batch_invariant: dict[ModelEntry, bool] = field(default_factory=dict)


async def warm_up(engine: Engine, entries: Sequence[ModelEntry]) -> WarmupReport:
    """Featurize the warm-up crystals in the pool (starting every worker), then run every model."""
    configs = tuple({e.fingerprint: e.graph for e in entries}.values()) or (GraphConfig(),)
    cifs = [c.encode() for c in warmup_cifs()]
    cifs = (cifs * (1 + engine.settings.parse_workers // len(cifs)))[: max(len(cifs), engine.settings.parse_workers)]
    featurized = [f for fs in await engine.featurize_all(cifs, configs) for f in fs]
    report = WarmupReport()
    for entry in entries:
        graphs = [f.graphs[entry.fingerprint] for f in featurized if entry.fingerprint in f.graphs] or [_pair_graph()]
        worker = engine.worker(entry)
        try:
            await worker.predict(entry, graphs[0])
            ok = await worker.call(batch_invariant, entry.predictor, graphs)
        except Exception as exc:  # noqa: BLE001 - a model that cannot predict is not served
            report.failed[entry] = f"warm-up failed: {exc}"
            log.error("refusing model %s: warm-up failed: %s", entry.ref, exc)
            continue
        report.batch_invariant[entry] = ok
        if not ok:
            p = entry.predictor
            log.warning(
                "model %s (%s, %s, %s): a structure's answer depends on the batch it shares, in the last bits; %s",
                entry.ref,
                p.backend,
                p.precision,
                p.device,
                _advice(p),
            )
    return report
