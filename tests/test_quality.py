"""Synthetic-image quality: KID against a closed form, tone fidelity on images of known ITA, near-copies gated."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermsynth import curate, generate, quality, validate
from dermsynth.analysis.quality import cosine_distance, diversity, kid, mmd2_unbiased, polynomial_kernel, significant
from dermsynth.core import config, paths
from dermsynth.imaging.skin import lab_from_ita, lab_to_rgb
from dermsynth.model import embedding


def expected_kernel(a: np.ndarray, b: np.ndarray) -> float:
    """E[(x.y / d + 1)^3] for independent x ~ N(a, I) and y ~ N(b, I), from the cumulants of x.y.

    Each term u_i = x_i y_i has mean a_i b_i, second moment (1 + a_i^2)(1 + b_i^2) and third moment
    (a_i^3 + 3 a_i)(b_i^3 + 3 b_i); the cumulants of the sum S add up, and E[S^2], E[S^3] follow.
    """
    d = len(a)
    m, e2, e3 = a * b, (1 + a**2) * (1 + b**2), (a**3 + 3 * a) * (b**3 + 3 * b)
    k1, k2, k3 = m.sum(), (e2 - m**2).sum(), (e3 - 3 * m * e2 + 2 * m**3).sum()
    s2, s3 = k2 + k1**2, k3 + 3 * k1 * k2 + k1**3
    return s3 / d**3 + 3 * s2 / d**2 + 3 * k1 / d + 1


def test_kid_of_shifted_gaussians_matches_the_closed_form_and_identical_sets_give_zero():
    rng = np.random.default_rng(0)
    d, shift = 4, np.array([1.0, 0.0, 0.0, 0.0])
    x, y = rng.normal(size=(4000, d)), rng.normal(size=(4000, d)) + shift
    zero = np.zeros(d)
    expected = expected_kernel(zero, zero) + expected_kernel(shift, shift) - 2 * expected_kernel(zero, shift)
    assert expected == pytest.approx(1.328125)  # worked out by hand for this shift: 85/64
    found = kid(x, y, subset=1000, subsets=20, seed=0)
    assert found["kid"] == pytest.approx(expected, rel=0.05)
    assert 0 < found["kid_se"] < 0.05
    same = kid(x, x, subset=1000, subsets=20, seed=0)
    assert abs(same["kid"]) < 0.02  # the unbiased estimate of zero, up to sampling noise
    assert kid(x[:1], y, 50, 5, 0)["kid"] != kid(x[:1], y, 50, 5, 0)["kid"]  # NaN: one image is no distribution


def test_the_unbiased_estimate_equals_its_definition():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.3
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    across = sum(k(x[i], y[j]) for i in range(7) for j in range(7)) / 49
    assert mmd2_unbiased(x, y) == pytest.approx(within - 2 * across)
    assert polynomial_kernel(x, y).shape == (7, 7)


def test_diversity_is_zero_for_copies_and_grows_with_spread():
    base = np.array([[1.0, 0.0, 0.0]])
    assert diversity(np.repeat(base, 4, axis=0)) == pytest.approx(0.0)
    assert diversity(np.eye(3)) == pytest.approx(1.0)  # orthogonal features: cosine distance 1
    assert np.isnan(diversity(base))


def test_scores_keep_four_significant_digits_and_no_float32_last_bits():
    """What reaches scores.csv, and through curate every training's deps, must not move with a BLAS's sum order."""
    assert significant(0.011886093750001) == 0.01189
    assert significant(123456.0) == 123500.0
    assert significant(50) == 50
    assert isinstance(significant(50), int)  # a count stays a count
    assert np.isnan(significant(float("nan")))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4096)).astype(np.float32)
    d = cosine_distance(a, a[::-1])
    assert d.dtype == np.float64
    wide = a.astype(np.float64)
    norms = np.linalg.norm(wide, axis=1)
    exact = 1 - (wide @ wide[::-1].T) / np.outer(norms, norms[::-1])
    np.testing.assert_allclose(d, exact, rtol=1e-12, atol=1e-12)


@pytest.fixture
def generated(embedded_data: Path, params: config.Params) -> config.Params:
    assert validate.main(params) == 0
    generate.main(params)
    return params


def uniform_skin(ita: float) -> Image.Image:
    rgb = lab_to_rgb(np.broadcast_to(lab_from_ita(ita, 18.0, 12.0), (32, 32, 3)).copy())
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))


def test_tone_fidelity_and_copies_on_known_images(generated: config.Params):
    manifest = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})
    light = manifest[manifest["seed_group"] == "I-II"].iloc[0]
    dark = manifest[manifest["seed_group"] == "V-VI"].iloc[0]
    uniform_skin(50.0).save(paths.GENERATED / paths.IMAGES_NAME / light["file"])  # FST I-II band: ITA > 41
    uniform_skin(50.0).save(paths.GENERATED / paths.IMAGES_NAME / dark["file"])  # far lighter than V-VI asked for
    copy = manifest[manifest["seed_group"] == "I-II"].iloc[1]
    seed_image = paths.image_file(paths.dataset_images(generated.dataset.root), copy["seed_md5hash"])
    shutil.copyfile(seed_image, paths.GENERATED / paths.IMAGES_NAME / copy["file"])  # a copy of its own seed
    assert quality.main(generated) == 0
    scores = pd.read_csv(paths.QUALITY / "scores.csv").set_index("file")
    assert scores.loc[light["file"], "ita"] == pytest.approx(50.0, abs=1.0)
    assert scores.loc[light["file"], "in_band"]
    assert not scores.loc[dark["file"], "in_band"]
    assert scores.loc[copy["file"], "distance_to_seed"] == pytest.approx(0.0, abs=1e-6)
    result = pd.DataFrame(pd.read_json(paths.QUALITY_REPORTS / "quality.json", typ="series")["cells"])
    assert sorted(result["group"]) == ["I-II", "V-VI"]
    assert set(result["condition"]) == {"psoriasis"}
    assert (result["n_real"] > 0).all()
    assert result["kid"].notna().all()
    assert config.BACKBONES[generated.features.backbone] in (paths.QUALITY_REPORTS / "quality.md").read_text()
    # the near-copy gate is off by default, and rejects the copy once set
    assert curate.main(generated) == 0
    picked = pd.read_csv(paths.CURATED / "scores.csv").set_index("file")
    assert not picked.loc[copy["file"], "decision"].startswith("rejected")
    gated = replace(generated, curate=replace(generated.curate, min_seed_distance=0.01))
    assert curate.main(gated) == 0
    picked = pd.read_csv(paths.CURATED / "scores.csv").set_index("file")
    assert picked.loc[copy["file"], "decision"].startswith("rejected: near-copy of its seed (feature distance 0.0000")
    assert not picked.loc[copy["file"], "selected"]


def test_inception_features_come_from_a_state_dict_file(tmp_path: Path, params: config.Params):
    from torchvision import models

    torch.manual_seed(0)
    weights = tmp_path / "inception.pt"
    torch.save(models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights)
    chosen = replace(params, quality=replace(params.quality, backbone="inception", inception_weights=str(weights)))
    net, transform, what = quality.extractor(chosen)
    image = tmp_path / "x.png"
    uniform_skin(30.0).save(image)
    assert embedding.embed(net, embedding.Transformed([image, image], transform), 2).shape == (2, 2048)
    assert "Inception-v3" in what


def test_quality_features_of_real_images_are_the_cached_ones_bit_for_bit(generated: config.Params):
    """One loop (model/embedding.py) feeds `features`, `quality` and serving: fc6 must not depend on the caller."""
    from dermsynth import features

    bf16 = replace(generated, features=replace(generated.features, precision="bfloat16"))
    assert quality.main(bf16) == 0
    assert curate.main(bf16) == 0
    features.main(bf16)
    cached = np.load(paths.FEATURES / "eval.npy")
    index = pd.read_csv(paths.FEATURES / "eval_index.csv")
    net, transform, _ = quality.extractor(bf16)
    candidates = sorted((paths.GENERATED / paths.IMAGES_NAME).iterdir())[:5]  # batches mixed as quality mixes them
    mixed = embedding.embed(net, embedding.Transformed(candidates + list(index["path"]), transform), 32)
    np.testing.assert_array_equal(mixed[len(candidates) :].astype(np.float16), cached)
