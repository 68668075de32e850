"""The Ray executor: a job's files parsed by Ray tasks and predicted by Ray actors, results back here.

``CRYSTAL_JOBS_EXECUTOR=ray`` (``pip install '.[ray]'``). The service stays the job's owner: it
reads a chunk of pending files from its store and hands them to :meth:`RayExecutor.run`, which
cuts them into parse tasks of ``ray_parse_batch`` files (one CPU each, anywhere on the cluster)
and chains each task's output, on the cluster, to an inference actor (``ray_actors`` of them,
each loading every model once; one GPU each when the cluster has GPUs). Each actor answers with
the rows the job store keeps, which come back and are committed by the service as they arrive,
exactly as in process. So progress, results, cancel, expiry and resuming after a crash (of the
service: the files without a committed result run again) are the service's, unchanged.

Failures on the cluster: Ray retries a task whose worker died (``max_retries``) and restarts a
dead actor and re-runs its calls (``max_restarts``, ``max_task_retries``), so killing a worker
process loses nothing. A parse task that still fails is split into one task per file, and a
file whose own task fails too fails alone with ``parser_crashed`` (the in-process pool's rule).
Cancelling the iteration (a deleted job, a service stopping) cancels the tasks in flight.

Ray is imported when the executor connects, never when this module is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidStructure
from ..registry import Selection
from ..settings import Settings
from ..uploads import Upload
from ._ray_workers import InferenceActor, Parsed, ParseItem, parse_files, selection_spec
from ._store import FileResult, InputRow

__all__ = ["RayExecutor", "connect"]

log = logging.getLogger("service.jobs.ray")

#: Retries of a parse task whose worker died; a file alone gets one (it is then tried twice).
_BATCH_RETRIES = 3
_SINGLE_RETRIES = 1
#: Seconds past ``ray_start_timeout_s`` that :meth:`RayExecutor.start` waits for the start to end by itself.
_START_GRACE_S = 5.0


def connect(address: str, **init: Any) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``local``, ``ray://host:port``, ``host:port``) once.

    Args:
        address: See ``Settings.ray_address``; ``local`` starts a Ray instance in this process.
        init: More ``ray.init`` arguments (``num_cpus``, ``_temp_dir`` for a local instance).
    """
    import ray

    if ray.is_initialized():
        return
    options: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": False}
    if address == "local":
        ray.init(include_dashboard=False, **options, **init)
    else:
        ray.init(address=address, **options, **init)


def _end(actors: Sequence[Any]) -> None:
    """Kill ``actors`` (their models and the cluster resources they hold go with them)."""
    if actors:
        import ray

        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a)


def _crashed() -> tuple[str, str]:
    error = InvalidStructure(
        "The parser process died twice on this file (a crash in the CIF reader, or the operating "
        "system stopped it); it was not read.",
        code="parser_crashed",
    )
    return error.code, error.detail


@dataclass
class _Flight:
    """Files on their way through the cluster: their parse task (if any) and their actor call."""

    positions: list[int]
    parse: Any  # ray.ObjectRef | None
    predict: Any  # ray.ObjectRef


class RayExecutor:
    """Runs jobs' files on a Ray cluster (see the module's docstring).

    Args:
        settings: ``ray_address``, ``ray_actors``, ``ray_parse_batch``, and what the actors need to load the models.

    Raises:
        RuntimeError: Ray is not installed.
    """

    name = "ray"

    def __init__(self, settings: Settings, **init: Any) -> None:
        if importlib.util.find_spec("ray") is None:
            raise RuntimeError(
                "Ray is not installed (needed by CRYSTAL_JOBS_EXECUTOR=ray and `screen`): "
                "pip install 'crystal-service[ray]' (or '.[ray]' in a checkout)"
            )
        self.settings = settings
        self._init = init
        self._actors: list[Any] = []
        self._turn = 0
        self._parse: Any = None
        self._starting: asyncio.Future[None] | None = None  # the start in progress, or the last one

    async def start(self) -> None:
        """Join the cluster and start the inference actors; returns once every actor has loaded its models.

        Raises:
            TimeoutError: Not done in ``ray_start_timeout_s``. Joining goes on in the background (Ray's
                client can wait on its server without end, and a thread cannot be stopped): a later
                call waits for that same attempt rather than starting a second one.
        """
        timeout = self.settings.ray_start_timeout_s
        attempt = self._starting
        if attempt is None or (attempt.done() and attempt.exception() is not None):
            deadline = time.monotonic() + timeout
            attempt = self._starting = asyncio.ensure_future(asyncio.to_thread(self._start, deadline))
        try:
            # A little past the deadline: actors late to load fail inside with what they asked for.
            await asyncio.wait_for(asyncio.shield(attempt), timeout + _START_GRACE_S)
        except TimeoutError:
            if attempt.done():
                raise  # the start's own TimeoutError (its actors late), not this wait's
            raise TimeoutError(
                f"joining the Ray cluster at {self.settings.ray_address} and loading the models has taken more "
                f"than {timeout:g} s (CRYSTAL_RAY_START_TIMEOUT_S); it goes on"
            ) from None

    def _start(self, deadline: float) -> None:
        import ray

        s = self.settings
        log.info("ray executor: joining the cluster at %s", s.ray_address)
        connect(s.ray_address, **self._init)
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0) >= 1
        self._parse = ray.remote(parse_files).options(num_cpus=1, max_retries=_BATCH_RETRIES)
        actor = ray.remote(InferenceActor).options(
            num_cpus=s.ray_actor_cpus, num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=-1
        )
        actors: list[Any] = [actor.remote(s) for _ in range(s.ray_actors)]
        log.info("ray executor: joined; %d actor(s) loading the models (cluster: %s)", len(actors), resources)
        try:
            loaded = ray.get([a.ready.remote() for a in actors], timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            _end(actors)
            asked = f"{s.ray_actor_cpus:g} CPU" + (" and 1 GPU" if gpus else "")
            have = ", ".join(f"{resources.get(k, 0):g} {k}" for k in ("CPU", "GPU"))
            raise TimeoutError(
                f"{len(actors)} inference actor(s) did not load the models in {s.ray_start_timeout_s:g} s "
                f"(CRYSTAL_RAY_START_TIMEOUT_S): each asks for {asked}, the cluster has {have} in all "
                "(`ray status` shows what is free)"
            ) from None
        except BaseException:
            _end(actors)  # a failed start leaves no actor holding the cluster's CPUs for the next try
            raise
        self._actors = actors
        log.info("ray executor: %d actor(s), %s", len(actors), loaded[0])

    async def stop(self) -> None:
        """End the actors (this process stays connected: ``ray.init`` is once per process)."""
        actors, self._actors, self._starting = self._actors, [], None
        _end(actors)

    def _submit(self, spec: object, positions: list[int], pending: Sequence[InputRow], parsed: Any) -> _Flight:
        """Chain ``positions``' parse task (or their outcomes, a list) to the next actor, round robin."""
        actor = self._actors[self._turn % len(self._actors)]
        self._turn += 1
        rows = [pending[i] for i in positions]
        return _Flight(
            positions, parsed if not isinstance(parsed, list) else None, actor.predict.remote(spec, rows, parsed)
        )

    def _parse_task(self, items: list[ParseItem], configs: Sequence[object], *, single: bool, strict: bool) -> Any:
        s = self.settings
        task = self._parse.options(max_retries=_SINGLE_RETRIES) if single else self._parse
        return task.remote(items, configs, s.max_atoms, strict, s.parse_timeout_s)

    async def run(
        self, selection: Selection, pending: Sequence[InputRow], files: Sequence[Upload], *, strict: bool
    ) -> AsyncGenerator[FileResult, None]:
        """Each file's results, in the order they come back from the cluster."""
        import ray

        spec = selection_spec(selection)
        configs = list(selection.graph_configs)

        def item(i: int) -> ParseItem:
            f = files[i]
            return f.filename, f.data, (f.error.code, f.error.detail) if f.error is not None else None

        def launch(positions: list[int], *, single: bool = False) -> _Flight:
            parse = self._parse_task([item(i) for i in positions], configs, single=single, strict=strict)
            return self._submit(spec, positions, pending, parse)

        step = self.settings.ray_parse_batch
        flights: dict[asyncio.Future[list[FileResult]], tuple[_Flight, bool]] = {}

        def watch(flight: _Flight, single: bool) -> None:
            flights[asyncio.wrap_future(flight.predict.future())] = (flight, single)

        try:
            for start in range(0, len(files), step):
                watch(launch(list(range(start, min(start + step, len(files))))), False)
            while flights:
                done, _ = await asyncio.wait(flights, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    flight, single = flights.pop(future)
                    try:
                        results = future.result()
                    except ray.exceptions.RayTaskError:
                        raise  # an error in our code on the cluster (a model it lacks...): the job fails
                    except ray.exceptions.RayError as exc:  # a parse worker died more often than retried
                        if flight.parse is None:
                            raise  # the actor itself, past its retries
                        log.warning("ray: %d file(s) lost their parse task (%s); retrying", len(flight.positions), exc)
                        if len(flight.positions) > 1:
                            for i in flight.positions:
                                watch(launch([i], single=True), True)
                        elif single:
                            crashed: list[Parsed] = [_crashed()]
                            watch(self._submit(spec, flight.positions, pending, crashed), True)
                        else:
                            watch(launch(flight.positions, single=True), True)
                        continue
                    for result in results:
                        yield result
        finally:
            for future, (flight, _) in flights.items():
                future.cancel()
                for ref in (flight.predict, flight.parse):
                    if ref is not None:
                        with contextlib.suppress(Exception):
                            ray.cancel(ref)
