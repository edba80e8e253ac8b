import numpy as np
import pandas as pd

from dermsynth.cohort import splits
from dermsynth.core import paths
from dermsynth.core.study import DIRECTIONS


def load():
    return pd.read_csv(paths.SPLITS_TABLE, dtype=str), pd.read_csv(paths.SEEDS_TABLE, dtype=str)


def test_roles_are_disjoint_within_each_direction(embedded_data):
    splits, _ = load()
    assert not splits.duplicated(["direction", "md5hash"]).any()


def test_seeds_are_never_in_a_test_set(embedded_data):
    splits, seeds = load()
    tests = splits[splits["role"] == "test"]
    assert tests["md5hash"].isin(seeds["md5hash"]).sum() == 0
    assert len(seeds) > 0


def test_validation_comes_only_from_the_training_group(embedded_data):
    splits, _ = load()
    for name, direction in DIRECTIONS.items():
        rows = splits[splits["direction"] == name]
        assert set(rows.loc[rows["role"].isin(["train", "val"]), "group"]) == {direction.train_group}
        assert set(rows.loc[rows["role"] == "test", "group"]) == set(direction.test_groups)
        assert set(rows.loc[rows["role"] == "seed", "group"]) == {direction.seed_group}
        assert (rows["role"] == "val").sum() > 0


def test_seed_counts_per_condition_and_group(embedded_data, params):
    _, seeds = load()
    counts = seeds.groupby(["label", "group"]).size()
    assert counts.max() <= params.split.seeds_per_group
    assert set(seeds["group"]) == {"I-II", "V-VI"}


def test_split_does_not_depend_on_row_order(embedded_data, params):
    prepared = pd.read_csv(paths.PREPARED_TABLE, dtype=str, keep_default_na=False)
    results = []
    for order in (prepared, prepared.sample(frac=1.0, random_state=3)):
        rows = splits.study_rows(order, params.prepare.conditions)
        rng = np.random.default_rng(params.split.seed)
        seeds = splits.draw_seeds(rows, params.prepare.conditions, params.split, rng)
        results.append(
            splits.make_splits(rows, seeds, params.split, rng)
            .sort_values(["direction", "md5hash"])
            .reset_index(drop=True)
        )
    assert results[0].equals(results[1])


def test_unusable_rows_are_left_to_validate(params):
    prepared = pd.DataFrame(
        {
            "md5hash": ["a" * 32, "b" * 32, "c" * 32],
            "label": ["psoriasis", "psoriasis", "nope"],
            "fitzpatrick_scale": ["7", "2", "1"],
        }
    )
    rows = splits.study_rows(prepared, params.prepare.conditions)
    assert list(rows["md5hash"]) == ["b" * 32]
