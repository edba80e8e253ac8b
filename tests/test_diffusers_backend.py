"""The `diffusers` generator on a tiny random inpainting pipeline that the test builds and saves.

Checks the backend's contract with the rest of the study: one image per (seed, candidate) with
its prompt and lineage, the original pixels kept outside the mask, a cache that makes a re-run
load no pipeline at all, and clear errors for a missing folder or a folder that is not a pipeline.
"""

from __future__ import annotations

import dataclasses
import io as _io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth import generate
from dermsynth.core import paths
from dermsynth.core.errors import DermsynthError
from dermsynth.generators import annotations, generate_diffusers

from .tiny_diffusers import build_tiny_inpainting_pipeline

pytest.importorskip("diffusers", reason="the optional extra: pip install -e '.[diffusers]'")


@pytest.fixture
def raw_params(raw_params: dict) -> dict:
    """One draw of the seeds: these tests count requests per seed image (draws: test_split, test_pipeline)."""
    raw_params["split"]["seed_draws"] = 1
    return raw_params


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_inpainting_pipeline(tmp_path_factory.mktemp("diffusers") / "tiny-inpainting")


def with_diffusers(params, folder, **changes):
    settings = {"model": str(folder), "size": 64, "steps": 2, **changes}
    block = dataclasses.replace(params.generate.diffusers, **settings)
    return dataclasses.replace(
        params, generate=dataclasses.replace(params.generate, generator="diffusers", diffusers=block)
    )


def test_each_candidate_is_an_inpainting_with_the_seed_kept_outside_the_mask(embedded_data, params, tiny_pipeline):
    params = with_diffusers(params, tiny_pipeline)
    generate.main(params)
    manifest = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype={"md5hash": str})
    chosen = seeds[seeds["label"].isin(params.generate.conditions)]
    assert len(manifest) == len(chosen) * params.generate.candidates == 12
    assert set(manifest["generator"]) == {"diffusers"}
    assert set(manifest["model"]) == {"tiny-inpainting"}
    assert manifest["prompt"].str.startswith("An image of psoriasis on the skin of a").all()
    assert manifest["torch_seed"].nunique() == len(manifest)

    row = manifest.iloc[0]
    annotated = generate.seeds_to_use(seeds, params)
    seed = annotated[annotated["md5hash"] == row["seed_md5hash"]].iloc[0]
    original, _, box = annotations.edit_inputs(seed, 64, paths.dataset_images(params.dataset.root))
    source = np.asarray(Image.open(_io.BytesIO(original)).convert("RGB"))
    made = np.asarray(Image.open(paths.GENERATED / paths.IMAGES_NAME / row["file"]).convert("RGB"))
    area = np.zeros(made.shape[:2], dtype=bool)
    x0, y0, x1, y1 = box
    area[y0:y1, x0:x1] = True
    assert made.shape == (64, 64, 3)
    assert np.array_equal(made[~area], source[~area]), "pixels outside the mask must be the seed's"
    assert np.abs(made[area].astype(int) - source[area].astype(int)).mean() > 1.0, "the masked area was not edited"
    candidates = manifest[manifest["seed_md5hash"] == row["seed_md5hash"]]["file"]
    pixels = [np.asarray(Image.open(paths.GENERATED / paths.IMAGES_NAME / f)) for f in candidates]
    assert not np.array_equal(pixels[0], pixels[1]), "candidates of one seed must differ (their seeds differ)"


def test_a_rerun_is_served_from_the_cache_without_loading_the_pipeline(
    embedded_data, params, tiny_pipeline, monkeypatch
):
    params = with_diffusers(params, tiny_pipeline)
    generate.main(params)
    first = {p.name: p.read_bytes() for p in (paths.GENERATED / paths.IMAGES_NAME).iterdir()}

    def no_loading(*_args, **_kwargs):
        raise AssertionError("the pipeline was loaded although every image is cached")

    monkeypatch.setattr(generate_diffusers, "load_pipeline", no_loading)
    for p in (paths.GENERATED / paths.IMAGES_NAME).iterdir():
        p.unlink()
    generate.main(params)
    again = {p.name: p.read_bytes() for p in (paths.GENERATED / paths.IMAGES_NAME).iterdir()}
    assert again == first
    requests = pd.read_csv(paths.GENERATED / "requests.csv")
    assert (requests["status"] == "ok").all()
    assert len(requests) == 12

    more_steps = with_diffusers(params, tiny_pipeline, steps=3)  # another setting is another image: computed
    with pytest.raises(AssertionError, match="pipeline was loaded"):
        generate.main(more_steps)


def test_dry_run_plans_without_loading(embedded_data, params, tiny_pipeline, capsys, monkeypatch):
    monkeypatch.setattr(generate_diffusers, "load_pipeline", lambda *a, **k: pytest.fail("loaded in a dry run"))
    generate.main(with_diffusers(params, tiny_pipeline), dry_run=True)
    assert "diffusers dry run: 12 images from 4 seeds" in capsys.readouterr().out
    assert not (paths.GENERATED / paths.MANIFEST_NAME).exists()


def test_missing_or_wrong_model_folders_are_named(embedded_data, params, tmp_path):
    unset = dataclasses.replace(params, generate=dataclasses.replace(params.generate, generator="diffusers"))
    with pytest.raises(DermsynthError, match=r"generate\.diffusers\.model is not set"):
        generate.main(unset)
    (tmp_path / "not-a-pipeline").mkdir()
    with pytest.raises(DermsynthError, match="not-a-pipeline is not a diffusers pipeline folder"):
        generate.main(with_diffusers(params, tmp_path / "not-a-pipeline"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionInpaintPipeline"}')
    with pytest.raises(DermsynthError, match=r"cannot load the inpainting pipeline in .*broken"):
        generate.main(with_diffusers(params, broken))
