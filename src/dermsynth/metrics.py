"""Metrics of one configuration from its per-image predictions: accuracy cells and fairness.

`run_metrics` turns one configuration's predictions (every repeat) into the flat dict that
goes, unchanged, to MLflow and to reports/runs/<run>.json; the `evaluate` stage builds the
study's tables from those files.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.fairness import fairness_metrics, summarise_repeats
from dermsynth.stats import wald, wilson
from dermsynth.study import slug


def cell(correct: pd.Series, z: float, repeats: pd.Series | None = None) -> dict[str, float]:
    """Accuracy of a boolean series: pooled over repeats, with its spread and Wald and Wilson bounds.

    Every repeat scores the same images, so the pooled accuracy k/(R n) carries the
    uncertainty of n images, not R n predictions: the intervals use n (R n would be far
    too narrow). `acc_mean`/`acc_sd` are the mean and SD of the R per-repeat accuracies.
    """
    repeats = pd.Series(0, index=correct.index) if repeats is None else repeats
    per_repeat = correct.groupby(repeats).mean()
    n_repeats = len(per_repeat)
    n = len(correct) / max(n_repeats, 1)
    if n == 0:
        raise ValueError("no predictions in this cell")
    k = float(correct.sum()) / n_repeats
    wl, wh = wald(k, n, z)
    sl, sh = wilson(k, n, z)
    return {
        "acc": k / n,
        "n": round(n),
        "wald_low": wl,
        "wald_high": wh,
        "wilson_low": sl,
        "wilson_high": sh,
        "acc_mean": float(per_repeat.mean()),
        "acc_sd": float(per_repeat.std(ddof=1)) if n_repeats > 1 else 0.0,
        "repeats": n_repeats,
    }


def run_metrics(predictions: pd.DataFrame, z: float) -> dict[str, float]:
    """Flat metrics: val overall; per test group overall and per condition (spillover).

    ``predictions`` may hold several repeats (column `repeat`); each cell then pools them.
    """
    if "repeat" not in predictions:
        predictions = predictions.assign(repeat=0)
    metrics: dict[str, float] = {}
    val = predictions[predictions["split"] == "val"]
    metrics.update({f"val/{k}": v for k, v in cell(val["correct"], z, val["repeat"]).items()})
    test = predictions[predictions["split"] == "test"]
    for group, rows in test.groupby("group", sort=True):
        metrics.update({f"test/{group}/{k}": v for k, v in cell(rows["correct"], z, rows["repeat"]).items()})
        for label, block in rows.groupby("label", sort=True):
            prefix = f"test/{group}/{slug(label)}"
            metrics.update({f"{prefix}/{k}": v for k, v in cell(block["correct"], z, block["repeat"]).items()})
    return metrics


def fairness(predictions: pd.DataFrame) -> dict[str, float]:
    """Fairness across the FST groups a run is scored on (validation group and both test groups).

    Computed per repeat and summarised as mean (`fair/<key>`) and SD (`fair/<key>_sd`). The
    validation group also chose the epoch, so its accuracy is slightly optimistic: the gap is
    an upper bound on the true one when the validation group is the best one.
    """
    per_repeat = [fairness_metrics(rows, "group") for _, rows in predictions.groupby("repeat", sort=True)]
    return {f"fair/{k}": v for k, v in summarise_repeats(per_repeat).items()}
