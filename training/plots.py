"""Parity plots and learning curves (PNG).

Figures are made with matplotlib's object API and drawn by the Agg canvas: no pyplot state and no
global backend switch at import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig


__all__ = ["parity_plot", "learning_curve"]


def parity_plot(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str, unit: str, mae: float) -> None:
    """Predicted against true values, with the y = x line and the MAE in the title."""
    mask = np.isfinite(y_true)
    t, p = y_true[mask], y_pred[mask]
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    fig = _figure((4.5, 4.5))
    ax = fig.subplots()
    ax.hexbin(t, p, gridsize=60, bins="log", cmap="viridis", mincnt=1, extent=(lo, hi, lo, hi))
    ax.plot([lo, hi], [lo, hi], "r--", lw=1)
    ax.set_xlabel(f"DFT ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(f"{title}\nMAE {mae:.4g} {unit}, n = {len(t)}", fontsize=9)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)


def learning_curve(history: list[dict], path: Path, title: str) -> None:
    """Training loss and validation MAE (normalised units) per epoch."""
    epochs = [h["epoch"] for h in history]
    fig = _figure((5.5, 3.5))
    ax = fig.subplots()
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_score"] for h in history], label="validation MAE / std")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
