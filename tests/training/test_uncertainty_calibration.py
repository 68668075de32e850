"""The calibration pieces of ``training.uncertainty`` on synthetic data, and the shipped artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erfinv

import crystalgraph as cg
from training.uncertainty_metrics import calibration_metrics, coverage_curve, coverage_frontier
from training.uncertainty_report import needed_of_nonzero, uncertainty_section

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_kmeans_finds_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.concatenate([c + rng.normal(scale=0.1, size=(200, 2)) for c in centers]).astype(np.float32)
    found = cg.kmeans(x, 3)
    assert np.sort(np.round(found).astype(int), axis=0).tolist() == np.sort(centers.astype(int), axis=0).tolist()
    # the score is the distance to the nearest centroid(s): small inside, large far away
    score = cg.centroid_score(np.array([[0, 0], [50, 50]], np.float32), found, 1)
    assert score[0] < 0.5 < 40 < score[1]
    # many queries are scored in blocks of rows (bounded memory): the same as one brute-force matrix
    queries = rng.normal(scale=5, size=(1300, 2)).astype(np.float32)
    brute = np.sqrt(((queries[:, None, :] - found[None]) ** 2).sum(-1))
    np.testing.assert_allclose(cg.centroid_score(queries, found, 1), brute.min(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cg.centroid_score(queries, found, 2), np.sort(brute, 1)[:, :2].mean(1), rtol=1e-4)


def test_coverage_frontier_tells_whether_both_coverage_targets_can_be_met() -> None:
    """Gaussian errors: some quantiles give 1 sigma in 60-75% with 2 sigma >= 90%; zero-inflated heavy tails: none."""
    rng = np.random.default_rng(2)
    score = rng.uniform(0, 1, 4000)
    gaussian = rng.normal(scale=0.1 + score)
    best = coverage_frontier(score, gaussian)
    assert 0.60 <= best["within_1_sigma"] <= 0.75 and best["within_2_sigma"] >= 0.90
    # 40% exact zeros (gated metals) and Student-t (2 dof) tails for the rest
    heavy = np.where(rng.uniform(size=4000) < 0.4, 0.0, rng.standard_t(2, 4000) * (0.1 + score))
    worst = coverage_frontier(score, heavy)
    assert worst["within_1_sigma"] > 0.75 and worst["within_2_sigma"] >= 0.90
    assert coverage_frontier(score, heavy, two_sigma_target=1.01) == {}


def test_monotone_fit_is_non_decreasing_and_calibrated_on_its_data() -> None:
    rng = np.random.default_rng(1)
    score = rng.uniform(0, 1, 6000)
    err = rng.normal(scale=0.1 + score)  # errors grow with the score
    xs, ys = cg.monotone_fit(score, np.abs(err))
    assert np.all(np.diff(ys) >= 0) and np.all(np.diff(xs) > 0)
    m = calibration_metrics(np.interp(score, xs, ys), err)
    assert 0.66 <= m["within_1_sigma"] <= 0.80 and m["within_2_sigma"] >= 0.9
    assert m["spearman"] > 0.3 and m["mae_top10_sigma"] > 1.5 * m["mae_rest"]
    expected, observed = coverage_curve(np.interp(score, xs, ys), err)
    assert np.all(np.abs(observed - expected) < 0.1)  # Gaussian errors: close to the diagonal


def test_only_bins_of_exact_zeros_get_the_sigma_floor() -> None:
    # lowest scores: a model without a gate, a few meV off on metals; then metals gated to exactly 0 eV;
    # then semiconductors off by tenths of an eV
    rng = np.random.default_rng(4)
    score = np.arange(3600.0)
    a = np.concatenate([rng.uniform(0.005, 0.015, 1200), np.zeros(1200), np.abs(rng.normal(scale=0.5, size=1200))])
    xs, ys = cg.monotone_fit(score, a)
    floor = 0.1 * a.mean()
    assert np.all(ys[:4] < 0.016) and np.all(ys[:4] < floor), "small measured errors keep their quantile"
    assert np.allclose(ys[4:8], floor), "bins of exact zeros are not made certain"
    sigma = np.interp(score, xs, ys)
    assert 0.55 <= (a[:1200] <= sigma[:1200]).mean() <= 0.80, "the small errors are covered as measured, not all"
    assert np.all(a[1200:2400] <= sigma[1200:2400])


def test_a_constant_sigma_has_defined_figures_that_say_it_ranks_nothing() -> None:
    # a score anti-correlated with the errors is flattened by the monotone fit into one value
    rng = np.random.default_rng(2)
    score = rng.uniform(0, 1, 3000)
    err = rng.normal(scale=1.1 - score)
    xs, ys = cg.monotone_fit(score, np.abs(err))
    sigma = np.interp(score, xs, ys)
    assert np.ptp(sigma) == 0
    m = calibration_metrics(sigma, err)
    assert m["spearman"] == 0.0 and m["mae_rest"] == pytest.approx(np.abs(err).mean(), abs=1e-5)
    assert json.loads(json.dumps(m, allow_nan=False)) == m  # strict JSON, as /v1/models and the report need
    assert "exact_zero" not in m, "no exact zeros here: no separate figures"


def test_exactly_right_gated_metals_are_set_apart_in_the_coverage() -> None:
    # 40% errors exactly 0 (covered at any sigma) and Gaussian errors of known sigma for the rest
    rng = np.random.default_rng(3)
    sigma = rng.uniform(0.1, 1.0, 5000)
    err = np.where(np.arange(5000) < 2000, 0.0, rng.normal(scale=sigma))
    m = calibration_metrics(sigma, err)
    assert m["exact_zero"] == 0.4
    assert m["within_1_sigma_nonzero"] == pytest.approx(0.6827, abs=0.03)
    assert m["within_2_sigma_nonzero"] == pytest.approx(0.9545, abs=0.02)
    assert m["within_1_sigma"] == pytest.approx(0.4 + 0.6 * m["within_1_sigma_nonzero"], abs=1e-3)


def test_artifact_round_trip_and_no_pickles(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    knots = {"band_gap": (np.array([0.0, 1.0]), np.array([0.1, 0.5]))}
    ens = {"band_gap": (np.array([0.0, 2.0]), np.array([0.05, 0.9]), 0.2, 1.5)}
    est = cg.EmbeddingUncertainty(
        rng.normal(size=8).astype(np.float32), np.ones(8, np.float32), rng.normal(size=(16, 8)), 3, knots, 2.5, ens
    )
    est.save(tmp_path / "u.npz")
    back = cg.EmbeddingUncertainty.load(tmp_path / "u.npz")
    z = rng.normal(size=(5, 8)).astype(np.float32)
    np.testing.assert_allclose(back.score(z), est.score(z), rtol=1e-3)  # float16 centroids
    s = back.score(z)
    assert back.sigma("band_gap", s).shape == (5,) and back.ood_threshold == 2.5
    np.testing.assert_allclose(back.sigma_ensemble("band_gap", s, np.zeros(5)), np.interp(s / 1.5, [0, 2], [0.05, 0.9]))
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError):
        cg.EmbeddingUncertainty.load(tmp_path / "bad.npz")


def test_neighbour_error_leaves_its_own_error_out_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(60, 4)).astype(np.float32)
    errors = rng.uniform(size=60).astype(np.float32)
    errors[7] = np.nan  # no label: never a neighbour
    loo = cg.neighbour_error(ref, ref, errors, 5, leave_one_out=True)
    for i in (0, 7, 59):  # brute force
        d = ((ref - ref[i]) ** 2).sum(1)
        d[~np.isfinite(errors)] = np.inf
        d[i] = np.inf
        assert loo[i] == pytest.approx(errors[np.argsort(d)[:5]].mean(), rel=1e-5)
    # a query on top of a reference crystal sees that crystal's error (not left out at inference)
    assert cg.neighbour_error(ref[:1], ref, errors, 1)[0] == pytest.approx(errors[0])

    line = (np.array([0.0, 9.0]), np.array([0, 9.0]))
    knots = {"band_gap": (np.array([0.0, 1.0]), np.array([0.1, 0.9])), "e": line, "f": line}
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    kinds = {"band_gap": "neighbour_error", "e": "distance", "f": "distance+neighbour_error"}
    est = cg.EmbeddingUncertainty(
        mean, std, ref[:8], 2, knots, 9.0, reference=ref, reference_errors={"band_gap": errors, "f": errors[::-1]},
        k_reference=5, score_of=kinds, score_scales={"f": (2.0, 0.25)},
    )  # fmt: skip
    est.save(tmp_path / "u.npz")
    back = cg.EmbeddingUncertainty.load(tmp_path / "u.npz")
    scores = back.property_scores(ref[:3])
    np.testing.assert_allclose(scores["band_gap"], cg.neighbour_error(ref[:3], ref, errors, 5), rtol=1e-3)
    np.testing.assert_allclose(scores["e"], back.score(ref[:3]))
    local = cg.neighbour_error(ref[:3], ref, errors[::-1], 5)
    np.testing.assert_allclose(scores["f"], np.hypot(back.score(ref[:3]) / 2.0, local / 0.25), rtol=1e-3)
    assert back.score_of == kinds and back.k_reference == 5 and back.score_scales == {"f": (2.0, 0.25)}
    # the batch's scores in one pass (what the service's inference thread makes): the distance, then each
    # property's score in the order of `properties`
    batch = back.scores(ref[:3])
    assert batch.shape == (3, 4) and back.properties == ["band_gap", "e", "f"]
    np.testing.assert_allclose(batch[:, 0], back.score(ref[:3]))
    for col, prop in enumerate(back.properties, start=1):
        np.testing.assert_allclose(batch[:, col], scores[prop], rtol=1e-6)
    with pytest.raises(ValueError, match="without its scales"):
        cg.EmbeddingUncertainty(mean, std, ref[:8], 2, knots, 9.0, reference=ref, score_of={"f": kinds["f"]})
    with pytest.raises(ValueError, match="unknown score"):
        cg.EmbeddingUncertainty(mean, std, ref[:8], 2, knots, 9.0, score_of={"f": "vibes"})


def test_neighbour_error_weighted_by_inverse_square_distance(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(80, 4)).astype(np.float32)
    errors = rng.uniform(size=80).astype(np.float32)
    errors[3] = np.nan
    weighted = cg.neighbour_error(ref, ref, errors, 6, leave_one_out=True, weighting="inverse_square_distance")
    for i in (0, 3, 79):  # brute force
        d2 = ((ref - ref[i]) ** 2).sum(1)
        d2[~np.isfinite(errors)] = np.inf
        d2[i] = np.inf
        near = np.argsort(d2)[:6]
        w = 1 / (d2[near] + 1e-6)
        assert weighted[i] == pytest.approx((errors[near] * w).sum() / w.sum(), rel=1e-4)
    # the nearest count most: a neighbour half as far weighs four times as much
    far = np.array([[0.0, 0.0, 0.0, 0.0]], np.float32)
    two = np.array([[1.0, 0, 0, 0], [2.0, 0, 0, 0]], np.float32)
    got = cg.neighbour_error(far, two, np.array([0.0, 1.0], np.float32), 2, weighting="inverse_square_distance")
    assert got[0] == pytest.approx(0.2, rel=1e-4)  # (0 * 1 + 1 * 1/4) / (1 + 1/4)
    with pytest.raises(ValueError, match="unknown neighbour weighting"):
        cg.neighbour_error(far, two, np.ones(2, np.float32), 2, weighting="gaussian")

    knots = {"band_gap": (np.array([0.0, 1.0]), np.array([0.1, 0.9]))}
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    kinds = {"band_gap": "neighbour_error"}
    est = cg.EmbeddingUncertainty(
        mean, std, ref[:8], 2, knots, 9.0, reference=ref, reference_errors={"band_gap": errors}, k_reference=6,
        score_of=kinds, neighbour_weighting="inverse_square_distance",
    )  # fmt: skip
    est.save(tmp_path / "u.npz")
    back = cg.EmbeddingUncertainty.load(tmp_path / "u.npz")
    assert back.neighbour_weighting == "inverse_square_distance"
    query = rng.normal(size=(5, 4)).astype(np.float32)
    expected = cg.neighbour_error(query, ref, errors, 6, weighting="inverse_square_distance")
    np.testing.assert_allclose(back.property_scores(query)["band_gap"], expected, rtol=1e-3)
    # an artifact written before the choice existed averages equally
    with np.load(tmp_path / "u.npz") as z:
        old = {k: z[k] for k in z.files if k != "neighbour_weighting"}
    np.savez(tmp_path / "old.npz", **old)
    assert cg.EmbeddingUncertainty.load(tmp_path / "old.npz").neighbour_weighting == "uniform"
    with pytest.raises(ValueError, match="unknown neighbour weighting"):
        cg.EmbeddingUncertainty(mean, std, ref[:8], 2, knots, 9.0, neighbour_weighting="gaussian")


def test_density() -> None:
    # rock salt NaCl, a = 5.64 Å: 2.16 g/cm³
    assert cg.density_g_cm3(np.array([11] * 4 + [17] * 4), 5.64**3) == pytest.approx(2.164, abs=0.01)


SHIPPED = sorted(MODELS.glob("*/*/uncertainty.json"))


@pytest.mark.skipif(not SHIPPED, reason="no calibrated model in models/")
@pytest.mark.parametrize("info_path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}@{p.parent.name}")
def test_shipped_artifacts_are_small_verified_and_flag_few_test_crystals(info_path: Path) -> None:
    folder = info_path.parent
    manifest = cg.read_manifest(folder)
    cg.verify_manifest(folder, manifest)  # config and metadata untouched
    npz = cg.verify_file(folder, manifest, "uncertainty")
    assert npz.stat().st_size + info_path.stat().st_size <= 2 * 2**20
    est = cg.EmbeddingUncertainty.load(npz)
    info = json.loads(cg.verify_file(folder, manifest, "uncertainty_info").read_text())
    n_train = manifest["metadata"]["dataset"]["n_train"]
    assert est.centroids.shape[0] < n_train / 10, "a summary of the training set, not a copy"
    flagged = info["test_flagged"]
    assert flagged["any_new_warning"] <= 0.02 * flagged["of"]
    for prop in est.knots:
        test = info["properties"][prop]["test"]
        assert 0.6 <= test["within_1_sigma"] <= 0.8 and test["within_2_sigma"] >= 0.88
    # the actinides the Materials Project set lacks, and what the hand-made cells are checked against
    counts = info["domain"]["element_counts"]
    assert "Am" not in counts and "Cm" not in counts
    assert info["domain"]["max_atoms"] < 400
    assert info["domain"]["density_g_cm3"][0] > 0.1


def test_what_the_targets_ask_of_nonzero_errors_matches_simulated_errors() -> None:
    # 38% exact zeros (gated metals), the rest Laplace or Gaussian with a known scale per crystal
    rng = np.random.default_rng(5)
    n, zero = 200_000, 0.384
    one, two, laplace, gauss = needed_of_nonzero(zero)
    assert one == pytest.approx(0.594, abs=1e-3) and two == pytest.approx(0.838, abs=1e-3)
    scale = rng.uniform(0.05, 2.0, n)
    for draw, sigma_over_scale, expected in (
        (rng.laplace(scale=scale), -np.log(1 - one), laplace),  # P(|e| <= s) = 1 - exp(-s / b)
        (rng.normal(scale=scale), np.sqrt(2) * erfinv(one), gauss),
    ):
        err = np.where(np.arange(n) < zero * n, 0.0, draw)
        m = calibration_metrics(scale * sigma_over_scale, err)
        assert m["within_1_sigma_nonzero"] == pytest.approx(one, abs=0.005)
        assert m["within_2_sigma_nonzero"] == pytest.approx(expected, abs=0.005)
    assert laplace < two < gauss, "Laplace-shaped errors cannot meet both targets here, Gaussian ones can"
    # per crystal other sigmas (here: half of them smaller, half larger) only lower the 2-sigma coverage
    err = np.abs(rng.laplace(scale=scale))
    u = np.where(np.arange(n) % 2 == 0, (1 - one) * 0.5, (1 - one) * 1.5)
    sigma = -scale * np.log(u)
    assert (err <= sigma).mean() == pytest.approx(one, abs=0.005) and (err <= 2 * sigma).mean() < laplace


def test_report_section_renders_the_shipped_figures() -> None:
    folders = sorted({p.parent for p in SHIPPED})
    text = uncertainty_section(folders)
    if not folders:
        assert text == ""
        return
    assert "### Calibration on the test split" in text and "within 1σ" in text
    assert uncertainty_section([]) == ""


def test_the_ensemble_partner_of_a_multi_task_model_is_the_other_multi_task_model() -> None:
    from training.uncertainty import _partner
    from training.uncertainty_data import ModelPass

    ids = {"train": ["a"], "val": ["b"], "test": ["c"]}

    def model(name: str, targets: list[str]) -> ModelPass:
        return ModelPass(name, "1", "0" * 64, targets, ids, {}, {}, {})

    multi = ["formation_energy_per_atom", "band_gap", "p_metal"]
    cg_ef = model("cgcnn-mp-formation-energy", ["formation_energy_per_atom"])
    sr_ef = model("sr-cgcnn-mp-formation-energy", ["formation_energy_per_atom"])
    cg_mt, sr_mt = model("cgcnn-mp-multitask", multi), model("sr-cgcnn-mp-multitask", multi)
    passes = [cg_ef, sr_ef, cg_mt, sr_mt]
    assert _partner(cg_mt, passes, "formation_energy_per_atom") is sr_mt
    assert _partner(sr_mt, passes, "band_gap") is cg_mt
    assert _partner(cg_ef, passes, "formation_energy_per_atom") is sr_ef
    assert _partner(cg_ef, [cg_ef, cg_mt], "formation_energy_per_atom") is cg_mt  # any other, when alone
    assert _partner(cg_ef, [cg_ef], "formation_energy_per_atom") is None


def test_sigma_map_levels_move_only_where_validation_misses_a_target() -> None:
    """Gaussian errors keep the default quantiles; band-gap-like ones (40% exactly 0, a long tail) get others."""
    from training.uncertainty import LEVELS, choose_levels

    rng = np.random.default_rng(0)
    score = rng.uniform(0.1, 2.0, 4000)
    gaussian = rng.normal(0.0, score)
    assert choose_levels(score, gaussian) == LEVELS

    gapped = np.where(rng.uniform(size=4000) < 0.4, 0.0, rng.laplace(0.0, score))
    a = np.abs(gapped)

    def coverage(levels):
        sigma = np.interp(score, *cg.monotone_fit(score, a, levels=levels))
        return (a <= sigma).mean(), (a <= 2 * sigma).mean()

    before = coverage(LEVELS)
    assert before[0] > 0.75 and before[1] < 0.90  # the exact zeros and the long tail: both targets missed
    levels = choose_levels(score, gapped)
    after = coverage(levels)
    assert levels != LEVELS and after[1] >= 0.90 and after[0] <= 0.80  # 2 sigma met, 1 sigma as near as it gets


def test_neighbour_error_by_class_reads_only_the_queries_own_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(90, 4)).astype(np.float32)
    errors = rng.uniform(size=90).astype(np.float32)
    zero = np.arange(90) % 3 == 0  # a third of the reference crystals predicted exactly 0
    by_class = cg.neighbour_error(ref, ref, errors, 5, leave_one_out=True, classes=(zero, zero))
    for i in (0, 1, 89):  # brute force: the 5 nearest of the same class, itself left out
        d = ((ref - ref[i]) ** 2).sum(1)
        d[zero != zero[i]] = np.inf
        d[i] = np.inf
        assert by_class[i] == pytest.approx(errors[np.argsort(d)[:5]].mean(), rel=1e-5)

    knots = {"band_gap": (np.array([0.0, 1.0]), np.array([0.1, 0.9]))}
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    kinds = {"band_gap": "neighbour_error_by_class"}
    with pytest.raises(ValueError, match="without the reference crystals' classes"):
        cg.EmbeddingUncertainty(mean, std, ref[:8], 2, knots, 9.0, reference=ref, score_of=kinds)
    est = cg.EmbeddingUncertainty(
        mean, std, ref[:8], 2, knots, 9.0, reference=ref, reference_errors={"band_gap": errors}, k_reference=5,
        score_of=kinds, reference_zero={"band_gap": zero},
    )  # fmt: skip
    est.save(tmp_path / "u.npz")
    back = cg.EmbeddingUncertainty.load(tmp_path / "u.npz")
    np.testing.assert_array_equal(back.reference_zero["band_gap"], zero)
    query = rng.normal(size=(6, 4)).astype(np.float32)
    predicted = np.array([0.0, 1.2, 0.0, 3.4, 0.5, 0.0])  # exactly 0: the gated class
    expected = cg.neighbour_error(query, ref, errors, 5, classes=(predicted == 0, zero))
    scores = back.scores(query, {"band_gap": predicted})
    np.testing.assert_allclose(scores[:, 1], expected, rtol=1e-5)
    assert not np.allclose(expected, cg.neighbour_error(query, ref, errors, 5)), "the class changes the answer"
    with pytest.raises(ValueError, match="give the predictions"):
        back.scores(query)
