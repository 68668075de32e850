"""Regression metrics."""

from __future__ import annotations

import numpy as np

__all__ = ["regression_metrics"]


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² over the finite labels.

    Shapes:
        ``y_true``, ``y_pred``: ``[n]``.
    """
    mask = np.isfinite(y_true)
    t, p = y_true[mask], y_pred[mask]
    if len(t) == 0:
        return {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan"), "n": 0}
    err = p - t
    ss_tot = float(((t - t.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        "n": int(len(t)),
    }
