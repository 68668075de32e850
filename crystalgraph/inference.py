"""Batched inference over graphs in-process: evaluation, training's validation and benchmarks.

The service runs its models through its backends (``service/backends``), which take the same
:class:`~crystalgraph.ModelInputs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from .batch import PackedGraphs
from .nets import CrystalGraphNet

__all__ = ["predict_graphs", "predict_packed"]


@torch.inference_mode()
def predict_graphs(
    model: CrystalGraphNet, graphs: Sequence[Data], batch_size: int = 256, normalized: bool = False
) -> np.ndarray:
    """Predict every graph, in order.

    Args:
        model: An eval-mode model (it is not switched here).
        graphs: Crystal graphs.
        batch_size: Crystals per forward pass.
        normalized: Return the raw normalised outputs instead of physical units.

    Returns:
        ``[len(graphs), num_targets]`` float64 array.
    """
    return predict_packed(model, PackedGraphs(graphs), batch_size, normalized)


@torch.inference_mode()
def predict_packed(
    model: CrystalGraphNet, packed: PackedGraphs, batch_size: int = 256, normalized: bool = False
) -> np.ndarray:
    """:func:`predict_graphs` on graphs already packed (the training loop's validation)."""
    device = next(model.parameters()).device
    outs = []
    for start in range(0, len(packed), batch_size):
        inputs, _ = packed.batch(np.arange(start, min(start + batch_size, len(packed))))
        inputs = inputs.to(device)
        out = model(*inputs) if normalized else model.predict(*inputs)
        outs.append(out.double().cpu().numpy())
    n_targets = len(model.config.targets)
    return np.concatenate(outs) if outs else np.zeros((0, n_targets))
