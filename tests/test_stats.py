import math

import pytest

from dermsynth.stats import wald, wilson


def test_wald_matches_the_worked_example():
    low, high = wald(9, 37)
    assert pytest.approx(0.243, abs=5e-4) == 9 / 37
    assert (round(low, 3), round(high, 3)) == (0.105, 0.381)


def test_wald_for_25_of_37():
    assert tuple(round(v, 3) for v in wald(25, 37)) == (0.525, 0.827)


def test_wilson_for_9_of_37():
    assert tuple(round(v, 3) for v in wilson(9, 37)) == (0.134, 0.401)


def test_intervals_are_clipped_to_the_unit_interval():
    assert wald(0, 5) == (0.0, 0.0)
    assert wald(5, 5) == (1.0, 1.0)
    low, high = wilson(0, 5)
    assert low == 0.0
    assert 0 < high < 1


def test_empty_cell_has_no_interval():
    assert all(math.isnan(v) for v in wald(0, 0) + wilson(0, 0))
