"""ONNX export of crystal graph networks and the torch/onnxruntime parity gate.

The exported graph computes :meth:`CrystalGraphNet.predict` (physical units, non-negative
targets clipped at 0) with dynamic numbers of atoms, edges and crystals. It is produced by
the dynamo exporter (``torch.export``, then onnxscript), which lowers ``scatter_add`` to
``ScatterElements(reduction="add")``; the legacy TorchScript exporter is deprecated and can
lower ``index_add_`` to a scatter without reduction, an overwrite that gives silently wrong
sums. :func:`export_onnx` refuses any scatter node without an add reduction, and
:func:`check_parity` compares the two runtimes on batches of several shapes. By default the
slow ``Softplus`` and ``ScatterElements`` kernels of onnxruntime are replaced by exact
equivalents (see ``_onnx_graph``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor, nn

from ._onnx_graph import check_scatter_reductions, scatter_rows_as_scatter_nd, softplus
from .batch import ModelInputs, collate
from .graph import structure_to_graph
from .graph_config import GraphConfig
from .nets import CrystalGraphNet
from .onnx_predictor import INPUT_NAMES, OUTPUT_NAMES, OnnxError, OnnxParityError, OnnxPredictor

__all__ = [
    "ONNX_FILE",
    "export_onnx",
    "export_onnx_checked",
    "check_parity",
    "parity_batches",
]

ONNX_FILE = "model.onnx"


class _Predict(nn.Module):
    """``predict`` as ``forward``, so that the exported graph returns physical units.

    A second output, ``embedding``, is the pooled crystal embedding the heads read
    (:meth:`CrystalGraphNet.pool`), which the uncertainty estimate measures distances in.
    """

    def __init__(self, model: CrystalGraphNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, z: Tensor, edge_index: Tensor, edge_dist: Tensor, batch: Tensor, num_atoms: Tensor
    ) -> tuple[Tensor, Tensor]:
        crys = self.model.pool(z, edge_index, edge_dist, batch, num_atoms)
        return self.model.denormalize(self.model.readout(crys)), crys


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def export_onnx(model: CrystalGraphNet, path: Path, opset: int = 18, fast: bool = True) -> Path:
    """Export ``model.predict`` to an ONNX file with dynamic atoms, edges and crystals.

    The model is copied to the CPU in eval mode; the caller's model is left untouched. The
    file carries the target names and units as metadata (``targets``: JSON list).

    Args:
        model: The network to export.
        path: Where to write the ``.onnx`` file.
        opset: ONNX opset, at least 18 (the exporter's own; converting down to 17 produces an
            invalid ``Split``).
        fast: Write softplus with vectorized element-wise ops and row scatters as ``ScatterND``
            (equivalent within 1e-6; the whole graph runs 2-4x faster in onnxruntime on CPU);
            ``False`` keeps the exporter's plain ``Softplus`` and ``ScatterElements``.

    Returns:
        ``path``.

    Raises:
        ValueError: ``opset`` below 18.
        OnnxError: the exporter returned no program, or the exported graph holds a scatter
            without a reduction (an overwrite).

    Shapes:
        The graph maps ``z: [N]`` int64, ``edge_index: [2, E]`` int64, ``edge_dist: [E]``
        float32, ``batch: [N]`` int64, ``num_atoms: [B]`` int64 to ``y: [B, T]`` float32 and
        ``embedding: [B, atom_fea_len]`` float32.
    """
    if opset < 18:
        raise ValueError(f"opset {opset} < 18")
    path = Path(path)
    module = _Predict(copy.deepcopy(model).cpu()).eval()
    example = tuple(_example_batch(model.config.graph))  # two crystals: no 0/1 specialization
    atoms, edges, crystals = (torch.export.Dim(n) for n in ("atoms", "edges", "crystals"))
    dynamic = ({0: atoms}, {1: edges}, {0: edges}, {0: atoms}, {0: crystals})
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed" notices
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic,
                verbose=False,
                custom_translation_table={torch.ops.aten.softplus.default: softplus} if fast else None,
            )
    finally:
        registration.setLevel(level)
    if program is None:  # only the legacy (dynamo=False) exporter returns None
        raise OnnxError("torch.onnx.export returned no ONNX program")
    proto = program.model_proto
    if fast:
        scatter_rows_as_scatter_nd(proto)
    onnx.checker.check_model(proto)
    try:
        check_scatter_reductions(proto)
    except ValueError as exc:
        raise OnnxError(str(exc)) from exc
    targets = [{"name": t.name, "unit": t.unit} for t in model.config.targets]
    onnx.helper.set_model_props(proto, {"targets": json.dumps(targets), "model_type": model.config.model_type})
    onnx.save_model(proto, path)
    return path


def export_onnx_checked(model: CrystalGraphNet, folder: Path, tol: float = 1e-4, opset: int = 18) -> Path:
    """Export to ``folder/model.onnx`` only if the file passes :func:`check_parity`.

    The file is written under a temporary name in ``folder`` and renamed into place after
    the parity check; on failure it is deleted and an existing ``model.onnx`` is left as is.

    Raises:
        ValueError: a negative ``tol`` or an ``opset`` below 18.
        OnnxParityError: max |torch - onnxruntime| above ``tol`` on a parity batch.
        OnnxError: the export produced an overwriting scatter.
    """
    if not tol >= 0:
        raise ValueError(f"tolerance {tol} < 0")
    folder = Path(folder)
    fd, tmp_name = tempfile.mkstemp(prefix=".model-", suffix=".onnx.tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        export_onnx(model, tmp, opset=opset)
        check_parity(model, tmp, tol=tol)
        target = folder / ONNX_FILE
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes it 0600: others (a container's user) could not read it
        tmp.replace(target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _structure(lattice: Lattice, species: list[str], coords: list[list[float]]) -> Structure:
    return Structure(lattice, species, coords)


def _cu_fcc(a: float = 3.615) -> Structure:
    h = a / 2
    return _structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), ["Cu"], [[0, 0, 0]])


def _cscl(a: float = 4.12) -> Structure:
    return _structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _srtio3(a: float = 3.905) -> Structure:
    coords: list[list[float]] = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return _structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"], coords)


def _zno(a: float = 3.25, c: float = 5.21) -> Structure:
    """Wurtzite ZnO: four atoms in a hexagonal cell, two species, non-cubic neighbourhoods."""
    u = 0.382
    coords = [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    return _structure(Lattice.hexagonal(a, c), ["Zn", "Zn", "O", "O"], coords)


def _supercell_200() -> Structure:
    """A 2x4x5 SrTiO3 supercell (200 atoms) with seeded 0.05 Å displacements."""
    s = _srtio3().make_supercell([2, 4, 5], in_place=False)
    shifts = np.random.default_rng(0).normal(scale=0.05, size=(len(s), 3))
    return Structure(s.lattice, s.species, s.cart_coords + shifts, coords_are_cartesian=True)


@lru_cache(maxsize=4)
def _example_batch(config: GraphConfig) -> ModelInputs:
    return collate([structure_to_graph(_cscl(), config), structure_to_graph(_zno(), config)])


@lru_cache(maxsize=4)
def parity_batches(config: GraphConfig) -> dict[str, ModelInputs]:
    """The batches the parity gate runs (built once per graph config; treat as read-only).

    ``one_atom``: fcc Cu primitive cell (1 atom, 12 neighbours); ``one_crystal``: wurtzite
    ZnO; ``64_crystals``: Cu, CsCl, SrTiO3 and ZnO cells with lattices scaled by 0.96-1.05;
    ``200_atoms``: a displaced 2x4x5 SrTiO3 supercell.
    """
    makers = (_cu_fcc, _cscl, _srtio3, _zno)
    many = []
    for i in range(64):
        s = makers[i % len(makers)]()
        s.scale_lattice(s.volume * (0.96 + 0.09 * (i / 63)) ** 3)
        many.append(structure_to_graph(s, config))
    return {
        "one_atom": collate([structure_to_graph(_cu_fcc(), config)]),
        "one_crystal": collate([structure_to_graph(_zno(), config)]),
        "64_crystals": collate(many),
        "200_atoms": collate([structure_to_graph(_supercell_200(), config)]),
    }


def check_parity(model: CrystalGraphNet, onnx_path: Path, tol: float = 1e-4) -> float:
    """Compare torch ``predict`` with onnxruntime (CPU) on the :func:`parity_batches`.

    Args:
        model: The network the file was exported from (run in eval mode, on its device).
        onnx_path: The exported file.
        tol: Largest allowed max |difference|, in the targets' units.

    Returns:
        The max |difference| over all batches and targets.

    Raises:
        OnnxParityError: a batch above ``tol``, a shape mismatch, or a non-finite output.
    """
    predictor = OnnxPredictor(onnx_path, device="cpu")
    device = next(model.parameters()).device
    worst = 0.0
    with _eval_mode(model), torch.inference_mode():
        for name, inputs in parity_batches(model.config.graph).items():
            ref = model.predict(*inputs.to(device)).cpu().numpy()
            got = predictor.predict(*inputs)
            if got.shape != ref.shape:
                raise OnnxParityError(f"{name}: onnxruntime shape {got.shape} != torch shape {ref.shape}")
            diff = float(np.max(np.abs(got - ref))) if np.isfinite(got).all() else float("inf")
            if not diff <= tol:
                raise OnnxParityError(f"{name}: max |torch - onnxruntime| = {diff:.3g} > tolerance {tol:g}")
            worst = max(worst, diff)
            if predictor.has_embedding:  # relative to the embedding's scale
                emb_ref = model.pool(*inputs.to(device)).cpu().numpy()
                emb = predictor.predict_embedded(*inputs)[1]
                scale = max(1.0, float(np.max(np.abs(emb_ref))))
                if emb.shape != emb_ref.shape or not float(np.max(np.abs(emb - emb_ref))) <= tol * scale:
                    raise OnnxParityError(f"{name}: the embedding output differs from torch's beyond {tol:g}")
    return worst
