"""The colour-transfer baseline: Reinhard's statistics matching, references drawn from seeds of the same group only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermsynth import generate
from dermsynth.core import config, paths
from dermsynth.generators.reinhard import skin_stats, transfer
from dermsynth.imaging.skin import rgb_to_lab


@pytest.fixture
def raw_params(raw_params: dict) -> dict:
    """One draw of the seeds: these tests count requests per seed image (draws: test_split, test_pipeline)."""
    raw_params["split"]["seed_draws"] = 1
    return raw_params


def test_the_transfer_matches_the_target_statistics():
    rng = np.random.default_rng(0)
    source = np.clip(rng.normal([0.8, 0.6, 0.5], 0.03, size=(24, 24, 3)), 0, 1)
    target = np.clip(rng.normal([0.45, 0.3, 0.2], 0.05, size=(24, 24, 3)), 0, 1)
    lab_source, lab_target = rgb_to_lab(source).reshape(-1, 3), rgb_to_lab(target).reshape(-1, 3)
    stats = (lab_source.mean(0), lab_source.std(0)), (lab_target.mean(0), lab_target.std(0))
    moved = rgb_to_lab(transfer(source, *stats)).reshape(-1, 3)
    assert moved.mean(0) == pytest.approx(lab_target.mean(0), abs=0.5)
    assert moved.std(0) == pytest.approx(lab_target.std(0), rel=0.1)
    mean, sd = skin_stats(source)
    assert (sd > 0).all()
    assert mean.shape == (3,)


def test_reinhard_candidates_use_other_seeds_of_their_group_as_references(embedded_data: Path, params: config.Params):
    chosen = replace(params, generate=replace(params.generate, generator="reinhard"))
    generate.main(chosen)
    manifest = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str, "reference_md5hash": str})
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str)
    assert len(manifest) == len(seeds[seeds["label"].isin(params.generate.conditions)]) * params.generate.candidates
    assert (manifest["generator"] == "reinhard").all()
    group_of = dict(zip(seeds["md5hash"], seeds["group"], strict=True))
    assert (manifest["reference_md5hash"].map(group_of) == manifest["seed_group"]).all()
    assert (manifest["reference_md5hash"] != manifest["seed_md5hash"]).all()  # two seeds per group here
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str)
    assert not set(manifest["reference_md5hash"]) & set(splits.loc[splits["role"] == "test", "md5hash"])
    for name in manifest["file"]:
        assert (paths.GENERATED / paths.IMAGES_NAME / name).stat().st_size > 0
