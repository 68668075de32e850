"""CGCNN-format data folders: CIF files plus a labels CSV."""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LabelledSet", "read_dataset"]


@dataclass(frozen=True)
class LabelledSet:
    """Structures of a folder with their labels.

    Attributes:
        ids: Material ids, in file order.
        paths: The CIF of each id.
        targets: Target names (columns).
        labels: ``[len(ids), len(targets)]`` float array; NaN where a label is missing.
    """

    ids: list[str]
    paths: list[Path]
    targets: list[str]
    labels: np.ndarray

    def fingerprint(self, content_keys: list[str]) -> str:
        """A hash of ids, file contents (their keys) and labels: names the data a model saw."""
        h = hashlib.sha256()
        for i, key in sorted(zip(self.ids, content_keys, strict=True)):
            h.update(f"{i}:{key};".encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]


def _cif_path(folder: Path, material_id: str) -> Path | None:
    for candidate in (folder / "cifs" / f"{material_id}.cif", folder / f"{material_id}.cif"):
        if candidate.is_file():
            return candidate
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _value(text: str) -> float:
    text = text.strip()
    return math.nan if text.lower() in {"", "none", "nan", "null", "na"} else float(text)


def read_dataset(folder: Path, targets: list[str] | None = None) -> LabelledSet:
    """Read ``labels.csv`` (header, first column the id) or the classic ``id_prop.csv``.

    ``id_prop.csv`` has no header: ``id,value`` rows; its single target is called
    ``target`` unless ``targets`` names it.

    Args:
        folder: The data folder; CIFs in ``folder/cifs/<id>.cif`` or ``folder/<id>.cif``.
        targets: Columns to use (default: every column after the id).

    Raises:
        FileNotFoundError: no labels file, or a labelled id without a CIF.
        KeyError: a requested target column is absent.
    """
    folder = Path(folder)
    labels_csv, id_prop = folder / "labels.csv", folder / "id_prop.csv"
    if labels_csv.is_file():
        with open(labels_csv, newline="") as fh:
            rows = list(csv.reader(fh))
        header, rows = rows[0], [r for r in rows[1:] if r]
        columns = header[1:]
    elif id_prop.is_file():
        with open(id_prop, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if rows and not _is_number(rows[0][1]):
            raise ValueError(f"{id_prop}: expected no header (id,value rows)")
        columns = list(targets) if targets and len(targets) == 1 else ["target"]
    else:
        raise FileNotFoundError(f"{folder}: no labels.csv or id_prop.csv")
    wanted = list(targets) if targets else columns
    missing = [t for t in wanted if t not in columns]
    if missing:
        raise KeyError(f"target column(s) {missing} not in {columns}")
    cols = [columns.index(t) + 1 for t in wanted]
    ids, paths, values = [], [], []
    for row in rows:
        path = _cif_path(folder, row[0])
        if path is None:
            raise FileNotFoundError(f"{folder}: no CIF for id {row[0]!r}")
        ids.append(row[0])
        paths.append(path)
        values.append([_value(row[c]) for c in cols])
    return LabelledSet(ids=ids, paths=paths, targets=wanted, labels=np.asarray(values, dtype=np.float64))
