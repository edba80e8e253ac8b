import numpy as np
import pytest

from dermsynth.imaging.lesions import RENDERERS, render
from dermsynth.imaging.skin import (
    ITA_BANDS,
    group_ita_range,
    ita_degrees,
    lab_from_ita,
    lab_to_rgb,
    rgb_to_lab,
    skin_ita,
)


def fst_from_ita(ita: float) -> int:
    """The FST whose ITA band holds ``ita`` (ITA_BANDS inverted; beyond the outer bands: 1 or 6)."""
    for fst, (lo, hi) in ITA_BANDS.items():
        if lo <= ita < hi:
            return fst
    return 1 if ita >= ITA_BANDS[1][1] else 6


def test_lab_round_trip():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.05, 0.95, (50, 3))
    assert np.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-6)


def test_known_colours():
    assert np.allclose(rgb_to_lab(np.array([1.0, 1.0, 1.0])), [100, 0, 0], atol=1e-3)
    assert np.allclose(rgb_to_lab(np.array([0.0, 0.0, 0.0])), [0, 0, 0], atol=1e-3)


def test_ita_of_constructed_colour():
    for ita in (-50.0, -10.0, 20.0, 48.0, 60.0):
        assert ita_degrees(lab_from_ita(ita, b=15.0, a=10.0)) == pytest.approx(ita, abs=1e-9)


@pytest.mark.parametrize(
    ("ita", "fst"), [(65, 1), (55, 1), (54.9, 2), (41, 2), (30, 3), (10, 4), (0, 5), (-31, 6), (80, 1), (-90, 6)]
)
def test_fst_from_ita_bands(ita, fst):
    assert fst_from_ita(ita) == fst


def test_group_range():
    assert group_ita_range((5, 6)) == (-60.0, 10.0)
    assert group_ita_range((1, 2)) == (41.0, 70.0)


@pytest.mark.parametrize("label", list(RENDERERS))
def test_rendered_skin_tone_is_recovered(label):
    """The skin-pixel ITA estimate of a rendered image lands in (or next to) the intended FST band."""
    rng = np.random.default_rng(1)
    errors = []
    for fst, (lo, hi) in ITA_BANDS.items():
        for _ in range(3):
            image = render(label, rng.uniform(lo, hi), 64, rng) / 255.0
            errors.append(abs(fst_from_ita(skin_ita(image)) - fst))
    assert max(errors) <= 1
    assert np.mean(np.array(errors) == 0) >= 0.6


def test_erythema_is_less_visible_on_dark_skin():
    """Mean colour distance between lesion and skin shrinks on darker skin: the study's premise."""

    def contrast(ita: float) -> float:
        rng = np.random.default_rng(3)
        lab = rgb_to_lab(render("psoriasis", ita, 64, rng) / 255.0)
        skin = np.median(lab.reshape(-1, 3), axis=0)
        return float(np.percentile(np.linalg.norm(lab - skin, axis=-1), 95))

    assert contrast(-45.0) < contrast(60.0)
