"""Import checkpoints written by the reference CGCNN code and by the SR-CGCNN code.

The reference code (github.com/txie-93/cgcnn) saves ``model_best.pth.tar`` as
``{"state_dict", "normalizer": {"mean", "std"}, "args": argparse.Namespace, ...}`` with keys
``embedding.*``, ``convs.{k}.fc_full.*``, ``convs.{k}.bn1.*``, ``convs.{k}.bn2.*``,
``conv_to_fc.*``, ``fcs.{k}.*``, ``fc_out.*``. Its atom features come from the dataset's
``atom_init.json``, which must be given: the converted model carries that table, so it
predicts exactly as the original.

SR-CGCNN checkpoints add ``conv_mode`` (``"shared"``) and ``n_recurrent_steps``. Accepted
layouts for the shared convolution: the reference's ``convs.{t}.*`` keys with the same
``fc_full`` in every step (a module registered once per step) and per-step ``bn1``/``bn2``;
or ``conv.fc_full.*`` / ``shared_conv.fc_full.*`` with ``bn1s.{t}.*`` and ``bn2s.{t}.*``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch

from .features import MAX_Z, table_hash
from .graph_config import GraphConfig
from .nets import CGCNNConfig, CrystalGraphNet, ModelConfig, SRCGCNNConfig, TargetSpec, build_model

__all__ = ["LegacyFormatError", "import_legacy"]

LEGACY_FEATURE_SET = "legacy-atom-init"


class LegacyFormatError(ValueError):
    """The file is not a checkpoint of the reference CGCNN or SR-CGCNN code."""


def _load_atom_init(path: Path) -> torch.Tensor:
    raw = json.loads(Path(path).read_text())
    width = len(next(iter(raw.values())))
    table = torch.zeros(MAX_Z + 1, width)
    for key, vec in raw.items():
        z = int(key)
        if 1 <= z <= MAX_Z:
            table[z] = torch.tensor(vec, dtype=torch.float32)
    return table


def _arg(args: Any, name: str, default: Any) -> Any:
    if isinstance(args, dict):
        return args.get(name, default)
    return getattr(args, name, default)


def _shared_conv_keys(sd: dict[str, torch.Tensor], steps: int) -> dict[str, torch.Tensor]:
    """Map an SR-CGCNN state dict's convolution keys onto ``convs.fc_full/bn1.t/bn2.t``."""
    out: dict[str, torch.Tensor] = {}
    if any(k.startswith("convs.") for k in sd):
        for k in ("weight", "bias"):
            first = sd[f"convs.0.fc_full.{k}"]
            for step in range(1, steps):
                other = sd.get(f"convs.{step}.fc_full.{k}")
                if other is not None and not torch.equal(other, first):
                    raise LegacyFormatError("conv_mode is 'shared' but the steps' fc_full weights differ")
            out[f"convs.fc_full.{k}"] = first
        pattern = re.compile(r"convs\.(\d+)\.(bn[12])\.(.+)")
    else:
        prefix = next((p for p in ("conv.", "shared_conv.") if f"{p}fc_full.weight" in sd), None)
        if prefix is None:
            raise LegacyFormatError("no shared convolution (convs.*, conv.* or shared_conv.*) found")
        for k in ("weight", "bias"):
            out[f"convs.fc_full.{k}"] = sd[f"{prefix}fc_full.{k}"]
        pattern = re.compile(r"(?:conv\.|shared_conv\.)?(bn[12])s?\.(\d+)\.(.+)")
    for key, val in sd.items():
        m = pattern.fullmatch(key)
        if m is None:
            continue
        if key.startswith("convs."):
            t, bn, rest = m.groups()
        else:
            bn, t, rest = m.groups()
        out[f"convs.{bn}.{t}.{rest}"] = val
    return out


def import_legacy(path: Path, atom_init: Path, target: TargetSpec) -> tuple[CrystalGraphNet, dict[str, Any]]:
    """Convert a reference CGCNN / SR-CGCNN checkpoint into a model of ours.

    Args:
        path: The legacy ``model_best.pth.tar`` (or ``checkpoint.pth.tar``).
        atom_init: The ``atom_init.json`` the legacy model was trained with.
        target: What the model predicts (the legacy file does not say).

    Returns:
        The eval-mode model and metadata describing its origin.

    Raises:
        LegacyFormatError: the file is not a legacy regression checkpoint.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LegacyFormatError(f"{path}: cannot be read safely: {exc}") from exc
    if not isinstance(raw, dict) or not {"state_dict", "normalizer", "args"} <= raw.keys():
        raise LegacyFormatError(f"{path}: expected keys state_dict, normalizer and args")
    args, sd = raw["args"], raw["state_dict"]
    if _arg(args, "task", "regression") != "regression":
        raise LegacyFormatError(f"{path}: only regression models can be imported")
    table = _load_atom_init(atom_init)
    atom_fea_len, feature_dim = sd["embedding.weight"].shape
    if feature_dim != table.shape[1]:
        raise LegacyFormatError(f"embedding expects {feature_dim} features, atom_init.json has {table.shape[1]}")
    radius = float(_arg(args, "radius", 8.0))
    step = float(_arg(args, "step", 0.2))
    dmin = float(_arg(args, "dmin", 0.0))
    graph = GraphConfig(
        cutoff=radius,
        max_neighbors=int(_arg(args, "max_num_nbr", 12)),
        gaussian_start=dmin,
        gaussian_stop=radius,
        gaussian_step=step,
        gaussian_width=step,
        feature_set=LEGACY_FEATURE_SET,
        feature_hash=table_hash(table.numpy()),
    )
    common = dict(
        targets=(target,),
        graph=graph,
        feature_dim=feature_dim,
        atom_fea_len=atom_fea_len,
        h_fea_len=sd["conv_to_fc.weight"].shape[0],
        n_h=1 + len({k.split(".")[1] for k in sd if k.startswith("fcs.")}),
    )
    shared = str(raw.get("conv_mode", "stacked")).lower() in {"shared", "recurrent", "shared_recurrent"}
    new_sd: dict[str, torch.Tensor] = {"atom_features": table}
    if shared:
        steps = int(raw.get("n_recurrent_steps", _arg(args, "n_recurrent_steps", 3)))
        config: ModelConfig = SRCGCNNConfig(n_steps=steps, **common)
        new_sd.update(_shared_conv_keys(sd, steps))
    else:
        n_conv = len({k.split(".")[1] for k in sd if k.startswith("convs.")})
        config = CGCNNConfig(n_conv=n_conv, **common)
        new_sd.update({k: v for k, v in sd.items() if k.startswith("convs.")})
    renames = {"embedding.": "embedding.", "conv_to_fc.": "heads.0.fc_in.", "fc_out.": "heads.0.out."}
    for key, val in sd.items():
        for old, new in renames.items():
            if key.startswith(old):
                new_sd[new + key[len(old) :]] = val
        if key.startswith("fcs."):
            new_sd["heads.0.hidden." + key[len("fcs.") :]] = val
    norm = raw["normalizer"]
    new_sd["target_mean"] = torch.as_tensor(norm["mean"], dtype=torch.float32).reshape(1)
    new_sd["target_std"] = torch.as_tensor(norm["std"], dtype=torch.float32).reshape(1)
    model = build_model(config)
    try:
        model.load_state_dict(new_sd, strict=True)
    except RuntimeError as exc:
        raise LegacyFormatError(f"{path}: unexpected weight layout: {exc}") from exc
    model.eval()
    meta = {
        "source": {"legacy_format": "sr-cgcnn" if shared else "cgcnn", "path": Path(path).name},
        "elements": [int(z) for z in range(1, MAX_Z + 1) if table[z].abs().sum() > 0],
        "legacy_best_mae": float(raw["best_mae_error"]) if "best_mae_error" in raw else None,
    }
    return model, meta
