"""Calibrate the shipped models' uncertainty: ``python -m training.uncertainty``.

For each newest protocol model in ``models/`` (whatever they are: the v2/v1 single-task models
today, the v3 multi-task ones once shipped), on the model's own split:

1. one pass over train, validation and test gives predictions and pooled embeddings
   (:mod:`training.uncertainty_data`, cached outside the repository);
2. three uncertainty scores are measured on the **validation** split: the distance in embedding
   space to the training crystals (k-means centroids, and exact kNN for reference), the model's
   mean |error| on the nearest validation crystals in embedding space (own error left out), and
   the spread of the 2-member ensemble formed by the CGCNN and SR-CGCNN models of the same
   outputs; each score is mapped to ``sigma`` by a monotone map fitted on validation
   (:func:`crystalgraph.monotone_fit`), and each property's default score (distance or neighbour
   error) is the one whose sigma ranks the validation errors better (Spearman);
3. the shipped method (nearly free at inference; the distance also sets the ``out_of_domain``
   threshold) is written beside the model: ``uncertainty.npz`` (centroids, validation reference
   embeddings and errors, maps) and ``uncertainty.json`` (how sigma is made and calibrated,
   validation comparison, applicability domain), both listed with their sha256 in
   ``manifest.json``;
4. the test split is then read once: coverage, Spearman, the plots under ``models/``, kept in
   ``uncertainty.json`` for ``python -m training.protocol report``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from crystalgraph import (
    BY_CLASS,
    EmbeddingUncertainty,
    centroid_score,
    combined_score,
    distance_and_neighbour_error,
    kmeans,
    monotone_fit,
    neighbour_error,
    read_manifest,
    sha256_file,
)

from .graph_cache import default_cache_dir
from .pipeline import prepare
from .protocol import EXCLUDE, SPLIT_SEED, TARGETS, shipped
from .uncertainty_data import ModelPass, model_pass, sample_rows, split_ids
from .uncertainty_domain import domain_stats
from .uncertainty_metrics import (
    ONE_SIGMA_TARGET,
    TWO_SIGMA_TARGET,
    calibration_metrics,
    coverage_frontier,
    level_grid,
    plot_calibration,
)

__all__ = [
    "calibrate_models",
    "calibrate_model",
    "write_artifacts",
    "main",
    "K_CENTROIDS",
    "K_NEAREST",
    "EARLIER_DISTANCE",
    "EARLIER_SAMPLE",
    "K_REFERENCE",
    "OOD_QUANTILE",
    "TRAIN_SAMPLE",
]

#: The distance score: the distance to the nearest (``K_NEAREST``) of ``K_CENTROIDS`` k-means centroids of
#: the training embeddings. Chosen on validation: against the 5 nearest of 1,024 (``EARLIER_DISTANCE``, used
#: until version 4; both are listed in the validation comparison) it ranks the formation-energy errors of
#: all four formation-energy models better, alone and combined with the neighbour error (combined, e.g. the
#: CGCNN model 0.374 -> 0.395), in twice the bytes (256 KiB in float16). More centroids rank better still
#: (8,192: 0.460 for the CGCNN model) but a third of them would then be single training crystals' embeddings:
#: the artifact stays a summary of the training set (at most a tenth as many centroids as crystals).
K_CENTROIDS = 2048
#: Training crystals whose embeddings the centroids summarise (0: all of them; else a seeded choice of this
#: many). All, chosen on validation: against a 5,000-crystal sample (used until version 4) the combined score
#: ranks the formation-energy errors of all four models better (the CGCNN model 0.422 -> 0.434). A pass over
#: the 27,592 takes about 50 s per model on one thread.
TRAIN_SAMPLE = 0
K_NEAREST = 1
EARLIER_DISTANCE = (1024, 5)  # (centroids, nearest averaged)
#: The earlier reference set, kept as a row of the validation comparison: the centroids of this many training
#: crystals (a seeded choice).
EARLIER_SAMPLE = 5000
#: Validation crystals averaged in the neighbour-error score, and how: weighted by 1 / distance² (chosen on
#: validation: it ranks the errors of every shipped model better than an equal mean; both are listed
#: in the validation comparison).
K_REFERENCE = 30
NEIGHBOUR_WEIGHTING = "inverse_square_distance"
#: The share of exactly-0 validation predictions (band gaps gated to 0 eV) from which the neighbour error among
#: the crystals of the same class (predicted 0 or not) is a candidate score. Chosen on validation where it is:
#: it ranks the band-gap errors of all four band-gap models better than the neighbour error over all classes
#: (the default multi-task CGCNN model 0.689 -> 0.774), crystals predicted metallic being judged by how wrong
#: the model was on the crystals it also predicted metallic (mostly exactly right), and the others among theirs.
BY_CLASS_ABOVE = 0.01
#: Validation quantile of the distance score above which a crystal is ``out_of_domain``.
OOD_QUANTILE = 0.99
#: Quantile levels of the sigma maps by default, and the coverage targets they are held to on validation.
LEVELS = (0.6827, 0.90)
NPZ, JSON = "uncertainty.npz", "uncertainty.json"
_SCORE_NAMES = {
    "distance": "embedding distance",
    "neighbour_error": "error on the nearest validation crystals",
    "distance+neighbour_error": "embedding distance with the error on the nearest validation crystals",
    "neighbour_error_by_class": "error on the nearest validation crystals of the same class (predicted 0 or not)",
}
_SCORE_LETTERS = {
    "distance": "d",
    "neighbour_error": "e",
    "distance+neighbour_error": "hypot(d / u, e / v)",
    "neighbour_error_by_class": "e among the validation crystals of the same class",
}


def _nearest(k: int) -> str:
    return "the nearest" if k == 1 else f"the {k} nearest (their mean)"


def _scales(distance_val: np.ndarray, local_val: np.ndarray) -> tuple[float, float]:
    """``(u, v)`` of the combined score: the validation medians of the distance and of the neighbour error."""
    return float(np.median(distance_val)), float(np.median(local_val[np.isfinite(local_val)])) + 1e-9


def _exact_knn(train: np.ndarray, query: np.ndarray, k: int, chunk: int = 512) -> np.ndarray:
    """Mean distance to the ``k`` nearest training rows (the reference the centroids approximate)."""
    t2 = (train**2).sum(1)
    out = []
    for s in range(0, len(query), chunk):
        q = query[s : s + chunk]
        d2 = (q**2).sum(1, keepdims=True) - 2 * q @ train.T + t2
        out.append(np.sqrt(np.maximum(np.partition(d2, k - 1, axis=1)[:, :k], 0)).mean(1))
    return np.concatenate(out)


def _partner(p: ModelPass, passes: list[ModelPass], prop: str) -> ModelPass | None:
    """Another model predicting ``prop`` on the same split: the second ensemble member.

    One with the same outputs comes first (the other architecture's multi-task model for a multi-task
    model), so the pair costs the service one more forward pass, not two.
    """
    others = [q for q in passes if q is not p and prop in q.targets and q.ids == p.ids]
    return min(others, key=lambda q: q.targets != p.targets, default=None)


def _score_of(chosen: dict, sv, st, ens, spread) -> np.ndarray:
    """The test scores the chosen map reads (the property's score alone, or combined with the spread)."""
    if ens is None:
        return st
    return combined_score(st, spread["test"], ens[2], ens[3])


def _property_scores(
    z: dict, err_val: np.ndarray, distance: dict, zero: dict[str, np.ndarray]
) -> tuple[dict[str, dict[str, np.ndarray]], tuple[float, float]]:
    """The candidate scores of one property on validation (own error left out) and test.

    ``zero``: per split, whether the model's prediction of the property is exactly 0; where 1% or
    more of the validation predictions are (gated band gaps), the neighbour error among the
    crystals of the same class is a candidate too.

    Returns them and the scales ``(u, v)`` of the combined one (validation medians).
    """
    a = np.abs(err_val)
    local = {
        "val": neighbour_error(z["val"], z["val"], a, K_REFERENCE, leave_one_out=True, weighting=NEIGHBOUR_WEIGHTING),
        "test": neighbour_error(z["test"], z["val"], a, K_REFERENCE, weighting=NEIGHBOUR_WEIGHTING),
    }
    scales = _scales(distance["val"], local["val"])
    both = {s: distance_and_neighbour_error(distance[s], local[s], *scales) for s in ("val", "test")}
    out = {"distance": distance, "neighbour_error": local, "distance+neighbour_error": both}
    if zero["val"].mean() >= BY_CLASS_ABOVE:
        out["neighbour_error_by_class"] = {
            s: neighbour_error(
                z[s], z["val"], a, K_REFERENCE, s == "val", NEIGHBOUR_WEIGHTING, classes=(zero[s], zero["val"])
            )
            for s in ("val", "test")
        }
    return out, scales


def choose_levels(score: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """The quantile levels of a sigma map (:func:`crystalgraph.monotone_fit`), chosen on validation.

    ``LEVELS`` (the 68.27% quantile of |error| per bin, or half the 90% one) unless the map they
    give misses a coverage target on ``score``/``err`` (60-75% within 1 sigma, 90% within 2); then
    the levels of a grid (0.30-0.68 by 0.02, 0.80-0.95 by 0.01) whose map keeps 90% within 2 sigma
    (plus two standard errors of that fraction at this many crystals, so that the test split meets
    it too) with the 1-sigma coverage nearest 68.27%. Band-gap errors need it: about 40% of them are exactly
    0 (metals gated to 0 eV), covered at any sigma, so the default levels overshoot at 1 sigma.
    """
    a = np.abs(err)
    sigma = np.interp(score, *monotone_fit(score, a, levels=LEVELS))
    one, two = float((a <= sigma).mean()), float((a <= 2 * sigma).mean())
    if ONE_SIGMA_TARGET[0] <= one <= ONE_SIGMA_TARGET[1] and two >= TWO_SIGMA_TARGET:
        return LEVELS
    # two standard errors above the 2-sigma target, so that it holds on a test split of this size too
    floor = TWO_SIGMA_TARGET + 2 * np.sqrt(TWO_SIGMA_TARGET * (1 - TWO_SIGMA_TARGET) / len(a))
    reaching = [(abs(one - LEVELS[0]), levels) for levels, one, two in level_grid(score, err) if two >= floor]
    return min(reaching, key=lambda r: r[0])[1] if reaching else LEVELS


def _fit_and_measure(score_val, err_val, score_test=None, err_test=None) -> dict:
    levels = choose_levels(score_val, err_val)
    xs, ys = monotone_fit(score_val, np.abs(err_val), levels=levels)
    out = {"knots": (xs, ys), "levels": levels, "val": calibration_metrics(np.interp(score_val, xs, ys), err_val)}
    if score_test is not None:
        out["test"] = calibration_metrics(np.interp(score_test, xs, ys), err_test)
    return out


def calibrate_model(
    p: ModelPass,
    passes: list[ModelPass],
    folder: Path,
    domain: dict,
    flags: dict,
    plots: Path,
    log=print,
    train_total: int | None = None,
) -> dict:
    """Fit, compare, write the artifacts of one model; returns what ``uncertainty.json`` holds.

    ``train_total``: the size of the model's whole training split (``p`` may hold a sample of it).
    """
    mean = p.emb["train"].mean(0)
    std = p.emb["train"].std(0) + 1e-6
    z = {s: (p.emb[s] - mean) / std for s in p.emb}
    t0 = time.perf_counter()
    centroids = kmeans(z["train"], K_CENTROIDS)
    fit_s = time.perf_counter() - t0
    centroids = centroids.astype(np.float16).astype(np.float32)  # what is shipped
    score = {s: centroid_score(z[s], centroids, K_NEAREST) for s in ("val", "test")}
    t0 = time.perf_counter()
    exact_val = _exact_knn(z["train"], z["val"], K_NEAREST)
    exact_ms = (time.perf_counter() - t0) / len(z["val"]) * 1e3
    t0 = time.perf_counter()
    centroid_score(z["val"], centroids, K_NEAREST)
    centroid_ms = (time.perf_counter() - t0) / len(z["val"]) * 1e3
    ood = float(np.quantile(score["val"], OOD_QUANTILE))
    earlier_k, earlier_nearest = EARLIER_DISTANCE
    earlier = centroid_score(z["val"], kmeans(z["train"], earlier_k), earlier_nearest)
    sample = sample_rows(len(z["train"]), EARLIER_SAMPLE, SPLIT_SEED)  # as model_pass would have embedded
    sampled = centroid_score(z["val"], kmeans(z["train"][sample], K_CENTROIDS), K_NEAREST)
    knots, ensemble, partners, props, comparison = {}, {}, {}, {}, {}
    reference_errors, reference_zero, score_of, score_scales = {}, {}, {}, {}
    for t, prop in enumerate(p.targets):
        if prop == "p_metal":
            continue
        err = {s: p.pred[s][:, t] - p.labels[s][:, t] for s in ("val", "test")}
        ok = {s: np.isfinite(err[s]) for s in err}
        ev, et = err["val"][ok["val"]], err["test"][ok["test"]]
        zero = {s: p.pred[s][:, t] == 0 for s in ("val", "test")}
        candidates, scales = _property_scores(z, err["val"], score, zero)
        fits = {
            kind: _fit_and_measure(c["val"][ok["val"]], ev, c["test"][ok["test"]], et) for kind, c in candidates.items()
        }
        # The score is chosen on validation alone: the one whose sigma ranks the errors better.
        kind = max(fits, key=lambda k: np.nan_to_num(fits[k]["val"]["spearman"], nan=-1.0))
        sv, st = candidates[kind]["val"][ok["val"]], candidates[kind]["test"][ok["test"]]
        knots[prop], score_of[prop] = fits[kind]["knots"], kind
        if kind == "distance+neighbour_error":
            score_scales[prop] = scales
        reference_errors[prop] = np.abs(err["val"]).astype(np.float32)
        reference_zero[prop] = zero["val"]
        equal_mean = neighbour_error(z["val"], z["val"], np.abs(err["val"]), K_REFERENCE, leave_one_out=True)
        nearest = f"error on the {K_REFERENCE} nearest validation crystals (own error left out)"
        local_val = candidates["neighbour_error"]["val"]
        earlier_both = distance_and_neighbour_error(earlier, local_val, *_scales(earlier, local_val))
        sampled_both = distance_and_neighbour_error(sampled, local_val, *_scales(sampled, local_val))
        methods = {
            f"embedding distance, {_nearest(K_NEAREST)} of {K_CENTROIDS} centroids": fits["distance"]["val"],
            f"embedding distance, {_nearest(earlier_nearest)} of {earlier_k} centroids": _fit_and_measure(
                earlier[ok["val"]], ev
            )["val"],
            "embedding distance, exact kNN over the training set": _fit_and_measure(exact_val[ok["val"]], ev)["val"],
            f"{nearest}, an equal mean": _fit_and_measure(equal_mean[ok["val"]], ev)["val"],
            f"{nearest}, weighted by 1 / distance²": fits["neighbour_error"]["val"],
            "embedding distance with that error, hypot(d / u, e / v)": fits["distance+neighbour_error"]["val"],
            **(
                {f"{nearest} of the same class (predicted 0 or not)": fits["neighbour_error_by_class"]["val"]}
                if "neighbour_error_by_class" in fits
                else {}
            ),
            f"the same with the distance to {_nearest(earlier_nearest)} of {earlier_k} centroids": _fit_and_measure(
                earlier_both[ok["val"]], ev
            )["val"],
            f"the same with {K_CENTROIDS} centroids of {len(sample)} training crystals (a seeded sample)": (
                _fit_and_measure(sampled_both[ok["val"]], ev)["val"]
            ),
        }
        chosen, how = fits[kind], _SCORE_NAMES[kind]
        partner = _partner(p, passes, prop)
        if partner is not None:
            col = partner.targets.index(prop)
            spread = {s: np.abs(p.pred[s][:, t] - partner.pred[s][:, col])[ok[s]] for s in ("val", "test")}
            methods[f"ensemble spread |{p.name} - {partner.name}|"] = _fit_and_measure(spread["val"], ev)["val"]
            s_scale = float(np.median(spread["val"])) + 1e-6
            d_scale = float(np.median(sv))
            combined = _fit_and_measure(
                combined_score(sv, spread["val"], s_scale, d_scale),
                ev,
                combined_score(st, spread["test"], s_scale, d_scale),
                et,
            )
            methods[f"ensemble spread and {_SCORE_NAMES[kind]}, combined"] = combined["val"]
            # Shipped only where it ranks the validation errors better than the model's own score: else
            # ?uncertainty=ensemble would pay for a second forward pass to make sigma worse.
            if combined["val"]["spearman"] > fits[kind]["val"]["spearman"]:
                ensemble[prop] = (*combined["knots"], s_scale, d_scale)
                partners[prop] = {"model": f"{partner.name}@{partner.version}", "weights_sha256": partner.sha256}
                chosen, how = combined, f"ensemble spread and {_SCORE_NAMES[kind]}, combined"
            else:
                log(
                    f"[{p.name}] {prop}: the ensemble ranks the validation errors worse "
                    f"({combined['val']['spearman']} against {fits[kind]['val']['spearman']}); not shipped"
                )
        comparison[prop] = methods
        png = plot_calibration(
            np.interp(_score_of(chosen, sv, st, ensemble.get(prop), spread if partner else None), *chosen["knots"]),
            et,
            plots,
            p.name,
            prop,
        )
        props[prop] = {
            "shipped": how,
            "score": kind,
            "levels": list(chosen["levels"]),
            "val": chosen["val"],
            "test": chosen["test"],
            "default": {
                "how": _SCORE_NAMES[kind],
                "levels": list(fits[kind]["levels"]),
                "val": fits[kind]["val"],
                "test": fits[kind]["test"],
                # how low the 1-sigma coverage can go with 2 sigma >= 90%, other quantiles chosen on validation
                "frontier_val": coverage_frontier(sv, ev),
            },
            "plots": png,
        }
        log(f"[{p.name}] {prop} ({how}): val {chosen['val']}, test {chosen['test']}")
    unc = EmbeddingUncertainty(
        mean,
        std,
        centroids,
        K_NEAREST,
        knots,
        ood,
        ensemble,
        reference=z["val"].astype(np.float16).astype(np.float32) if set(score_of.values()) - {"distance"} else None,
        reference_errors={q: e for q, e in reference_errors.items() if score_of[q] != "distance"},
        reference_zero={q: c for q, c in reference_zero.items() if score_of[q] in BY_CLASS},
        k_reference=K_REFERENCE,
        neighbour_weighting=NEIGHBOUR_WEIGHTING,
        score_of=score_of,
        score_scales=score_scales,
    )
    flags = {**flags, "out_of_domain": score["test"] > ood}
    warned = np.zeros(len(score["test"]), bool)
    for code, mask in flags.items():
        if code != "element_not_in_training_set":
            warned |= mask
    test_flags = {code: int(mask.sum()) for code, mask in flags.items()}
    test_flags["any_new_warning"] = int(warned.sum())
    test_flags["of"] = len(warned)
    n_train = len(p.ids["train"])
    which = f"a seeded sample of {train_total}" if train_total and train_total > n_train else "all"
    info = {
        "method": ("ensemble_and_" if ensemble else "")
        + ("embedding_neighbour_error" if set(score_of.values()) - {"distance"} else "embedding_distance"),
        "how": (
            "sigma = g(s), s a score read from the crystal's pooled embedding (standardised with the training "
            "set's mean and std per dimension), chosen per property on the validation split by the Spearman "
            "correlation of sigma with |error|: either d, the Euclidean distance to "
            f"{_nearest(K_NEAREST)} of {K_CENTROIDS} k-means centroids of the training crystals' embeddings, or "
            f"e, the model's |error| on the {K_REFERENCE} nearest validation crystals averaged with weights "
            "1 / (r² + 1e-6), r the distance to each (leaving the crystal's own error out on validation), or both "
            "combined, hypot(d / u, e / v) with u and v their validation medians, or e among the validation "
            "crystals of the crystal's own class only (the model's prediction exactly 0 or not: band gaps gated "
            "to 0 eV; a candidate where 1% or more of the validation predictions are 0). Chosen: "
            + ", ".join(f"{q}: {_SCORE_LETTERS[k]}" for q, k in score_of.items())
            + ". g is a non-decreasing piecewise-linear map per property, fitted on the validation split (12 "
            "equal-count bins: the larger of the a quantile of |error| and half the b quantile, or a tenth of "
            "the mean |error| where that is 0 (a bin of exact zeros), made monotone by isotonic regression; flat "
            "beyond the end knots). (a, b) = (68.27%, 90%), unless that "
            "map misses 60-75% within 1 sigma or 90% within 2 on validation; then the (a, b) of a grid that keeps "
            "90% within 2 sigma (plus two standard errors) with the 1-sigma coverage nearest 68.27% (levels, per "
            "property). sigma is one "
            "standard deviation in the property's unit. The out_of_domain threshold reads d."
        ),
        "model": {"name": p.name, "version": p.version, "weights_sha256": p.sha256},
        "partners": partners,
        "ensemble_how": (
            "When the service also runs the partner model of a property (another architecture trained on the same "
            "split: a 2-member ensemble), sigma = g2(hypot(|a - b| / u, s / v)), u and v the validation medians of "
            "the spread and of the property's score s, g2 fitted on validation the same way; without the partner, "
            "sigma = g(s). The combined map is shipped for a property only where it ranks the validation errors "
            "better than s alone (Spearman); elsewhere the partner is not run and sigma = g(s)."
        ),
        "k_centroids": K_CENTROIDS,
        "k_nearest": K_NEAREST,
        "ood_threshold": round(ood, 5),
        "ood_rule": f"d above the validation split's {OOD_QUANTILE:.0%} quantile",
        "test_flagged": test_flags,
        "properties": props,
        "validation_comparison": comparison,
        "cost": {
            "centroid_score_ms_per_crystal": round(centroid_ms, 4),
            "exact_knn_ms_per_crystal": round(exact_ms, 4),
            "kmeans_fit_s": round(fit_s, 1),
            "ensemble": "a second model's forward pass per structure (measured by python -m bench)",
        },
        "domain": domain,
        "splits": {s: len(p.ids[s]) for s in p.ids},
        "train_reference": (
            f"{len(p.ids['train'])} training crystals ({which}) for the centroids, the {len(p.ids['val'])} "
            "validation crystals and the model's errors on them for the neighbour error"
        ),
    }
    write_artifacts(folder, unc, info)
    return info


def write_artifacts(folder: Path, estimator: EmbeddingUncertainty, info: dict) -> None:
    """Write ``uncertainty.npz`` and ``uncertainty.json`` into a model folder and list them in its manifest."""
    estimator.save(folder / NPZ)
    (folder / JSON).write_text(json.dumps(info, indent=1) + "\n")
    _list_in_manifest(folder, str(info.get("method", "embedding_distance")))


def _list_in_manifest(folder: Path, method: str) -> None:
    """Add the two files (sha256, size) and a pointer to them to ``manifest.json``.

    ``config`` and ``metadata`` are left untouched, so :func:`crystalgraph.verify_manifest` still
    finds them equal to the weights' copies.
    """
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, name in (("uncertainty", NPZ), ("uncertainty_info", JSON)):
        f = folder / name
        manifest["files"][key] = {"path": name, "sha256": sha256_file(f), "bytes": f.stat().st_size}
    manifest["uncertainty"] = {"method": method, "artifact": NPZ, "description": JSON}
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def calibrate_models(models: Path, data: Path, train_sample: int = TRAIN_SAMPLE, log=print) -> dict[str, dict]:
    """Calibrate every newest protocol model in ``models``; returns each one's ``uncertainty.json``."""
    prepared = prepare(data, list(TARGETS), workers=1, progress=False)
    folders = shipped(models)
    passes = [model_pass(f, prepared, SPLIT_SEED, EXCLUDE, train_sample, log) for f in folders]
    out = {}
    for folder, p in zip(folders, passes, strict=True):
        full = split_ids(prepared, read_manifest(folder), SPLIT_SEED, EXCLUDE)  # the whole training split
        domain, flags = domain_stats(prepared, full["train"], p.ids["test"])
        out[p.name] = calibrate_model(p, passes, folder, domain, flags, models, log, len(full["train"]))
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m training.uncertainty [--models models] [--data ...]``."""
    parser = argparse.ArgumentParser(prog="python -m training.uncertainty", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data", type=Path, default=default_cache_dir() / "data" / "mp-crystals")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--train-sample", type=int, default=TRAIN_SAMPLE, help="training crystals embedded (0: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    calibrate_models(args.models, args.data, args.train_sample)


if __name__ == "__main__":
    main()
