"""Per-skin-type performance of one model's predictions, with N and intervals: the model card's and external table.

For each FST group: accuracy with its Wilson interval, balanced accuracy (mean recall over the
conditions present) and expected calibration error, both with percentile intervals from a
bootstrap over images, and the mean confidence. One repeat's predictions (one served model),
not a pool of repeats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.analysis.fairness import expected_calibration_error
from dermsynth.analysis.metrics import BOOTSTRAP_DRAWS, BOOTSTRAP_SEED, class_scores, prediction_counts
from dermsynth.analysis.stats import bootstrap_weights, percentile_interval, wilson

BINS = 10  # equal-width confidence bins of the ECE, as in fairness.py


def ece_draws(prob: np.ndarray, correct: np.ndarray, weights: np.ndarray, bins: int = BINS) -> np.ndarray:
    """ECE under image weights (B, n): sum over bins of |sum of w (correct - confidence)| / sum of w.

    With weights of ones this is fairness.expected_calibration_error: (n_b / n) |acc_b - conf_b|
    is |sum over the bin of (correct - confidence)| / n.
    """
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    index = np.searchsorted(inner_edges, prob, side="left")
    gap = correct.astype(float) - prob
    per_bin = np.stack([weights @ (gap * (index == b)) for b in range(bins)], axis=1)
    return np.abs(per_bin).sum(axis=1) / weights.sum(axis=1)


def group_scores(rows: pd.DataFrame, classes: list[str], z: float) -> dict[str, float]:
    """One group's N, accuracy (Wilson), balanced accuracy and ECE (bootstrap) and mean confidence."""
    n = len(rows)
    k = float(rows["correct"].sum())
    low, high = wilson(k, n, z)
    prob, correct = rows["prob_pred"].to_numpy(float), rows["correct"].to_numpy(bool)
    weights = bootstrap_weights(n, BOOTSTRAP_DRAWS, BOOTSTRAP_SEED)
    truth, counts = prediction_counts(rows, classes)
    order = np.argsort(rows["md5hash"].to_numpy(), kind="stable")  # prediction_counts sorts images by md5hash
    balanced = class_scores(truth, counts, np.ones((1, n)))["bal_acc"][0]
    bal_low, bal_high = percentile_interval(class_scores(truth, counts, weights)["bal_acc"], z)
    ece_low, ece_high = percentile_interval(ece_draws(prob[order], correct[order], weights), z)
    return {
        "n": n,
        "acc": k / n,
        "acc_low": low,
        "acc_high": high,
        "bal_acc": float(balanced),
        "bal_acc_low": bal_low,
        "bal_acc_high": bal_high,
        "ece": expected_calibration_error(prob, correct, BINS),
        "ece_low": ece_low,
        "ece_high": ece_high,
        "confidence": float(prob.mean()),
    }


def by_group(rows: pd.DataFrame, classes: list[str], z: float, column: str = "group") -> dict[str, dict[str, float]]:
    """group_scores for every value of ``column`` (sorted); rows without a group are left out."""
    present = rows[rows[column].astype(str) != ""]
    return {str(g): group_scores(part, classes, z) for g, part in present.groupby(column, sort=True)}
