"""Statistics for the study: binomial intervals, paired tests, multiplicity and the dose trend.

* Wald is the original study's interval (kept for comparison with it); Wilson behaves better for small N and
  accuracies near 0 or 1. Both are clipped to [0, 1] and accept a fractional k (pooled correct counts over
  repeats, k = acc * n).
* Exact McNemar test: two classifiers scored on the *same* test images are paired, so only the discordant images
  (one right, the other wrong) carry information; under H0 each discordant image goes either way with
  probability 1/2, so the test is a two-sided binomial test on them.
* Holm-Bonferroni: several arms/groups are compared at once; Holm controls the family-wise error rate like
  Bonferroni but is uniformly more powerful.
* Dose trend: logistic regression of per-prediction correctness on log2(1 + dose). The synthetic doses
  (0/2/8/16/32 images per class) roughly double, so log2(1 + dose) makes the slope "change in log-odds per doubling"
  and keeps dose 0 finite. The same test image is scored at every dose and in every repeat, so predictions are not
  independent: the slope's standard error is cluster-robust (sandwich, clustered by image id, with the usual
  small-sample factor G/(G-1)), and the test is a Wald z-test on that slope.
* Bootstrap over images: metrics that are not a sum of independent per-image terms (balanced accuracy, macro-F1,
  one-vs-rest AUC) get percentile intervals from resampling the test images, each image keeping all its repeats.
  Two arms scored on the same images are compared with a *paired* bootstrap: each resample weights both arms'
  images identically, so the pairing that McNemar exploits for plain accuracy is kept. Its p-value is the
  two-sided percentile p, 2 min(P(d <= 0), P(d >= 0)) over the resampled differences d, with the usual +1
  correction (never 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps


def wald(k: float, n: int, z: float) -> tuple[float, float]:
    """Wald interval p +- z sqrt(p(1-p)/n); (nan, nan) when n is 0."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)


def wilson(k: float, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval; (nan, nan) when n is 0."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p: 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2), capped at 1; 1.0 with no discordance."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), n, 0.5)))


def paired_counts(correct_a: ArrayLike, correct_b: ArrayLike) -> tuple[int, int]:
    """Discordant counts (b, c) for McNemar: b = A right & B wrong, c = A wrong & B right, on aligned images."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.shape} vs {b.shape}")
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values in input order; NaNs pass through and do not count towards the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out.tolist()
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out.tolist()


def bootstrap_weights(n: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n) resampling weights: how often each of n items is drawn in each of ``draws`` resamples of size n."""
    if n == 0:
        return np.zeros((draws, 0))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(float)


def percentile_interval(values: ArrayLike, z: float) -> tuple[float, float]:
    """Central percentile interval of bootstrap values with the coverage of +-z (95% for z = 1.96); NaNs ignored."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    tail = 100.0 * float(sps.norm.sf(z))
    low, high = np.percentile(v, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_p(differences: ArrayLike) -> float:
    """Two-sided percentile-bootstrap p for H0: difference = 0, from resampled differences; +1-corrected, <= 1."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan
    below = (1 + np.sum(d <= 0)) / (d.size + 1)
    above = (1 + np.sum(d >= 0)) / (d.size + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def _ms_residual(z: np.ndarray) -> float:
    """The two-way ANOVA's residual mean square of an (R, n) table: sigma_e^2, the repeat x image interaction."""
    r, n = z.shape
    if r < 2 or n < 2:
        return 0.0
    residual = z - z.mean(0)[None, :] - z.mean(1)[:, None] + z.mean()
    return float((residual**2).sum()) / ((r - 1) * (n - 1))


def _repeat_part(z: np.ndarray) -> float:
    """sigma_b^2 / R for one arm's (R, n) contributions: the repeats' variance net of the residual, >= 0."""
    r, n = z.shape
    if r < 2 or n < 2:
        return 0.0
    ms_repeat = n * z.mean(1).var(ddof=1)
    return max(0.0, ms_repeat - _ms_residual(z)) / (n * r)


TRAINING_SHARE = 0.1  # above this share of the variance, the trainings' own degrees of freedom set the t quantile


def _satterthwaite(components: list[tuple[float, int]]) -> float:
    variance = sum(v for v, _ in components)
    return variance**2 / sum(v**2 / d for v, d in components if v > 0)


def _t_interval(
    estimate: float,
    components: list[tuple[float, int]],
    z: float,
    bounds: tuple[float, float],
    trainings: list[tuple[float, int]] | None = None,
) -> dict[str, float]:
    """Student's t interval and two-sided p from variance components (variance, df).

    ``components`` are the images' parts, ``trainings`` the training units' (repeats, or draws of
    the seeds). The degrees of freedom are Satterthwaite's over all of them, except where the
    trainings carry more than `TRAINING_SHARE` of the variance: then theirs alone. Satterthwaite's
    df are computed from estimated variances, and a training part estimated on 2-4 df that
    happens to come out small pulls them up toward the images' hundreds: with 3 draws of the
    seeds that interval covered 88% in simulation (tests/test_stats.py). The trainings' own df
    cover 94-98% in the same simulations, and leave cells where the images dominate as they were.

    The interval is clipped to ``bounds``, the values the quantity can take: with two repeats
    that disagree the t quantile is large (12.7 at one df) and the raw interval of a share can
    reach below 0, which no reader can use. The p-value is not affected.
    """
    trainings = trainings or []
    components = components + trainings
    variance = sum(v for v, _ in components)
    if variance <= 0:  # every image and repeat agrees: no spread to test against
        p = 1.0 if estimate == 0 else 0.0
        return {"estimate": estimate, "sd": 0.0, "low": estimate, "high": estimate, "df": math.inf, "p": p}
    trained = sum(v for v, _ in trainings)
    df = _satterthwaite(trainings) if trained > TRAINING_SHARE * variance else _satterthwaite(components)
    sd = math.sqrt(variance)
    half = float(sps.t.ppf(sps.norm.cdf(z), df)) * sd
    p = float(2 * sps.t.sf(abs(estimate) / sd, df))  # two-sided, H0: the mean (difference) is 0
    low, high = max(bounds[0], estimate - half), min(bounds[1], estimate + half)
    return {"estimate": estimate, "sd": sd, "low": low, "high": high, "df": df, "p": p}


def _image_parts(per_image: np.ndarray, strata: ArrayLike | None) -> list[tuple[float, int]]:
    """The image part of the mean's variance, (variance, df) per stratum: within-stratum spread only."""
    n = per_image.size
    labels = np.zeros(n, dtype=int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    parts = []
    for k in np.unique(labels):
        values = per_image[labels == k]
        if values.size > 1:  # (n_k / n)^2 var_k / n_k: the stratum's weight in the mean, squared, times its variance
            parts.append(((values.size / n) ** 2 * float(values.var(ddof=1)) / values.size, values.size - 1))
    return parts


def image_variance(per_image: ArrayLike, strata: ArrayLike | None = None) -> float:
    """The images' part of the variance of a mean over images (each image's value averaged over the repeats)."""
    return sum(v for v, _ in _image_parts(np.asarray(per_image, dtype=float), strata))


def crossed_interval(
    arm: ArrayLike,
    z: float,
    reference: ArrayLike | None = None,
    strata: ArrayLike | None = None,
    bounds: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Estimate, SD and interval of a mean over training repeats and test images, or of a paired difference.

    ``arm`` is (R, n): each repeat's contribution of each test image (1/0 for accuracy; weighted
    so that the mean is the metric for balanced accuracy or a prediction share). Repeats and
    images are crossed random factors: y_ri = mu + a_i + b_r + e_ri. The mean's variance is
    sigma_a^2/n + sigma_b^2/R + sigma_e^2/(nR), estimated without bias by the two-way ANOVA's
    mean squares: the variance of the image means over n (sigma_a^2 + sigma_e^2/R, over n) plus
    (MS_repeat - MS_residual)/(nR) (sigma_b^2/R). With ``reference`` (R', n) on the same images,
    trained independently, the estimate is the difference arm - reference: the images are
    paired (their per-image difference carries the image part), each arm's repeats add their own.
    The interval is Student's t with Satterthwaite's degrees of freedom (the trainings' own where
    they carry more than a tenth of the variance: `_t_interval`), so a study with few repeats
    that disagree gets the wide interval it deserves; a z of 1.96 gives 95%. `p` is the
    two-sided t-test of a zero mean (difference). With ``strata`` (n,), e.g. each image's class
    when the class counts are fixed by design as in balanced accuracy, the images' part is the
    stratified one: only the spread within each stratum counts. ``bounds`` clip the interval
    (default [0, 1] for a mean, [-1, 1] for a difference; pass [-1, 1] for a table of differences).

    Chosen over a two-level bootstrap: with 5 repeats the bootstrap's percentile interval
    under-covers whenever the repeats disagree (it resamples 5 values as if they were many).
    """
    arms = [np.atleast_2d(np.asarray(arm, dtype=float))]
    if reference is not None:
        arms.append(np.atleast_2d(np.asarray(reference, dtype=float)))
    n = arms[0].shape[1]
    if any(m.shape[1] != n for m in arms):
        raise ValueError(f"paired arrays differ in images: {[m.shape for m in arms]}")
    if n == 0:
        return {"estimate": math.nan, "sd": math.nan, "low": math.nan, "high": math.nan, "df": math.nan, "p": math.nan}
    per_image = arms[0].mean(0) - (arms[1].mean(0) if len(arms) > 1 else 0.0)
    trainings = [(_repeat_part(m), m.shape[0] - 1) for m in arms if m.shape[0] > 1]
    if bounds is None:
        bounds = (-1.0, 1.0) if reference is not None else (0.0, 1.0)
    return _t_interval(float(per_image.mean()), _image_parts(per_image, strata), z, bounds, trainings)


def crossed_gap(
    near: ArrayLike, far: ArrayLike, z: float, near_strata: ArrayLike | None = None, far_strata: ArrayLike | None = None
) -> dict[str, float]:
    """near - far for two disjoint image sets scored by the same R repeats (one model each): the signal's gap.

    The images' parts add (the sets share no image). The repeats are shared, so what counts is
    the spread of each repeat's own gap: its variance over repeats, net of the residual noise
    each set's mean carries (MS_residual / n per set), over R.
    """
    a = np.atleast_2d(np.asarray(near, dtype=float))
    b = np.atleast_2d(np.asarray(far, dtype=float))
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"the two image sets were scored by different repeats: {a.shape[0]} vs {b.shape[0]}")
    components = _image_parts(a.mean(0), near_strata) + _image_parts(b.mean(0), far_strata)
    r = a.shape[0]
    trainings = []
    if r > 1:
        gaps = a.mean(1) - b.mean(1)
        noise = _ms_residual(a) / a.shape[1] + _ms_residual(b) / b.shape[1]
        trainings.append((max(0.0, float(gaps.var(ddof=1)) - noise) / r, r - 1))
    return _t_interval(float(a.mean() - b.mean()), components, z, (-1.0, 1.0), trainings)


def weighted_auc(scores: ArrayLike, positive: ArrayLike, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC of ``scores`` for each row of (draws, n) ``weights``: P(score+ > score-), ties count 1/2.

    With integer bootstrap weights this is the AUC of each resample (an image drawn twice counts
    twice), so a paired bootstrap of two arms' AUCs is two calls with the same weights. Ranking is
    done once over the distinct scores; each resample then costs two matrix products, not a sort.
    NaN where a resample has no positive or no negative image.
    """
    s = np.asarray(scores, dtype=float)
    pos = np.asarray(positive, dtype=bool)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    _, level = np.unique(s, return_inverse=True)  # level[i]: rank of image i's score among the distinct scores
    onehot = np.zeros((s.size, int(level.max(initial=-1)) + 1))
    onehot[np.arange(s.size), level] = 1.0
    neg_at = (w * ~pos) @ onehot  # (draws, levels): negative weight at each score
    pos_at = (w * pos) @ onehot
    below = np.cumsum(neg_at, axis=1) - neg_at  # negative weight strictly below each score
    wins = np.sum(pos_at * (below + 0.5 * neg_at), axis=1)
    pairs = pos_at.sum(1) * neg_at.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def _fit_logit(x: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray | None:
    """Newton/IRLS maximum likelihood for logit(P(y=1)) = X beta; None if it does not converge (separation)."""
    beta = np.zeros(x.shape[1])
    with np.errstate(over="ignore"):
        for _ in range(max_iter):
            p = 1.0 / (1.0 + np.exp(-(x @ beta)))
            hessian = x.T @ (x * (p * (1 - p))[:, None])
            try:
                step = np.linalg.solve(hessian, x.T @ (y - p))
            except np.linalg.LinAlgError:
                return None
            beta = beta + step
            if not np.all(np.isfinite(beta)):
                return None
            if np.max(np.abs(step)) < tol:
                return beta
    return None


def cluster_robust_cov(x: np.ndarray, y: np.ndarray, beta: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Sandwich covariance H^-1 (sum_g s_g s_g') H^-1 * G/(G-1), s_g = summed score of cluster g."""
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    bread = np.linalg.inv(x.T @ (x * (p * (1 - p))[:, None]))
    _, codes = np.unique(cluster, return_inverse=True)
    n_clusters = int(codes.max()) + 1
    scores = np.zeros((n_clusters, x.shape[1]))
    np.add.at(scores, codes, x * (y - p)[:, None])
    meat = scores.T @ scores
    return n_clusters / (n_clusters - 1) * bread @ meat @ bread


def dose_trend(correct: ArrayLike, dose: ArrayLike, cluster: ArrayLike, z_level: float) -> dict[str, float]:
    """Logit of correctness on log2(1 + dose) with cluster-robust SE; a Wald z-test for a dose-response.

    Returns slope (log-odds per doubling), se, z, two-sided normal p, odds_ratio_per_doubling with its
    interval (or_low, or_high, at the normal quantile ``z_level``: evaluate.z), n predictions and G
    clusters. Degenerate inputs do not raise: when every prediction is correct, none is, there is a
    single dose level, the fit does not converge (perfect separation), there is only one cluster
    (no robust SE), or the robust variance is not positive (every image scored alike at every dose,
    as when the dose arms lost their synthetic images: rounding then leaves it at 0 or just below),
    the undefined statistics are nan.
    """
    y = np.asarray(correct, dtype=float)
    d = np.asarray(dose, dtype=float)
    g = np.asarray(cluster)
    if not (y.shape == d.shape == g.shape):
        raise ValueError(f"correct, dose and cluster differ in length: {y.shape}, {d.shape}, {g.shape}")
    n_clusters = int(np.unique(g).size)
    result = dict.fromkeys(("slope", "se", "z", "p", "odds_ratio_per_doubling", "or_low", "or_high"), math.nan)
    result |= {"n": float(y.size), "clusters": float(n_clusters)}
    if y.size == 0 or y.min() == y.max() or np.unique(d).size < 2:
        return result
    x = np.column_stack([np.ones_like(d), np.log2(1.0 + d)])
    beta = _fit_logit(x, y)
    if beta is None:
        return result
    slope = float(beta[1])
    result |= {"slope": slope, "odds_ratio_per_doubling": math.exp(slope)}
    if n_clusters < 2:
        return result
    variance = float(cluster_robust_cov(x, y, beta, g)[1, 1])
    if not math.isfinite(variance) or variance <= 1e-12 * max(1.0, slope * slope):
        return result
    se = math.sqrt(variance)
    z = slope / se
    result |= {
        "se": se,
        "z": z,
        "p": float(2.0 * sps.norm.sf(abs(z))),
        "or_low": math.exp(slope - z_level * se),
        "or_high": math.exp(slope + z_level * se),
    }
    return result
