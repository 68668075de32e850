"""The micro-batching inference worker with real models, without HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from crystalgraph import GraphArrays, GraphConfig
from service.batching import InferenceWorker
from service.errors import InferenceFailed
from service.featurize import featurize
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


def test_bulk_structures_wait_longer_for_a_full_batch_and_interactive_ones_cut_the_wait(
    models_dir: Path, graphs: list
) -> None:
    entry = load_registry(models_dir, backend="torch", device="cpu").get("cgcnn-formation-energy")
    metrics = Metrics()
    batches = ("crystal_inference_batch_structures_count", {"model": "cgcnn-formation-energy@1"})

    async def run() -> tuple[list[float], float]:
        # jobs arrive one every 100 ms while parsing goes on: past the 10 ms window, inside the 5 s bulk one
        worker = InferenceWorker(
            "cpu", metrics=metrics, max_structures=4, wait_s=0.01, bulk_wait_s=5.0, more_coming=lambda: True
        )
        worker.start()
        try:

            async def trickle(bulk: bool) -> list[np.ndarray]:
                tasks = []
                for g in graphs[:4]:
                    tasks.append(asyncio.ensure_future(worker.predict(entry, g, bulk=bulk)))
                    await asyncio.sleep(0.1)
                return list(await asyncio.gather(*tasks))

            before = metrics.registry.get_sample_value(*batches) or 0.0
            await trickle(bulk=True)
            bulk_batches = metrics.registry.get_sample_value(*batches) - before
            await trickle(bulk=False)
            interactive_batches = metrics.registry.get_sample_value(*batches) - before - bulk_batches
            # a lone bulk structure waits; an interactive one arriving ends the wait at once
            lone = asyncio.ensure_future(worker.predict(entry, graphs[0], bulk=True))
            await asyncio.sleep(0.1)
            t0 = asyncio.get_running_loop().time()
            await worker.predict(entry, graphs[1])
            waited = asyncio.get_running_loop().time() - t0
            await lone
            return [bulk_batches, interactive_batches], waited
        finally:
            await worker.stop()

    (bulk_batches, interactive_batches), waited = asyncio.run(run())
    assert bulk_batches == 1  # four bulk structures, 100 ms apart, made one micro-batch
    assert interactive_batches >= 3  # interactive ones did not wait past the 10 ms window
    assert waited < 1.0  # not the 5 s bulk window


def test_an_interactive_structure_runs_before_queued_bulk_ones(models_dir: Path, graphs: list) -> None:
    entry = load_registry(models_dir, backend="torch", device="cpu").get("cgcnn-formation-energy")

    async def run() -> list[str]:
        worker = InferenceWorker("cpu", metrics=Metrics(), max_structures=4, bulk_wait_s=0.0)
        worker.start()
        order: list[str] = []
        try:

            async def one(name: str, graph: GraphArrays, bulk: bool) -> None:
                await worker.predict(entry, graph, bulk=bulk)
                order.append(name)

            tasks = [asyncio.ensure_future(one(f"bulk{i}", graphs[i % 5], True)) for i in range(40)]
            tasks.append(asyncio.ensure_future(one("interactive", graphs[0], False)))
            await asyncio.gather(*tasks)
        finally:
            await worker.stop()
        return order

    order = asyncio.run(run())
    assert len(order) == 41
    assert order.index("interactive") < 5  # it joined the first micro-batch, not the 11th
