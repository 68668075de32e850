"""Self-describing checkpoints and the versioned model folders of ``models/``.

A checkpoint (``weights.pt``) is a plain dict of strings, numbers, lists and tensors, so it
loads with ``torch.load(weights_only=True)``::

    {"format": "crystalgraph-checkpoint", "format_version": 1,
     "config": {...model config, graph settings included...},
     "state_dict": {...tensors: weights, element feature table, normaliser...},
     "metadata": {...targets, normaliser, element coverage, dataset fingerprint, split seed,
                  metrics, training time, library versions...}}

An exported model is a folder ``models/<name>/<version>/`` holding ``weights.pt``,
``manifest.json`` (the same config and metadata plus each file's sha256) and optionally
``model.onnx``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from .features import table_hash
from .nets import CrystalGraphNet, ModelConfig, build_model, parse_model_config

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "LoadedModel",
    "save_checkpoint",
    "load_checkpoint",
    "export_model",
    "read_manifest",
    "verify_manifest",
    "load_exported",
    "sha256_file",
    "verify_file",
    "write_manifest",
    "library_versions",
]

FORMAT = "crystalgraph-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
MANIFEST_FILE = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint or model folder that cannot be loaded (corrupt, unknown format, mismatch)."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with the metadata it was saved with."""

    model: CrystalGraphNet
    metadata: dict[str, Any]


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, as 64 hex digits (read a MiB at a time)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for pkg in ("torch", "torch-geometric", "pymatgen", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    return versions


def _checkpoint_dict(model: CrystalGraphNet, metadata: dict[str, Any]) -> dict[str, Any]:
    meta = dict(metadata)
    meta.setdefault("targets", [t.model_dump() for t in model.config.targets])
    meta["normalizer"] = {
        "mean": model.get_buffer("target_mean").tolist(),
        "std": model.get_buffer("target_std").tolist(),
    }
    meta["parameters"] = model.count_parameters()
    meta.setdefault("library_versions", library_versions())
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": meta,
    }


def save_checkpoint(model: CrystalGraphNet, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """Write a self-describing checkpoint (atomic: written to a temp file, then renamed)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(_checkpoint_dict(model, metadata or {}), tmp)
    tmp.replace(path)


def _model_from_dict(raw: Any, source: str) -> LoadedModel:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{source}: not a {FORMAT} file")
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{source}: format version {raw.get('format_version')} is not supported")
    try:
        config = parse_model_config(raw["config"])
        model = build_model(config)
        model.load_state_dict(raw["state_dict"], strict=True)
    except Exception as exc:
        raise CheckpointError(f"{source}: weights do not match their config: {exc}") from exc
    got = table_hash(model.get_buffer("atom_features").numpy())
    if got != config.graph.feature_hash:
        raise CheckpointError(f"{source}: element feature table hash {got} != {config.graph.feature_hash}")
    model.eval()
    return LoadedModel(model=model, metadata=dict(raw.get("metadata", {})))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint safely (``weights_only=True``) into an eval-mode model.

    Raises:
        CheckpointError: unreadable, unknown format, or weights that do not fit the config.
    """
    return _model_from_dict(_read_raw(Path(path), map_location), str(path))


def export_model(
    model: CrystalGraphNet,
    models_dir: Path,
    name: str,
    version: str,
    metadata: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write ``models_dir/name/version/`` with ``weights.pt`` and ``manifest.json``.

    Args:
        model: The model to save (its config, weights and normaliser).
        models_dir: The model repository.
        name: The model's folder name (``cgcnn-mp-band-gap``).
        version: The version folder name (``1``).
        metadata: Facts to keep with it (elements, metrics, data split...).
        extra_files: Files already written into the folder (e.g. ``{"onnx": path}``) to list
            in the manifest with their sha256.

    Returns:
        The model folder.
    """
    folder = Path(models_dir) / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    save_checkpoint(model, weights, metadata)
    write_manifest(folder, name=name, version=str(version), extra_files=extra_files)
    return folder


def write_manifest(folder: Path, name: str, version: str, extra_files: dict[str, Path] | None = None) -> Path:
    """(Re)write ``manifest.json`` from the folder's checkpoint and files."""
    weights = folder / WEIGHTS_FILE
    raw = torch.load(weights, map_location="cpu", weights_only=True)
    files = {"weights": {"path": WEIGHTS_FILE, "sha256": sha256_file(weights), "bytes": weights.stat().st_size}}
    for key, path in (extra_files or {}).items():
        path = Path(path)
        files[key] = {"path": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": raw["config"],
        "metadata": raw["metadata"],
        "files": files,
    }
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and check a model folder's manifest (format and version, not yet the hashes)."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: a manifest is a JSON object, not {type(manifest).__name__}")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unknown manifest format {manifest.get('format')!r}")
    return manifest


def verify_file(folder: Path, manifest: dict[str, Any], key: str) -> Path:
    """The path of a manifest-listed file, after checking its sha256."""
    entry = manifest.get("files", {}).get(key)
    if entry is None:
        raise CheckpointError(f"{folder}: manifest lists no {key!r} file")
    path = Path(folder) / str(entry["path"])
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(f"{path}: sha256 {digest[:12]}… does not match the manifest's {entry['sha256'][:12]}…")
    return path


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"graph": {"cutoff": 8.0}}`` -> ``{"graph.cutoff": 8.0}`` (lists stay leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _differences(manifest_side: Any, weights_side: Any) -> list[str]:
    """The dotted keys whose values differ, compared as canonical JSON (so ``NaN`` equals ``NaN``)."""
    a, b = _flatten(manifest_side), _flatten(weights_side)

    def canonical(v: Any) -> str:
        return json.dumps(v, sort_keys=True, ensure_ascii=False)

    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or canonical(a[k]) != canonical(b[k]))


def _compare_copies(folder: Path, manifest: dict[str, Any], raw: dict[str, Any]) -> None:
    """Raise unless the manifest's config and metadata equal those inside the checkpoint ``raw``."""
    diff = _differences(manifest.get("config"), raw.get("config"))
    if diff:
        ours, theirs = _flatten(manifest.get("config")), _flatten(raw.get("config"))
        detail = "; ".join(
            f"{k}: manifest {ours.get(k, '(absent)')!r}, weights {theirs.get(k, '(absent)')!r}" for k in diff
        )
        raise CheckpointError(f"{folder}: manifest.json config differs from weights.pt ({detail})")
    diff = _differences(manifest.get("metadata", {}), raw.get("metadata", {}))
    if diff:
        raise CheckpointError(f"{folder}: manifest.json metadata differs from weights.pt at {', '.join(diff)}")


def _read_raw(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a safe checkpoint: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} file")
    return raw


def verify_manifest(folder: Path, manifest: dict[str, Any]) -> ModelConfig:
    """The model config, once the manifest's copy is shown to equal the one inside ``weights.pt``.

    The manifest repeats the config and metadata that ``weights.pt`` holds, so that a server can
    build graphs (cutoff, neighbours, Gaussian grid, element features) and describe a model without
    loading the network. The two copies must agree: a manifest edited by hand (say, a cutoff of
    4 Å for a model trained at 8 Å) would otherwise make every backend serve graphs the network
    was never trained on. The weights' sha256 is checked first.

    Args:
        folder: The model folder (``models/<name>/<version>/``).
        manifest: Its parsed ``manifest.json`` (:func:`read_manifest`).

    Returns:
        The validated config (the two copies being equal, either one).

    Raises:
        CheckpointError: a missing or tampered ``weights.pt``, an invalid config, or a manifest
            whose config or metadata differs from the weights' (the message names the keys).
    """
    raw = _read_raw(verify_file(folder, manifest, "weights"))
    _compare_copies(Path(folder), manifest, raw)
    try:
        return parse_model_config(raw["config"])
    except Exception as exc:
        raise CheckpointError(f"{folder}: invalid model config: {exc}") from exc


def load_exported(folder: Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load an exported model folder, once its manifest is shown to match its weights.

    Raises:
        CheckpointError: see :func:`verify_manifest` and :func:`load_checkpoint`.
    """
    manifest = read_manifest(folder)
    weights = verify_file(folder, manifest, "weights")
    raw = _read_raw(weights, map_location)
    _compare_copies(Path(folder), manifest, raw)
    return _model_from_dict(raw, str(weights))
