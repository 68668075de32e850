"""The service's side of the trust signals (:mod:`crystalgraph.trust` holds the rest).

Which backends return the pooled crystal embedding, and how a worker's row splits into
predictions and the uncertainty scores (made per batch on the inference thread).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crystalgraph import DOMAIN_CODES, ModelUncertainty, load_uncertainty

__all__ = ["ModelUncertainty", "load_uncertainty", "DOMAIN_CODES", "embeds", "split_row"]


def embeds(predictor: object) -> bool:
    """Whether a backend can return the pooled crystal embedding beside its predictions."""
    return bool(getattr(predictor, "has_embedding", False))


def split_row(row: Sequence[float], n_targets: int) -> tuple[list[float], np.ndarray | None]:
    """A worker's row ``[T]`` or ``[T + 1 + P]`` -> predictions and the uncertainty scores (``None`` when absent)."""
    values = list(row[:n_targets])
    return values, (np.asarray(row[n_targets:], np.float64) if len(row) > n_targets else None)
