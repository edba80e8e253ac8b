"""The control generators: `oracle` draws new lesions from the simulator, `null` draws plain skin in the seed's tone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermsynth import generate, validate
from dermsynth.core import config, files, paths
from dermsynth.core.errors import DermsynthError
from dermsynth.imaging.skin import ITA_BANDS, ita_degrees, rgb_to_lab, skin_mask


def run(params: config.Params, generator: str) -> pd.DataFrame:
    chosen = replace(params, generate=replace(params.generate, generator=generator))
    generate.main(chosen)
    return pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})


@pytest.fixture
def validated(embedded_data: Path, params: config.Params) -> config.Params:
    assert validate.main(params) == 0
    return params


def skin_share(rgb: np.ndarray) -> float:
    return float(skin_mask(rgb_to_lab(rgb)).mean())


def test_oracle_draws_new_lesions_of_the_seeds_condition_at_the_seeds_skin_type(validated: config.Params):
    manifest = run(validated, "oracle")
    # a seed drawn by several draws of the seeds is one image: its candidates are made once
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype={"md5hash": str}).drop_duplicates("md5hash").set_index("md5hash")
    images = paths.dataset_images(validated.dataset.root)
    assert (
        len(manifest) == len(seeds[seeds["label"].isin(validated.generate.conditions)]) * validated.generate.candidates
    )
    for row in manifest.itertuples():
        seed = seeds.loc[row.seed_md5hash]
        assert (row.label, row.generator) == (seed["label"], "oracle")
        lo, hi = ITA_BANDS[int(seed["fitzpatrick_scale"])]
        assert lo <= row.target_ita <= hi  # the seed's own skin type
        made = files.load_array(paths.GENERATED / paths.IMAGES_NAME / row.file)
        original = files.load_array(paths.image_file(images, row.seed_md5hash))
        assert made.shape == original.shape  # the embedded images' size
        assert np.abs(made - original).mean() > 0.02  # a new draw, not the seed
    assert manifest["file"].map(lambda f: (paths.GENERATED / paths.IMAGES_NAME / f).read_bytes()).nunique() == len(
        manifest
    )


def test_oracle_is_refused_on_real_data_with_the_reason(validated: config.Params):
    real = replace(validated, dataset=replace(validated.dataset, root="data"))
    chosen = pd.read_csv(paths.SEEDS_TABLE, dtype={"md5hash": str})
    from dermsynth.generators.controls import oracle_maker

    with pytest.raises(DermsynthError, match=r"oracle draws new lesions from the embedded simulator.*not data\)"):
        oracle_maker(chosen, real)


def test_null_keeps_the_seeds_tone_and_no_lesion(validated: config.Params):
    manifest = run(validated, "null")
    for row in manifest.itertuples():
        made = files.load_array(paths.GENERATED / paths.IMAGES_NAME / row.file)
        made_ita = float(np.median(ita_degrees(rgb_to_lab(made).reshape(-1, 3))))
        assert made_ita == pytest.approx(row.seed_ita, abs=4.0)  # the seed's skin tone
        assert skin_share(made) > 0.9  # plain skin: nearly every pixel near the median colour (lighting aside)


def test_null_images_depend_on_the_seeds_skin_colour_alone(validated: config.Params):
    """No information about the label: a seed and a flat patch of its skin colour give the same image."""
    from dermsynth.generators.controls import null_maker, seed_skin
    from dermsynth.imaging.skin import lab_to_rgb

    chosen = pd.read_csv(paths.SEEDS_TABLE, dtype={"md5hash": str})
    make = null_maker(chosen, validated)
    images = paths.dataset_images(validated.dataset.root)
    for row in chosen.head(3).itertuples():
        seed = files.load_array(paths.image_file(images, row.md5hash))
        flat = np.broadcast_to(lab_to_rgb(seed_skin(seed)), seed.shape)
        assert np.allclose(seed_skin(flat), seed_skin(seed), atol=1e-6)
        from_seed, _ = make(seed, "V-VI", validated.generate, np.random.default_rng(0), row.md5hash)
        from_patch, _ = make(flat, "V-VI", validated.generate, np.random.default_rng(0), row.md5hash)
        assert np.array_equal(from_seed, from_patch)
