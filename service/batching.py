"""Micro-batching: one inference worker per device gathers concurrent structures into batches.

Requests hand single graphs to :meth:`InferenceWorker.predict`. The worker takes what is
queued and, only while other structures are still being parsed (nothing else could arrive
otherwise, so a lone request never waits), waits up to a window for more until some model has a
full micro-batch. Structures of batch jobs are marked ``bulk``: while only they are queued the
window is longer (``bulk_wait_s``), since a job trickles in at the parse pool's pace and small
micro-batches would cost it several times more inference per structure; an interactive
structure arriving cuts the wait back to ``wait_s``. It groups the jobs by model and runs each
group as one collated batch on a dedicated thread, so the event loop stays free; before each
micro-batch, structures that arrived meanwhile join, interactive ones first. Small batches cost
several times more CPU per structure than batches of a few hundred atoms, so the window pays
for itself under load. In eval mode a crystal's prediction does not depend on the rest of its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from crystalgraph import GraphArrays, ModelInputs, collate

from .errors import InferenceFailed, ModelNotReady
from .metrics import Metrics
from .registry import ModelEntry

__all__ = ["InferenceWorker"]

log = logging.getLogger("service.batching")

T = TypeVar("T")


@dataclass(eq=False)
class _Job:
    entry: ModelEntry
    graph: GraphArrays
    future: asyncio.Future[np.ndarray] = field(repr=False)
    bulk: bool = False


class InferenceWorker:
    """Runs every model of one device on one thread, in micro-batches.

    Args:
        device: The device its models live on (a label for logs and the thread name).
        metrics: Where batch sizes and inference seconds are recorded.
        max_structures: Largest micro-batch per model.
        max_atoms: Largest number of atoms per micro-batch.
        wait_s: Window to wait for more jobs when ``more_coming()`` says some are on their way.
        bulk_wait_s: The window while every queued structure is ``bulk``.
        more_coming: True while structures are being parsed that will need this worker.
    """

    def __init__(
        self,
        device: str,
        *,
        metrics: Metrics,
        max_structures: int = 64,
        max_atoms: int = 16_384,
        wait_s: float = 0.01,
        bulk_wait_s: float = 0.1,
        more_coming: Callable[[], bool] = lambda: False,
    ) -> None:
        self.device = device
        self.metrics = metrics
        self.max_structures = max_structures
        self.max_atoms = max_atoms
        self.wait_s = wait_s
        self.bulk_wait_s = bulk_wait_s
        self.more_coming = more_coming
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the batching loop and its thread (call from the event loop)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{self.device}")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"inference-{self.device}")

    async def stop(self) -> None:
        """Stop the loop; jobs still queued fail with ``not_ready``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(ModelNotReady("The service is shutting down."))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def predict(self, entry: ModelEntry, graph: GraphArrays, *, bulk: bool = False) -> np.ndarray:
        """One structure's predictions, ``[T]`` in the order of ``entry.targets`` (``[T + D]``: see ``_infer``).

        Args:
            entry: The model to run.
            graph: The structure's graph, built with the model's graph settings.
            bulk: A batch job's structure, which may wait longer for a full micro-batch.

        Raises:
            InferenceFailed: the model raised, or gave a wrong shape.
        """
        if self._task is None:
            raise ModelNotReady("The inference worker is not running.")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(entry, graph, future, bulk))
        return await future

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on this worker's inference thread (between micro-batches)."""
        if self._executor is None:
            raise ModelNotReady("The inference worker is not running.")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _drain(self, jobs: list[_Job]) -> None:
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())

    def _full(self, jobs: list[_Job]) -> bool:
        """Whether some model already has a full micro-batch."""
        atoms: dict[ModelEntry, int] = {}
        count: dict[ModelEntry, int] = {}
        for job in jobs:
            atoms[job.entry] = atoms.get(job.entry, 0) + job.graph.num_atoms
            count[job.entry] = count.get(job.entry, 0) + 1
        return any(atoms[e] >= self.max_atoms or count[e] >= self.max_structures for e in atoms)

    async def _gather(self) -> list[_Job]:
        """The next jobs: what is queued, plus what arrives within the wait window.

        The window stays open while structures are still being parsed and no model's
        micro-batch is full; it is longer while every job is bulk.
        """
        jobs = [await self._queue.get()]
        self._drain(jobs)
        start = time.perf_counter()
        while self.more_coming() and not self._full(jobs):
            window = self.bulk_wait_s if all(job.bulk for job in jobs) else self.wait_s
            left = start + window - time.perf_counter()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.001))
            self._drain(jobs)
        return jobs

    async def _run(self) -> None:
        """Run the queued structures one micro-batch at a time.

        Before each micro-batch, structures that arrived meanwhile join, interactive ones first.
        """
        loop = asyncio.get_running_loop()
        pending: list[_Job] = []
        collated: dict[tuple[int, ...], ModelInputs] = {}  # models sharing graphs collate them once
        while True:
            if pending:
                self._drain(pending)
            else:
                collated.clear()
                pending = await self._gather()
            groups = self._groups(pending)
            if not groups:  # every pending request was cancelled
                pending = []
                continue
            group = groups[0]
            taken = {id(job) for job in group}
            pending = [job for job in pending if id(job) not in taken]
            if len(collated) > 8:
                collated.clear()
            try:
                out = await loop.run_in_executor(self._executor, self._infer, group[0].entry, group, collated)
            except Exception as exc:  # a failing model fails its jobs, not the worker
                log.exception("inference failed for %s on %d structure(s)", group[0].entry.ref, len(group))
                error = InferenceFailed(f"Model {group[0].entry.ref} failed: {type(exc).__name__}: {exc}")
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            for job, row in zip(group, out, strict=True):
                if not job.future.done():  # the request may have been cancelled meanwhile
                    job.future.set_result(row)

    def _groups(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Live jobs grouped by model, then cut at ``max_structures`` / ``max_atoms``.

        Interactive jobs (not ``bulk``) and their models come first.
        """
        by_model: dict[ModelEntry, list[_Job]] = {}
        for job in sorted(jobs, key=lambda j: j.bulk):  # stable
            if not job.future.done():
                by_model.setdefault(job.entry, []).append(job)
        groups: list[list[_Job]] = []
        for model_jobs in by_model.values():
            current: list[_Job] = []
            atoms = 0
            for job in model_jobs:
                n = job.graph.num_atoms
                if current and (len(current) >= self.max_structures or atoms + n > self.max_atoms):
                    groups.append(current)
                    current, atoms = [], 0
                current.append(job)
                atoms += n
            groups.append(current)
        return groups

    def _infer(self, entry: ModelEntry, jobs: list[_Job], collated: dict[tuple[int, ...], ModelInputs]) -> np.ndarray:
        """Collate (or reuse the same graphs' batch) and predict on the worker thread.

        Returns ``[B, T]``, or ``[B, T + 1 + P]`` for a model with an uncertainty: its scores
        (:meth:`crystalgraph.ModelUncertainty.scores`, made here for the whole batch at once) follow
        the targets (``service.uncertainty.split_row``).
        """
        start = time.perf_counter()
        key = tuple(id(job.graph) for job in jobs)
        inputs = collated.get(key)
        if inputs is None:
            inputs = collated[key] = collate([job.graph for job in jobs])
        if entry.uncertainty is not None:  # the scores ride along after the targets: [B, T + 1 + P]
            values, embedding = entry.predictor.predict_embedded(inputs)  # type: ignore[attr-defined]
            scores = entry.uncertainty.scores(np.asarray(embedding), np.asarray(values), entry.targets)
            out = np.concatenate([np.asarray(values, np.float64), scores], axis=1)
            expected = (len(jobs), len(entry.targets) + scores.shape[1])
        else:
            out = np.asarray(entry.predictor.predict(inputs))
            expected = (len(jobs), len(entry.targets))
        if out.shape != expected:
            raise ValueError(f"predictor returned shape {out.shape}, expected {expected}")
        self.metrics.inference_seconds.labels(entry.ref).observe(time.perf_counter() - start)
        self.metrics.inference_batch.labels(entry.ref).observe(len(jobs))
        return out
