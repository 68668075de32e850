"""Offline predictions in Python: the service's answers without a service.

    from crystalgraph import Predictor
    predictor = Predictor()                      # the shipped models (models/), the service's defaults
    answer = predictor.predict(structure)        # a pymatgen Structure, ASE Atoms or a file path
    answer.predictions["band_gap"].value, answer.warnings
    answers = predictor.predict(paths)           # a list: one item per structure, with a progress bar

The steps are the service's, from the same code: the reader (:func:`read_structures`, every
input goes through it: a ``Structure`` or ``Atoms`` as pymatgen JSON, a path as its file), the
graph builder, each model run as the service runs it on a CPU (its ``model.onnx`` with
onnxruntime on one thread where the folder has one, else torch in float32 with the batch
padding of :mod:`crystalgraph.padding`, both the same alone or in any batch), the default
model per property (:func:`choose_defaults`) and the answer's rules (:mod:`crystalgraph.answers`).
The answers therefore equal the service's on the same models to the last decimal returned.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from pymatgen.core import Structure

from .answers import (
    Answer,
    Failure,
    ManifestFacts,
    Provenance,
    element_warnings,
    model_predictions,
    model_provenance,
    summarize_structure,
)
from .batch import GraphArrays, collate
from .checkpoint import load_exported, read_manifest, verify_file, verify_manifest
from .errors import StructureError, TooManyAtomsError
from .graph import structure_to_graph
from .io import read_structures
from .nets import ModelConfig
from .notices import Notice
from .onnx_predictor import OnnxPredictor
from .padding import Padder
from .repository import choose_defaults, find_model, latest_versions, model_folders, select_models
from .trust import ModelUncertainty, load_uncertainty, trust_signals

__all__ = ["Predictor", "LoadedVersion", "default_models_dir"]

log = logging.getLogger("crystalgraph.predictor")

#: Structures per forward pass.
_CHUNK = 64


def default_models_dir() -> Path:
    """``CRYSTAL_MODELS_DIR`` when set, else the ``models/`` folder of this checkout."""
    env = os.environ.get("CRYSTAL_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "models"


class _Runner:
    """One model's forward pass as the service's CPU backends run it: ``ModelInputs -> [B, T]`` float32."""

    def __init__(self, folder: Path, manifest: dict[str, Any], backend: str) -> None:
        if backend not in {"auto", "onnx", "torch"}:
            raise ValueError(f"backend must be auto, onnx or torch, not {backend!r}")
        has_onnx = "onnx" in (manifest.get("files") or {})
        self.backend = "onnx" if backend == "onnx" or (backend == "auto" and has_onnx) else "torch"
        if self.backend == "onnx":
            self.session = OnnxPredictor(verify_file(folder, manifest, "onnx"), device="cpu", num_threads=1)
        else:
            self.model = load_exported(folder, map_location="cpu").model.to(dtype=torch.float32).eval()
            self.pad = Padder(torch.device("cpu"), torch.float32)

    def __call__(self, graphs: Sequence[GraphArrays]) -> np.ndarray:
        inputs = collate(graphs)
        if self.backend == "onnx":
            return self.session.predict(*inputs)
        padded, n = self.pad(inputs)
        with torch.inference_mode():
            return self.model.predict(*padded)[:n].cpu().numpy()

    @property
    def has_embedding(self) -> bool:
        """Whether :meth:`embedded` can also return the pooled crystal embedding."""
        return self.backend == "torch" or bool(self.session.has_embedding)

    def embedded(self, graphs: Sequence[GraphArrays]) -> tuple[np.ndarray, np.ndarray]:
        """``[B, T]`` predictions and ``[B, D]`` pooled embeddings in one pass, as the service's backends."""
        inputs = collate(graphs)
        if self.backend == "onnx":
            return self.session.predict_embedded(*inputs)
        padded, n = self.pad(inputs)
        with torch.inference_mode():
            crys = self.model.pool(*padded)
            out = self.model.denormalize(self.model.readout(crys))
        return out[:n].cpu().numpy(), crys[:n].float().cpu().numpy()


@dataclass(frozen=True, eq=False)
class LoadedVersion(ManifestFacts):
    """One model version of the repository, loaded (name and version are its folders')."""

    name: str
    version: str
    folder: Path
    config: ModelConfig
    manifest: dict[str, Any]
    runner: _Runner = field(repr=False)
    #: Its calibrated sigma and training domain (``None``: shipped without; answers have ``sigma`` ``None``).
    uncertainty: ModelUncertainty | None = field(default=None, repr=False)

    @cached_property
    def provenance(self) -> Provenance:
        """What its numbers trace back to."""
        return model_provenance(self.name, self.version, self.manifest, self.config.graph)


def _is_atoms(item: object) -> bool:
    """An ASE ``Atoms`` (or a subclass, like pymatgen's ``MSONAtoms``), without importing ASE."""
    return any(c.__name__ == "Atoms" and c.__module__.split(".")[0] == "ase" for c in type(item).__mro__)


def _as_input(item: object, position: int) -> tuple[str, bytes, str | None]:
    """``(name, file bytes, format)`` for a path, a pymatgen ``Structure`` or ASE ``Atoms``."""
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        return str(item), path.read_bytes(), None
    if _is_atoms(item):
        from pymatgen.io.ase import AseAtomsAdaptor

        item = AseAtomsAdaptor.get_structure(cast(Any, item))
    if isinstance(item, Structure):
        return f"structure{position}", json.dumps(item.as_dict()).encode(), "pymatgen-json"
    raise TypeError(f"cannot predict a {type(item).__name__}: give a pymatgen Structure, ASE Atoms or a file path")


@dataclass
class _Block:
    """One structure of the inputs, on its way to an answer."""

    index: int
    filename: str
    summary: Any = None
    graphs: dict[str, GraphArrays] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    error: Notice | None = None
    exception: StructureError | None = None

    def fail(self, exc: StructureError) -> None:
        self.error, self.exception = Notice(exc.code, str(exc)), exc


class Predictor:
    """The models of a repository, in-process, answering as the service does.

    Args:
        models_dir: ``<models_dir>/<name>/<version>/`` folders (default: :func:`default_models_dir`,
            the shipped models).
        models: Model references to run (``name``, ``name@version``, ``name@latest``,
            ``default``); default: the default model of each property, as the service chooses.
        defaults: ``{property: ref}`` overriding the default choice (the service's ``CRYSTAL_DEFAULTS``).
        backend: ``auto`` (``model.onnx`` where present, else torch), ``onnx`` or ``torch``.
        max_atoms: Larger structures are refused (``too_many_atoms``), as by the service's ``max_atoms``.

    A folder that cannot be loaded is left out and listed in :attr:`refused`, as the service does.

    Raises:
        ValueError: no model could be loaded, or a reference names no loaded model.
    """

    def __init__(
        self,
        models_dir: str | os.PathLike[str] | None = None,
        *,
        models: Sequence[str] | None = None,
        defaults: Mapping[str, str] | None = None,
        backend: str = "auto",
        max_atoms: int = 500,
    ) -> None:
        self.models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
        self.max_atoms = max_atoms
        self.versions: list[LoadedVersion] = []
        #: ``(folder, reason)`` of each folder that was not loaded.
        self.refused: list[tuple[str, str]] = []
        for folder in model_folders(self.models_dir):
            try:
                manifest = read_manifest(folder)
                config = verify_manifest(folder, manifest)
                runner = _Runner(folder, manifest, backend)
                uncertainty = load_uncertainty(folder, manifest)
            except Exception as exc:  # noqa: BLE001 - a broken folder is left out, the rest serve
                self.refused.append((str(folder), f"{type(exc).__name__}: {exc}"))
                log.error("refusing model folder %s: %s", folder, exc)
                continue
            version = LoadedVersion(folder.parent.name, folder.name, folder, config, manifest, runner, uncertainty)
            self.versions.append(version)
        if not self.versions:
            raise ValueError(f"no model could be loaded from {self.models_dir}")
        self.latest = latest_versions(self.versions)
        self.defaults, problems = choose_defaults(self.latest, self._find, defaults)
        for problem in problems:
            log.error("%s", problem)
        self.models, self.primary, self.alternatives = select_models(models, self.defaults, self.get)

    def _find(self, ref: str) -> LoadedVersion | None:
        return find_model(ref, self.latest, self.versions)

    def get(self, ref: str) -> LoadedVersion:
        """The model ``name`` (newest version), ``name@latest`` or ``name@version``.

        Raises:
            ValueError: no such model is loaded.
        """
        found = self._find(ref)
        if found is None:
            raise ValueError(f"No model {ref!r} is loaded. Loaded models: {', '.join(sorted(self.latest))}.")
        return found

    @property
    def properties(self) -> list[str]:
        """The properties the answers hold."""
        return list(self.primary)

    def __repr__(self) -> str:
        return f"Predictor({self.models_dir}, models=[{', '.join(m.ref for m in self.models)}])"

    # -- prediction --------------------------------------------------------------------------

    def predict(self, inputs: object, *, progress: bool | None = None) -> Answer | list[Answer | Failure]:
        """Predict one structure, or each structure of a list.

        Args:
            inputs: A pymatgen ``Structure``, ASE ``Atoms`` or a structure file's path (CIF,
                POSCAR, extended XYZ, pymatgen or OPTIMADE JSON); or a list (tuple) of them.
            progress: A progress bar over a list (default: for lists of 100 or more).

        Returns:
            One input: its :class:`Answer` (a file's first structure, as ``POST /v1/predict``;
            a ``multiple_blocks`` warning names the others). A list: one item per structure,
            a file with several structures giving ``file#block`` items, as
            ``/v1/predict/batch``: an :class:`Answer`, or a :class:`Failure` with the error's
            code and sentence (the others are still predicted).

        Raises:
            StructureError: one input that cannot be predicted (its ``code``, as the service's 422).
            TypeError: an input of another type.
        """
        if isinstance(inputs, list | tuple):
            show = len(inputs) >= 100 if progress is None else progress
            return list(self._predict_many(list(inputs), show))
        return self.predict_structure(inputs)

    def predict_structure(self, item: object) -> Answer:
        """One structure's :class:`Answer` (see :meth:`predict`)."""
        name, data, fmt = _as_input(item, 0)
        blocks = self._read(0, name, data, fmt)
        first = blocks[0]
        if first.exception is not None:
            raise first.exception
        answer = self._answers([first])[0]
        if len(blocks) > 1:
            names = ", ".join(f"'{b.summary.block if b.summary else '?'}'" for b in blocks)
            answer.warnings.insert(
                0,
                Notice(
                    code="multiple_blocks",
                    detail=f"The file has {len(blocks)} data blocks ({names}); this is the first. "
                    "Predict a list ([path]) to predict each block.",
                ),
            )
        return replace(answer, filename=None, index=None)

    def _predict_many(self, items: list[object], progress: bool) -> Iterator[Answer | Failure]:
        from tqdm import tqdm

        with tqdm(total=len(items), unit="structure", disable=not progress, desc="predicting") as bar:
            for start in range(0, len(items), _CHUNK):
                blocks: list[_Block] = []
                for position in range(start, min(start + _CHUNK, len(items))):
                    try:
                        name, data, fmt = _as_input(items[position], position)
                    except OSError as exc:
                        name = str(items[position])
                        blocks.append(_Block(position, name, error=Notice("file_not_found", f"{name}: {exc}")))
                        continue
                    blocks.extend(self._read(position, name, data, fmt))
                good = [b for b in blocks if b.error is None]
                answers = iter(self._answers(good))
                for block in blocks:
                    if block.error is not None:
                        yield Failure(filename=block.filename, error=block.error, index=block.index)
                    else:
                        yield next(answers)
                bar.update(min(start + _CHUNK, len(items)) - start)

    def _read(self, index: int, name: str, data: bytes, fmt: str | None) -> list[_Block]:
        """Read a file and build each structure's graphs, as the service's parse workers do."""
        try:
            reads = read_structures(data, filename=name if fmt is None else None, fmt=fmt, max_atoms=self.max_atoms)
        except StructureError as exc:
            failed = _Block(index, name)
            failed.fail(exc)
            return [failed]
        blocks = []
        configs = {m.config.graph.fingerprint: m.config.graph for m in self.models}
        for read in reads:
            block = _Block(index, f"{name}#{read.name}" if len(reads) > 1 else name)
            block.notices = list(read.notices)
            blocks.append(block)
            if read.error is not None or read.structure is None:
                block.fail(read.error or StructureError("The structure could not be read."))
                continue
            block.summary = summarize_structure(read.structure, read.name)
            try:
                if len(read.structure) > self.max_atoms:
                    raise TooManyAtomsError(
                        f"The structure has {len(read.structure)} atoms; the limit is {self.max_atoms}."
                    )
                for fingerprint, config in configs.items():
                    block.graphs[fingerprint] = GraphArrays.from_data(structure_to_graph(read.structure, config))
            except StructureError as exc:
                block.fail(exc)
        return blocks

    def _answers(self, blocks: Sequence[_Block]) -> list[Answer]:
        """Run every model on the blocks' graphs and assemble each block's answer."""
        if not blocks:
            return []
        outputs, scores = [], []
        for m in self.models:
            graphs = [b.graphs[m.config.graph.fingerprint] for b in blocks]
            if m.uncertainty is not None and m.runner.has_embedding:
                values, embedding = m.runner.embedded(graphs)
                scored = m.uncertainty.scores(np.asarray(embedding), values, m.targets)  # the batch in one pass
            else:
                values, scored = m.runner(graphs), None
            outputs.append(values)
            scores.append(scored)
        answers = []
        for k, block in enumerate(blocks):
            rows = [out[k].tolist() for out in outputs]
            # sigma and the domain warnings as the service's default (embedding distance) makes them
            # (with the ensemble partner's value where it ran too, as the service does)
            answered = {m.ref: (m.targets, row) for m, row in zip(self.models, rows, strict=True)}
            sigmas, domain = trust_signals(
                self.models,
                rows,
                [sc[k] if sc is not None else None for sc in scores],
                answered,
                block.summary,
                [block.graphs[m.config.graph.fingerprint].z for m in self.models],
            )
            predictions, alternatives = model_predictions(self.models, rows, self.primary, self.alternatives, sigmas)
            warnings = block.notices + element_warnings(self.models, block.summary.elements) + domain
            answers.append(
                Answer(
                    structure=block.summary,
                    predictions=predictions,
                    alternatives=alternatives,
                    warnings=warnings,
                    provenance={m.ref: m.provenance for m in self.models},
                    filename=block.filename,
                    index=block.index,
                )
            )
        return answers
