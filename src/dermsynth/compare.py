"""Paired comparisons of the study's runs, from their per-image predictions, and the fairness table.

Arms and doses are scored on the same test images, so they are compared paired:
- **Arms vs `fitz_only`**: exact McNemar test per (direction, condition, test group) on the
  images of that condition. Each configuration trains R times; an image counts as correct
  for a configuration when it is correct in more than half of the repeats (the majority
  vote over repeats, so one unlucky seed cannot decide it). Effect size: the accuracy
  difference (c - b) / n and the discordant pairs b (only fitz_only right) and c (only the
  arm right). Holm's step-down correction runs over the whole family of these tests.
- **Dose trend**: logistic regression of per-prediction correctness on log2(1 + dose) over
  dose 0 (the seeds alone) and every dose level, with standard errors clustered by image
  (each image is scored at every dose and in every repeat, so predictions are not
  independent); see `stats.dose_trend`. The effect size is the odds ratio per doubling of
  the dose. Chosen over Cochran's Q + a trend statistic because it uses every repeat, gives an
  interpretable effect size and handles unequally spaced doses.
"""

from __future__ import annotations

import functools

import pandas as pd

from dermsynth import io, paths
from dermsynth.config import Params
from dermsynth.prepare import load_conditions
from dermsynth.stats import dose_trend, holm, mcnemar_exact, paired_counts
from dermsynth.study import DIRECTIONS, slug

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


def paired_tests(params: Params) -> pd.DataFrame:
    """McNemar of every augmented arm against fitz_only, per direction, condition and test group; Holm-adjusted."""
    rows = []
    if "fitz_only" not in params.train.arms:  # no reference arm in this grid: nothing to pair against
        return pd.DataFrame(rows)
    for direction in params.train.directions:
        for condition in params.train.conditions:
            label = label_for(condition)
            base = predictions(paths.run_name(direction, condition, "fitz_only", None))
            for arm in (a for a in params.train.arms if a != "fitz_only"):
                other = predictions(paths.run_name(direction, condition, arm, None))
                for group in DIRECTIONS[direction].test_groups:
                    a, b_ = majority(base, group, label), majority(other, group, label)
                    if not a.index.equals(b_.index):
                        raise ValueError(f"{direction}/{condition}/{group}: {arm} and fitz_only saw other images")
                    b, c = paired_counts(a.to_numpy(), b_.to_numpy())
                    rows.append(
                        {
                            "direction": direction,
                            "condition": condition,
                            "group": group,
                            "arm": arm,
                            "n": len(a),
                            "acc_fitz_only": float(a.mean()),
                            "acc_arm": float(b_.mean()),
                            "difference": (c - b) / len(a) if len(a) else float("nan"),
                            "b_only_fitz_only": b,
                            "c_only_arm": c,
                            "p": mcnemar_exact(b, c),
                        }
                    )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = holm(table["p"].tolist())
    return table


def dose_trends(params: Params) -> pd.DataFrame:
    """The trend test over dose 0 (seed arm) and every dose level, per condition and test group."""
    direction = params.dose.direction
    rows = []
    for condition in params.train.conditions:
        label = label_for(condition)
        runs = [(0, paths.run_name(direction, condition, "seed", None))] if "seed" in params.train.arms else []
        runs += [(d, paths.run_name(direction, condition, "synthetic_and_seed", d)) for d in params.dose.levels]
        if len(runs) < 2:  # a trend needs two doses
            continue
        frames = [predictions(name).assign(dose=d) for d, name in runs]
        scored = pd.concat(frames, ignore_index=True)
        for group in DIRECTIONS[direction].test_groups:
            cell = scored[(scored["split"] == "test") & (scored["group"] == group) & (scored["label"] == label)]
            trend = dose_trend(cell["correct"].astype(int).to_numpy(), cell["dose"].to_numpy(), cell["md5hash"])
            rows.append({"direction": direction, "condition": condition, "group": group, **trend})
    return pd.DataFrame(rows)


def fairness_table(runs: list[dict]) -> pd.DataFrame:
    """Per run: accuracy per FST group and the fairness metrics (means over repeats, with SDs)."""
    rows = []
    for run in runs:
        m = io.read_json(paths.RUN_METRICS / f"{run['name']}.json")
        groups = sorted(k.split("/")[2] for k in m if k.startswith("fair/acc/") and not k.endswith("_sd"))
        row = {k: run[k] for k in ("direction", "condition", "arm")}
        row.update({f"acc {g}": m[f"fair/acc/{g}"] for g in groups})
        for key in FAIRNESS_KEYS:
            row[key] = m.get(f"fair/{key}")
            row[f"{key}_sd"] = m.get(f"fair/{key}_sd")
        rows.append(row)
    return pd.DataFrame(rows)
