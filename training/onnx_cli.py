"""``export-onnx``: add a parity-checked ``model.onnx`` to exported model folders.

Wired into the training CLI with :func:`add_parser`; the subcommand sets ``args.func`` to
:func:`run`, which exits with status 1 if any folder failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crystalgraph import (
    CheckpointError,
    OnnxError,
    export_onnx_checked,
    load_exported,
    read_manifest,
    write_manifest,
)

__all__ = ["add_parser", "run", "export_folder"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``export-onnx MODEL_DIR [MODEL_DIR ...]`` on a parser's subparsers."""
    parser = subparsers.add_parser(
        "export-onnx",
        help="export a parity-checked model.onnx next to exported checkpoints",
        description=(
            "Export each model folder's weights to model.onnx and list it in manifest.json. The file is only "
            "written if onnxruntime matches torch within --tol on the parity batches (1 atom, one crystal, "
            "64 crystals, a 200-atom cell)."
        ),
    )
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="MODEL_DIR", help="models/<name>/<version>/")
    parser.add_argument("--tol", type=float, default=1e-4, help="max |torch - onnxruntime| in target units")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 18)")
    parser.set_defaults(func=run)
    return parser


def export_folder(folder: Path, tol: float = 1e-4, opset: int = 18) -> Path:
    """Export one model folder's ``model.onnx`` and rewrite its manifest to list it.

    Other files the manifest lists are kept in it.

    Returns:
        The ONNX file.

    Raises:
        CheckpointError: the folder is not a valid exported model.
        OnnxError: the export failed the parity gate (no file written).
    """
    manifest = read_manifest(folder)
    loaded = load_exported(folder)
    path = export_onnx_checked(loaded.model, folder, tol=tol, opset=opset)
    extra = {
        key: folder / entry["path"]
        for key, entry in manifest.get("files", {}).items()
        if key not in ("weights", "onnx") and (folder / entry["path"]).is_file()
    }
    extra["onnx"] = path
    write_manifest(folder, name=manifest["name"], version=manifest["version"], extra_files=extra)
    return path


def run(args: argparse.Namespace) -> None:
    """Export every folder in ``args.model_dirs``, going on past failures.

    Raises:
        SystemExit: some folders were not exported (exit status 1, whatever the caller does
            with a return value).
    """
    failed = 0
    for folder in args.model_dirs:
        try:
            path = export_folder(folder, tol=args.tol, opset=args.opset)
        except (CheckpointError, OnnxError, ValueError) as exc:
            failed += 1
            print(f"{folder}: not exported: {exc}", file=sys.stderr)
            continue
        print(f"{folder}: wrote {path.name} (parity within {args.tol:g})")
    if failed:
        raise SystemExit(f"export-onnx: {failed} of {len(args.model_dirs)} model folders not exported")
