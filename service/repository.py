"""The model repository on disk: every ``models/<name>/<version>/`` folder, loaded into a registry.

Each version of each model is loaded and stays resident. A folder whose manifest, config or
weights cannot be trusted (unknown format, sha256 mismatch, weights that do not fit the config,
a manifest whose config or metadata differs from the one inside ``weights.pt``) is refused with
one log line (logger ``service.repository``) and listed as refused; the others still serve.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from crystalgraph import build_model, model_folders, read_manifest, verify_manifest

from .backends import create_predictor, resolve_backend
from .registry import ModelEntry, RefusedModel, Registry
from .uncertainty import embeds, load_uncertainty

__all__ = ["load_registry", "load_folders", "folder_signature", "repository_signatures"]

log = logging.getLogger("service.repository")


def _model_folders(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        log.warning("model repository %s does not exist: no models to serve", models_dir)
    return model_folders(models_dir)


def _load_entry(folder: Path, backend: str, device: str, precision: str) -> ModelEntry:
    manifest = read_manifest(folder)
    config = verify_manifest(folder, manifest)  # the manifest's config is the weights' config
    name, version = folder.parent.name, folder.name
    if (manifest.get("name"), str(manifest.get("version"))) != (name, version):
        log.warning(
            "%s: manifest says %s@%s; serving it as %s@%s (its folder)",
            folder,
            manifest.get("name"),
            manifest.get("version"),
            name,
            version,
        )
    backend = resolve_backend(backend, manifest, device, precision)
    predictor = create_predictor(backend, folder, manifest, device, precision)
    meta = manifest.get("metadata") or {}
    parameters = meta.get("parameters") if isinstance(meta, dict) else None
    if not (isinstance(parameters, dict) and {"total", "conv"} <= parameters.keys()):
        parameters = build_model(config).count_parameters()
    uncertainty = load_uncertainty(folder, manifest)
    if uncertainty is not None and not embeds(predictor):
        log.warning("%s: its %s backend gives no embedding: served without sigma", folder, predictor.backend)
        uncertainty = None
    return ModelEntry(
        uncertainty=uncertainty,
        name=name,
        version=version,
        folder=folder,
        config=config,
        manifest=manifest,
        predictor=predictor,
        parameters={"total": int(parameters["total"]), "conv": int(parameters["conv"])},
    )


def folder_signature(folder: Path) -> str:
    """What changes when a model folder's files do: each file's name, size and modification time."""
    try:
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    except OSError:
        return "unreadable"
    return ";".join(f"{name}:{size}:{mtime}" for name, size, mtime in files)


def repository_signatures(models_dir: Path) -> dict[str, str]:
    """:func:`folder_signature` of every model folder of the repository, by path."""
    return {str(folder): folder_signature(folder) for folder in model_folders(models_dir)}


def load_folders(
    folders: list[Path],
    *,
    backend: str,
    device: str,
    precision: str = "float32",
    model_backends: Mapping[str, str] | None = None,
) -> tuple[list[ModelEntry], list[RefusedModel]]:
    """Load model folders; refuse (and log) the ones that fail. See :func:`load_registry`."""
    entries: list[ModelEntry] = []
    refused: list[RefusedModel] = []
    for folder in folders:
        try:
            entry = _load_entry(folder, (model_backends or {}).get(folder.parent.name, backend), device, precision)
        except Exception as exc:  # noqa: BLE001 - any broken folder is refused, the rest serve
            reason = f"{type(exc).__name__}: {exc}"
            log.error("refusing model folder %s: %s", folder, reason)
            refused.append(RefusedModel(path=str(folder), reason=reason))
            continue
        log.info(
            "loaded model %s (%s, %s) on %s/%s",
            entry.ref,
            entry.config.model_type,
            ", ".join(entry.properties),
            entry.predictor.backend,
            entry.predictor.device,
        )
        entries.append(entry)
    return entries, refused


def load_registry(
    models_dir: Path,
    *,
    backend: str,
    device: str,
    precision: str = "float32",
    defaults: Mapping[str, str] | None = None,
    model_backends: Mapping[str, str] | None = None,
) -> Registry:
    """Load every model folder of a repository; refuse (and log) the ones that fail.

    Args:
        models_dir: ``<models_dir>/<name>/<version>/``.
        backend: ``auto`` or a name in :data:`service.backends.BACKENDS` (see ``resolve_backend``).
        device: A resolved device (``cpu``, ``cuda:0``).
        precision: ``float32`` or ``float64`` (resolved, not ``auto``).
        defaults: Default model per property (see :class:`~service.settings.Settings`).
        model_backends: Backend per model name, overriding ``backend``.
    """
    entries, refused = load_folders(
        _model_folders(Path(models_dir)),
        backend=backend,
        device=device,
        precision=precision,
        model_backends=model_backends,
    )
    registry = Registry(entries, refused, defaults)
    for prop, entry in sorted(registry.defaults.items()):
        log.info("default model for %s: %s", prop, entry.ref)
    return registry
