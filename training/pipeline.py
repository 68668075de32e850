"""A training run end to end: graphs, split, training, test evaluation, plots, export."""

from __future__ import annotations

import csv
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Element
from torch_geometric.data import Data

from crystalgraph import (
    KNOWN_TARGETS,
    CrystalGraphNet,
    GraphConfig,
    TargetSpec,
    architecture,
    build_model,
    export_model,
    export_onnx_checked,
    load_checkpoint,
    predict_graphs,
    write_manifest,
)

from .dataset import LabelledSet, read_dataset
from .graph_cache import CachedError, GraphCache
from .metrics import classification_metrics, regression_metrics
from .plots import learning_curve, parity_plot
from .split import load_split, make_split, save_split, split_hash
from .trainer import TrainConfig, Trainer, hardware_summary, with_labels

__all__ = [
    "Prepared",
    "prepare",
    "target_specs",
    "run_training",
    "evaluate_model",
    "export_run",
    "hardware",
    "resolve_training_device",
    "parse_exclusion",
    "target_labels",
    "label_columns",
    "tune_metal_threshold",
]


@dataclass
class Prepared:
    """A labelled data folder with its graphs (structures without a graph are dropped).

    ``graph`` is the one graph configuration the graphs were built with; a model trained on
    them is given the same one.
    """

    data: LabelledSet
    graphs: dict[str, Data]
    skipped: dict[str, CachedError]
    fingerprint: str
    graph: GraphConfig


def prepare(
    folder: Path,
    targets: list[str],
    cache_dir: Path | None = None,
    workers: int | None = None,
    graph: GraphConfig | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> Prepared:
    """Read labels, build (or load cached) graphs."""
    ds = read_dataset(folder, targets)
    if limit is not None:
        ds = LabelledSet(ids=ds.ids[:limit], paths=ds.paths[:limit], targets=ds.targets, labels=ds.labels[:limit])
    graph = graph or GraphConfig()
    graphs, keys = GraphCache(graph, cache_dir, workers).graphs(ds.paths, progress=progress)
    ok = {i: g for i, g in zip(ds.ids, graphs, strict=True) if isinstance(g, Data)}
    skipped = {i: g for i, g in zip(ds.ids, graphs, strict=True) if isinstance(g, CachedError)}
    return Prepared(data=ds, graphs=ok, skipped=skipped, fingerprint=ds.fingerprint(keys), graph=graph)


def target_specs(names: list[str], units: dict[str, str] | None = None) -> tuple[TargetSpec, ...]:
    """Target specs for label columns: known ones from ``KNOWN_TARGETS``, others need a unit."""
    specs = []
    for n in names:
        if n in KNOWN_TARGETS:
            specs.append(KNOWN_TARGETS[n])
        elif units and n in units:
            specs.append(TargetSpec(name=n, unit=units[n]))
        else:
            raise ValueError(f"unknown target {n!r}: give its unit with --unit {n}=UNIT")
    return tuple(specs)


def label_columns(targets: tuple[TargetSpec, ...]) -> list[str]:
    """The label-file columns the targets need (a metal probability reads its source)."""
    return list(dict.fromkeys(t.source or t.name for t in targets))


def target_labels(ds: LabelledSet, targets: tuple[TargetSpec, ...]) -> np.ndarray:
    """``[len(ds.ids), T]`` labels of the targets, a column each.

    A metal probability is derived from its source column: 1 where the band gap is 0, 0 where it
    is positive, NaN where missing.
    """
    out = np.empty((len(ds.ids), len(targets)))
    for t, spec in enumerate(targets):
        col = ds.labels[:, ds.targets.index(spec.source or spec.name)]
        out[:, t] = np.where(np.isfinite(col), (col <= 0).astype(float), np.nan) if spec.is_probability else col
    return out


def tune_metal_threshold(model: CrystalGraphNet, graphs: list[Data], labels: np.ndarray) -> float | None:
    """Set the metal threshold that minimises the gated band-gap MAE on these (validation) graphs.

    Returns:
        The threshold, or ``None`` when the model has no metal head.
    """
    gates = model.gates
    if not gates:
        return None
    t, k = gates[0]
    model.metal_threshold.fill_(1.01)  # never gate: the raw regression and the probabilities
    raw = predict_graphs(model, graphs)
    y = labels[:, t]
    mask = np.isfinite(y)
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    maes = [np.abs(np.where(raw[mask, k] > th, 0.0, raw[mask, t]) - y[mask]).mean() for th in grid]
    best = float(grid[int(np.argmin(maes))])
    model.metal_threshold.fill_(best)
    return best


def parse_exclusion(text: str) -> tuple[str, str, float]:
    """``"formation_energy_per_atom<-4.5"`` -> ``(column, "<", -4.5)``."""
    m = re.fullmatch(r"\s*(\w+)\s*([<>])\s*(-?[\d.eE+-]+)\s*", text)
    if not m:
        raise ValueError(f"bad exclusion {text!r}: expected NAME<VALUE or NAME>VALUE")
    return m.group(1), m.group(2), float(m.group(3))


def resolve_training_device(name: str) -> torch.device:
    """``"auto"``: the first CUDA device when there is one, else the CPU; otherwise ``name`` itself.

    Raises:
        ValueError: a CUDA device asked for where torch sees none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: torch sees no CUDA device here")
    return device


def hardware(device: torch.device) -> str:
    """Where training runs, for the metadata: the CUDA device, else the CPU and its threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    n = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()} CPU, {n} thread{'s' if n != 1 else ''}"


def evaluate_model(
    model: CrystalGraphNet,
    ids: list[str],
    graphs: list[Data],
    labels: np.ndarray,
    out_dir: Path,
    split_name: str = "test",
    title: str = "",
) -> dict[str, dict[str, float]]:
    """Metrics per target on one split, a predictions CSV and a parity plot per target.

    For non-negative targets (band gap) the metrics are also given on the zero-label (metal)
    and positive-label (non-metal) subsets.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    pred = predict_graphs(model, graphs)
    metrics: dict[str, dict[str, float]] = {}
    for t, spec in enumerate(model.config.targets):
        col = labels[:, t]
        if spec.is_probability:
            metrics[spec.name] = classification_metrics(col, pred[:, t])
            continue
        metrics[spec.name] = regression_metrics(col, pred[:, t])
        if spec.nonnegative:
            metrics[f"{spec.name}[label=0]"] = regression_metrics(col[col == 0], pred[col == 0, t])
            metrics[f"{spec.name}[label>0]"] = regression_metrics(col[col > 0], pred[col > 0, t])
        parity_plot(
            col,
            pred[:, t],
            out_dir / f"parity_{split_name}_{spec.name}.png",
            f"{title} {spec.name} ({split_name})".strip(),
            spec.unit,
            metrics[spec.name]["mae"],
        )
    with open(out_dir / f"{split_name}_predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id"] + [f"{s.name}_{k}" for s in model.config.targets for k in ("true", "pred")])
        for i, mid in enumerate(ids):
            w.writerow([mid] + [f"{v:.6g}" for t in range(pred.shape[1]) for v in (labels[i, t], pred[i, t])])
    return metrics


def run_training(
    prepared: Prepared,
    *,
    model_type: str,
    targets: tuple[TargetSpec, ...],
    run_dir: Path,
    train_config: TrainConfig,
    split_file: Path | None = None,
    split_seed: int = 42,
    exclude: list[str] | None = None,
    arch: dict | None = None,
    progress: bool = True,
    log=print,
    device: torch.device | str = "cpu",
    evaluate: bool = True,
) -> tuple[CrystalGraphNet, dict] | None:
    """Train (resuming ``run_dir`` if it holds a run), then evaluate the best epoch on test.

    Exclusions (e.g. outliers) apply to train and validation only; test keeps every crystal.

    Args:
        prepared: The parsed data set (graphs and labels).
        model_type: ``cgcnn`` or ``sr-cgcnn``.
        targets: What the model predicts (several: multi-task).
        run_dir: The run folder (resumed when it holds a run).
        train_config: Optimisation settings.
        split_file: Read the split from here (else make one with ``split_seed`` and write it here).
        split_seed: The seed of a new split.
        exclude: Rules (``NAME<VALUE``) that drop crystals from train and validation.
        arch: Architecture settings over the config's defaults.
        progress: Show progress bars.
        log: Called with each log line.
        device: Where the model trains; evaluation and export are on the CPU.
        evaluate: ``False``: stop after training (the run folder holds ``best.pt``): for a run
            trained on a borrowed GPU machine and evaluated, once, where the models are exported.

    Returns:
        The best model (eval mode) and its metadata (metrics included); ``None`` without ``evaluate``.
    """
    device = torch.device(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = prepared.data
    names = [t.name for t in targets]
    label_of = dict(zip(ds.ids, target_labels(ds, targets), strict=True))
    if split_file is not None and split_file.is_file():
        split, split_seed = load_split(split_file)
    else:
        split = make_split(ds.ids, split_seed)
        if split_file is not None:
            split_file.parent.mkdir(parents=True, exist_ok=True)
            save_split(split, split_file, split_seed)
    save_split(split, run_dir / "split.json", split_seed)
    rules = [parse_exclusion(e) for e in exclude or []]

    values = {mid: dict(zip(ds.targets, ds.labels[i], strict=True)) for i, mid in enumerate(ds.ids)}

    def keep(mid: str, name: str) -> bool:
        if mid not in prepared.graphs:
            return False
        if name == "test":
            return True
        for col, op, v in rules:
            x = values[mid][col]
            if (op == "<" and x < v) or (op == ">" and x > v):
                return False
        # every target missing: nothing to learn from
        return bool(np.isfinite(label_of[mid]).any())

    parts = {name: [m for m in ids if keep(m, name)] for name, ids in split.items()}
    dropped = {name: len(split[name]) - len(parts[name]) for name in split}
    sets = {
        name: with_labels([prepared.graphs[m] for m in ids], np.stack([label_of[m] for m in ids]))
        for name, ids in parts.items()
    }
    elements = sorted({int(z) for g in sets["train"] for z in g.z.unique().tolist()})
    config_cls = architecture(model_type).config
    model = build_model(config_cls(targets=targets, graph=prepared.graph, **(arch or {})))
    metadata = {
        "elements": [Element.from_Z(z).symbol for z in elements],
        "dataset": {
            "fingerprint": prepared.fingerprint,
            "n_train": len(parts["train"]),
            "n_val": len(parts["val"]),
            "n_test": len(parts["test"]),
            "split_seed": split_seed,
            "split_hash": split_hash(split),
            "excluded_from_train_val": exclude or [],
            "dropped": dropped,
        },
        "training": {"hardware": hardware(device)},
    }
    log(
        f"{model_type} -> {names}: train {len(parts['train'])}, val {len(parts['val'])}, "
        f"test {len(parts['test'])} (dropped {dropped}); {model.count_parameters()}"
    )
    trainer = Trainer(model, sets["train"], sets["val"], train_config, run_dir, metadata, device=device)
    if trainer.resume():
        log(f"resumed {run_dir} at epoch {trainer.epoch}")
    trainer.fit(progress=progress, log=log)
    if not evaluate:
        return None
    learning_curve(trainer.history, run_dir / "learning_curve.png", f"{model_type} {', '.join(names)}")
    best = load_checkpoint(run_dir / "best.pt")
    threshold = tune_metal_threshold(
        best.model, [prepared.graphs[m] for m in parts["val"]], np.stack([label_of[m] for m in parts["val"]])
    )
    if threshold is not None:
        log(f"metal threshold tuned on validation: {threshold}")
    test_labels = np.stack([label_of[m] for m in parts["test"]])
    val_labels = np.stack([label_of[m] for m in parts["val"]])
    test_graphs = [prepared.graphs[m] for m in parts["test"]]
    val_graphs = [prepared.graphs[m] for m in parts["val"]]
    meta = dict(best.metadata)
    # best.pt was saved at the best epoch: the run itself went on to the end of its budget
    meta["training"] = {
        **meta["training"],
        "epochs": trainer.epoch,
        "seconds": round(trainer.seconds, 1),
        "hardware": hardware_summary(trainer.history, meta["training"]["hardware"]),
    }
    if threshold is not None:
        meta["training"]["metal_threshold"] = threshold
    meta["metrics"] = {
        "val": evaluate_model(best.model, parts["val"], val_graphs, val_labels, run_dir, "val", model_type),
        "test": evaluate_model(best.model, parts["test"], test_graphs, test_labels, run_dir, "test", model_type),
    }
    (run_dir / "metrics.json").write_text(json.dumps(meta["metrics"], indent=2) + "\n")
    log(json.dumps(meta["metrics"]["test"], indent=1))
    return best.model, meta


def export_run(model: CrystalGraphNet, metadata: dict, models_dir: Path, name: str, version: str) -> Path:
    """Export a trained model into the model repository (and an ONNX file when available)."""
    folder = export_model(model, models_dir, name, version, metadata)
    onnx = export_onnx_checked(model, folder)
    write_manifest(folder, name=name, version=version, extra_files={"onnx": onnx})
    return folder
