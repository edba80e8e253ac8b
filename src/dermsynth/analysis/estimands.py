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

Each is stored as `repeats` (its value in each training; for a gain, each training beside the
reference's training with the same training seed), `draws` (the draw of the seeds of each of those trainings:
`split.seed_draws`), `image_var` (the images' part of the variance of its mean:
`stats.crossed_interval`'s decomposition), `images` (a fingerprint of the test images it is
measured on) and `seeds` (a fingerprint of the seeds its trainings drew; none for `fitz_only`,
which no seed changes), so that the gate's null distribution includes what a new random stream
moves and, where the fresh run drew other seeds or was scored on other images (a new
`split.seed`), what a new draw of seeds and of test images moves (`gate.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from dermsynth.analysis.compare import UnpairedPredictions, label_for, predictions
from dermsynth.analysis.grid import arms
from dermsynth.analysis.metrics import balanced_weights
from dermsynth.analysis.stats import image_variance
from dermsynth.core import paths
from dermsynth.core.config import Params
from dermsynth.core.study import DIRECTIONS


def fingerprint(images: Iterable[str]) -> str:
    """A short hash of a set of test images (md5hashes, or fingerprints of parts): equal only for the same images."""
    return hashlib.sha256("\n".join(sorted(images)).encode()).hexdigest()[:16]


def estimand(table: pd.DataFrame, strata: np.ndarray | None = None, seeds: str | None = None) -> dict:
    """A (trainings x images) table of per-prediction contributions as the gate stores it: per-training means,
    each training's draw, the images' variance, which images and which seeds."""
    values = table.to_numpy(dtype=float)
    return {
        "repeats": [float(v) for v in values.mean(1)],
        "draws": [int(d) for d in table.index.get_level_values("draw")],
        "image_var": image_variance(values.mean(0), strata),
        "n": int(values.shape[1]),
        "images": fingerprint(table.columns.astype(str)),
        "seeds": seeds,
    }


def by_image(rows: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """(trainings x images) of ``values``, one per prediction of ``rows``: rows (draw, repeat), images sorted."""
    draw = rows["draw"] if "draw" in rows else pd.Series(0, index=rows.index, name="draw")
    table = values.groupby([draw.rename("draw"), rows["repeat"], rows["md5hash"]]).mean()
    return table.unstack("md5hash").sort_index(axis=1)


def seed_fingerprint() -> str:
    """Which seeds the study drew: every draw's seeds (build/splits/seeds.csv), as (draw, image)."""
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str, keep_default_na=False)
    draws = seeds["draw"] if "draw" in seeds else pd.Series("0", index=seeds.index)
    return fingerprint(f"{d}:{h}" for d, h in zip(draws, seeds["md5hash"], strict=True))


def balanced(preds: pd.DataFrame, rows: pd.Series, seeds: str | None) -> dict:
    """Balanced accuracy of the selected rows, per training, stratified by class."""
    part = preds[rows]
    table = by_image(part, part["correct"].astype(float) * balanced_weights(part))
    classes = part.drop_duplicates("md5hash").set_index("md5hash")["label"].reindex(table.columns)
    return estimand(table, classes.to_numpy(), seeds)


def worst_group(preds: pd.DataFrame, seeds: str | None) -> dict:
    """Per training, the lowest accuracy over the FST groups scored (validation and test groups)."""
    groups = {g: by_image(rows, rows["correct"].astype(float)) for g, rows in preds.groupby("group")}
    per_repeat = np.min([t.to_numpy().mean(1) for t in groups.values()], axis=0)
    worst = min(
        groups, key=lambda g: groups[g].to_numpy().mean()
    )  # the images' variance of the group that is lowest overall
    return {**estimand(groups[worst], seeds=seeds), "repeats": [float(v) for v in per_repeat]}


def condition_table(preds: pd.DataFrame, group: str, label: str) -> pd.DataFrame:
    """(trainings x images) of right/wrong on the test images of ``label`` in ``group``."""
    rows = preds[(preds["split"] == "test") & (preds["group"] == group) & (preds["label"] == label)]
    return by_image(rows, rows["correct"].astype(float))


def gain(arm: pd.DataFrame, reference: pd.DataFrame, group: str, label: str, seeds: str | None = None) -> dict:
    """The condition's accuracy on ``group``, arm minus reference, training by training, on the same images.

    Repeat r of draw d beside the reference's repeat r of the same draw, or, when the reference
    has no draws (fitz_only, every draw's reference, trains repeats x draws times in draw 0),
    beside its training d x repeats + r: the one made with the same training seed.
    """
    a, b = condition_table(arm, group, label), condition_table(reference, group, label)
    if set(b.index.get_level_values("draw")) == {0} and set(a.index.get_level_values("draw")) != {0}:
        per_draw = int(a.index.get_level_values("repeat").max()) + 1
        same_seed = [d * per_draw + r for d, r in a.index]
        b = b.droplevel("draw").reindex(same_seed).set_axis(a.index)
    if not a.columns.equals(b.columns) or not a.index.equals(b.index):
        raise UnpairedPredictions(f"the gain in {label} at {group}: two configurations")
    return estimand(a - b, seeds=seeds)


def pooled(gains: list[dict]) -> dict:
    """The mean gain over conditions: their per-repeat mean; their images are disjoint, so variances add / C^2."""
    count = len(gains)
    return {
        "repeats": [float(v) for v in np.mean([g["repeats"] for g in gains], axis=0)],
        "draws": gains[0]["draws"],
        "image_var": sum(g["image_var"] for g in gains) / count**2,
        "n": sum(g["n"] for g in gains),
        "images": fingerprint(g["images"] for g in gains),
        "seeds": gains[0]["seeds"],
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
            seeds = None if arm == "fitz_only" else seed_fingerprint()  # fitz_only trains on no seed
            out[f"bal_acc/{direction}/{config}/near"] = balanced(preds, preds["split"] == "val", seeds)
            far = (preds["split"] == "test") & (preds["group"] == spec.seed_group)
            out[f"bal_acc/{direction}/{config}/far"] = balanced(preds, far, seeds)
            out[f"worst_group_acc/{direction}/{config}"] = worst_group(preds, seeds)
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
            per_condition[condition] = gain(mine, base, far, label_for(condition), seed_fingerprint())
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
