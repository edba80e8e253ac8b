"""What one configuration trains and is tested on: cached features, training sets per arm, run data.

The arms differ only here (which rows and synthetic images enter the training set), so the
training loop in fitting.py is the same for every arm and dose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth.cohort.splits import of_draw
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import DIRECTIONS, load_conditions, slug


class FeatureStore:
    """The cached activations, addressable by image key (md5hash or synthetic file name)."""

    def __init__(self, folder: Path):
        self.eval = np.load(folder / "eval.npy", mmap_mode="r")
        self.views = np.load(folder / "views.npy", mmap_mode="r")
        self.eval_row = {k: i for i, k in enumerate(pd.read_csv(folder / "eval_index.csv", dtype=str)["key"])}
        self.view_row = {k: i for i, k in enumerate(pd.read_csv(folder / "views_index.csv", dtype=str)["key"])}
        self.n_views = len(self.views) // max(len(self.view_row), 1)
        info = files.read_json(folder / "info.json")
        fc7 = folder / "fc7.pt"  # VGG16's frozen fc7; the Lite models have no frozen layer after the cache
        self.fc7 = torch.load(fc7, weights_only=True) if fc7.exists() else None
        self.input_dropout = float(info.get("input_dropout", 0.5))
        self.precision = str(info.get("precision", "float32"))  # the features' (fc7 and the head follow it)

    def train_views(self, keys: list[str]) -> torch.Tensor:
        """(N, views, 4096) float32 for training images."""
        rows = np.array([self.view_row[k] for k in keys])
        index = (rows[:, None] * self.n_views + np.arange(self.n_views)[None, :]).ravel()
        return torch.from_numpy(self.views[index].astype(np.float32)).view(len(keys), self.n_views, -1)

    def eval_features(self, keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(self.eval[np.array([self.eval_row[k] for k in keys], dtype=int)].astype(np.float32))


def label_of(condition: str, labels: list[str]) -> str:
    """The label whose slug is ``condition`` (train.conditions holds slugs), or a clear error."""
    for label in labels:
        if slug(label) == condition:
            return label
    raise DermsynthError(f"train.conditions: {condition!r} is not one of the study's conditions {labels}")


def training_set(
    splits: pd.DataFrame,
    curated: pd.DataFrame,
    direction: str,
    condition: str | None,
    arm: str,
    dose: int | None,
    keep: int,
) -> pd.DataFrame:
    """Keys and labels the run trains on: real training images, plus seeds and synthetic images by arm."""
    rows = splits[(splits["direction"] == direction)]
    parts = [rows.loc[rows["role"] == "train", ["md5hash", "label"]].rename(columns={"md5hash": "key"})]
    if arm == "fitz_only":  # the same for every condition: trained once per direction
        return parts[0]
    label = label_of(condition, sorted(set(splits["label"])))
    seeds = rows[(rows["role"] == "seed") & (rows["label"] == label)]
    if arm in ("seed", "synthetic_and_seed"):
        parts.append(seeds[["md5hash", "label"]].rename(columns={"md5hash": "key"}))
    if arm == "tone_control":
        parts.append(tone_control_images(rows, label))
    if arm == "synthetic_and_seed":
        synth = synthetic_images(curated, seeds, label, DIRECTIONS[direction].seed_group, keep, dose)
        parts.append(synth[["file", "label"]].rename(columns={"file": "key"}))
    return pd.concat(parts, ignore_index=True)


def synthetic_images(
    curated: pd.DataFrame, seeds: pd.DataFrame, label: str, group: str, keep: int, dose: int | None
) -> pd.DataFrame:
    """The curated images of ``label`` made from seeds of ``group``: all of them, or the first ``dose``.

    The plan is ``keep`` images per seed. A shorter set (a partial generation run, rejections) is
    used with a warning naming the short seeds; a dose larger than the set is an error that says
    what is missing.
    """
    synth = curated[(curated["label"] == label) & (curated["seed_group"] == group)]
    synth = synth[synth["seed_md5hash"].isin(set(seeds["md5hash"]))]  # this draw's seeds' images only
    synth = synth.sort_values(["rank", "seed_md5hash"])  # round-robin over seeds: a dose spreads over all of them
    counts = synth.groupby("seed_md5hash").size()
    short = [f"{md5} {int(counts.get(md5, 0))} of {keep}" for md5 in seeds["md5hash"] if counts.get(md5, 0) < keep]
    planned = f"{len(synth)} curated images of {label!r} ({group}) of the {keep * len(seeds)} planned"
    detail = f"{planned} (curate.keep {keep} x {len(seeds)} seeds); short seeds: {', '.join(short)}"
    if dose is not None and dose > len(synth):
        raise DermsynthError(
            f"dose {dose} needs {dose} synthetic images: {detail}. Generate the missing images, or lower dose.levels"
        )
    if short:
        print(f"train: WARNING {detail}; training on what there is")
    return synth if dose is None else synth.head(dose)


def tone_control_images(rows: pd.DataFrame, label: str) -> pd.DataFrame:
    """As many seeds as ``label`` has, taken from the other conditions' seeds (same group), relabelled ``label``.

    Round-robin over the other conditions by seed index, so the control mixes them evenly; deterministic.
    """
    seeds = rows[rows["role"] == "seed"]
    wanted = int((seeds["label"] == label).sum())
    others = seeds[seeds["label"] != label].sort_values(["label", "md5hash"])
    others = others.assign(order=others.groupby("label").cumcount())
    if len(others) < wanted or wanted == 0:
        raise DermsynthError(
            f"tone_control for {label!r} needs {wanted or 'its'} seeds of other conditions, found {len(others)}: "
            "it needs at least two seeded conditions (generate.conditions, or split.seed_conditions: all)"
        )
    chosen = others.sort_values(["order", "label", "md5hash"]).head(wanted)
    return pd.DataFrame({"key": chosen["md5hash"].to_numpy(), "label": label})


@dataclass
class RunData:
    """What one configuration trains and validates on; the test sets are not in it."""

    classes: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    x_views: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    fc7: dict | None
    input_dropout: float
    precision: str = "float32"  # the features' precision (info.json), which fc7 and the head's first product follow


def load_run_data(
    params: Params,
    direction: str,
    condition: str | None,
    arm: str,
    dose: int | None,
    feats: FeatureStore,
    draw: int = 0,
) -> RunData:
    """Training and validation tensors of one configuration and draw of the seeds (tuning uses this too, draw 0:
    no test row is read)."""
    classes = load_conditions()
    splits = of_draw(pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False), draw)
    splits = splits[splits["role"] != "test"]
    curated = pd.read_csv(paths.CURATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})
    train = training_set(splits, curated, direction, condition, arm, dose, params.curate.keep)
    val = splits[(splits["direction"] == direction) & (splits["role"] == "val")]
    to_index = {c: i for i, c in enumerate(classes)}
    return RunData(
        classes=classes,
        train=train,
        val=val,
        x_views=feats.train_views(list(train["key"])),
        y=torch.tensor([to_index[c] for c in train["label"]]),
        x_val=feats.eval_features(list(val["md5hash"])),
        y_val=torch.tensor([to_index[c] for c in val["label"]]),
        fc7=feats.fc7,
        input_dropout=feats.input_dropout,
        precision=feats.precision,
    )
