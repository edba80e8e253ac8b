"""Synthetic-image quality on backbone features: KID, diversity among a seed's candidates, distance to the seed.

KID (Binkowski et al. 2018, "Demystifying MMD GANs") is the unbiased estimate of the squared
maximum mean discrepancy between two feature sets under the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets of equal size; its spread over the
subsets gives a standard error. Unlike FID it is unbiased for small sets (tens of images per
cell here) and needs no covariance matrix of 4,096 dimensions.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples: off-diagonal means within, full mean across."""
    m = len(x)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


def kid(x: np.ndarray, y: np.ndarray, subset: int, subsets: int, seed: int) -> dict[str, float]:
    """KID of feature sets x and y (n, d): mean over ``subsets`` random subsets of min(subset, n_x, n_y) rows each.

    Returns the mean, the SD over subsets and the standard error of the mean (SD / sqrt(subsets)),
    and the subset size used; NaN when either set has fewer than 2 rows.
    """
    m = min(subset, len(x), len(y))
    if m < 2:
        return {"kid": float("nan"), "kid_sd": float("nan"), "kid_se": float("nan"), "kid_subset": m}
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    values = np.array(
        [mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
         for _ in range(subsets)]
    )  # fmt: skip
    sd = float(values.std(ddof=1)) if subsets > 1 else 0.0
    return {"kid": float(values.mean()), "kid_sd": sd, "kid_se": float(sd / np.sqrt(subsets)), "kid_subset": m}


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits: what the scores mean, and what a manifest may record.

    The features come from bfloat16 (8 bits of mantissa); their last bits, and float sums in
    another order, must not reach build/quality/scores.csv and from there the curated manifest
    and every training stage's recorded deps.
    """
    if isinstance(value, int | np.integer):
        return value  # a count (KID's subset size) stays one
    if not np.isfinite(value) or value == 0:
        return float(value)
    return float(f"{value:.{digits}g}")


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between the rows of a and b: (len(a), len(b)), in float64.

    float64 because BLAS kernels for float32 may sum in another order with another alignment
    or thread count, and a distance is rounded for the manifest: it must not sit on a last bit.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return 1.0 - an @ bn.T


def diversity(features: np.ndarray) -> float:
    """Mean pairwise cosine distance among a seed's candidates (NaN for fewer than 2)."""
    if len(features) < 2:
        return float("nan")
    d = cosine_distance(features, features)
    return float(d[np.triu_indices(len(features), 1)].mean())


def markdown(result: dict) -> str:
    """reports/quality/quality.md: one row per (generator, condition, FST group) cell of stage `quality`."""
    lines = [
        "# Synthetic-image quality per skin type",
        "",
        f"Features: {result['features']}. KID: mean over {result['kid_subsets']} subsets (SE), 0 = the same "
        "distribution (its scale follows the features': small for a random backbone's fc6); "
        "in band: share of candidates whose skin ITA lies in the requested FST group's band; "
        "diversity: mean pairwise cosine distance among a seed's candidates; to seed: mean distance to the seed.",
        "",
        "| generator | condition | FST | synthetic | real | KID (SE) | in band | diversity | to seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cells"]:
        lines.append(
            f"| {c['generator']} | {c['condition']} | {c['group']} | {c['n_synthetic']} | {c['n_real']} | "
            f"{c['kid']:.3g} ({c['kid_se']:.2g}) | {c['in_band']:.2f} | {c['seed_diversity']:.4f} | "
            f"{c['distance_to_seed']:.4f} |"
        )
    return "\n".join(lines) + "\n"
