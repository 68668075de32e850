"""Parity plots and learning curves (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["parity_plot", "learning_curve"]


def parity_plot(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str, unit: str, mae: float) -> None:
    """Predicted against true values, with the y = x line and the MAE in the title."""
    mask = np.isfinite(y_true)
    t, p = y_true[mask], y_pred[mask]
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.hexbin(t, p, gridsize=60, bins="log", cmap="viridis", mincnt=1, extent=(lo, hi, lo, hi))
    ax.plot([lo, hi], [lo, hi], "r--", lw=1)
    ax.set_xlabel(f"DFT ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(f"{title}\nMAE {mae:.4g} {unit}, n = {len(t)}", fontsize=9)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def learning_curve(history: list[dict], path: Path, title: str) -> None:
    """Training loss and validation MAE (normalised units) per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=120)
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_score"] for h in history], label="validation MAE / std")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
