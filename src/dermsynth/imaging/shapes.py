"""Drawing primitives of the simulated images: soft masks, smoothed noise, and lesion colours that depend on the skin.

Shared by the hand-made renderers of the study's seven conditions (lesions.py) and the
parametric morphologies of the other 107 labels (parametric.py), so that every label is drawn
with the same strokes and the same skin-dependent palette.
"""

from __future__ import annotations

import numpy as np

Rng = np.random.Generator


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x, y


def blob(size: int, cx: float, cy: float, rx: float, ry: float, angle: float, edge: float = 1.0) -> np.ndarray:
    """A soft-edged ellipse mask in [0, 1]."""
    x, y = grid(size)
    c, s = np.cos(angle), np.sin(angle)
    u = ((x - cx) * c + (y - cy) * s) / rx
    v = (-(x - cx) * s + (y - cy) * c) / ry
    r = np.sqrt(u**2 + v**2)
    return np.clip((1.0 - r) * min(rx, ry) / edge, 0.0, 1.0)


def irregular_blob(size: int, rng: Rng, cx: float, cy: float, radius: float, roughness: float) -> np.ndarray:
    """A blob whose radius varies with angle (irregular, asymmetric border)."""
    x, y = grid(size)
    theta = np.arctan2(y - cy, x - cx)
    r = np.hypot(x - cx, y - cy)
    border = radius * np.ones_like(theta)
    for k in range(2, 6):
        border += radius * roughness * rng.normal(0, 1.0 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.clip(border - r, 0.0, 1.0)


def ring(size: int, cx: float, cy: float, radius: float, width: float) -> np.ndarray:
    x, y = grid(size)
    r = np.hypot(x - cx, y - cy)
    return np.clip(1.0 - np.abs(r - radius) / width, 0.0, 1.0)


def texture(size: int, rng: Rng, scale: float) -> np.ndarray:
    """Smoothed noise with roughly ``scale``-pixel features, zero mean, unit std."""
    noise = rng.normal(size=(size, size))
    freq = np.fft.fftfreq(size)
    fx, fy = np.meshgrid(freq, freq)
    kernel = np.exp(-((fx**2 + fy**2) * (scale * np.pi) ** 2))
    out = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    return (out - out.mean()) / (out.std() + 1e-9)


def centre(size: int, rng: Rng, spread: float = 0.18) -> tuple[float, float]:
    return tuple(size / 2 + rng.normal(0, spread * size, 2).clip(-size / 4, size / 4))  # type: ignore[return-value]


class Palette:
    """Lesion colours as CIELAB offsets that depend on the skin they sit on."""

    def __init__(self, skin_lab: np.ndarray, tone_shift: float = 1.0):
        # visibility: 1 on very light skin, ~0.3 on the darkest (erythema is masked by melanin);
        # tone_shift scales the loss of visibility (0: every skin shows lesions as the lightest does)
        masked = 1.0 - float(np.clip((skin_lab[0] - 28.0) / 45.0, 0.3, 1.0))
        self.vis = 1.0 - tone_shift * masked
        self.skin = skin_lab

    def erythema(self, strength: float = 1.0) -> np.ndarray:
        v = self.vis
        return strength * np.array([-6.0 - 12.0 * (1 - v), 28.0 * v + 6.0, -2.0 - 14.0 * (1 - v)])

    def pigment(self, strength: float = 1.0) -> np.ndarray:
        return strength * np.array([-14.0 - 10.0 * (1 - self.vis), 4.0, 6.0 * self.vis])

    def scale(self) -> np.ndarray:
        target = np.array([88.0, 1.0, 6.0]) if self.vis > 0.6 else np.array([68.0, 1.0, 3.0])
        return target - self.skin

    def crust(self) -> np.ndarray:
        return (
            np.array([52.0, 14.0, 34.0]) * (0.6 + 0.4 * self.vis)
            - self.skin * (0.6 + 0.4 * self.vis)
            + np.array([-6.0, 0.0, 0.0])
        )

    def ulcer(self) -> np.ndarray:
        return np.array([40.0, 26.0, 16.0]) - self.skin

    def pus(self) -> np.ndarray:
        return np.array([84.0, 2.0, 30.0]) - self.skin


Layers = list[tuple[np.ndarray, np.ndarray]]  # (mask, Lab offset or per-pixel offsets)
