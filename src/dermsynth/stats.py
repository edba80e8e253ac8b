"""Binomial confidence intervals for accuracies.

Wald is the original study's interval (kept for comparison with it); Wilson behaves
better for small N and accuracies near 0 or 1. Both are clipped to [0, 1].
"""

from __future__ import annotations

import math


def wald(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wald interval p +- z sqrt(p(1-p)/n); (nan, nan) when n is 0."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval; (nan, nan) when n is 0."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
