"""Metrics of one configuration from its per-image predictions: accuracy cells and fairness.

`run_metrics` turns one configuration's predictions (every repeat) into the flat dict that
goes, unchanged, to MLflow and to reports/runs/<run>.json; the `evaluate` stage builds the
study's tables from those files.

Accuracy on one condition can rise because the model predicts that condition more often for
the whole group (a collapse), at the other conditions' expense. So every test group also
gets the net-benefit metrics computed over all its images and classes: balanced accuracy
(mean per-class recall), macro-F1 and the share of the group's predictions that go to each
class, pooled over repeats. Their intervals, like every accuracy cell's, are crossed over
training repeats and test images (`stats.crossed_interval`), so they widen where the repeats
disagree; macro-F1's is a bootstrap over images (`stats.bootstrap_weights`; each image keeps
all its repeats).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.analysis.fairness import fairness_metrics, summarise_repeats
from dermsynth.analysis.stats import bootstrap_weights, crossed_gap, crossed_interval, percentile_interval, wald, wilson
from dermsynth.core.study import slug

BOOTSTRAP_DRAWS = 1000  # resamples of the test images per interval; the seed is fixed so reruns are identical
BOOTSTRAP_SEED = 0


def trainings(preds: pd.DataFrame) -> pd.Series:
    """Each prediction's training, (draw, repeat) as one label: what per-training summaries (SD, fairness) group by."""
    if "draw" not in preds:
        return preds["repeat"]
    return preds["draw"].astype(int) * 10_000 + preds["repeat"].astype(int)


def units(preds: pd.DataFrame) -> pd.Series:
    """Each prediction's independent unit for the intervals: its draw of the seeds when there are several, else
    its training repeat.

    A draw's repeats share its seeds, so they are not independent of each other: the spread
    that matters for an effect of the seeds is between draws, and each draw's value is the
    mean of its repeats (`by_repeat` averages them). The mean over K draws then has the
    variance sigma_draw^2 / K + sigma_repeat^2 / (K R), which the K draw means estimate
    without bias (on K - 1 degrees of freedom). A configuration that does not depend on the
    seeds (fitz_only) has one draw, and its repeats are the units.
    """
    if "draw" in preds and preds["draw"].nunique() > 1:
        return preds["draw"]
    return preds["repeat"]


def by_repeat(values: pd.Series, repeats: pd.Series, images: pd.Series | None = None) -> np.ndarray:
    """(R, n): each repeat's value for each image (images sorted; by position within a repeat without ids)."""
    if images is None:
        images = values.groupby(repeats).cumcount()
    frame = pd.DataFrame({"r": repeats.to_numpy(), "i": images.to_numpy(), "v": values.to_numpy(dtype=float)})
    matrix = frame.pivot_table(index="r", columns="i", values="v", aggfunc="mean", sort=True)
    if matrix.isna().to_numpy().any():
        raise ValueError("the repeats scored different images: no (repeat, image) table")
    return matrix.to_numpy()


def cell(
    correct: pd.Series,
    z: float,
    repeats: pd.Series | None = None,
    images: pd.Series | None = None,
    units: pd.Series | None = None,
) -> dict[str, float]:
    """Accuracy of a boolean series: pooled over repeats, with its spread, its interval and Wald and Wilson bounds.

    Every repeat scores the same images, so the pooled accuracy k/(R n) carries the
    uncertainty of n images, not R n predictions, and of R trainings: `ci_low`/`ci_high` is the
    crossed interval over repeats and images (`stats.crossed_interval`), which widens where the
    repeats disagree. Wald and Wilson on the pooled count over n images are the paper's kind of
    interval (images only), kept for comparison with it. `acc_mean`/`acc_sd` are the mean and SD
    of the R per-repeat accuracies. ``repeats`` labels each prediction's training; ``units``, when
    given, the independent units of the interval (the draws of the seeds, see `units`).
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
    crossed = crossed_interval(by_repeat(correct, repeats if units is None else units, images), z)
    return {
        "acc": k / n,
        "n": round(n),
        "ci_low": max(0.0, crossed["low"]),
        "ci_high": min(1.0, crossed["high"]),
        "wald_low": wl,
        "wald_high": wh,
        "wilson_low": sl,
        "wilson_high": sh,
        "acc_mean": float(per_repeat.mean()),
        "acc_sd": float(per_repeat.std(ddof=1)) if n_repeats > 1 else 0.0,
        "repeats": n_repeats,
    }


def prediction_counts(rows: pd.DataFrame, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per image (sorted by md5hash): its true class index (n,) and how often each class was predicted (n, K)."""
    index = {c: i for i, c in enumerate(classes)}
    ordered = rows.sort_values("md5hash", kind="stable")
    images = pd.Index(ordered["md5hash"].unique())
    counts = np.zeros((len(images), len(classes)))
    np.add.at(counts, (images.get_indexer(ordered["md5hash"]), ordered["pred"].map(index).to_numpy()), 1.0)
    truth = ordered.drop_duplicates("md5hash")["label"].map(index).to_numpy()
    return truth, counts


def class_scores(truth: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Balanced accuracy, macro-F1 (B,) and prediction share per class (B, K) under image weights (B, n).

    With weights of ones this equals sklearn's balanced_accuracy_score and f1_score(average="macro") on every
    repeat's predictions stacked: per-class recall averages over the classes present as true labels, F1 over the
    classes present as true or predicted labels (2 TP / (predicted + true)).
    """
    onehot = np.eye(counts.shape[1])[truth]
    per_image = counts.sum(axis=1, keepdims=True)  # the number of repeats
    tp = weights @ (counts * onehot)
    predicted = weights @ counts
    true = weights @ (onehot * per_image)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(true > 0, tp / true, np.nan)
        f1 = np.where(predicted + true > 0, 2 * tp / (predicted + true), np.nan)
        share = predicted / predicted.sum(axis=1, keepdims=True)
    return {"bal_acc": _nanmean(recall), "macro_f1": _nanmean(f1), "share": share}


def _nanmean(values: np.ndarray) -> np.ndarray:
    present = ~np.isnan(values)
    return np.where(present.any(axis=1), np.nansum(values, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)


def balanced_weights(rows: pd.DataFrame) -> pd.Series:
    """Per prediction, n / (K n_k) for its image's class k: their mean over images is the balanced accuracy's.

    Balanced accuracy is the mean over the K classes present of each class's recall, so with the
    group's images fixed it is a weighted mean of per-image correctness, linear in it, and gets
    the same crossed interval over repeats and images as accuracy.
    """
    images = rows.drop_duplicates("md5hash")
    per_class = images["label"].value_counts()
    return len(images) / (len(per_class) * rows["label"].map(per_class))


def net_benefit(rows: pd.DataFrame, classes: list[str], z: float) -> dict[str, float]:
    """A test group's balanced accuracy, macro-F1 and per-class prediction share, with intervals.

    Balanced accuracy and the shares are weighted means of per-prediction outcomes, so their
    intervals are crossed over repeats and images (`stats.crossed_interval`). Macro-F1 is not
    (its denominators count predictions): its interval is a bootstrap over images that keeps
    each image's repeats together, so it leaves out the spread between trainings.
    """
    truth, counts = prediction_counts(rows, classes)
    point = class_scores(truth, counts, np.ones((1, len(truth))))
    boot = class_scores(truth, counts, bootstrap_weights(len(truth), BOOTSTRAP_DRAWS, BOOTSTRAP_SEED))
    repeats, images = units(rows), rows["md5hash"]
    classes_of = rows.drop_duplicates("md5hash").set_index("md5hash")["label"].sort_index()
    bal = crossed_interval(by_repeat(rows["correct"] * balanced_weights(rows), repeats, images), z, strata=classes_of)
    out: dict[str, float] = {"bal_acc": float(point["bal_acc"][0]), "bal_acc_low": bal["low"]}
    out["bal_acc_high"] = bal["high"]
    low, high = percentile_interval(boot["macro_f1"], z)
    out |= {"macro_f1": float(point["macro_f1"][0]), "macro_f1_low": low, "macro_f1_high": high}
    for k, label in enumerate(classes):
        share = crossed_interval(by_repeat(rows["pred"] == label, repeats, images), z)
        out |= {f"share/{slug(label)}": float(point["share"][0, k]), f"share/{slug(label)}_low": share["low"]}
        out[f"share/{slug(label)}_high"] = share["high"]
    return out


def run_metrics(predictions: pd.DataFrame, z: float) -> dict[str, float]:
    """Flat metrics: val overall; per test group overall, net benefit and per condition (spillover).

    ``predictions`` may hold several repeats (column `repeat`) and draws of the seeds (column
    `draw`); each cell then pools them, and its interval's units are the draws (`units`).
    """
    if "repeat" not in predictions:
        predictions = predictions.assign(repeat=0)
    predictions = predictions.assign(training=trainings(predictions), unit=units(predictions))
    metrics: dict[str, float] = {}
    val = predictions[predictions["split"] == "val"]
    scored = cell(val["correct"], z, val["training"], val["md5hash"], val["unit"])
    metrics.update({f"val/{k}": v for k, v in scored.items()})
    test = predictions[predictions["split"] == "test"]
    classes = sorted(set(predictions["label"]) | set(predictions["pred"]))
    for group, rows in test.groupby("group", sort=True):
        scored = cell(rows["correct"], z, rows["training"], rows["md5hash"], rows["unit"])
        metrics.update({f"test/{group}/{k}": v for k, v in scored.items()})
        metrics.update({f"test/{group}/{k}": v for k, v in net_benefit(rows, classes, z).items()})
        for label, block in rows.groupby("label", sort=True):
            prefix = f"test/{group}/{slug(label)}"
            scored = cell(block["correct"], z, block["training"], block["md5hash"], block["unit"])
            metrics.update({f"{prefix}/{k}": v for k, v in scored.items()})
    return metrics


def fairness(predictions: pd.DataFrame) -> dict[str, float]:
    """Fairness across the FST groups a run is scored on (validation group and both test groups).

    Computed per training (repeat, and draw of the seeds) and summarised as mean (`fair/<key>`)
    and SD (`fair/<key>_sd`). The validation group also chose the epoch, so its accuracy is
    slightly optimistic: the gap is an upper bound on the true one when the validation group is
    the best one.
    """
    per_repeat = [fairness_metrics(rows, "group") for _, rows in predictions.groupby(trainings(predictions), sort=True)]
    return {f"fair/{k}": v for k, v in summarise_repeats(per_repeat).items()}


def signal(predictions: pd.DataFrame, far_group: str, z: float) -> dict[str, float]:
    """Is there a cross-tone gap to study? fitz_only's balanced accuracy near (validation) and far, and the gap.

    Near is the validation split of the training group (the skin types training saw); far is the
    test group at the other extreme (the seeds' group, which the arms augment). Both are scored by
    the same repeats, so the gap's interval (`stats.crossed_gap`) adds the two image sets' parts
    (they share no image, each stratified by class) to the spread of each repeat's own gap.
    A study whose gap is about 0, or whose near accuracy is at chance, has nothing for synthetic
    images to close.
    """
    if "repeat" not in predictions:
        predictions = predictions.assign(repeat=0)
    near_rows = predictions[predictions["split"] == "val"]
    far_rows = predictions[(predictions["split"] == "test") & (predictions["group"] == far_group)]
    tables, strata = [], []
    for rows in (near_rows, far_rows):
        tables.append(by_repeat(rows["correct"] * balanced_weights(rows), units(rows), rows["md5hash"]))
        strata.append(rows.drop_duplicates("md5hash").set_index("md5hash")["label"].sort_index())
    gap = crossed_gap(tables[0], tables[1], z, *strata)
    near, far = float(tables[0].mean()), float(tables[1].mean())
    return {"near_bal_acc": near, "far_bal_acc": far, "gap": near - far, "gap_low": gap["low"], "gap_high": gap["high"]}
