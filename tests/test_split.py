import dataclasses

import pandas as pd

from dermsynth.cohort import splits
from dermsynth.core import paths
from dermsynth.core.study import DIRECTIONS


def load():
    return pd.read_csv(paths.SPLITS_TABLE, dtype=str), pd.read_csv(paths.SEEDS_TABLE, dtype=str)


def test_roles_are_disjoint_within_each_direction(embedded_data):
    splits, _ = load()
    for draw in range(3):
        one = splits_of(splits, draw)
        assert not one.duplicated(["direction", "md5hash"]).any()


def splits_of(splits: pd.DataFrame, draw: int) -> pd.DataFrame:
    return splits[(splits["role"] != "seed") | (splits["draw"] == str(draw))]


def test_three_draws_give_three_distinct_seed_sets_none_in_a_test_set(embedded_data, params):
    assert params.split.seed_draws == 3  # the shrunk study keeps the default's draws
    splits_table, seeds = load()
    sets = [frozenset(seeds.loc[seeds["draw"] == str(d), "md5hash"]) for d in range(3)]
    assert len(set(sets)) == 3
    assert all(sets)
    for draw in range(3):
        one = splits_of(splits_table, draw)
        for direction in DIRECTIONS:
            rows = one[one["direction"] == direction]
            drawn = set(rows.loc[rows["role"] == "seed", "md5hash"])
            assert drawn
            assert not drawn & set(rows.loc[rows["role"] == "test", "md5hash"])
    # every draw is scored on the same test images: the shared rows carry no draw
    assert set(splits_table.loc[splits_table["role"] != "seed", "draw"].fillna("")) == {""}


def test_one_draw_is_the_first_of_many(embedded_data, params):
    """split.seed_draws: 1 draws exactly the seeds and validation split that draw 0 of several draws."""
    prepared = pd.read_csv(paths.PREPARED_TABLE, dtype=str, keep_default_na=False)
    rows = splits.study_rows(prepared, params.prepare.conditions)
    conditions = splits.seeded_conditions(params.prepare.conditions, params)
    one, rng_one = splits.draw_all_seeds(rows, conditions, dataclasses.replace(params.split, seed_draws=1))
    many, rng_many = splits.draw_all_seeds(rows, conditions, params.split)
    assert one.equals(many[many["draw"] == 0])
    single = splits.make_splits(rows, one, params.split, rng_one)
    several = splits.make_splits(rows, many, params.split, rng_many)
    for role in ("train", "val"):
        assert set(single.loc[single["role"] == role, "md5hash"]) == set(
            several.loc[several["role"] == role, "md5hash"]
        )


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
    counts = seeds.groupby(["label", "group", "draw"]).size()
    assert counts.max() <= params.split.seeds_per_group
    assert set(seeds["group"]) == {"I-II", "V-VI"}


def test_split_does_not_depend_on_row_order(embedded_data, params):
    prepared = pd.read_csv(paths.PREPARED_TABLE, dtype=str, keep_default_na=False)
    results = []
    for order in (prepared, prepared.sample(frac=1.0, random_state=3)):
        rows = splits.study_rows(order, params.prepare.conditions)
        seeds, rng = splits.draw_all_seeds(rows, params.prepare.conditions, params.split)
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


def test_the_dry_run_prices_each_draw_of_the_seeds_once_per_new_seed_image(params):
    """A seed drawn again by a later draw is not made or paid again: each draw costs its new seeds' images."""
    from dermsynth.generate import draw_plan
    from dermsynth.generators.openai_budget import price

    cfg = dataclasses.replace(params.generate, generator="openai", candidates=4, conditions=["psoriasis"])
    paid = dataclasses.replace(params, generate=cfg)
    seeds = pd.DataFrame(
        {
            "md5hash": ["a", "b", "a", "c", "d", "e"],
            "label": ["psoriasis"] * 4 + ["folliculitis"] * 2,  # not augmented: never generated
            "draw": [0, 0, 1, 1, 0, 1],
        }
    )
    each = price(cfg.openai.model, cfg.openai.quality, cfg.openai.size)
    assert draw_plan(seeds, paid) == [
        f"draw 0: 2 seeds, 2 new: 8 images, ${8 * each:.2f}",
        f"draw 1: 2 seeds, 1 new: 4 images, ${4 * each:.2f}",
    ]
    offline = dataclasses.replace(paid, generate=dataclasses.replace(cfg, generator="tone_transfer"))
    assert draw_plan(seeds, offline)[1] == "draw 1: 2 seeds, 1 new: 4 images"  # offline generators cost nothing
