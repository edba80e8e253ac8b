import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from dermsynth.analysis.stats import dose_trend, holm, mcnemar_exact, paired_counts, wald, wilson

Z = 1.959964  # the two-sided 95% normal quantile (params.yaml evaluate.z)


def test_wald_matches_the_worked_example():
    low, high = wald(9, 37, Z)
    assert pytest.approx(0.243, abs=5e-4) == 9 / 37
    assert (round(low, 3), round(high, 3)) == (0.105, 0.381)


def test_wald_for_25_of_37():
    assert tuple(round(v, 3) for v in wald(25, 37, Z)) == (0.525, 0.827)


def test_wilson_for_9_of_37():
    assert tuple(round(v, 3) for v in wilson(9, 37, Z)) == (0.134, 0.401)


def test_intervals_are_clipped_to_the_unit_interval():
    assert wald(0, 5, Z) == (0.0, 0.0)
    assert wald(5, 5, Z) == (1.0, 1.0)
    low, high = wilson(0, 5, Z)
    assert low == 0.0
    assert 0 < high < 1


def test_empty_cell_has_no_interval():
    assert all(math.isnan(v) for v in wald(0, 0, Z) + wilson(0, 0, Z))


# --- paired tests, multiplicity, dose trend -------------------------------------------------------------------


def test_intervals_accept_pooled_fractional_counts():
    # 3 repeats of 37 images at mean accuracy 0.5: k = 18.5 of n = 37 -> p = 0.5, half = 1.96 * sqrt(0.25 / 37)
    low, high = wald(18.5, 37, Z)
    assert low == pytest.approx(0.5 - 1.959964 * math.sqrt(0.25 / 37))
    assert high == pytest.approx(0.5 + 1.959964 * math.sqrt(0.25 / 37))
    assert wilson(18.5, 37, Z)[0] == pytest.approx(1 - wilson(18.5, 37, Z)[1])  # symmetric at p = 0.5


def test_mcnemar_exact_known_value():
    # Bin(11, 0.5): P(X <= 2) = (1 + 11 + 55) / 2048 = 67 / 2048; two-sided = 134 / 2048 = 0.06543
    assert mcnemar_exact(2, 9) == pytest.approx(134 / 2048)
    assert round(mcnemar_exact(9, 2), 4) == 0.0654


def test_mcnemar_exact_edge_cases():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0  # 2 * P(X <= 5 | n=10) > 1 is capped
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # 2 * 0.5 ** 6
    with pytest.raises(ValueError, match="non-negative"):
        mcnemar_exact(-1, 2)


def test_paired_counts_and_length_check():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert paired_counts(a, b) == (2, 1)  # image 2 and 5: A only; image 3: B only
    assert paired_counts(np.array(b), np.array(a)) == (1, 2)
    with pytest.raises(ValueError, match="length"):
        paired_counts([True], [True, False])


def test_holm_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_passes_nan_through():
    # the family is the 3 non-nan values: 0.02*3 = 0.06, 0.3*2 = 0.6, 0.9*1 -> 0.9
    out = holm([0.3, math.nan, 0.02, 0.9])
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx([0.6, 0.06, 0.9])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def _simulate(slope: float, seed: int, images: int = 300, repeats: int = 3) -> tuple[np.ndarray, ...]:
    """Every image scored at every dose and repeat, with a per-image random effect (so clusters matter)."""
    rng = np.random.default_rng(seed)
    doses = np.array([0, 2, 8, 16, 32])
    image = np.repeat(np.arange(images), len(doses) * repeats)
    dose = np.tile(np.repeat(doses, repeats), images)
    logit = 0.2 + rng.normal(0, 1.0, images)[image] + slope * np.log2(1 + dose)
    correct = rng.random(image.size) < 1 / (1 + np.exp(-logit))
    return correct, dose, image


def test_dose_trend_detects_a_rising_accuracy():
    correct, dose, image = _simulate(slope=0.3, seed=1)
    res = dose_trend(correct, dose, image, Z)
    assert res["slope"] > 0
    assert res["p"] < 1e-3
    assert res["n"] == 4500
    assert res["clusters"] == 300
    assert res["odds_ratio_per_doubling"] == pytest.approx(math.exp(res["slope"]))
    assert res["or_low"] < res["odds_ratio_per_doubling"] < res["or_high"]


def test_dose_trend_without_effect_is_not_significant():
    correct, dose, image = _simulate(slope=0.0, seed=2)
    res = dose_trend(correct, dose, image, Z)
    assert abs(res["z"]) < 1.96
    assert res["p"] > 0.05
    assert res["or_low"] < 1 < res["or_high"]


def test_dose_trend_point_estimate_matches_sklearn():
    correct, dose, image = _simulate(slope=0.15, seed=3)
    x = np.log2(1 + dose)[:, None]
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x, correct)
    assert dose_trend(correct, dose, image, Z)["slope"] == pytest.approx(sk.coef_[0, 0], abs=1e-4)


def test_dose_trend_robust_se_with_one_observation_per_cluster_closed_form():
    # Two dose levels = saturated model: the MLE reproduces the group proportions, so the HC0 sandwich equals the
    # model-based variance 1/(n0 p0 q0) + 1/(n1 p1 q1) of the log odds ratio; robust = that * G/(G-1), and the
    # slope is the log odds ratio divided by the covariate distance log2(1 + 8) - log2(1) = log2(9).
    correct = np.array([1] * 6 + [0] * 4 + [1] * 9 + [0] * 1, dtype=bool)  # p0 = 0.6, p1 = 0.9
    dose = np.array([0] * 10 + [8] * 10)
    res = dose_trend(correct, dose, np.arange(20), Z)
    dx = math.log2(9)
    assert res["slope"] == pytest.approx(math.log((0.9 / 0.1) / (0.6 / 0.4)) / dx)
    var_log_or = 1 / (10 * 0.6 * 0.4) + 1 / (10 * 0.9 * 0.1)
    assert res["se"] == pytest.approx(math.sqrt(var_log_or * 20 / 19) / dx)


def test_dose_trend_clustering_is_not_fooled_by_duplicated_scores():
    # Scoring each image twice (two repeats, identical outcomes) adds no information: the cluster-robust SE with the
    # duplicates clustered by image equals the one-per-cluster SE; a naive SE would shrink by sqrt(2).
    correct, dose, _ = _simulate(slope=0.2, seed=4, images=200, repeats=1)
    once = dose_trend(correct, dose, np.arange(correct.size), Z)
    twice = dose_trend(np.tile(correct, 2), np.tile(dose, 2), np.tile(np.arange(correct.size), 2), Z)
    assert twice["slope"] == pytest.approx(once["slope"])
    assert twice["se"] == pytest.approx(once["se"])


def test_dose_trend_degenerate_inputs_give_nan_not_errors():
    dose = np.array([0, 2, 8, 16])
    for correct, d in [([1, 1, 1, 1], dose), ([0, 0, 0, 0], dose), ([1, 0, 1, 0], np.full(4, 8))]:
        res = dose_trend(correct, d, np.arange(4), Z)
        assert math.isnan(res["slope"])
        assert math.isnan(res["p"])
        assert res["n"] == 4
    separated = dose_trend([0, 0, 1, 1], dose, np.arange(4), Z)  # perfect separation: no finite MLE
    assert math.isnan(separated["slope"])
    one_cluster = dose_trend([1, 0, 0, 1, 1, 1], [0, 0, 2, 2, 8, 8], np.zeros(6), Z)
    assert math.isfinite(one_cluster["slope"])
    assert math.isnan(one_cluster["se"])
    assert math.isnan(one_cluster["p"])
    with pytest.raises(ValueError, match="length"):
        dose_trend([1, 0], [0, 2], [0], Z)


def test_weighted_auc_equals_sklearn_with_ties_and_with_resampling_weights():
    from sklearn.metrics import roc_auc_score

    from dermsynth.analysis.stats import bootstrap_weights, weighted_auc

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, 40) / 5  # few distinct values: many ties
    positive = rng.random(40) < 0.3
    assert weighted_auc(scores, positive, np.ones((1, 40)))[0] == pytest.approx(roc_auc_score(positive, scores))
    weights = bootstrap_weights(40, 5, seed=1)
    for w, got in zip(weights, weighted_auc(scores, positive, weights), strict=True):
        picked = np.repeat(np.arange(40), w.astype(int))  # the resample, each image as often as it was drawn
        assert got == pytest.approx(roc_auc_score(positive[picked], scores[picked]))
    assert math.isnan(weighted_auc(scores, np.zeros(40, bool), np.ones((1, 40)))[0])  # no positive image


def _population_accuracy(mu: float, image_sd: float, repeat_sd: float) -> float:
    """E[sigmoid(mu + a + b)] for a ~ N(0, image_sd), b ~ N(0, repeat_sd): the estimand, by Gauss-Hermite quadrature."""
    from scipy.special import expit

    x, w = np.polynomial.hermite_e.hermegauss(80)
    return float((expit(mu + math.hypot(image_sd, repeat_sd) * x) * w).sum() / w.sum())


@pytest.mark.parametrize(
    ("n", "repeats", "image_sd", "repeat_sd"),
    [(150, 5, 1.5, 0.5), (337, 5, 1.0, 1.2)],  # the second: repeats disagree with an accuracy SD near 0.24
)
def test_the_crossed_interval_covers_the_population_accuracy_near_95_percent(n, repeats, image_sd, repeat_sd):
    """Simulated tables with a known between-repeat variance: each image's difficulty and each training repeat's
    skill are random (logit scale); the interval must cover the population accuracy in about 95% of tables,
    where Wilson on the pooled accuracy (images only) covers far less once the repeats disagree."""
    from scipy.special import expit

    from dermsynth.analysis.stats import crossed_interval

    rng = np.random.default_rng(7)
    truth = _population_accuracy(0.5, image_sd, repeat_sd)
    tables, covered, wilson_covered = 600, 0, 0
    for _ in range(tables):
        logit = 0.5 + rng.normal(0, image_sd, n)[None, :] + rng.normal(0, repeat_sd, repeats)[:, None]
        correct = rng.random((repeats, n)) < expit(logit)
        ci = crossed_interval(correct, Z)
        covered += ci["low"] <= truth <= ci["high"]
        low, high = wilson(correct.mean() * n, n, Z)
        wilson_covered += low <= truth <= high
    # measured: 0.968 and 0.923 (Wilson 0.923 and 0.395); 600 tables give a Monte Carlo SE near 0.01. Where the
    # repeats carry a tenth of the variance or more the t has their 4 df (stats._t_interval), else Satterthwaite's
    assert 0.90 <= covered / tables <= 0.98
    if repeat_sd > 1:
        assert wilson_covered / tables < 0.6


def test_the_crossed_interval_by_hand_and_paired():
    from dermsynth.analysis.stats import crossed_interval

    same = np.array([[1, 0, 1, 1], [1, 0, 1, 1]])  # repeats agree: only the images vary
    ci = crossed_interval(same, Z)
    assert ci["estimate"] == pytest.approx(0.75)
    assert ci["sd"] == pytest.approx(math.sqrt(np.var([1, 0, 1, 1], ddof=1) / 4))
    assert ci["df"] == pytest.approx(3)
    assert ci["low"] < 0.75 < ci["high"]
    split = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])  # images alike, repeats disagree completely
    wide = crossed_interval(split, Z)
    assert wide["sd"] == pytest.approx(0.5)  # sigma_b^2 / R = (MS_repeat - MS_residual) / nR = (4 * 0.5 - 0) / 8
    assert wide["df"] == pytest.approx(1)
    assert (wide["low"], wide["high"]) == (0.0, 1.0)  # t(1) = 12.7: the raw interval (-5.9, 6.9), clipped to a rate's
    opposite = crossed_interval(1 - split, Z, reference=split)  # a difference is clipped to [-1, 1] instead
    assert opposite["estimate"] == pytest.approx(0.0)
    assert (opposite["low"], opposite["high"]) == (-1.0, 1.0)
    better = crossed_interval(np.array([[1, 1, 1, 1], [1, 0, 1, 1]]), Z, reference=same)  # image 2 fixed once
    assert better["estimate"] == pytest.approx(0.125)
    assert crossed_interval(same, Z, reference=same)["sd"] == 0.0
    with pytest.raises(ValueError, match="differ in images"):
        crossed_interval(same, Z, reference=same[:, :3])


def test_the_gap_interval_counts_each_repeats_own_gap():
    """Two disjoint image sets scored by the same repeats: repeats that agree on the gap add nothing to its
    spread, even if each repeat is better or worse on both sets alike; repeats whose gaps differ widen it."""
    from dermsynth.analysis.stats import crossed_gap

    rng = np.random.default_rng(0)
    near = (rng.random((1, 200)) < 0.8).astype(float).repeat(4, axis=0)
    far = (rng.random((1, 150)) < 0.5).astype(float).repeat(4, axis=0)
    alike = crossed_gap(near, far, Z)
    assert alike["estimate"] == pytest.approx(near.mean() - far.mean())
    shift = np.array([[0.1], [-0.1], [0.05], [-0.05]])  # each repeat better or worse on both sets by as much
    assert crossed_gap(near + shift, far + shift, Z)["sd"] == pytest.approx(alike["sd"])
    torn = crossed_gap(near + shift, far - shift, Z)  # the repeats' gaps differ
    assert torn["sd"] > alike["sd"]
    assert torn["high"] - torn["low"] > alike["high"] - alike["low"]
    with pytest.raises(ValueError, match="different repeats"):
        crossed_gap(near, far[:2], Z)


def test_dose_trend_with_every_image_alike_at_every_dose_gives_nan_not_a_domain_error():
    """Dose arms that lost their synthetic images score every image as the seed arm does: no robust variance."""
    outcomes = np.array([1, 0, 1, 1, 0, 1, 0, 1], dtype=bool)  # one outcome per image, the same at each dose
    doses = np.array([0, 2, 8, 16])
    correct = np.repeat(outcomes, doses.size)
    res = dose_trend(correct, np.tile(doses, outcomes.size), np.repeat(np.arange(outcomes.size), doses.size), Z)
    assert res["slope"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(res["se"])
    assert math.isnan(res["p"])


def test_with_draws_of_the_seeds_the_interval_takes_the_draws_as_units():
    """3 draws x 5 repeats, each draw moving every image alike (its seeds) and each repeat a little more: the
    interval of `metrics.cell` (the draws as units) covers the population accuracy near 95%; treating the 15
    trainings as independent repeats, as a single draw would, covers far less."""
    from scipy.special import expit

    from dermsynth.analysis.metrics import cell

    rng = np.random.default_rng(11)
    n, draws, repeats, image_sd, draw_sd, repeat_sd = 120, 3, 5, 1.0, 0.6, 0.2
    truth = _population_accuracy(0.5, image_sd, math.hypot(draw_sd, repeat_sd))
    draw = np.repeat(np.arange(draws), repeats * n)
    training = np.repeat(np.arange(draws * repeats), n)
    image = np.tile(np.arange(n), draws * repeats)
    tables, covered, naive = 300, 0, 0
    for _ in range(tables):
        logit = 0.5 + rng.normal(0, image_sd, n)[image] + rng.normal(0, draw_sd, draws)[draw]
        logit = logit + rng.normal(0, repeat_sd, draws * repeats)[training]
        correct = pd.Series(rng.random(logit.size) < expit(logit))
        units = cell(correct, Z, pd.Series(training), pd.Series(image), units=pd.Series(draw))
        covered += units["ci_low"] <= truth <= units["ci_high"]
        flat = cell(correct, Z, pd.Series(training), pd.Series(image))
        naive += flat["ci_low"] <= truth <= flat["ci_high"]
    # measured: 0.957 with the draws as units, 0.647 with the 15 trainings as independent repeats
    assert 0.90 <= covered / tables <= 0.99
    assert naive / tables < 0.8


def test_two_arms_on_the_same_draws_pair_by_draw():
    """synthetic_and_seed and seed share each draw's seeds: what a draw does to both cancels in their difference."""
    from dermsynth.analysis.compare import paired_difference

    rng = np.random.default_rng(5)
    draw_effect = np.array([[-0.3], [0.0], [0.3]])  # each draw's seeds move both arms alike
    images = rng.random((1, 60))
    reference = pd.DataFrame(np.clip(images + draw_effect, 0, 1)).rename_axis("draw")
    arm = pd.DataFrame(np.clip(images + draw_effect + 0.05 + rng.normal(0, 0.01, (3, 60)), 0, 1)).rename_axis("draw")
    paired = paired_difference(reference, arm, "two arms", Z)
    unpaired = paired_difference(reference.rename_axis("repeat"), arm.rename_axis("repeat"), "two arms", Z)
    assert paired["estimate"] == pytest.approx(unpaired["estimate"])
    assert paired["high"] - paired["low"] < (unpaired["high"] - unpaired["low"]) / 5
    assert paired["low"] > 0  # the gain is seen once the draws' shared effect is paired out
