"""The quantities the regression gate tests, each as its value per training repeat and its images' variance.

A regression gate on 78 single cells cannot tell a reseed from a loss: each cell moves with
the training stream by about as much as a real regression moves it. So the gate tests a few
estimands that the study is about, per direction:

- `bal_acc/<direction>/<configuration>/near` and `/far`: balanced accuracy on the skin types
  the configuration trained on (validation) and on the seeds' group at the other extreme;
- `worst_group_acc/<direction>/<configuration>`: the lowest accuracy over the FST groups;
- `gain/<direction>/<arm>/<condition>`: the augmented condition's accuracy on the far group
  against `fitz_only`'s, and `gain/<direction>/<arm>/pooled`, its mean over the conditions;
- `gain/<direction>/synthetic_vs_seed/<condition>` and `/pooled`: `synthetic_and_seed`
  against `seed`, the study's central question.

Each is stored as `repeats` (its value in each training repeat, repeat r of one
configuration beside repeat r of the other for a gain), `image_var` (the images' part of the
variance of its mean: `stats.crossed_interval`'s decomposition) and `images` (a fingerprint of
the test images it is measured on), so that the gate's null distribution includes what a new
random stream moves and, where the fresh run was scored on other images (a new `split.seed`),
what a new draw of test images moves (`gate.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from dermsynth.analysis.compare import UnpairedPredictions, label_for, outcomes, predictions
from dermsynth.analysis.grid import arms
from dermsynth.analysis.metrics import balanced_weights
from dermsynth.analysis.stats import image_variance
from dermsynth.core import paths
from dermsynth.core.config import Params
from dermsynth.core.study import DIRECTIONS


def fingerprint(images: Iterable[str]) -> str:
    """A short hash of a set of test images (md5hashes, or fingerprints of parts): equal only for the same images."""
    return hashlib.sha256("\n".join(sorted(images)).encode()).hexdigest()[:16]


def estimand(table: pd.DataFrame, strata: np.ndarray | None = None) -> dict:
    """A (repeats x images) table of per-prediction contributions as the gate stores it: per-repeat means,
    the images' variance and which images."""
    values = table.to_numpy(dtype=float)
    return {
        "repeats": [float(v) for v in values.mean(1)],
        "image_var": image_variance(values.mean(0), strata),
        "n": int(values.shape[1]),
        "images": fingerprint(table.columns.astype(str)),
    }


def by_image(rows: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """(repeats x images) of ``values``, one per prediction of ``rows``; images sorted."""
    return values.groupby([rows["repeat"], rows["md5hash"]]).mean().unstack("md5hash").sort_index(axis=1)


def balanced(preds: pd.DataFrame, rows: pd.Series) -> dict:
    """Balanced accuracy of the selected rows, per repeat, stratified by class."""
    part = preds[rows]
    table = by_image(part, part["correct"].astype(float) * balanced_weights(part))
    classes = part.drop_duplicates("md5hash").set_index("md5hash")["label"].reindex(table.columns)
    return estimand(table, classes.to_numpy())


def worst_group(preds: pd.DataFrame) -> dict:
    """Per repeat, the lowest accuracy over the FST groups scored (validation and test groups)."""
    groups = {g: by_image(rows, rows["correct"].astype(float)) for g, rows in preds.groupby("group")}
    per_repeat = np.min([t.to_numpy().mean(1) for t in groups.values()], axis=0)
    worst = min(
        groups, key=lambda g: groups[g].to_numpy().mean()
    )  # the images' variance of the group that is lowest overall
    return {**estimand(groups[worst]), "repeats": [float(v) for v in per_repeat]}


def gain(arm: pd.DataFrame, reference: pd.DataFrame, group: str, label: str) -> dict:
    """The condition's accuracy on ``group``, arm minus reference, repeat by repeat, on the same images."""
    a, b = outcomes(arm, group, label), outcomes(reference, group, label)
    if not a.columns.equals(b.columns) or a.shape != b.shape:
        raise UnpairedPredictions(f"the gain in {label} at {group}: two configurations")
    return estimand(a - b)


def pooled(gains: list[dict]) -> dict:
    """The mean gain over conditions: their per-repeat mean; their images are disjoint, so variances add / C^2."""
    count = len(gains)
    return {
        "repeats": [float(v) for v in np.mean([g["repeats"] for g in gains], axis=0)],
        "image_var": sum(g["image_var"] for g in gains) / count**2,
        "n": sum(g["n"] for g in gains),
        "images": fingerprint(g["images"] for g in gains),
    }


def configuration_estimands(params: Params, direction: str) -> dict[str, dict]:
    """Near and far balanced accuracy and worst-group accuracy of every configuration of ``direction``."""
    spec = DIRECTIONS[direction]
    out: dict[str, dict] = {}
    for arm in arms(params):
        for condition in [None] if arm == "fitz_only" else params.train.conditions:
            name = paths.trained_as(params, direction, condition or "", arm, None)
            preds = predictions(name)
            config = "fitz_only" if arm == "fitz_only" else f"{arm}/{condition}"
            out[f"bal_acc/{direction}/{config}/near"] = balanced(preds, preds["split"] == "val")
            far = (preds["split"] == "test") & (preds["group"] == spec.seed_group)
            out[f"bal_acc/{direction}/{config}/far"] = balanced(preds, far)
            out[f"worst_group_acc/{direction}/{config}"] = worst_group(preds)
    return out


def gain_estimands(params: Params, direction: str) -> dict[str, dict]:
    """Each arm's gain over fitz_only and synthetic_and_seed's over seed, per condition and pooled, far group."""
    far = DIRECTIONS[direction].seed_group

    def trained(condition: str, arm: str) -> pd.DataFrame:
        return predictions(paths.trained_as(params, direction, condition, arm, None))

    contrasts = [(arm, "fitz_only") for arm in params.train.arms]
    if {"seed", "synthetic_and_seed"} <= set(params.train.arms):
        contrasts.append(("synthetic_and_seed", "seed"))
    out: dict[str, dict] = {}
    for arm, against in contrasts:
        key = arm if against == "fitz_only" else "synthetic_vs_seed"
        per_condition = {}
        for condition in params.train.conditions:
            mine, base = trained(condition, arm), trained(condition, against)  # fitz_only: one per direction
            per_condition[condition] = gain(mine, base, far, label_for(condition))
            out[f"gain/{direction}/{key}/{condition}"] = per_condition[condition]
        out[f"gain/{direction}/{key}/pooled"] = pooled(list(per_condition.values()))
    return out


def estimands(params: Params) -> dict[str, dict]:
    """Every gated quantity of the study, for `reports/metrics.json` (`estimands`) and the gate's baseline."""
    out: dict[str, dict] = {}
    for direction in params.train.directions:
        out |= configuration_estimands(params, direction)
        out |= gain_estimands(params, direction)
    return out
