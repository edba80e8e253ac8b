"""Stage `split`: FST-holdout splits, validation drawn from the training group, seeds out of tests.

For each direction the training group is split into train and validation, stratified by
condition; validation alone chooses epochs and models. The test sets are the two other
groups, minus every seed. Seeds (8 + 8 per augmented condition in the study) come from the
extreme groups; those of the group opposite to training are added to training by the `seed`
and `synthetic_and_seed` arms. As in the paper, seeds are drawn only for the augmented
conditions (`generate.conditions`), so the other conditions keep their full test sets and the
spillover table tests them on every image (docs/protocol.md); `split.seed_conditions: all`
draws them for every condition instead. All draws use one recorded seed and sort by md5hash first, so the
splits do not depend on the row order of the metadata.

With `split.seed_draws: K` the seeds are drawn K times (draw 0 is the single draw above, so
K = 1 is the paper's design); the seed arms train once per draw, and the test sets leave out
every draw's seeds so that all draws are scored on the same images (docs/protocol.md).
"""

from __future__ import annotations

import pandas as pd

from dermsynth.cohort.splits import (
    draw_all_seeds,
    make_splits,
    seeded_conditions,
    study_rows,
)
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.study import load_conditions


def main(params: Params) -> None:
    prepared = pd.read_csv(paths.PREPARED_TABLE, dtype=str, keep_default_na=False)
    conditions = load_conditions()
    rows = study_rows(prepared, conditions)
    seeds, rng = draw_all_seeds(rows, seeded_conditions(conditions, params), params.split)
    splits = make_splits(rows, seeds, params.split, rng)
    files.write_csv(paths.SEEDS_TABLE, seeds)
    files.write_csv(paths.SPLITS_TABLE, splits)
    sizes = splits[splits["role"] != "seed"].groupby(["direction", "role"]).size()
    per_draw = seeds.groupby("draw").size()
    drawn = f"{params.split.seed_draws} draw(s) of {per_draw.max() if len(per_draw) else 0} seeds"
    print("split: " + ", ".join(f"{d}/{r}={n}" for (d, r), n in sizes.items())
          + f"; {drawn} ({seeds['md5hash'].nunique()} distinct images)")  # fmt: skip
