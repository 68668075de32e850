"""The uncertainty section of ``models/REPORT.md``, rendered from each model's ``uncertainty.json``.

``python -m training.protocol report`` calls :func:`uncertainty_section`; the numbers come from
``python -m training.uncertainty`` (validation fit, test split read once).
"""

from __future__ import annotations

import json
from pathlib import Path

from scipy.stats import norm

from .uncertainty_metrics import ONE_SIGMA_TARGET, SPEARMAN_TARGET, TWO_SIGMA_TARGET

__all__ = ["uncertainty_section", "needed_of_nonzero"]

_COLUMNS = ("within_1_sigma", "within_2_sigma", "spearman", "mae_top10_sigma", "mae_rest", "mean_sigma", "nll")
_HEADER = "| within 1σ | within 2σ | Spearman(σ, abs err) | MAE, 10% largest σ | MAE, the rest | mean σ | NLL |"


def _cells(m: dict) -> str:
    return " | ".join(f"{m[k]:.1%}" if k.startswith("within") else f"{m[k]:.4g}" if k in m else "" for k in _COLUMNS)


_LOW, _HIGH = (f"{x:.0%}" for x in ONE_SIGMA_TARGET)
_TWO = f"{TWO_SIGMA_TARGET:.0%}"
#: The targets as the report states them.
_TARGETS = f"within 1σ {_LOW[:-1]}-{_HIGH}, within 2σ ≥ {_TWO}, Spearman ≥ {SPEARMAN_TARGET}"


def _verdict(m: dict) -> str:
    """Which of the issue's targets (:data:`_TARGETS`) a row misses."""
    missed = []
    if not ONE_SIGMA_TARGET[0] <= m["within_1_sigma"] <= ONE_SIGMA_TARGET[1]:
        missed.append("1σ")
    if m["within_2_sigma"] < TWO_SIGMA_TARGET:
        missed.append("2σ")
    if m["spearman"] < SPEARMAN_TARGET:
        missed.append("Spearman")
    return "all met" if not missed else "missed: " + ", ".join(missed)


def needed_of_nonzero(exact_zero: float) -> tuple[float, float, float, float]:
    """What the targets ask of the errors that are not exactly 0, and what two error shapes give there.

    With a fraction ``z`` of errors exactly 0 (covered at any sigma), 1σ ≤ 75% and 2σ ≥ 90% overall
    need, of the others, at most ``(0.75 - z) / (1 - z)`` within 1σ and at least
    ``(0.90 - z) / (1 - z)`` within 2σ. At that 1σ coverage ``p``, errors of a Laplace shape (a
    perfectly calibrated scale) have ``1 - (1 - p)^2`` within 2σ, Gaussian ones
    ``2 Φ(2 Φ⁻¹((1 + p) / 2)) - 1``.

    Returns:
        ``(most within 1σ, least within 2σ, Laplace within 2σ, Gaussian within 2σ)``.
    """
    one = (ONE_SIGMA_TARGET[1] - exact_zero) / (1 - exact_zero)
    two = (TWO_SIGMA_TARGET - exact_zero) / (1 - exact_zero)
    gauss = 2 * float(norm.cdf(2 * norm.ppf((1 + one) / 2))) - 1
    return one, two, 1 - (1 - one) ** 2, gauss


def uncertainty_section(folders: list[Path]) -> str:
    """Markdown for the calibrated models among ``folders`` (an empty string when there are none)."""
    infos = [json.loads((f / "uncertainty.json").read_text()) for f in folders if (f / "uncertainty.json").is_file()]
    if not infos:
        return ""
    first = infos[0]
    lines = [
        "## Uncertainty (sigma) and applicability domain",
        "",
        "Generated from each model's `uncertainty.json`, written by `python -m training.uncertainty` (one command; "
        "re-run it whenever the models change): the maps are fitted on the validation split, then the test split "
        "is read once.",
        "",
        f"- How sigma is made: {first['how']}",
        f"- With its ensemble partner: {first.get('ensemble_how', 'no partner model')}",
        f"- Reference set: {first.get('train_reference', 'the training split')}; the applicability domain "
        "(element counts, atoms per cell, density range) comes from the whole training split.",
        f"- `out_of_domain`: {first['ood_rule']}. Other warnings: `element_rare_in_training_set` (fewer than "
        f"{first['domain']['rare_below']} training crystals hold the element), `too_many_atoms` (more atoms than "
        "any training cell), `density_out_of_range` (outside the training densities). None blocks an answer.",
        "",
        "### Methods compared on the validation split",
        "",
        "Each score mapped to sigma by the same monotone fit on validation (so coverage is close to its target by "
        "construction; the Spearman correlation and the MAE of the 10% largest sigma tell how well a score ranks "
        "the errors). The ensemble is the CGCNN and SR-CGCNN model of the same property (2 members).",
        "",
        f"| model | property | method {_HEADER}",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for info in infos:
        for prop, methods in info["validation_comparison"].items():
            for method, m in methods.items():
                escaped = method.replace("|", "\\|")  # a table cell
                lines.append(f"| `{info['model']['name']}` | {prop} | {escaped} | {_cells(m)} |")
    lines += [
        "",
        "### Calibration on the test split (read once)",
        "",
        f"Targets: {_TARGETS}.",
        "",
        "The service gives the single-model sigma by default (10-17% of HTTP batch throughput, within the 30% "
        "rule) and the combined one with `?uncertainty=ensemble` (it then runs the partner model too: 28-37%, "
        "around the 30% rule, hence opt-in; `python -m bench --only uncertainty`), for the properties where the "
        "combination ranks the validation errors better than the model's own score (the others have one row: "
        "their sigma is the same either way).",
        "",
        f"| model | property | sigma from {_HEADER} n | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for info in infos:
        for prop, p in info["properties"].items():
            name = f"`{info['model']['name']}` v{info['model']['version']}"
            default = p["default"]
            if p["shipped"] != default["how"]:
                d = default["test"]
                lines.append(
                    f"| {name} | {prop} | **{default['how']} (default)** | {_cells(d)} | {d['n']} | {_verdict(d)} |"
                )
            lines.append(
                f"| {name} | {prop} | {p.get('shipped', 'embedding distance')}"
                f"{' (`?uncertainty=ensemble`)' if 'ensemble' in p.get('shipped', '') else ''} | "
                f"{_cells(p['test'])} | {p['test']['n']} | {_verdict(p['test'])} |"
            )
    frontier = [
        f"| `{info['model']['name']}` | {prop} | {f['within_1_sigma']:.1%} | {f['within_2_sigma']:.1%} | "
        f"{f['levels'][0]}, {f['levels'][1]} |"
        for info in infos
        for prop, p in info["properties"].items()
        if (f := p["default"].get("frontier_val"))
    ]
    if frontier:
        lines += [
            "",
            "How low the 1σ coverage of the default sigma can go while 2σ stays at 90% or more, on the validation "
            "split, re-choosing the two quantiles of the per-bin map (sigma = the larger of the a quantile of |error| "
            "and half the b quantile; shipped: 0.6827 and 0.90). Band-gap errors have heavy tails (a metal predicted "
            "with a gap, or a semiconductor predicted metallic, is off by the whole gap), and with the multi-task "
            "models about 38% of them are exactly 0 (metals gated to 0 eV and right), covered at any sigma:",
            "",
            f"| model | property | lowest 1σ with 2σ ≥ {_TWO} | its 2σ | quantiles a, b |",
            "|---|---|---|---|---|",
            *frontier,
        ]
    zeros = [
        f"| `{info['model']['name']}` | {prop} | {how} | {t['exact_zero']:.1%} | {t['within_1_sigma_nonzero']:.1%} | "
        f"{t['within_2_sigma_nonzero']:.1%} | {t['within_1_sigma']:.1%} | "
        + " | ".join(f"{x:.1%}" for x in needed_of_nonzero(t["exact_zero"]))
        + " |"
        for info in infos
        for prop, p in info["properties"].items()
        for how, t in (("default", p["default"]["test"]), ("`?uncertainty=ensemble`", p["test"]))
        if "exact_zero" in t and (how == "default" or p["shipped"] != p["default"]["how"])
    ]
    if zeros:
        lines += [
            "",
            "The same test split with the errors that are exactly 0 set apart (metals whose band gap is gated to "
            "0 eV and is right): the coverage of the other errors, which is what sigma decides. The last four "
            f"columns: what the targets (1σ at most {_HIGH}, 2σ at least {_TWO}, overall) ask of the other errors, "
            "and how much within 2σ errors of a Laplace or a Gaussian shape would have at that 1σ coverage, each "
            "with a perfectly calibrated scale. Where the Laplace figure falls short of the need, errors that are "
            "Laplace-shaped given all that sigma reads cannot meet both targets whatever sigma each crystal gets "
            "(per crystal, 1σ and 2σ coverage are 1 - u and 1 - u² for some u, and the mean of u² is at least the "
            "square of the mean of u); band-gap errors are at least that heavy-tailed (a semiconductor or metal "
            "on the wrong side of the metal gate is off by its whole gap).",
            "",
            "| model | property | sigma | errors exactly 0 | within 1σ, the others | within 2σ, the others "
            "| within 1σ, all | the others need: 1σ at most | and 2σ at least | Laplace: 2σ | Gaussian: 2σ |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *zeros,
        ]
    lines += [
        "",
        "### Test crystals flagged by the domain warnings",
        "",
        "| model | element_rare_in_training_set | too_many_atoms | density_out_of_range | out_of_domain "
        "| any of these | element_not_in_training_set |",
        "|---|---|---|---|---|---|---|",
    ]
    for info in infos:
        f = info["test_flagged"]
        lines.append(
            f"| `{info['model']['name']}` | {f['element_rare_in_training_set']} | {f['too_many_atoms']} | "
            f"{f['density_out_of_range']} | {f['out_of_domain']} | **{f['any_new_warning']} of {f['of']} "
            f"({f['any_new_warning'] / f['of']:.1%})** | {f['element_not_in_training_set']} |"
        )
    cost = first["cost"]
    lines += [
        "",
        f"Cost at inference: the embedding comes out of the same forward pass; the distance to the "
        f"{first['k_centroids']} centroids took {cost['centroid_score_ms_per_crystal']} ms per crystal here (exact kNN "
        f"over the reference set: {cost['exact_knn_ms_per_crystal']} ms). The ensemble costs a second model's "
        "forward pass per structure (opt-in). Service throughput of each: `python -m bench --only uncertainty`.",
        "",
        "Plots (test split; the `?uncertainty=ensemble` sigma where a partner exists): "
        + ", ".join(f"[{png}]({png})" for info in infos for p in info["properties"].values() for png in p["plots"]),
        "",
    ]
    return "\n".join(lines)
