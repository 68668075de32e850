r"""``python -m training`` (or ``crystal-train``): train, evaluate, export, import legacy models.

Examples::

    python -m training train DATA --model cgcnn --targets formation_energy_per_atom \\
        --run-dir runs/cgcnn-ef --epochs 100 --export-to models --name cgcnn-mp-formation-energy
    python -m training evaluate models/cgcnn-mp-formation-energy/1 DATA --split runs/cgcnn-ef/split.json
    python -m training import-legacy model_best.pth.tar --atom-init atom_init.json \\
        --target formation_energy_per_atom --to models --name legacy-cgcnn-ef
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from crystalgraph import (
    KNOWN_TARGETS,
    architecture_names,
    export_model,
    import_legacy,
    load_checkpoint,
    load_exported,
)

from .pipeline import (
    export_run,
    hardware,
    label_columns,
    prepare,
    resolve_training_device,
    run_training,
    target_labels,
    target_specs,
)
from .split import load_split
from .trainer import TrainConfig, add_recipe_arguments

__all__ = ["main", "build_parser"]


def _units(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        name, _, unit = p.partition("=")
        out[name] = unit
    return out


def _cmd_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    targets = target_specs(args.targets, _units(args.unit))
    prepared = prepare(args.data, label_columns(targets), args.cache_dir, args.workers, limit=args.limit)
    print(
        f"{len(prepared.graphs)} graphs ({len(prepared.skipped)} structures skipped); "
        f"dataset fingerprint {prepared.fingerprint}; {hardware(args.device)}",
        flush=True,
    )
    config = TrainConfig.from_args(args)
    arch = {"atom_fea_len": args.atom_fea_len, "h_fea_len": args.h_fea_len, "n_h": args.n_h}
    arch["n_conv" if args.model == "cgcnn" else "n_steps"] = args.n_conv
    result = run_training(
        prepared,
        model_type=args.model,
        targets=targets,
        run_dir=args.run_dir,
        train_config=config,
        split_file=args.split_file,
        split_seed=args.split_seed,
        exclude=args.exclude,
        arch=arch,
        progress=not args.no_progress,
        log=lambda m: print(m, flush=True),
        device=args.device,
    )
    assert result is not None  # evaluated: run_training returns None only with evaluate=False
    model, meta = result
    if args.export_to:
        name = args.name or f"{args.model}-{'-'.join(t.name for t in targets)}".replace("_", "-")
        folder = export_run(model, meta, args.export_to, name, args.version)
        print(f"exported {folder}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .pipeline import evaluate_model

    loaded = load_exported(args.model) if args.model.is_dir() else load_checkpoint(args.model)
    targets = loaded.model.config.targets
    prepared = prepare(args.data, label_columns(targets), args.cache_dir, args.workers, graph=loaded.model.config.graph)
    split, _ = load_split(args.split)
    ids = [m for m in split[args.subset] if m in prepared.graphs]
    index = {m: i for i, m in enumerate(prepared.data.ids)}
    all_labels = target_labels(prepared.data, targets)
    labels = np.stack([all_labels[index[m]] for m in ids])
    metrics = evaluate_model(loaded.model, ids, [prepared.graphs[m] for m in ids], labels, args.out, args.subset)
    print(json.dumps(metrics, indent=1))


def _cmd_export(args: argparse.Namespace) -> None:
    loaded = load_checkpoint(args.checkpoint)
    meta = dict(loaded.metadata)
    metrics = args.checkpoint.parent / "metrics.json"
    if "metrics" not in meta and metrics.is_file():
        meta["metrics"] = json.loads(metrics.read_text())
    print(export_run(loaded.model, meta, args.to, args.name, args.version))


def _cmd_import_legacy(args: argparse.Namespace) -> None:
    target = KNOWN_TARGETS.get(args.target) or target_specs([args.target], _units(args.unit))[0]
    model, meta = import_legacy(args.checkpoint, args.atom_init, target)
    print(export_model(model, args.to, args.name, args.version, meta))


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``train``, ``evaluate``, ``export``, ``export-onnx``, ``import-legacy``."""
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir", type=Path, default=None, help="graph cache root (default ~/.cache/crystal-service)"
    )
    common.add_argument("--workers", type=int, default=None, help="CIF parsing processes (default: CPU count)")

    t = sub.add_parser("train", parents=[common], help="train a model on a CGCNN-format folder")
    t.add_argument("data", type=Path, help="folder with labels.csv (or id_prop.csv) and CIFs")
    t.add_argument("--model", choices=architecture_names(), default="cgcnn")
    t.add_argument(
        "--targets",
        nargs="+",
        default=["formation_energy_per_atom"],
        help="label columns; several = multi-task (MT-CGCNN); id_prop.csv's column is 'target'; "
        "'p_metal' adds a metal-probability head that gates band_gap",
    )
    t.add_argument("--unit", action="append", default=[], metavar="NAME=UNIT", help="unit of a non-standard target")
    t.add_argument("--run-dir", type=Path, required=True, help="run folder (resumes if it holds a run)")
    add_recipe_arguments(t, epochs=100, batch_size=128, loss="mse")
    t.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    t.add_argument("--split-seed", type=int, default=42)
    t.add_argument("--split-file", type=Path, default=None, help="read the split from here (or write it there)")
    t.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME<VALUE",
        help="drop crystals from train/val (never test), e.g. 'formation_energy_per_atom<-4.5'",
    )
    t.add_argument("--limit", type=int, default=None, help="use only the first N labelled structures")
    t.add_argument("--atom-fea-len", type=int, default=64)
    t.add_argument("--h-fea-len", type=int, default=128)
    t.add_argument("--n-h", type=int, default=1)
    t.add_argument("--n-conv", type=int, default=3, help="conv layers (cgcnn) or recurrent steps (sr-cgcnn)")
    t.add_argument("--threads", type=int, default=torch.get_num_threads())
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    t.add_argument("--device", default="auto", help="where to train: auto (CUDA if present), cpu, cuda[:N]")
    t.add_argument("--export-to", type=Path, default=None, help="export the best model into this model repository")
    t.add_argument("--name", default=None)
    t.add_argument("--version", default="1")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", parents=[common], help="evaluate a model on one part of a saved split")
    e.add_argument("model", type=Path, help="exported model folder or checkpoint file")
    e.add_argument("data", type=Path)
    e.add_argument("--split", type=Path, required=True, help="split.json of the run")
    e.add_argument("--subset", choices=["train", "val", "test"], default="test")
    e.add_argument("--out", type=Path, default=Path("evaluation"))
    e.set_defaults(func=_cmd_evaluate)

    x = sub.add_parser("export", help="export a run's best.pt into a model repository")
    x.add_argument("checkpoint", type=Path)
    x.add_argument("--to", type=Path, default=Path("models"))
    x.add_argument("--name", required=True)
    x.add_argument("--version", default="1")
    x.set_defaults(func=_cmd_export)

    lg = sub.add_parser("import-legacy", help="convert a reference CGCNN / SR-CGCNN checkpoint")
    lg.add_argument("checkpoint", type=Path, help="model_best.pth.tar")
    lg.add_argument("--atom-init", type=Path, required=True, help="the atom_init.json the model was trained with")
    lg.add_argument("--target", required=True, help="property name, e.g. formation_energy_per_atom")
    lg.add_argument("--unit", action="append", default=[], metavar="NAME=UNIT")
    lg.add_argument("--to", type=Path, default=Path("models"))
    lg.add_argument("--name", required=True)
    lg.add_argument("--version", default="1")
    lg.set_defaults(func=_cmd_import_legacy)

    try:
        from . import onnx_cli
    except ImportError:
        pass
    else:
        onnx_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one command (``argv``: the arguments, default ``sys.argv[1:]``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "device", None) is not None:
        try:  # before any data is read: a GPU asked for where there is none is a usage error
            args.device = resolve_training_device(args.device)
        except ValueError as exc:
            parser.error(str(exc))
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
