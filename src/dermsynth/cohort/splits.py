"""FST-holdout splits, seeds and the validation split, shared by `split` and the `metadata` report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.core.config import Params, Split
from dermsynth.core.study import DIRECTIONS, SEED_GROUPS, group_of

SPLIT_COLUMNS = ["direction", "role", "md5hash", "label", "fitzpatrick_scale", "group", "draw"]
SHARED = ""  # the `draw` of train, val and test rows: every draw of the seeds shares them


def study_rows(prepared: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Rows usable by the study: a study label and an FST in 1..6 (others are validate's business)."""
    frame = prepared.copy()
    frame["fitzpatrick_scale"] = pd.to_numeric(frame["fitzpatrick_scale"], errors="coerce")
    frame = frame[frame["label"].isin(conditions) & frame["fitzpatrick_scale"].isin(range(1, 7))].copy()
    frame["fitzpatrick_scale"] = frame["fitzpatrick_scale"].astype(int)
    frame["group"] = frame["fitzpatrick_scale"].map(group_of)
    return frame.drop_duplicates("md5hash").sort_values("md5hash").reset_index(drop=True)


def draw_seeds(
    rows: pd.DataFrame, conditions: list[str], cfg: Split, rng: np.random.Generator, draw: int = 0
) -> pd.DataFrame:
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
            chosen["draw"] = draw
            picks.append(chosen)
    columns = ["md5hash", "label", "fitzpatrick_scale", "group", "seed_index", "draw"]
    return pd.concat(picks, ignore_index=True)[columns] if picks else pd.DataFrame(columns=columns)


def draw_rng(seed: int, draw: int) -> np.random.Generator:
    """The generator of one draw of the seeds. Draw 0 continues into the validation split, as the
    single draw always did, so that `split.seed_draws: 1` reproduces the study's one split exactly;
    each further draw has a stream of its own (seeded by the split seed and the draw)."""
    return np.random.default_rng(seed if draw == 0 else [seed, draw])


def draw_all_seeds(rows: pd.DataFrame, conditions: list[str], cfg: Split) -> tuple[pd.DataFrame, np.random.Generator]:
    """Every draw's seeds (column `draw`), and draw 0's generator, which the validation split goes on with.

    A draw that repeats an earlier one's seeds of a condition and group (a pool no larger than
    ``seeds_per_group``) is said: its variation between draws is then none.
    """
    first = draw_rng(cfg.seed, 0)
    draws = [draw_seeds(rows, conditions, cfg, first if d == 0 else draw_rng(cfg.seed, d), d)
             for d in range(cfg.seed_draws)]  # fmt: skip
    seen: dict[tuple[str, str], set[frozenset[str]]] = {}
    for seeds in draws:
        for (label, group), block in seeds.groupby(["label", "group"], sort=True):
            chosen = frozenset(block["md5hash"])
            if chosen in seen.setdefault((label, group), set()):
                print(f"split: warning: draw {int(block['draw'].iloc[0])} repeats the seeds of {label!r} ({group})")
            seen[(label, group)].add(chosen)
    return pd.concat(draws, ignore_index=True), first


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
    """The long table (direction, role, md5hash, ..., draw) with roles train, val, test and seed.

    Train, validation and test rows are shared by every draw of the seeds (`draw` empty); each
    draw's seeds are rows of their own. The test sets leave out the seeds of *every* draw, so
    that all draws are scored on the same images: a difference between draws is then the
    seeds', not the test images'. With one draw this is the paper's design.
    """
    seed_md5 = set(seeds["md5hash"])
    parts = []
    for direction in DIRECTIONS.values():
        train_rows = rows[rows["group"] == direction.train_group]
        is_val = split_validation(train_rows, cfg.val_fraction, rng)
        tests = rows[rows["group"].isin(direction.test_groups) & ~rows["md5hash"].isin(seed_md5)]
        shared = [
            train_rows[~is_val].assign(role="train"),
            train_rows[is_val].assign(role="val"),
            tests.assign(role="test"),
        ]
        parts += [part.assign(direction=direction.name, draw=SHARED) for part in shared]
        added = seeds[seeds["group"] == direction.seed_group]
        for draw, block in added.groupby("draw", sort=True):
            chosen = rows[rows["md5hash"].isin(block["md5hash"])]
            parts.append(chosen.assign(role="seed", direction=direction.name, draw=str(draw)))
    return pd.concat(parts, ignore_index=True)[SPLIT_COLUMNS]


def of_draw(splits: pd.DataFrame, draw: int) -> pd.DataFrame:
    """One draw's split: the shared train, validation and test rows, and that draw's seeds only."""
    if "draw" not in splits:
        return splits
    keep = (splits["role"] != "seed") | (splits["draw"].astype(str) == str(draw))
    return splits[keep]


def seeded_conditions(conditions: list[str], params: Params) -> list[str]:
    """The conditions that get seeds: the augmented ones (the paper's design) or, on request, all of them."""
    if params.split.seed_conditions == "all":
        return conditions
    return [c for c in conditions if c in params.generate.conditions]
