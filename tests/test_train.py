"""What each arm and dose trains on (pure table logic; the training itself runs in test_pipeline)."""

from __future__ import annotations

import pandas as pd
import pytest

from dermsynth.core.errors import DermsynthError
from dermsynth.model.trainset import training_set


def tables(n_seeds: int = 16, per_seed: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    splits = pd.DataFrame(
        [{"md5hash": f"t{i}", "label": "psoriasis", "role": "train", "direction": "light_to_dark"} for i in range(5)]
        + [
            {"md5hash": f"s{i}", "label": "psoriasis", "role": "seed", "direction": "light_to_dark"}
            for i in range(n_seeds)
        ]
    )
    curated = pd.DataFrame(
        [
            {"file": f"s{i}_{k}.png", "label": "psoriasis", "seed_group": "V-VI", "rank": k, "seed_md5hash": f"s{i}"}
            for i in range(n_seeds)
            for k in range(per_seed)
        ]
    )
    return splits, curated


@pytest.mark.parametrize("dose", [2, 32, 64, 128])
def test_a_dose_takes_that_many_synthetic_images_spread_over_every_seed(dose):
    splits, curated = tables()
    train = training_set(splits, curated, "light_to_dark", "psoriasis", "synthetic_and_seed", dose, 8)
    synthetic = train[train["key"].str.endswith(".png")]
    assert len(synthetic) == dose
    assert len(train) == 5 + 16 + dose
    seeds_used = synthetic["key"].str.split("_").str[0].value_counts()
    assert seeds_used.max() - seeds_used.min() <= 1
    assert len(seeds_used) == min(dose, 16)


def test_a_dose_beyond_the_curated_pool_is_refused():
    splits, curated = tables(per_seed=4)
    with pytest.raises(DermsynthError, match="dose 128 needs 128 synthetic images: 64 curated images"):
        training_set(splits, curated, "light_to_dark", "psoriasis", "synthetic_and_seed", 128, 4)


def partial(curated: pd.DataFrame) -> pd.DataFrame:
    """A partial generation run: seed s3 got 1 image of 4, seed s7 none."""
    drop = (curated["seed_md5hash"] == "s7") | ((curated["seed_md5hash"] == "s3") & (curated["rank"] > 0))
    return curated[~drop]


def test_a_short_curated_set_trains_the_arm_and_names_the_short_seeds(capsys):
    splits, curated = tables(n_seeds=8, per_seed=4)
    train = training_set(splits, partial(curated), "light_to_dark", "psoriasis", "synthetic_and_seed", None, 4)
    assert train["key"].str.endswith(".png").sum() == 32 - 3 - 4
    out = capsys.readouterr().out
    assert "25 curated images of 'psoriasis' (V-VI) of the 32 planned" in out
    assert "short seeds: s3 1 of 4, s7 0 of 4" in out


def test_a_dose_beyond_a_short_set_says_what_is_missing():
    splits, curated = tables(n_seeds=8, per_seed=4)
    with pytest.raises(DermsynthError, match=r"dose 32 needs 32 .* 25 curated .* short seeds: s3 1 of 4, s7 0 of 4"):
        training_set(splits, partial(curated), "light_to_dark", "psoriasis", "synthetic_and_seed", 32, 4)
    train = training_set(splits, partial(curated), "light_to_dark", "psoriasis", "synthetic_and_seed", 16, 4)
    assert train["key"].str.endswith(".png").sum() == 16


def control_splits() -> pd.DataFrame:
    """8 seeds each of psoriasis, SCC and ND (opposite group), plus a training image of each."""
    labels = ["psoriasis", "squamous cell carcinoma", "neutrophilic dermatoses"]
    rows = [{"md5hash": f"t-{c}", "label": c, "role": "train", "direction": "light_to_dark"} for c in labels]
    rows += [
        {"md5hash": f"{c[:3]}{i}", "label": c, "role": "seed", "direction": "light_to_dark"}
        for c in labels
        for i in range(8)
    ]
    return pd.DataFrame(rows)


def test_tone_control_adds_other_conditions_seeds_relabelled_as_the_condition():
    splits = control_splits()
    train = training_set(splits, pd.DataFrame(), "light_to_dark", "psoriasis", "tone_control", None, 4)
    added = train[~train["key"].str.startswith("t-")]
    assert len(added) == 8  # as many as the seed arm adds
    assert set(added["label"]) == {"psoriasis"}  # relabelled as the augmented condition
    assert not added["key"].str.startswith("pso").any()  # but none is a psoriasis image
    assert added["key"].str[:3].value_counts().to_dict() == {"neu": 4, "squ": 4}  # even over the other conditions
    again = training_set(splits, pd.DataFrame(), "light_to_dark", "psoriasis", "tone_control", None, 4)
    assert again.equals(train)


def test_tone_control_without_other_seeded_conditions_is_a_clear_error():
    splits = control_splits()
    splits = splits[(splits["role"] != "seed") | (splits["label"] == "psoriasis")]
    with pytest.raises(DermsynthError, match="at least two seeded conditions"):
        training_set(splits, pd.DataFrame(), "light_to_dark", "psoriasis", "tone_control", None, 4)
