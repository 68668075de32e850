"""What calibrating an uncertainty needs from a model: predictions and embeddings per split.

One pass of a shipped model over the train, validation and test crystals of its own split gives
its predictions and pooled crystal embeddings (:meth:`crystalgraph.CrystalGraphNet.pool`). The
arrays are cached outside the repository (``<cache>/uncertainty/<name>-<weights sha>.npz``,
never committed), keyed by the weights' sha256, so a re-run on the same model reads them back
and a new model is measured afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from crystalgraph import PackedGraphs, load_exported, read_manifest

from .graph_cache import default_cache_dir
from .pipeline import Prepared, parse_exclusion, target_labels
from .split import make_split, split_hash

__all__ = ["ModelPass", "SPLITS", "model_pass", "split_ids", "embed_graphs", "sample_rows"]

SPLITS = ("train", "val", "test")


@dataclass
class ModelPass:
    """One model's outputs on its split.

    Attributes:
        name: Model name; ``version``: its version folder.
        sha256: Its weights' sha256.
        targets: Output names, in column order.
        ids: Material ids per split.
        pred: ``[n, T]`` predictions (physical units) per split.
        emb: ``[n, D]`` float32 pooled embeddings per split.
        labels: ``[n, T]`` labels per split (NaN where missing).
    """

    name: str
    version: str
    sha256: str
    targets: list[str]
    ids: dict[str, list[str]]
    pred: dict[str, np.ndarray]
    emb: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


@torch.inference_mode()
def embed_graphs(model, graphs, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Predictions ``[n, T]`` (physical units) and embeddings ``[n, D]`` of graphs, in order."""
    packed = PackedGraphs(graphs)
    preds, embs = [], []
    for start in range(0, len(packed), batch_size):
        inputs, _ = packed.batch(np.arange(start, min(start + batch_size, len(packed))))
        crys = model.pool(*inputs)
        preds.append(model.denormalize(model.readout(crys)).double().numpy())
        embs.append(crys.float().numpy())
    return np.concatenate(preds), np.concatenate(embs)


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """A seeded choice of ``min(size, n)`` of ``n`` rows, in order (the training crystals a sample keeps)."""
    return np.sort(np.random.default_rng(seed).choice(n, min(size, n), replace=False))


def split_ids(prepared: Prepared, manifest: dict, seed: int, exclude: list[str]) -> dict[str, list[str]]:
    """The model's own split (checked against the hash in its manifest), exclusions applied.

    As in training (:func:`training.pipeline.run_training`): crystals without a graph are left
    out everywhere, the exclusion rules apply to train and validation only.

    Raises:
        ValueError: the regenerated split is not the one the model was trained on.
    """
    split = make_split(prepared.data.ids, seed)
    want = manifest.get("metadata", {}).get("dataset", {}).get("split_hash")
    if want is not None and split_hash(split) != want:
        raise ValueError(f"{manifest['name']}: split hash {split_hash(split)} != the model's {want}")
    ds = prepared.data
    rules = [parse_exclusion(e) for e in exclude]
    row = {m: i for i, m in enumerate(ds.ids)}

    def keep(mid: str, name: str) -> bool:
        if mid not in prepared.graphs:
            return False
        if name == "test":
            return True
        return not any(
            (op == "<" and ds.labels[row[mid], ds.targets.index(c)] < v)
            or (op == ">" and ds.labels[row[mid], ds.targets.index(c)] > v)
            for c, op, v in rules
        )

    return {name: [m for m in ids if keep(m, name)] for name, ids in split.items()}


def _cache_file(name: str, sha: str, split: str) -> Path:
    return default_cache_dir() / "uncertainty" / f"{name}-{sha[:16]}-{split}.npz"


def model_pass(
    folder: Path, prepared: Prepared, seed: int, exclude: list[str], train_sample: int = 0, log=print
) -> ModelPass:
    """Predictions and embeddings of a model folder on its split (cached by weights sha256).

    Args:
        folder: The model folder.
        prepared: The labelled data with its graphs.
        seed: The split seed (the split is checked against the manifest's hash).
        exclude: Exclusion rules for train and validation (as in training).
        train_sample: Embed only this many training crystals (seeded choice; 0: all of them).
            The training embeddings are only the reference the distances are measured to.
        log: Progress lines go here.
    """
    manifest = read_manifest(folder)
    sha = manifest["files"]["weights"]["sha256"]
    name, version = manifest["name"], str(manifest["version"])
    ids = split_ids(prepared, manifest, seed, exclude)
    if 0 < train_sample < len(ids["train"]):
        ids["train"] = [ids["train"][i] for i in sample_rows(len(ids["train"]), train_sample, seed)]
    loaded = load_exported(folder)
    model = loaded.model.float().eval()
    index = {m: i for i, m in enumerate(prepared.data.ids)}
    all_labels = target_labels(prepared.data, model.config.targets)
    labels = {s: all_labels[[index[m] for m in ids[s]]] for s in SPLITS}
    targets = [t.name for t in model.config.targets]
    pred, emb = {}, {}
    for s in ("val", "test", "train"):
        cache = _cache_file(name, sha, s)
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                if list(z["ids"]) == ids[s]:
                    pred[s], emb[s] = z["pred"], z["emb"]
                    log(f"[{name}] {s}: predictions and embeddings from {cache}")
                    continue
        t0 = time.perf_counter()
        pred[s], emb[s] = embed_graphs(model, [prepared.graphs[m] for m in ids[s]])
        log(f"[{name}] {s}: {len(ids[s])} crystals in {time.perf_counter() - t0:.0f} s")
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".part.npz")
        np.savez(tmp, ids=np.array(ids[s]), pred=pred[s], emb=emb[s])
        tmp.replace(cache)
    return ModelPass(name, version, sha, targets, ids, pred, emb, labels)
