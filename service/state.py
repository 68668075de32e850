"""The service's lifecycle: load the registry, start the engine, warm up, report readiness, reload.

Loading runs in the background after the server starts listening, so ``/healthz`` answers at
once and ``/readyz`` says 503 until every model is loaded and warmed up (KServe's split of
liveness and readiness). Once ready, new, changed and removed model folders are taken in
without a restart (:mod:`service.reload`): on ``POST /v1/models/reload``, and every
``models_watch_s`` seconds when the folders changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from threadpoolctl import threadpool_limits

from .backends import resolve_device, resolve_precision
from .engine import Engine
from .errors import ModelNotReady
from .metrics import Metrics
from .registry import Registry
from .reload import reload_models
from .repository import load_registry, repository_signatures
from .schemas import ReloadReport
from .settings import Settings
from .warmup import warm_up

__all__ = ["ServiceState"]

log = logging.getLogger("service.state")


class ServiceState:
    """Owns the registry and the engine of one app.

    Attributes:
        registry: Set once loading finished (possibly empty).
        engine: Set once the parse pool and inference workers run.
        ready: Every model loaded and warmed up, and at least one model to serve.
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.device = ""
        self.precision = ""
        self.registry: Registry | None = None
        self.engine: Engine | None = None
        self.ready = False
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        #: Each model folder's signature when last (re)loaded (see ``service.reload``).
        self._signatures: dict[str, str] = {}

    def check(self) -> None:
        """Validate what needs the machine (the device) before serving.

        Raises:
            ValueError: e.g. ``CRYSTAL_DEVICE=cuda`` without a CUDA device.
        """
        import torch

        self.device = resolve_device(self.settings.device)
        self.precision = resolve_precision(self.settings.precision, self.device)
        torch.set_num_threads(self.settings.torch_threads)
        # The uncertainty scores are small numpy products made on the inference thread per batch; OpenBLAS's own
        # threads would spin beside onnxruntime's (measured: twice the CPU for them, and slower inference).
        threadpool_limits(limits=1, user_api="blas")

    def start(self) -> None:
        """Begin loading in the background (call from the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._load(), name="service-load")

    async def _load(self) -> None:
        s = self.settings
        try:
            self._signatures = await asyncio.to_thread(repository_signatures, s.models_dir)
            registry = await asyncio.to_thread(
                load_registry,
                s.models_dir,
                backend=s.backend,
                device=self.device,
                precision=self.precision,
                defaults=s.defaults,
                model_backends=s.model_backends,
            )
            self.engine = engine = Engine(s, self.metrics)
            await engine.start(sorted({e.predictor.device for e in registry.entries} or {self.device}))
            report = await warm_up(engine, registry.entries)
            if report.failed:
                registry = registry.without(report.failed)
            registry.batch_invariant.update(report.batch_invariant)
            self.registry = registry
        except Exception as exc:  # reported by /readyz, the process stays up
            log.exception("start-up failed")
            self._failure = f"start-up failed: {type(exc).__name__}: {exc}"
            return
        self.metrics.models_loaded.set(len(registry))
        if len(registry) == 0:
            self._failure = f"no model could be loaded from {s.models_dir}"
            log.error("not ready: %s", self._failure)
            return
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready: %d model(s) on %s, properties %s", len(registry), self.device, registry.properties)
        if s.models_watch_s > 0:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(), name="models-watch")

    async def reload(self) -> ReloadReport:
        """Take in new, changed and removed model folders; the models being served serve on meanwhile.

        Raises:
            ModelNotReady: the first load has not finished.
        """
        async with self._reload_lock:
            registry, engine = self.require_ready()
            new, report, self._signatures = await reload_models(
                self.settings, engine, registry, self._signatures, device=self.device, precision=self.precision
            )
            self.registry = new  # one assignment: requests under way keep the models they selected
            self.metrics.models_loaded.set(len(new))
            return report

    async def _watch(self) -> None:
        """Reload whenever a model folder appears, changes or goes (checked every ``models_watch_s``)."""
        while True:
            await asyncio.sleep(self.settings.models_watch_s)
            try:
                now = await asyncio.to_thread(repository_signatures, self.settings.models_dir)
                if now != self._signatures:
                    await self.reload()
            except Exception:  # the watch never stops; the next look retries
                log.exception("model reload failed")

    async def stop(self) -> None:
        """Not ready any more: stop loading and shut the engine down."""
        self.ready = False
        self.metrics.ready.set(0)
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None

    def require_ready(self) -> tuple[Registry, Engine]:
        """The registry and engine of a ready service.

        Raises:
            ModelNotReady: still loading, or nothing to serve.
        """
        if not self.ready or self.registry is None or self.engine is None:
            raise ModelNotReady(
                "The service " + (f"is not ready: {self._failure}." if self._failure else "is loading its models.")
            )
        return self.registry, self.engine

    def require_registry(self) -> Registry:
        """The registry once loading finished (ready or not: it lists refused models too)."""
        if self.registry is None:
            raise ModelNotReady(
                "The service " + (f"is not ready: {self._failure}." if self._failure else "is loading its models.")
            )
        return self.registry
