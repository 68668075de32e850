"""What runs on the Ray cluster: parse tasks (CPU) and inference actors that load each model once.

Both run the service's own code, never a copy: a parse task calls
:func:`service.featurize.featurize` (the function the in-process parse pool runs) on a few
files, and an actor holds a :class:`~service.engine.Engine` without a parse pool, whose
micro-batching inference workers and answer building (:meth:`Engine.predict_parsed`) are those
of the service. So a structure gets the same answer, to the bit, whichever executor ran it (the
backends' answers do not depend on the batch; see :mod:`service.backends._padding`).

Everything here crosses process (and machine) boundaries, so it takes and returns plain
picklable data: file bytes in, :class:`~service.featurize.Featurized` blocks between the
two, :class:`FileResult` rows out. A parse outcome is the file's blocks, or ``(code, detail)``
when the file could not be read at all (an error found on upload, a timeout).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Sequence
from types import FrameType

import torch

from ..backends import resolve_device, resolve_precision
from ..engine import Engine
from ..errors import InternalError, ParseTimeout, ServiceError
from ..featurize import Featurized, featurize, init_worker
from ..metrics import Metrics
from ..registry import Registry, Selection
from ..repository import load_registry
from ..settings import Settings
from ._executor import file_result
from ._store import FileResult, InputRow

__all__ = ["ParseItem", "Parsed", "SelectionSpec", "parse_files", "InferenceActor", "selection_spec"]

#: One file for a parse task: its name, its bytes, or the ``(code, detail)`` found on upload.
ParseItem = tuple[str, bytes, tuple[str, str] | None]
#: A parse task's outcome for one file: its blocks, or why it could not be read.
Parsed = list[Featurized] | tuple[str, str]
#: A model selection as names: ``(entries as name@version, {property: name@version}, alternatives)``.
SelectionSpec = tuple[tuple[str, ...], tuple[tuple[str, str], ...], bool]

_initialised = False


class _Deadline(BaseException):
    """The alarm of a file past its deadline (a BaseException: the reader's ``except Exception`` lets it by)."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Deadline


def _parse_one(item: ParseItem, configs: Sequence[object], max_atoms: int, strict: bool, timeout_s: float) -> Parsed:
    """One file through :func:`featurize`, stopped past ``timeout_s`` (by ``SIGALRM`` on the main thread)."""
    name, data, error = item
    if error is not None:
        return error
    alarm = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _on_alarm) if alarm else None
    if alarm:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return featurize(data, configs, max_atoms, name, strict)  # type: ignore[arg-type]
    except _Deadline:
        timeout = ParseTimeout(f"Reading this file took more than {timeout_s:g} s, the limit per file; it was stopped.")
        return timeout.code, timeout.detail
    except Exception as exc:  # noqa: BLE001 - featurize returns its errors; anything else is the parser's fault
        failed = InternalError(f"The parser failed on this file: {type(exc).__name__}: {exc}")
        return failed.code, failed.detail
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def parse_files(
    items: Sequence[ParseItem], configs: Sequence[object], max_atoms: int, strict: bool, timeout_s: float
) -> list[Parsed]:
    """A Ray parse task: read each file and build its graphs, as the service's parse pool does.

    Args:
        items: The files (name, bytes, error found on upload).
        configs: The graph settings of the selected models (``Selection.graph_configs``).
        max_atoms: Blocks with more atoms are refused (``too_many_atoms``).
        strict: Reader warnings become errors.
        timeout_s: Longest one file may take (``parse_timeout_s``).

    Returns:
        One outcome per file, in order.
    """
    global _initialised
    if not _initialised:  # once per Ray worker process, as the parse pool's initializer
        init_worker()
        _initialised = True
    return [_parse_one(item, configs, max_atoms, strict, timeout_s) for item in items]


class InferenceActor:
    """A Ray actor holding every model once, answering parsed files with the service's engine.

    Args:
        settings: The service's settings (``models_dir``, backend, device, precision, batch limits).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: tuple[Registry, Engine] | None = None
        self._selections: dict[SelectionSpec, Selection] = {}
        self._lock: asyncio.Lock | None = None

    async def _load(self) -> tuple[Registry, Engine]:
        """Load the models and start the inference workers (once, in the actor's event loop)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._loaded is None:
                s = self.settings
                device = resolve_device(s.device)  # a GPU actor sees its GPU: ``auto`` takes it
                precision = resolve_precision(s.precision, device)
                torch.set_num_threads(s.torch_threads)
                registry = await asyncio.to_thread(
                    load_registry,
                    s.models_dir,
                    backend=s.backend,
                    device=device,
                    precision=precision,
                    defaults=s.defaults,
                    model_backends=s.model_backends,
                )
                engine = Engine(s, Metrics())
                await engine.start(sorted({e.predictor.device for e in registry.entries} or {device}), parse=False)
                self._loaded = registry, engine
            return self._loaded

    async def ready(self) -> dict[str, list[str]]:
        """Load the models; say which ones, on which devices."""
        registry, _ = await self._load()
        return {
            "models": [e.ref for e in registry.entries],
            "devices": sorted({e.predictor.device for e in registry.entries}),
        }

    def _selection(self, registry: Registry, spec: SelectionSpec) -> Selection:
        selection = self._selections.get(spec)
        if selection is None:
            refs, primary, alternatives = spec
            selection = self._selections[spec] = Selection(
                entries=tuple(registry.get(r) for r in refs),
                primary={prop: registry.get(r) for prop, r in primary},
                alternatives=alternatives,
            )
        return selection

    async def predict(
        self, spec: SelectionSpec, rows: Sequence[InputRow], parsed: Sequence[Parsed]
    ) -> list[FileResult]:
        """The results of parsed files (``rows[i]`` is the file of ``parsed[i]``), as the job store keeps them.

        Raises:
            ModelNotFound: a model of the selection is not in this actor's repository.
        """
        registry, engine = await self._load()
        selection = self._selection(registry, spec)

        async def one(row: InputRow, outcome: Parsed) -> FileResult:
            blocks = ServiceError(outcome[1], code=outcome[0]) if isinstance(outcome, tuple) else outcome
            items = await engine.predict_parsed(row.idx, row.filename, blocks, selection, bulk=True)
            return file_result(row, items)

        return list(await asyncio.gather(*(one(r, p) for r, p in zip(rows, parsed, strict=True))))


def selection_spec(selection: Selection) -> SelectionSpec:
    """The selection by model names and versions, for an actor to rebuild from its own registry."""
    return (
        tuple(e.ref for e in selection.entries),
        tuple((prop, e.ref) for prop, e in selection.primary.items()),
        selection.alternatives,
    )
