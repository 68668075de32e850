"""The prediction pipeline: CIF bytes -> graphs (process pool) -> models (micro-batches) -> answers.

Parsing and graph building run in a pool of worker processes, off the event loop (pymatgen holds
the GIL); batch jobs' files (``bulk``) go to a second pool, started on first use, whose workers
run at a lower CPU priority (``bulk_nice``), so that the operating system itself gives the CPU
to interactive requests first. Every file has a deadline (``parse_timeout_s``) and each worker a
memory cap (``parse_max_memory_bytes``), both enforced by :class:`~service.parse_pool.ParsePool`,
which also stops the parse of a file whose request went away (its coroutine was cancelled).
Each structure then goes to the inference worker of its models' device, which batches
concurrent structures together. A structure gets the same answer alone or in a batch (checked at
warm-up; the README says how far per device). The engine knows no HTTP: routes hand it uploads
and a model selection and get schemas back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict

from crystalgraph import GraphConfig, element_warnings, model_predictions, trust_signals

from .batching import InferenceWorker
from .catalog import provenance
from .errors import (
    InferenceFailed,
    InternalError,
    InvalidStructure,
    ParseMemoryExceeded,
    ParseTimeout,
    ServiceError,
    TooManyAtoms,
)
from .featurize import Featurized, featurize, init_worker
from .metrics import Metrics
from .parse_pool import ParsePool
from .registry import ModelEntry, Selection
from .schemas import BatchError, BatchItem, BatchResponse, BatchResult, Notice, Prediction, PredictResponse
from .settings import Settings
from .uncertainty import split_row
from .uploads import Upload

__all__ = ["Engine"]

log = logging.getLogger("service.engine")


def _structure_error(code: str, detail: str) -> ServiceError:
    return TooManyAtoms(detail) if code == TooManyAtoms.code else InvalidStructure(detail, code=code)


class Engine:
    """Parse pool plus one inference worker per device.

    Args:
        settings: Pool size, batching window and limits.
        metrics: Where the pipeline's counters go.
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._pools: dict[bool, ParsePool] = {}  # bulk -> pool
        self._running = False
        self._workers: dict[str, InferenceWorker] = {}
        self._parsing = 0

    # -- lifecycle -------------------------------------------------------------------------

    def _new_pool(self, bulk: bool) -> ParsePool:
        return ParsePool(
            self.settings.parse_workers,
            init_worker,
            (1, self.settings.bulk_nice if bulk else 0),
            timeout_s=self.settings.parse_timeout_s,
            memory_bytes=self.settings.parse_max_memory_bytes,
        )

    def _pool(self, bulk: bool) -> ParsePool:
        if not self._running:
            raise InternalError("The parse pool is not running.")
        pool = self._pools.get(bulk)
        if pool is None:
            pool = self._pools[bulk] = self._new_pool(bulk)
        return pool

    async def start(self, devices: Sequence[str], *, parse: bool = True) -> None:
        """Start the parse pool (unless ``parse`` is false: Ray tasks parse) and an inference worker per device."""
        self._running = True
        if parse:
            self._pools[False] = self._new_pool(bulk=False)
        for device in devices:
            max_structures, max_atoms = self.settings.batch_limits(device)
            worker = InferenceWorker(
                device,
                metrics=self.metrics,
                max_structures=max_structures,
                max_atoms=max_atoms,
                wait_s=self.settings.batch_wait_ms / 1000,
                bulk_wait_s=self.settings.batch_bulk_wait_ms / 1000,
                more_coming=lambda: self._parsing > 0,
            )
            worker.start()
            self._workers[device] = worker

    async def stop(self) -> None:
        """Stop the inference workers, then close the parse pools."""
        for worker in self._workers.values():
            await worker.stop()
        self._workers.clear()
        self._running = False
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    def worker(self, entry: ModelEntry) -> InferenceWorker:
        """The inference worker of the model's device."""
        return self._workers[entry.predictor.device]

    # -- parsing ---------------------------------------------------------------------------

    async def featurize_all(self, files: Sequence[bytes], configs: Sequence[GraphConfig]) -> list[list[Featurized]]:
        """:meth:`featurize` for several files at once (in file order)."""
        return list(await asyncio.gather(*(self.featurize(data, configs) for data in files)))

    async def featurize(
        self,
        data: bytes,
        configs: Sequence[GraphConfig],
        *,
        bulk: bool = False,
        filename: str | None = None,
        strict: bool | None = None,
    ) -> list[Featurized]:
        """Parse and build graphs in the pool (a crashed worker is replaced; the file retried once).

        Args:
            data: The file's bytes.
            configs: The graph settings to build a graph for (one per distinct fingerprint).
            bulk: A batch job's file, parsed in the lower-priority pool.
            filename: Helps the reader find the file's format.
            strict: Reader warnings become errors; ``None``: the ``strict`` setting.

        Returns:
            One :class:`Featurized` per data block, in file order; a block that cannot be
            predicted carries its error instead of graphs.

        Raises:
            ParseTimeout: the file took longer than ``parse_timeout_s``.
            ParseMemoryExceeded: the file needed more memory than a worker may use.
            InvalidStructure: ``parser_crashed``, the worker died on this file twice.
        """
        strict = self.settings.strict if strict is None else strict
        self._parsing += 1
        start = time.perf_counter()
        try:
            for _ in range(2):
                outcome = await self._pool(bulk).run(
                    featurize,
                    data,
                    tuple(configs),
                    self.settings.max_atoms,
                    filename,
                    strict,
                    self.settings.occupancy_tolerance,
                )
                if outcome.status == "ok":
                    feats: list[Featurized] = outcome.value
                    return self._memory_errors(feats) if outcome.heavy else feats
                if outcome.status == "timed_out":
                    raise ParseTimeout(
                        f"Reading this file took more than {self.settings.parse_timeout_s:g} s, the limit per file; "
                        "it was stopped."
                    )
                if outcome.status == "error":
                    if outcome.heavy:
                        raise self._memory_error()
                    raise InternalError(f"The parser failed on this file: {outcome.value}")
            raise InvalidStructure(
                "The parser process died twice on this file (a crash in the CIF reader, or the operating "
                "system stopped it); it was not read.",
                code="parser_crashed",
            )
        finally:
            self._parsing -= 1
            self.metrics.parse_seconds.observe(time.perf_counter() - start)

    def _memory_error(self) -> ParseMemoryExceeded:
        limit = self.settings.parse_max_memory_bytes
        return ParseMemoryExceeded(
            f"Reading this file needed more than {limit // 2**20:,} MiB of memory, the limit per file; it was stopped."
        )

    def _memory_errors(self, feats: list[Featurized]) -> list[Featurized]:
        """Blocks that failed in a worker that came near its memory cap failed for want of memory."""
        error = self._memory_error()
        return [
            Featurized(block=f.block, structure=f.structure, error=(error.code, error.detail))
            if f.error is not None
            else f
            for f in feats
        ]

    # -- prediction ------------------------------------------------------------------------

    async def _predict_block(self, feat: Featurized, selection: Selection, *, bulk: bool = False) -> PredictResponse:
        if feat.error is not None or feat.structure is None:
            code, detail = feat.error or ("invalid_structure", "The structure could not be read.")
            self.metrics.parse_failures.labels(code).inc()
            raise _structure_error(code, detail)
        rows = await asyncio.gather(
            *(self.worker(e).predict(e, feat.graphs[e.fingerprint], bulk=bulk) for e in selection.runs)
        )
        outputs = {e: split_row(row.tolist(), len(e.targets)) for e, row in zip(selection.runs, rows, strict=True)}
        for e, (values, _) in outputs.items():
            if not all(math.isfinite(v) for v in values):
                raise InferenceFailed(f"Model {e.ref} gave a non-finite value.")
        answered = {e.ref: (e.targets, outputs[e][0]) for e in selection.runs}
        values_of = [outputs[e][0] for e in selection.entries]
        sigmas, found_domain = trust_signals(
            selection.entries,
            values_of,
            [outputs[e][1] for e in selection.entries],
            answered,
            feat.structure,
            [feat.graphs[e.fingerprint].z for e in selection.entries],
        )
        domain = [Notice(code=n.code, detail=n.detail) for n in found_domain]
        # the answer's rules are the core's (crystalgraph.answers), shared with the offline Predictor
        found, others = model_predictions(
            selection.entries, values_of, selection.primary, selection.alternatives, sigmas
        )
        predictions = {p: Prediction(**asdict(pred)) for p, pred in found.items()}
        alternatives = {p: [Prediction(**asdict(pred)) for pred in preds] for p, preds in others.items()}
        warnings = [Notice(code=code, detail=detail) for code, detail in feat.warnings]
        unseen = element_warnings(selection.entries, feat.structure.elements)
        warnings += [Notice(code=n.code, detail=n.detail) for n in unseen]
        warnings.extend(domain)
        self.metrics.structures.labels("ok").inc()
        return PredictResponse(
            structure=feat.structure,
            predictions=predictions,
            alternatives=alternatives,
            warnings=warnings,
            provenance={e.ref: provenance(e) for e in selection.runs},
        )

    async def predict_one(self, upload: Upload, selection: Selection, *, strict: bool | None = None) -> PredictResponse:
        """``POST /v1/predict``: the first data block of one file (a warning names the others).

        Args:
            upload: The file, or the error found while receiving it (raised).
            selection: The models to run.
            strict: Reader warnings (and ``multiple_blocks``) become 422 errors; ``None``: the setting.

        Raises:
            ServiceError: the file cannot be predicted (``invalid_cif``, ``too_many_atoms``...).
        """
        if upload.error is not None:
            raise upload.error
        strict = self.settings.strict if strict is None else strict
        feats = await self.featurize(upload.data, selection.graph_configs, filename=upload.filename, strict=strict)
        try:
            response = await self._predict_block(feats[0], selection)
        except ServiceError:
            self.metrics.structures.labels("failed").inc()
            raise
        if len(feats) > 1:
            names = ", ".join(f"'{f.block}'" for f in feats)
            notice = Notice(
                code="multiple_blocks",
                detail=f"The file has {len(feats)} data blocks ({names}); this is the first. "
                "POST it to /v1/predict/batch to predict each block.",
            )
            if strict:
                raise InvalidStructure(f"Refused in strict mode: {notice.detail}", code=notice.code)
            response.warnings.insert(0, notice)
        return response

    def _failed(self, index: int, name: str, exc: Exception) -> BatchError:
        if not isinstance(exc, ServiceError):
            log.error("unexpected error on batch item %s", name, exc_info=exc)
            exc = InternalError("The server met an unexpected error on this file; it has been logged.")
        self.metrics.structures.labels("failed").inc()
        return BatchError(index=index, filename=name, error=Notice(code=exc.code, detail=exc.detail))

    async def _batch_item(self, index: int, name: str, feat: Featurized, selection: Selection, bulk: bool) -> BatchItem:
        try:
            response = await self._predict_block(feat, selection, bulk=bulk)
        except Exception as exc:  # noqa: BLE001 - a bad structure never fails the batch
            return self._failed(index, name, exc)
        return BatchResult(index=index, filename=name, **dict(response))

    async def _predict_file(
        self,
        index: int,
        upload: Upload,
        selection: Selection,
        gate: AbstractAsyncContextManager[object],
        bulk: bool,
        strict: bool | None = None,
    ) -> tuple[int, list[BatchItem]]:
        """Every data block of one batch file (``file#block`` when there are several)."""
        try:
            if upload.error is not None:
                raise upload.error
            async with gate:
                feats = await self.featurize(
                    upload.data, selection.graph_configs, bulk=bulk, filename=upload.filename, strict=strict
                )
        except Exception as exc:  # noqa: BLE001 - a bad file never fails the batch
            return index, [self._failed(index, upload.filename, exc)]
        return index, await self.predict_parsed(index, upload.filename, feats, selection, bulk=bulk)

    async def predict_parsed(
        self,
        index: int,
        filename: str,
        parsed: Sequence[Featurized] | Exception,
        selection: Selection,
        *,
        bulk: bool = False,
    ) -> list[BatchItem]:
        """The items of one file already parsed (here or by a Ray parse task), or of its parse error.

        Args:
            index: The file's position (each item's ``index``).
            filename: The file's name (``file#block`` when it has several blocks).
            parsed: :func:`~service.featurize.featurize`'s blocks, or why the file could not be read.
            selection: The models to run.
            bulk: A batch job's structures (see :meth:`iter_files`).
        """
        if isinstance(parsed, Exception):
            return [self._failed(index, filename, parsed)]
        multi = len(parsed) > 1
        names = [f"{filename}#{f.block}" if multi else filename for f in parsed]
        items = await asyncio.gather(
            *(self._batch_item(index, name, feat, selection, bulk) for name, feat in zip(names, parsed, strict=True))
        )
        return list(items)

    async def iter_files(
        self,
        uploads: Sequence[Upload],
        selection: Selection,
        *,
        gate: AbstractAsyncContextManager[object] | None = None,
        bulk: bool = False,
        strict: bool | None = None,
    ) -> AsyncGenerator[tuple[int, list[BatchItem]], None]:
        """Each file's results as soon as all its blocks are computed: ``(file position, items)``.

        Args:
            uploads: The files, in request order (one with an ``error`` gives a failed item).
            selection: The models to run.
            gate: Held by each file while it is parsed (default: ``batch_concurrency`` files at
                a time); parsed structures go on to inference without waiting for it.
            bulk: Throughput before latency (batch jobs): the files are parsed by the
                lower-priority pool, and the inference worker may hold their structures longer
                to fill its micro-batches (``batch_bulk_wait_ms``).
            strict: Reader warnings become per-structure errors; ``None``: the ``strict`` setting.
        """
        self.metrics.batch_files.observe(len(uploads))
        gate = gate if gate is not None else asyncio.Semaphore(self.settings.batch_concurrency)
        tasks = [
            asyncio.ensure_future(self._predict_file(i, u, selection, gate, bulk, strict))
            for i, u in enumerate(uploads)
        ]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()

    async def iter_batch(
        self, uploads: Sequence[Upload], selection: Selection, *, strict: bool | None = None
    ) -> AsyncIterator[BatchItem]:
        """Results as they are computed (each file's blocks together, ``index`` = file position)."""
        async with contextlib.aclosing(self.iter_files(uploads, selection, strict=strict)) as files:
            async for _, items in files:
                for item in items:
                    yield item

    async def predict_batch(
        self, uploads: Sequence[Upload], selection: Selection, *, strict: bool | None = None
    ) -> BatchResponse:
        """``POST /v1/predict/batch``: every structure, in input order."""
        items = [item async for item in self.iter_batch(uploads, selection, strict=strict)]
        items.sort(key=lambda item: item.index)  # stable: a file's blocks stay in file order
        n_ok = sum(1 for item in items if item.ok)
        return BatchResponse(results=items, n_ok=n_ok, n_failed=len(items) - n_ok)
