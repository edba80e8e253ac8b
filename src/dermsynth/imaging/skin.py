"""Skin-tone arithmetic: CIELAB conversion, the Individual Typology Angle (ITA) and FST bands.

ITA = atan((L* - 50) / b*) in degrees is the usual colorimetric proxy for constitutive skin
colour (Chardon et al. 1991; Del Bino & Bernerd 2013). The embedded dataset draws skin
colours from ITA bands per Fitzpatrick skin type, the offline generator shifts ITA, and
curation checks the ITA of generated images, so all three share these functions.
"""

from __future__ import annotations

import numpy as np

# ITA bands (degrees) used to stand in for FST 1..6. Del Bino's six categories
# (very light > 55, light 41-55, intermediate 28-41, tan 10-28, brown -30-10, dark < -30)
# mapped one-to-one onto FST; the outer bands are closed at plausible limits.
ITA_BANDS: dict[int, tuple[float, float]] = {
    1: (55.0, 70.0),
    2: (41.0, 55.0),
    3: (28.0, 41.0),
    4: (10.0, 28.0),
    5: (-30.0, 10.0),
    6: (-60.0, -30.0),
}

_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (..., 3) -> CIELAB (D65) (..., 3)."""
    xyz = _srgb_to_linear(np.asarray(rgb, dtype=np.float64)) @ _RGB_TO_XYZ.T / _WHITE_D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) (..., 3) -> sRGB in [0, 1] (..., 3), clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > eps, f**3, (116 * f - 16) / kappa)
    xyz[..., 1] = np.where(lab[..., 0] > kappa * eps, fy**3, lab[..., 0] / kappa)
    return _linear_to_srgb((xyz * _WHITE_D65) @ _XYZ_TO_RGB.T)


def ita_degrees(lab: np.ndarray) -> np.ndarray:
    """ITA in degrees of CIELAB values (..., 3); b* is floored at a small positive value."""
    lab = np.asarray(lab, dtype=np.float64)
    return np.degrees(np.arctan2(lab[..., 0] - 50.0, np.maximum(lab[..., 2], 1e-3)))


def lab_from_ita(ita: float, b: float, a: float) -> np.ndarray:
    """The CIELAB colour with the given ITA, b* and a*: L* = 50 + b* tan(ITA)."""
    return np.array([50.0 + b * np.tan(np.radians(ita)), a, b])


def group_ita_range(fsts: tuple[int, ...]) -> tuple[float, float]:
    """The ITA interval covered by a group of skin types, e.g. (5, 6) -> (-60, 10)."""
    return min(ITA_BANDS[f][0] for f in fsts), max(ITA_BANDS[f][1] for f in fsts)


def skin_mask(lab: np.ndarray, tolerance: float = 12.0) -> np.ndarray:
    """Pixels whose colour lies within ``tolerance`` (Delta E 76) of the image's median colour.

    Lesions cover a minority of each image, so the median is a robust estimate of the
    surrounding skin; this keeps tone estimates and tone transfer off the lesion itself.
    """
    median = np.median(lab.reshape(-1, 3), axis=0)
    return np.linalg.norm(lab - median, axis=-1) < tolerance


def skin_ita(rgb: np.ndarray) -> float:
    """Median ITA of the skin pixels of an sRGB image in [0, 1] of shape (H, W, 3)."""
    lab = rgb_to_lab(rgb)
    mask = skin_mask(lab)
    pixels = lab[mask] if mask.any() else lab.reshape(-1, 3)
    return float(np.median(ita_degrees(pixels)))
