"""The micro-batching inference worker with real models, without HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from crystalgraph import GraphConfig
from service.batching import InferenceWorker
from service.errors import InferenceFailed
from service.featurize import GraphArrays, featurize
from service.metrics import Metrics
from service.repository import load_registry


@pytest.fixture(scope="module")
def graphs(cifs: dict) -> list[GraphArrays]:
    fp = GraphConfig().fingerprint
    names = ("nacl", "cu", "cscl", "srtio3", "triclinic", "big")
    return [featurize(cifs[n].encode(), [GraphConfig()], 500)[0].graphs[fp] for n in names]


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_batched_answers_equal_one_by_one_answers(models_dir: Path, graphs: list, precision: str) -> None:
    registry = load_registry(models_dir, backend="torch", device="cpu", precision=precision)
    metrics = Metrics()

    async def run() -> tuple[list, list]:
        worker = InferenceWorker("cpu", metrics=metrics, max_structures=4, wait_s=0.01, more_coming=lambda: True)
        worker.start()
        try:
            alone = []
            for g in graphs:
                alone.append([await worker.predict(e, g) for e in registry.entries])
            together = await asyncio.gather(
                *(asyncio.gather(*(worker.predict(e, g) for e in registry.entries)) for g in graphs * 3)
            )
            return alone, list(together)
        finally:
            await worker.stop()

    alone, together = asyncio.run(run())
    for i, rows in enumerate(together):
        for a, b in zip(alone[i % len(graphs)], rows, strict=True):
            assert np.array_equal(a, b)  # bit for bit: the torch backend pads every batch
    sizes = metrics.registry.get_sample_value(
        "crystal_inference_batch_structures_sum", {"model": "cgcnn-formation-energy@1"}
    )
    counts = metrics.registry.get_sample_value(
        "crystal_inference_batch_structures_count", {"model": "cgcnn-formation-energy@1"}
    )
    assert sizes == 4 * len(graphs) and counts < 2 * len(graphs)  # the concurrent ones were batched


def test_a_failing_batch_fails_its_jobs_and_the_worker_goes_on(models_dir: Path, graphs: list) -> None:
    entry = load_registry(models_dir, backend="torch", device="cpu").get("cgcnn-formation-energy")
    bad = GraphArrays(z=np.array([250]), edge_index=np.array([[0], [0]]), edge_dist=np.array([2.0], dtype=np.float32))

    async def run() -> np.ndarray:
        worker = InferenceWorker("cpu", metrics=Metrics())
        worker.start()
        try:
            with pytest.raises(InferenceFailed, match="cgcnn-formation-energy@1"):
                await worker.predict(entry, bad)
            return await worker.predict(entry, graphs[0])
        finally:
            await worker.stop()

    assert asyncio.run(run()).shape == (1,)
