"""The default-model protocol: CGCNN vs SR-CGCNN, formation energy and band gap.

``python -m training.protocol train`` trains the four single-task models on one seeded
80/10/10 split with identical graph settings, optimiser, schedule and epoch budget, and
exports them into ``models/``; ``python -m training.protocol evaluate`` re-evaluates the
shipped models on the test split and prints the table; ``report`` writes
``models/REPORT.md``. Runs resume: re-running ``train`` continues unfinished runs.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch

from crystalgraph import KNOWN_TARGETS, load_exported, read_manifest

from .graph_cache import default_cache_dir
from .pipeline import evaluate_model, export_run, prepare, run_training
from .split import make_split, save_split
from .trainer import TrainConfig

ARCHS = ("cgcnn", "sr-cgcnn")
TARGETS = ("formation_energy_per_atom", "band_gap")
SPLIT_SEED = 42
#: The 8 Materials Project formation energies below -4.5 eV/atom are known errors: they are
#: kept out of training and validation, and kept in the test split.
EXCLUDE = ["formation_energy_per_atom<-4.5"]
PUBLISHED = {
    "formation_energy_per_atom": "CGCNN paper 0.039; SR-CGCNN paper: CGCNN 0.0945, SR-CGCNN 0.0986",
    "band_gap": "CGCNN paper 0.388; SR-CGCNN paper: CGCNN 0.4346, SR-CGCNN 0.4503",
}


def model_name(arch: str, target: str) -> str:
    return f"{arch}-mp-{target.replace('_per_atom', '').replace('_', '-')}"


def _train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    runs = args.runs_dir
    split_file = runs / "split.json"
    prepared = prepare(args.data, list(TARGETS), workers=args.workers, progress=not args.no_progress)
    if not split_file.is_file():
        runs.mkdir(parents=True, exist_ok=True)
        save_split(make_split(prepared.data.ids, SPLIT_SEED), split_file, SPLIT_SEED)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, loss=args.loss,
                         patience=args.patience, seed=0)
    todo = [(a, t) for a in ARCHS for t in TARGETS if (args.only is None or model_name(a, t) in args.only)]
    for arch, target in todo:
        torch.manual_seed(0)
        name = model_name(arch, target)
        model, meta = run_training(
            prepared, model_type=arch, targets=(KNOWN_TARGETS[target],), run_dir=runs / name,
            train_config=config, split_file=split_file, exclude=EXCLUDE, progress=not args.no_progress,
            log=lambda m, n=name: print(f"[{n}] {m}", flush=True),
        )
        folder = export_run(model, meta, args.models, name, args.version)
        for png in (runs / name).glob("*.png"):
            shutil.copy(png, args.models / f"{name}-{png.name}")
        print(f"[{name}] exported {folder}", flush=True)


def shipped(models: Path) -> list[Path]:
    """The newest version folder of each default model present."""
    out = []
    for arch in ARCHS:
        for target in TARGETS:
            versions = sorted((models / model_name(arch, target)).glob("*/manifest.json"),
                              key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
            if versions:
                out.append(versions[-1].parent)
    return out


def _evaluate(args: argparse.Namespace) -> None:
    prepared = prepare(args.data, list(TARGETS), workers=args.workers, progress=not args.no_progress)
    split = make_split(prepared.data.ids, SPLIT_SEED)
    ids = [m for m in split["test"] if m in prepared.graphs]
    index = {m: i for i, m in enumerate(prepared.data.ids)}
    print(f"{'model':34s} {'target':26s} {'n':>5s} {'MAE':>8s} {'RMSE':>8s} {'R2':>7s}")
    for folder in shipped(args.models):
        loaded = load_exported(folder)
        cols = [prepared.data.targets.index(t.name) for t in loaded.model.config.targets]
        labels = np.stack([prepared.data.labels[index[m], cols] for m in ids])
        metrics = evaluate_model(loaded.model, ids, [prepared.graphs[m] for m in ids], labels,
                                 args.out / folder.parent.name, "test", folder.parent.name)
        for key, m in metrics.items():
            print(f"{folder.parent.name:34s} {key:26s} {m['n']:5d} {m['mae']:8.4f} {m['rmse']:8.4f} {m['r2']:7.3f}")


def _report(args: argparse.Namespace) -> None:
    rows = []
    for folder in shipped(args.models):
        m = read_manifest(folder)
        meta = m["metadata"]
        target = m["config"]["targets"][0]
        test = meta["metrics"]["test"]
        rows.append((m["name"], m["config"]["model_type"], target, meta, test))
    lines = [
        "| model | arch | property | params (total / conv) | test MAE | RMSE | R² | epochs (best) "
        "| training time | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arch, target, meta, test in rows:
        t = test[target["name"]]
        tr = meta["training"]
        p = meta["parameters"]
        lines.append(
            f"| `{name}` | {arch} | {target['name']} ({target['unit']}) | {p['total']:,} / {p['conv']:,} | "
            f"{t['mae']:.4f} | {t['rmse']:.4f} | {t['r2']:.3f} | {tr['epochs']} ({tr['best_epoch']}) | "
            f"{tr['seconds'] / 60:.0f} min | {tr['hardware']} |"
        )
    extra = []
    for name, _, target, _, test in rows:
        if target["nonnegative"]:
            z, nz = test[f"{target['name']}[label=0]"], test[f"{target['name']}[label>0]"]
            extra.append(f"| `{name}` | {z['mae']:.4f} (n = {z['n']}) | {nz['mae']:.4f} (n = {nz['n']}) |")
    print("\n".join(lines))
    if extra:
        print("\n| model | MAE on metals (gap 0) | MAE on non-metals |\n|---|---|---|\n" + "\n".join(extra))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.protocol", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "evaluate", "report"])
    parser.add_argument("--data", type=Path, default=default_cache_dir() / "data" / "mp-crystals")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--runs-dir", type=Path, default=default_cache_dir() / "runs" / "defaults")
    parser.add_argument("--out", type=Path, default=Path("evaluation"))
    parser.add_argument("--only", nargs="*", default=None, help="model names to train")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--loss", default="l1")
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--version", default="1")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    {"train": _train, "evaluate": _evaluate, "report": _report}[args.command](args)


if __name__ == "__main__":
    main()
