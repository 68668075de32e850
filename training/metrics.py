"""Regression metrics."""

from __future__ import annotations

import numpy as np

__all__ = ["regression_metrics", "classification_metrics"]


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


def classification_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Accuracy at 0.5, log-loss and the positive rate of a probability over the finite labels.

    Shapes:
        ``y_true`` (0 or 1), ``p`` (probabilities): ``[n]``.
    """
    mask = np.isfinite(y_true)
    t, q = y_true[mask], np.clip(p[mask], 1e-7, 1 - 1e-7)
    if len(t) == 0:
        return {"accuracy": float("nan"), "log_loss": float("nan"), "positive_rate": float("nan"), "n": 0}
    return {
        "accuracy": float(((q > 0.5) == (t > 0.5)).mean()),
        "log_loss": float(-(t * np.log(q) + (1 - t) * np.log(1 - q)).mean()),
        "positive_rate": float(t.mean()),
        "n": int(len(t)),
    }
