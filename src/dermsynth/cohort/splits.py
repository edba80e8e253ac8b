"""FST-holdout splits, seeds and the validation split, shared by `split` and the `metadata` report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.core.config import Params, Split
from dermsynth.core.study import DIRECTIONS, SEED_GROUPS, group_of

SPLIT_COLUMNS = ["direction", "role", "md5hash", "label", "fitzpatrick_scale", "group"]


def study_rows(prepared: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Rows usable by the study: a study label and an FST in 1..6 (others are validate's business)."""
    frame = prepared.copy()
    frame["fitzpatrick_scale"] = pd.to_numeric(frame["fitzpatrick_scale"], errors="coerce")
    frame = frame[frame["label"].isin(conditions) & frame["fitzpatrick_scale"].isin(range(1, 7))].copy()
    frame["fitzpatrick_scale"] = frame["fitzpatrick_scale"].astype(int)
    frame["group"] = frame["fitzpatrick_scale"].map(group_of)
    return frame.drop_duplicates("md5hash").sort_values("md5hash").reset_index(drop=True)


def draw_seeds(rows: pd.DataFrame, conditions: list[str], cfg: Split, rng: np.random.Generator) -> pd.DataFrame:
    """``seeds_per_group`` random images per condition and extreme group (fewer if fewer exist)."""
    picks = []
    for label in conditions:
        for group in SEED_GROUPS:
            pool = rows[(rows["label"] == label) & (rows["group"] == group)]
            n = min(cfg.seeds_per_group, len(pool))
            if n < cfg.seeds_per_group:
                print(f"split: warning: only {n} {group} images of {label!r} for {cfg.seeds_per_group} seeds")
            chosen = pool.iloc[np.sort(rng.choice(len(pool), size=n, replace=False))].copy()
            chosen["seed_index"] = range(n)
            picks.append(chosen)
    columns = ["md5hash", "label", "fitzpatrick_scale", "group", "seed_index"]
    return pd.concat(picks, ignore_index=True)[columns] if picks else pd.DataFrame(columns=columns)


def split_validation(train_rows: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.Series:
    """A boolean mask of validation rows, stratified by label (at least one per label of 2+ rows)."""
    is_val = pd.Series(False, index=train_rows.index)
    for _, block in train_rows.groupby("label", sort=True):
        n_val = round(fraction * len(block))
        n_val = min(max(n_val, 1 if len(block) >= 2 else 0), len(block) - 1)
        chosen = rng.choice(block.index.to_numpy(), size=n_val, replace=False)
        is_val[chosen] = True
    return is_val


def make_splits(rows: pd.DataFrame, seeds: pd.DataFrame, cfg: Split, rng: np.random.Generator) -> pd.DataFrame:
    """The long table (direction, role, md5hash, ...) with roles train, val, test and seed."""
    seed_md5 = set(seeds["md5hash"])
    parts = []
    for direction in DIRECTIONS.values():
        train_rows = rows[rows["group"] == direction.train_group]
        is_val = split_validation(train_rows, cfg.val_fraction, rng)
        parts.append(train_rows[~is_val].assign(role="train"))
        parts.append(train_rows[is_val].assign(role="val"))
        tests = rows[rows["group"].isin(direction.test_groups) & ~rows["md5hash"].isin(seed_md5)]
        parts.append(tests.assign(role="test"))
        added = seeds[seeds["group"] == direction.seed_group]
        parts.append(rows[rows["md5hash"].isin(added["md5hash"])].assign(role="seed"))
        for part in parts[-4:]:
            part["direction"] = direction.name
    return pd.concat(parts, ignore_index=True)[SPLIT_COLUMNS]


def seeded_conditions(conditions: list[str], params: Params) -> list[str]:
    """The conditions that get seeds: the augmented ones (the paper's design) or, on request, all of them."""
    if params.split.seed_conditions == "all":
        return conditions
    return [c for c in conditions if c in params.generate.conditions]
