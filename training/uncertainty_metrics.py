"""How well a sigma describes the errors: coverage, rank correlation, plots (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.special import erfinv
from scipy.stats import spearmanr

from crystalgraph import monotone_fit

__all__ = [
    "ONE_SIGMA_TARGET",
    "TWO_SIGMA_TARGET",
    "SPEARMAN_TARGET",
    "calibration_metrics",
    "plot_calibration",
    "coverage_curve",
    "coverage_frontier",
    "level_grid",
]

#: The trust-signals issue's calibration targets: the fraction of |error| <= sigma, of |error| <= 2 sigma,
#: and the Spearman correlation of sigma with |error| (test split).
ONE_SIGMA_TARGET = (0.60, 0.75)
TWO_SIGMA_TARGET = 0.90
SPEARMAN_TARGET = 0.4


def calibration_metrics(sigma: np.ndarray, err: np.ndarray) -> dict[str, float]:
    """Coverage at 1 and 2 sigma, Spearman(sigma, |error|), MAE of the 10% largest sigma vs the rest.

    Also the mean sigma (sharpness) and the Gaussian negative log-likelihood per crystal. A constant
    sigma (a score the monotone fit found no use for) ranks nothing: its Spearman is 0,
    and the MAE of "the rest" is that of all. Where 1% or more of the errors are exactly 0 (band gaps
    of metals gated to 0 eV: covered at any sigma), ``exact_zero`` is their fraction and
    ``within_1_sigma_nonzero`` / ``within_2_sigma_nonzero`` the coverage of the other errors.

    Shapes:
        ``sigma``, ``err``: ``[n]`` (error = prediction - label).
    """
    a = np.abs(err)
    top = sigma >= np.quantile(sigma, 0.9)
    nll = 0.5 * np.log(2 * np.pi * sigma**2) + 0.5 * (err / sigma) ** 2
    zero = a == 0
    nonzero = (
        {
            "exact_zero": round(float(zero.mean()), 4),
            "within_1_sigma_nonzero": round(float((a <= sigma)[~zero].mean()), 4),
            "within_2_sigma_nonzero": round(float((a <= 2 * sigma)[~zero].mean()), 4),
        }
        if zero.mean() >= 0.01 and (~zero).any()
        else {}
    )
    return {
        "n": len(a),
        "within_1_sigma": round(float((a <= sigma).mean()), 4),
        "within_2_sigma": round(float((a <= 2 * sigma).mean()), 4),
        "spearman": round(float(spearmanr(sigma, a).statistic), 4) if np.ptp(sigma) > 0 else 0.0,
        "mae_top10_sigma": round(float(a[top].mean()), 5),
        "mae_rest": round(float(a[~top].mean() if (~top).any() else a.mean()), 5),
        "mean_sigma": round(float(sigma.mean()), 5),
        "nll": round(float(nll.mean()), 4),
        **nonzero,
    }


def level_grid(score: np.ndarray, err: np.ndarray) -> list[tuple[tuple[float, float], float, float]]:
    """Every map of the levels grid with its coverage: ``[((a, b), within 1 sigma, within 2 sigma)]``.

    The levels of :func:`crystalgraph.monotone_fit` (sigma per bin = the larger of the ``a``
    quantile of |error| and half the ``b`` quantile), ``a`` in 0.30-0.68 by 0.02, ``b`` in
    0.80-0.95 by 0.01, each map fitted and measured on the data given (the validation split).
    """
    a_err = np.abs(err)
    out = []
    for one in np.linspace(0.30, 0.68, 20):
        for two in np.linspace(0.80, 0.95, 16):
            levels = (round(float(one), 3), round(float(two), 3))
            sigma = np.interp(score, *monotone_fit(score, a_err, levels=levels))
            out.append((levels, float((a_err <= sigma).mean()), float((a_err <= 2 * sigma).mean())))
    return out


def coverage_frontier(score: np.ndarray, err: np.ndarray, two_sigma_target: float = TWO_SIGMA_TARGET) -> dict:
    """The lowest 1-sigma coverage any map of :func:`level_grid` reaches with 2-sigma coverage >= the target.

    Whether the 1-sigma target (60-75%) can be met together with the 2-sigma one by re-choosing
    the quantiles, or how close it comes. Errors with many exact zeros (metals gated to 0 eV) are
    covered at any sigma, which sets a floor.

    Returns:
        ``{"within_1_sigma", "within_2_sigma", "levels"}`` of the best map, or ``{}`` when none
        reaches the 2-sigma target.
    """
    reaching = [(c1, c2, levels) for levels, c1, c2 in level_grid(score, err) if c2 >= two_sigma_target]
    if not reaching:
        return {}
    c1, c2, levels = min(reaching, key=lambda r: r[0])
    return {"within_1_sigma": round(c1, 4), "within_2_sigma": round(c2, 4), "levels": list(levels)}


def coverage_curve(sigma: np.ndarray, err: np.ndarray, n: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """Expected (Gaussian) vs observed coverage of the central intervals ``±z_p sigma``."""
    expected = np.linspace(0.05, 0.95, n)
    z = np.sqrt(2) * erfinv(expected)
    observed = np.array([(np.abs(err) <= zi * sigma).mean() for zi in z])
    return expected, observed


def _figure() -> Figure:
    fig = Figure(figsize=(4.5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_calibration(sigma: np.ndarray, err: np.ndarray, folder: Path, name: str, prop: str) -> list[str]:
    """Write ``<name>-uncertainty_calibration_<prop>.png`` and ``..._error_vs_sigma_<prop>.png``.

    Returns:
        The two file names.
    """
    names = [f"{name}-uncertainty_calibration_{prop}.png", f"{name}-uncertainty_error_vs_sigma_{prop}.png"]
    expected, observed = coverage_curve(sigma, err)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax.plot(expected, observed, "o-", ms=3, label="observed")
    ax.set_xlabel("expected coverage (Gaussian, ±z·sigma)")
    ax.set_ylabel("observed fraction of test errors within")
    ax.set_title(f"{name}\n{prop}: calibration (test)", fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(folder / names[0])
    fig = _figure()
    ax = fig.add_subplot()
    a = np.maximum(np.abs(err), 1e-5)
    ax.scatter(sigma, a, s=2, alpha=0.3)
    order = np.argsort(sigma)
    bins = np.array_split(order, 15)
    ax.plot(
        [sigma[b].mean() for b in bins],
        [np.abs(err[b]).mean() for b in bins],
        "r-o",
        ms=3,
        label="mean |error| per bin",
    )
    lo, hi = float(sigma.min()), float(sigma.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="|error| = sigma")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sigma")
    ax.set_ylabel("|error|")
    ax.set_title(f"{name}\n{prop}: error vs sigma (test)", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / names[1])
    return names
