"""Regressions planted for the gate's calibration (benchmarks/gate_calibration.py), outside the pipeline's code.

Each plant rewrites what one configuration trains on, `dermsynth.model.trainset.training_set`'s
result, the way a real bug would: the pipeline's code is untouched, and the plant is switched on
for a process only by the environment variable GATE_PLANT, through `install` (which the
benchmark's sitecustomize.py calls in every `dermsynth train` process DVC starts). The fourth
planted regression of the issue, training for a quarter of the epochs, is a parameter override
(`train.epochs`) and needs no code.

- ``flip_labels``: 20% of one condition's real training images (psoriasis) labelled as another
  (squamous cell carcinoma), in every arm: label noise from a broken metadata join.
- ``drop_synthetic``: the synthetic images silently missing from `synthetic_and_seed` and the dose
  arms: a curated set that did not reach training.
- ``near_seeds``: the far group's seeds replaced by near-group training images of the same
  condition (as many, drawn without replacement): a seed selection that read the wrong FST band.
  The synthetic images stay as they were.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable

import numpy as np
import pandas as pd

FLIP_FROM, FLIP_TO, FLIP_SHARE = "psoriasis", "squamous cell carcinoma", 0.2


def _pick(keys: pd.Series, k: int) -> np.ndarray:
    """``k`` of ``keys``, chosen reproducibly (sorted, then a fixed generator): the same images in every run."""
    ordered = np.sort(keys.to_numpy())
    return np.random.default_rng(0).choice(ordered, size=min(k, ordered.size), replace=False)


def flip_labels(train: pd.DataFrame, splits: pd.DataFrame, direction: str, condition: str | None) -> pd.DataFrame:
    """FLIP_SHARE of FLIP_FROM's real training images relabelled FLIP_TO."""
    real = splits[(splits["direction"] == direction) & (splits["role"] == "train") & (splits["label"] == FLIP_FROM)]
    flipped = _pick(real["md5hash"], round(FLIP_SHARE * len(real)))
    return train.assign(label=train["label"].where(~train["key"].isin(flipped), FLIP_TO))


def drop_synthetic(train: pd.DataFrame, splits: pd.DataFrame, direction: str, condition: str | None) -> pd.DataFrame:
    """Only the rows that are real images (their key is an md5hash of the splits table)."""
    return train[train["key"].isin(splits["md5hash"])].reset_index(drop=True)


def near_seeds(train: pd.DataFrame, splits: pd.DataFrame, direction: str, condition: str | None) -> pd.DataFrame:
    """Each seed row of the augmented condition replaced by a training image of that condition from the near group."""
    rows = splits[splits["direction"] == direction]
    seeds = train["key"].isin(rows.loc[rows["role"] == "seed", "md5hash"])
    if not seeds.any():
        return train
    label = train.loc[seeds, "label"].iloc[0]
    near = rows[(rows["role"] == "train") & (rows["label"] == label)]
    replacements = _pick(near["md5hash"], int(seeds.sum()))
    swapped = pd.DataFrame({"key": replacements, "label": label})
    return pd.concat([train[~seeds], swapped], ignore_index=True)


PLANTS: dict[str, Callable[..., pd.DataFrame]] = {
    "flip_labels": flip_labels,
    "drop_synthetic": drop_synthetic,
    "near_seeds": near_seeds,
}


def planted(original: Callable[..., pd.DataFrame], plant: str) -> Callable[..., pd.DataFrame]:
    """``training_set`` with the plant applied to its result."""
    rewrite = PLANTS[plant]

    def training_set(
        splits: pd.DataFrame,
        curated: pd.DataFrame,
        direction: str,
        condition: str | None,
        arm: str,
        dose: int | None,
        keep: int,
    ) -> pd.DataFrame:
        return rewrite(original(splits, curated, direction, condition, arm, dose, keep), splits, direction, condition)

    return training_set


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps trainset.training_set as the module is first imported, so processes that never train pay nothing."""

    def __init__(self, plant: str):
        self.plant = plant

    def find_spec(self, name: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != "dermsynth.model.trainset":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            run(module)
            module.training_set = planted(module.training_set, self.plant)

        spec.loader.exec_module = exec_module
        return spec


def install(plant: str) -> None:
    """Switch the plant on for this process (called from sitecustomize.py when GATE_PLANT is set)."""
    if plant not in PLANTS:
        raise SystemExit(f"GATE_PLANT={plant!r}: not one of {sorted(PLANTS)}")
    sys.meta_path.insert(0, _PatchOnImport(plant))
