"""Paired comparisons of the study's runs, from their per-image predictions, and the fairness table.

Arms and doses are scored on the same test images, so they are compared paired. Every
difference is of accuracies pooled over the R repeats, with an interval crossed over training
repeats and test images (`stats.crossed_interval`): the images pair the two arms, and each
arm's repeats add the spread between its trainings, so cells whose repeats disagree get wide
intervals. The tests:
- **Arms vs `fitz_only`**: exact McNemar test per (direction, condition, test group) on the
  images of that condition. An image counts as correct for a configuration when it is correct
  in more than half of the repeats (the majority vote over repeats, so one unlucky seed cannot
  decide it); b (only fitz_only right) and c (only the arm right) are its discordant pairs.
  Holm's step-down correction runs over the whole family of these tests.
- **The central question, `synthetic_and_seed` vs `seed`**: do the synthetic images add
  anything over the seeds they were made from? The same exact McNemar per (direction,
  condition, test group) with Holm over its own family, and, because a gain on one condition
  can be a collapse onto it, the difference in the group's balanced accuracy (all seven
  conditions): a mean of per-class recalls, which McNemar cannot test, but a weighted mean of
  per-image outcomes, so it gets the same crossed interval and its t-test p, Holm again over its
  family. Beside both, the condition's one-vs-rest AUC in the group (the repeats' mean
  probability for the condition ranks the images), its difference and a paired bootstrap over
  images (`paired_auc`): a shift of the head's prior toward the augmented condition raises its
  accuracy but leaves its AUC unchanged, so the AUC tells a better description of the condition
  from a condition called more often (the `null` control does the latter).
- **Dose trend**: logistic regression of per-prediction correctness on log2(1 + dose) over
  dose 0 (the seeds alone) and every dose level, with standard errors clustered by image
  (each image is scored at every dose and in every repeat, so predictions are not
  independent); see `stats.dose_trend`. The effect size is the odds ratio per doubling of
  the dose. Chosen over Cochran's Q + a trend statistic because it uses every repeat, gives an
  interpretable effect size and handles unequally spaced doses.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from dermsynth.analysis.grid import dose_of, planned_runs
from dermsynth.analysis.metrics import BOOTSTRAP_DRAWS, BOOTSTRAP_SEED, balanced_weights, units
from dermsynth.analysis.stats import (
    bootstrap_p,
    bootstrap_weights,
    crossed_interval,
    dose_trend,
    holm,
    mcnemar_exact,
    paired_counts,
    percentile_interval,
    weighted_auc,
)
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import DIRECTIONS, load_conditions, prob_column, slug


class UnpairedPredictions(DermsynthError, ValueError):
    """Two runs compared image by image were scored on different images: outputs of different splits."""

    def __init__(self, what: str):
        super().__init__(
            f"{what} were scored on different images (predictions.csv of other splits or datasets); re-run "
            "`dvc repro` so that every training reads the current build/splits"
        )


FAIRNESS_KEYS = ("acc_gap", "acc_ratio", "worst_group_acc", "pqd", "dpm", "eom", "ece")


@functools.cache  # the seed arm's predictions serve both the paired tests and the dose trend; read once
def predictions(name: str) -> pd.DataFrame:
    """One configuration's per-image predictions (every repeat); callers must not modify the frame."""
    return pd.read_csv(paths.run_dir(name) / "predictions.csv", dtype={"md5hash": str})


def label_for(condition: str) -> str:
    return next(label for label in load_conditions() if slug(label) == condition)


def majority(preds: pd.DataFrame, group: str, label: str) -> pd.Series:
    """Per test image of ``group`` and ``label``: correct in more than half of the repeats."""
    rows = preds[(preds["split"] == "test") & (preds["group"] == group) & (preds["label"] == label)]
    return rows.groupby("md5hash")["correct"].mean().gt(0.5).sort_index()


def outcomes(preds: pd.DataFrame, group: str, label: str | None = None, balanced: bool = False) -> pd.DataFrame:
    """(units x images) of the test images of ``group`` (of ``label`` only, if given): each prediction's outcome.

    The units are the training repeats, or the draws of the seeds when there are several
    (`metrics.units`); the index is named after them.

    The outcome is 1/0 for right/wrong, or with ``balanced`` weighted so that its mean over
    images is the group's balanced accuracy (`metrics.balanced_weights`). Images are columns, so
    two arms' tables pair by column.
    """
    rows = preds[(preds["split"] == "test") & (preds["group"] == group)]
    if label is not None:
        rows = rows[rows["label"] == label]
    value = rows["correct"].astype(float) * (balanced_weights(rows) if balanced else 1.0)
    unit = units(rows)  # the draws of the seeds when there are several (each the mean of its repeats)
    return value.groupby([unit, rows["md5hash"]]).mean().unstack("md5hash").sort_index(axis=1)


def paired_difference(
    reference: pd.DataFrame, arm: pd.DataFrame, what: str, z: float, strata: pd.Series | None = None
) -> dict[str, float]:
    """Two arms' outcome tables on the same images: the pooled difference with its crossed interval and p.

    Two arms trained on the same draws of the seeds (`synthetic_and_seed` and `seed`) pair by
    draw as well as by image: each draw's difference is one unit, so what the draw's seeds do to
    both arms alike cancels. Otherwise (an arm against `fitz_only`, which no draw changes) each
    arm's units add their own spread.
    """
    if not reference.columns.equals(arm.columns):
        raise UnpairedPredictions(what)
    if reference.index.name == arm.index.name == "draw" and reference.index.equals(arm.index):
        return crossed_interval(arm.to_numpy() - reference.to_numpy(), z, strata=strata, bounds=(-1.0, 1.0))
    return crossed_interval(arm.to_numpy(), z, reference=reference.to_numpy(), strata=strata)


def paired_tests(params: Params) -> pd.DataFrame:
    """McNemar of every augmented arm against fitz_only, per direction, condition and test group; Holm-adjusted."""
    rows = []
    for direction in params.train.directions:
        for condition in params.train.conditions:
            label = label_for(condition)
            base = predictions(paths.trained_as(params, direction, condition, "fitz_only", None))
            for arm in params.train.arms:
                other = predictions(paths.trained_as(params, direction, condition, arm, None))
                for group in DIRECTIONS[direction].test_groups:
                    a, b_ = majority(base, group, label), majority(other, group, label)
                    if not a.index.equals(b_.index):
                        raise UnpairedPredictions(f"{direction}/{condition}/{group}: {arm} and fitz_only")
                    b, c = paired_counts(a.to_numpy(), b_.to_numpy())
                    what = f"{direction}/{condition}/{group}: {arm} and fitz_only"
                    ref, new = outcomes(base, group, label), outcomes(other, group, label)
                    gain = paired_difference(ref, new, what, params.evaluate.z)
                    rows.append(
                        {
                            "direction": direction,
                            "condition": condition,
                            "group": group,
                            "arm": arm,
                            "n": len(a),
                            "acc_fitz_only": float(ref.to_numpy().mean()),
                            "acc_arm": float(new.to_numpy().mean()),
                            "difference": gain["estimate"],
                            "difference_low": gain["low"],
                            "difference_high": gain["high"],
                            "b_only_fitz_only": b,
                            "c_only_arm": c,
                            "p": mcnemar_exact(b, c),
                        }
                    )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = holm(table["p"].tolist())
    return table


def paired_balanced_accuracy(reference: pd.DataFrame, arm: pd.DataFrame, z: float) -> dict[str, float]:
    """Balanced accuracy of two arms on the same images, their difference (arm - reference), its interval and p.

    Balanced accuracy is a weighted mean of per-image outcomes (`metrics.balanced_weights`), so the
    difference gets the crossed interval over both arms' repeats and the shared images.
    """
    group = reference["group"].iloc[0] if len(reference) else ""
    tables = [outcomes(p, group, balanced=True) for p in (reference, arm)]
    truth = [p.drop_duplicates("md5hash").set_index("md5hash")["label"].sort_index() for p in (reference, arm)]
    if not truth[0].equals(truth[1]):
        raise UnpairedPredictions("balanced accuracy: the two arms")
    diff = paired_difference(*tables, "balanced accuracy: the two arms", z, strata=truth[0].reindex(tables[0].columns))
    return {
        "bal_acc_reference": float(tables[0].to_numpy().mean()),
        "bal_acc_arm": float(tables[1].to_numpy().mean()),
        "bal_acc_difference": diff["estimate"],
        "bal_acc_diff_low": diff["low"],
        "bal_acc_diff_high": diff["high"],
        "bal_acc_p": diff["p"],
    }


def mean_probability(preds: pd.DataFrame, label: str) -> pd.DataFrame:
    """Per image: the true label and the model's probability for ``label``, averaged over the repeats (the ensemble)."""
    column = prob_column(label)
    if column not in preds.columns:
        raise DermsynthError(
            f"predictions.csv has no column {column!r}: it was written before every class's probability was "
            "recorded; re-run `dvc repro`"
        )
    return preds.groupby("md5hash").agg(label=("label", "first"), score=(column, "mean")).sort_index()


def paired_auc(reference: pd.DataFrame, arm: pd.DataFrame, label: str, z: float) -> dict[str, float]:
    """The condition's one-vs-rest AUC for two arms on the same images, its difference and a paired bootstrap.

    Why AUC beside accuracy: adding images of one condition at one skin tone moves the head's prior
    toward that condition for every image of that tone. That raises the condition's accuracy whatever
    the images show (the `null` control does it), but it adds about the same amount to the
    condition's logit for every image of the group, which leaves the ranking of images by the
    condition's probability, and so its AUC, unchanged. A gain in AUC means the images of the
    condition were told apart from the others better, not just called that condition more often.
    """
    a, b = mean_probability(reference, label), mean_probability(arm, label)
    if not a.index.equals(b.index):
        raise UnpairedPredictions(f"AUC of {label}: the two arms")
    positive = (a["label"] == label).to_numpy()
    ones = np.ones((1, len(a)))
    weights = bootstrap_weights(len(a), BOOTSTRAP_DRAWS, BOOTSTRAP_SEED)
    diffs = weighted_auc(b["score"], positive, weights) - weighted_auc(a["score"], positive, weights)
    low, high = percentile_interval(diffs, z)
    auc_ref, auc_arm = weighted_auc(a["score"], positive, ones)[0], weighted_auc(b["score"], positive, ones)[0]
    return {
        "auc_reference": float(auc_ref),
        "auc_arm": float(auc_arm),
        "auc_difference": float(auc_arm - auc_ref),
        "auc_diff_low": low,
        "auc_diff_high": high,
        "auc_p": bootstrap_p(diffs),
    }


def synthetic_vs_seed(params: Params) -> pd.DataFrame:
    """`synthetic_and_seed` against `seed`: McNemar on the condition; paired bootstraps of balanced accuracy and AUC."""
    rows: list[dict] = []
    if not {"seed", "synthetic_and_seed"} <= set(params.train.arms):
        return pd.DataFrame(rows)
    for direction in params.train.directions:
        for condition in params.train.conditions:
            label = label_for(condition)
            seed = predictions(paths.trained_as(params, direction, condition, "seed", None))
            synth = predictions(paths.trained_as(params, direction, condition, "synthetic_and_seed", None))
            for group in DIRECTIONS[direction].test_groups:
                a, b_ = majority(seed, group, label), majority(synth, group, label)
                if not a.index.equals(b_.index):
                    raise UnpairedPredictions(f"{direction}/{condition}/{group}: seed and synthetic_and_seed")
                b, c = paired_counts(a.to_numpy(), b_.to_numpy())
                what = f"{direction}/{condition}/{group}: seed and synthetic_and_seed"
                ref, new = outcomes(seed, group, label), outcomes(synth, group, label)
                gain = paired_difference(ref, new, what, params.evaluate.z)
                in_group = [p[(p["split"] == "test") & (p["group"] == group)] for p in (seed, synth)]
                rows.append(
                    {
                        "direction": direction,
                        "condition": condition,
                        "group": group,
                        "n": len(a),
                        "acc_seed": float(ref.to_numpy().mean()),
                        "acc_synthetic_and_seed": float(new.to_numpy().mean()),
                        "difference": gain["estimate"],
                        "difference_low": gain["low"],
                        "difference_high": gain["high"],
                        "b_only_seed": b,
                        "c_only_synthetic": c,
                        "p": mcnemar_exact(b, c),
                        "n_group": int(in_group[0]["md5hash"].nunique()),
                        **paired_balanced_accuracy(*in_group, params.evaluate.z),
                        **paired_auc(*in_group, label, params.evaluate.z),
                    }
                )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = holm(table["p"].tolist())
        table["bal_acc_p_holm"] = holm(table["bal_acc_p"].tolist())
        table["auc_p_holm"] = holm(table["auc_p"].tolist())
    return table


def dose_trends(params: Params) -> pd.DataFrame:
    """The trend test over dose 0 (seed arm) and every dose level, per condition and test group."""
    direction = params.dose.direction
    rows = []
    for condition in params.train.conditions:
        label = label_for(condition)
        seed = paths.trained_as(params, direction, condition, "seed", None)
        runs = [(0, seed)] if "seed" in params.train.arms else []
        doses = [r for r in planned_runs(params) if r["dose"] is not None and r["condition"] == condition]
        runs += [(dose_of(r), r["trained"]) for r in doses]
        if len(runs) < 2:  # a trend needs two doses
            continue
        frames = [predictions(name).assign(dose=d) for d, name in runs]
        scored = pd.concat(frames, ignore_index=True)
        for group in DIRECTIONS[direction].test_groups:
            cell = scored[(scored["split"] == "test") & (scored["group"] == group) & (scored["label"] == label)]
            correct = cell["correct"].astype(int).to_numpy()
            trend = dose_trend(correct, cell["dose"].to_numpy(), cell["md5hash"], params.evaluate.z)
            rows.append({"direction": direction, "condition": condition, "group": group, **trend})
    return pd.DataFrame(rows)


def fairness_table(runs: list[dict]) -> pd.DataFrame:
    """Per run: accuracy per FST group and the fairness metrics (means over repeats, with SDs)."""
    rows = []
    for run in runs:
        m = files.read_json(paths.RUN_METRICS / f"{run['name']}.json")
        groups = sorted(k.split("/")[2] for k in m if k.startswith("fair/acc/") and not k.endswith("_sd"))
        row = {k: run[k] for k in ("direction", "condition", "arm")}
        row.update({f"acc {g}": m[f"fair/acc/{g}"] for g in groups})
        for key in FAIRNESS_KEYS:
            row[key] = m.get(f"fair/{key}")
            row[f"{key}_sd"] = m.get(f"fair/{key}_sd")
        rows.append(row)
    return pd.DataFrame(rows)
