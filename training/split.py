"""Deterministic, seeded train / validation / test splits, saved as lists of ids."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["make_split", "save_split", "load_split", "split_hash"]


def make_split(
    ids: list[str], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[str]]:
    """Shuffle the sorted ids with ``seed`` and cut them into train / val / test.

    The result depends only on the set of ids and the seed, not on file order.
    """
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError("fractions must sum to 1")
    ordered = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_train = int(round(fractions[0] * len(ordered)))
    n_val = int(round(fractions[1] * len(ordered)))
    cut = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
    return {name: [ordered[i] for i in sorted(idx)] for name, idx in cut.items()}


def split_hash(split: dict[str, list[str]]) -> str:
    """A short hash of the three id lists, recorded in every model's metadata."""
    return hashlib.sha256(json.dumps(split, sort_keys=True).encode()).hexdigest()[:16]


def save_split(split: dict[str, list[str]], path: Path, seed: int) -> None:
    """Write the split atomically (runs started side by side may write the same file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps({"seed": seed, "hash": split_hash(split), **split}, indent=0) + "\n")
    tmp.replace(path)


def load_split(path: Path) -> tuple[dict[str, list[str]], int]:
    """The split and its seed, as :func:`save_split` wrote them."""
    raw = json.loads(Path(path).read_text())
    return {k: raw[k] for k in ("train", "val", "test")}, int(raw["seed"])
