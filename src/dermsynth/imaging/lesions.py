"""Procedural skin and lesion rendering for the embedded dataset.

Each condition has its own morphology (shape, count, texture, spatial pattern); colour is
computed in CIELAB relative to the underlying skin so that a lesion's appearance depends on
skin tone the way clinicians describe it: erythema is vivid on light skin and muted,
darker and violaceous on dark skin; scale reads silvery-white on light skin and grey on
dark skin; post-inflammatory pigment is stronger on dark skin. A classifier trained on one
end of the scale therefore transfers imperfectly to the other, which is the effect the
study is about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dermsynth.imaging.skin import lab_from_ita, lab_to_rgb

if TYPE_CHECKING:
    from dermsynth.core.config import Embedded

Rng = np.random.Generator


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x, y


def _blob(size: int, cx: float, cy: float, rx: float, ry: float, angle: float, edge: float = 1.0) -> np.ndarray:
    """A soft-edged ellipse mask in [0, 1]."""
    x, y = _grid(size)
    c, s = np.cos(angle), np.sin(angle)
    u = ((x - cx) * c + (y - cy) * s) / rx
    v = (-(x - cx) * s + (y - cy) * c) / ry
    r = np.sqrt(u**2 + v**2)
    return np.clip((1.0 - r) * min(rx, ry) / edge, 0.0, 1.0)


def _irregular_blob(size: int, rng: Rng, cx: float, cy: float, radius: float, roughness: float) -> np.ndarray:
    """A blob whose radius varies with angle (irregular, asymmetric border)."""
    x, y = _grid(size)
    theta = np.arctan2(y - cy, x - cx)
    r = np.hypot(x - cx, y - cy)
    border = radius * np.ones_like(theta)
    for k in range(2, 6):
        border += radius * roughness * rng.normal(0, 1.0 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.clip(border - r, 0.0, 1.0)


def _ring(size: int, cx: float, cy: float, radius: float, width: float) -> np.ndarray:
    x, y = _grid(size)
    r = np.hypot(x - cx, y - cy)
    return np.clip(1.0 - np.abs(r - radius) / width, 0.0, 1.0)


def _texture(size: int, rng: Rng, scale: float) -> np.ndarray:
    """Smoothed noise with roughly ``scale``-pixel features, zero mean, unit std."""
    noise = rng.normal(size=(size, size))
    freq = np.fft.fftfreq(size)
    fx, fy = np.meshgrid(freq, freq)
    kernel = np.exp(-((fx**2 + fy**2) * (scale * np.pi) ** 2))
    out = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    return (out - out.mean()) / (out.std() + 1e-9)


def _centre(size: int, rng: Rng, spread: float = 0.18) -> tuple[float, float]:
    return tuple(size / 2 + rng.normal(0, spread * size, 2).clip(-size / 4, size / 4))  # type: ignore[return-value]


@dataclass(frozen=True)
class Difficulty:
    """What makes the embedded images hard to classify, and how much presentation shifts with skin tone.

    ``contrast``: each image's lesion is drawn at a strength drawn from this [low, high] range
    (1: the full colour offsets below), so some lesions are faint. ``mimicry``: each image also
    carries, at a weight drawn from [0, mimicry], the morphology of one of its condition's two
    look-alikes (`LOOK_ALIKES`): confusable presentations, as dermatologists meet them.
    ``tone_shift``: how strongly a lesion's colours depend on the skin beneath (`Palette`):
    0 draws every lesion as on the lightest skin, 1 is the clinical description. These three
    set the study's regime; docs/embedded.md gives the values and the accuracies they produce.
    """

    contrast: tuple[float, float] = (1.0, 1.0)
    mimicry: float = 0.0
    tone_shift: float = 1.0

    @classmethod
    def of(cls, embedded: Embedded) -> Difficulty:
        """The difficulty that params.yaml's `embedded` section sets."""
        low, high = embedded.contrast
        return cls((low, high), embedded.mimicry, embedded.tone_shift)


# Each condition's two look-alikes, the differentials a dermatologist would name (docs/embedded.md).
LOOK_ALIKES: dict[str, tuple[str, str]] = {
    "basal cell carcinoma": ("squamous cell carcinoma", "prurigo nodularis"),
    "folliculitis": ("prurigo nodularis", "psoriasis"),
    "nematode infection": ("neutrophilic dermatoses", "folliculitis"),
    "neutrophilic dermatoses": ("psoriasis", "nematode infection"),
    "prurigo nodularis": ("folliculitis", "basal cell carcinoma"),
    "psoriasis": ("neutrophilic dermatoses", "squamous cell carcinoma"),
    "squamous cell carcinoma": ("basal cell carcinoma", "psoriasis"),
}


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


def basal_cell_carcinoma(size: int, rng: Rng, p: Palette) -> Layers:
    """One pearly, translucent nodule with a rolled border, telangiectasia, sometimes ulcerated."""
    cx, cy = _centre(size, rng)
    r = rng.uniform(0.12, 0.22) * size
    body = _blob(size, cx, cy, r, r * rng.uniform(0.8, 1.0), rng.uniform(0, np.pi), edge=1.5)
    layers: Layers = [(body, np.array([7.0, 4.0 * p.vis, -3.0]) + 0.3 * p.erythema())]
    layers.append((_ring(size, cx, cy, r * 0.9, 1.6) * 0.8, p.erythema(0.8) + np.array([4.0, 0, 0])))
    x, y = _grid(size)
    for _ in range(rng.integers(2, 5)):
        a = rng.uniform(0, 2 * np.pi)
        d = np.abs((x - cx) * np.sin(a) - (y - cy) * np.cos(a))
        along = (x - cx) * np.cos(a) + (y - cy) * np.sin(a)
        vessel = np.clip(1.0 - d / 0.7, 0, 1) * (np.abs(along) < r * 0.8)
        layers.append((vessel * body * 0.9, p.erythema(1.3)))
    if rng.random() < 0.5:
        layers.append((_blob(size, cx, cy, r * 0.35, r * 0.3, 0.0), p.crust() * 0.9))
    return layers


def folliculitis(size: int, rng: Rng, p: Palette) -> Layers:
    """Many small follicular papules and pustules scattered over a wide area."""
    layers: Layers = []
    for _ in range(rng.integers(14, 36)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(1.0, 2.2)
        layers.append((_blob(size, cx, cy, r * 1.6, r * 1.6, 0.0, edge=1.2), p.erythema(0.9)))
        if rng.random() < 0.6:
            layers.append((_blob(size, cx, cy, r * 0.7, r * 0.7, 0.0, edge=0.8), p.pus() * 0.8))
    return layers


def nematode_infection(size: int, rng: Rng, p: Palette) -> Layers:
    """Cutaneous larva migrans: one or two thin, raised, serpiginous erythematous tracks."""
    x, y = _grid(size)
    layers: Layers = []
    for _ in range(rng.integers(1, 3)):
        track = np.zeros((size, size))
        px, py = rng.uniform(0.25, 0.75, 2) * size
        heading = rng.uniform(0, 2 * np.pi)
        width = rng.uniform(1.2, 2.0)
        for step in range(int(rng.integers(40, 70))):
            heading += 0.45 * np.sin(step / rng.uniform(2.5, 4.0)) + rng.normal(0, 0.15)
            px = float(np.clip(px + 1.2 * np.cos(heading), 3, size - 3))
            py = float(np.clip(py + 1.2 * np.sin(heading), 3, size - 3))
            track = np.maximum(track, np.clip(1.0 - np.hypot(x - px, y - py) / width, 0, 1))
        layers.append((track, p.erythema(1.2) + np.array([3.0, 0, 0])))
    return layers


def neutrophilic_dermatoses(size: int, rng: Rng, p: Palette) -> Layers:
    """Large oedematous plaques with a violaceous, undermined border and a dusky centre."""
    layers: Layers = []
    for _ in range(rng.integers(1, 3)):
        cx, cy = _centre(size, rng, 0.2)
        r = rng.uniform(0.16, 0.28) * size
        layers.append((_blob(size, cx, cy, r, r * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi), 3.0), p.erythema(0.7)))
        violet = p.erythema(1.0) + np.array([-10.0, 0.0, -12.0])
        layers.append((_ring(size, cx, cy, r * 0.85, rng.uniform(2.0, 3.5)), violet))
        layers.append((_blob(size, cx, cy, r * 0.55, r * 0.5, 0.0, 2.0) * 0.8, p.ulcer() * 0.7))
    return layers


def prurigo_nodularis(size: int, rng: Rng, p: Palette) -> Layers:
    """Several firm, dome-shaped, hyperpigmented nodules, many excoriated at the top."""
    layers: Layers = []
    for _ in range(rng.integers(5, 13)):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(2.5, 4.5)
        layers.append((_blob(size, cx, cy, r, r, 0.0, edge=1.5), p.pigment(1.0) + p.erythema(0.3)))
        if rng.random() < 0.6:
            layers.append((_blob(size, cx, cy, r * 0.4, r * 0.4, 0.0, 0.8), p.crust() * 0.7 + np.array([-10.0, 0, 0])))
    return layers


def psoriasis(size: int, rng: Rng, p: Palette) -> Layers:
    """Well-demarcated oval plaques of erythema under silvery scale."""
    layers: Layers = []
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        rx = rng.uniform(0.08, 0.2) * size
        plaque = _blob(size, cx, cy, rx, rx * rng.uniform(0.5, 0.9), rng.uniform(0, np.pi), edge=0.8)
        layers.append((plaque, p.erythema(1.0)))
        flakes = np.clip(_texture(size, rng, 0.8) * 0.5 + 0.35, 0, 1)
        layers.append((plaque * flakes * 0.85, p.scale()))
    return layers


def squamous_cell_carcinoma(size: int, rng: Rng, p: Palette) -> Layers:
    """One irregular, keratotic nodule or plaque with a thick, rough crust on an erythematous base."""
    cx, cy = _centre(size, rng)
    r = rng.uniform(0.14, 0.24) * size
    base = _irregular_blob(size, rng, cx, cy, r, 0.35)
    layers: Layers = [(base, p.erythema(1.0))]
    keratin = np.clip(_texture(size, rng, 1.2) * 0.6 + 0.5, 0, 1)
    core = _irregular_blob(size, rng, cx, cy, r * 0.7, 0.4)
    layers.append((core * keratin, p.crust()))
    return layers


RENDERERS: dict[str, Callable[[int, Rng, Palette], Layers]] = {
    "basal cell carcinoma": basal_cell_carcinoma,
    "folliculitis": folliculitis,
    "nematode infection": nematode_infection,
    "neutrophilic dermatoses": neutrophilic_dermatoses,
    "prurigo nodularis": prurigo_nodularis,
    "psoriasis": psoriasis,
    "squamous cell carcinoma": squamous_cell_carcinoma,
}


def _skin(skin: np.ndarray, size: int, rng: Rng) -> np.ndarray:
    """CIELAB skin of colour ``skin`` with texture and an uneven lighting gradient: nuisances every image shares."""
    lab = np.broadcast_to(skin, (size, size, 3)).copy()
    lab[..., 0] += 1.6 * _texture(size, rng, 1.0) + 2.5 * _texture(size, rng, 6.0)
    x, y = _grid(size)
    gx, gy = rng.normal(0, 6.0, 2) / size
    lab[..., 0] += gx * (x - size / 2) + gy * (y - size / 2)
    return lab


def _to_uint8(lab: np.ndarray, rng: Rng) -> np.ndarray:
    """sRGB uint8 of CIELAB ``lab``, with sensor noise."""
    rgb = lab_to_rgb(lab) + rng.normal(0, 0.012, lab.shape)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def plain_skin(skin: np.ndarray, size: int, rng: Rng) -> np.ndarray:
    """An sRGB uint8 image of skin with CIELAB colour ``skin`` and the embedded images' nuisances, but no lesion.

    The same texture, lighting gradient and sensor noise as `render` draws around a lesion, but no
    exposure change: ``skin`` is measured on an image whose exposure is already in it. An image that
    carries a skin tone and no information about any condition (the `null` control).
    """
    return _to_uint8(_skin(skin, size, rng), rng)


def render(label: str, ita: float, size: int, rng: Rng, difficulty: Difficulty = Difficulty()) -> np.ndarray:
    """An sRGB uint8 image (size, size, 3) of ``label`` on skin of the given ITA, as hard as ``difficulty``."""
    skin = lab_from_ita(ita, b=rng.uniform(12.0, 20.0), a=rng.uniform(7.0, 14.0))
    palette = Palette(skin, difficulty.tone_shift)
    lab = _skin(skin, size, rng)
    strength = rng.uniform(*difficulty.contrast)
    for mask, offset in RENDERERS[label](size, rng, palette):
        lab += strength * mask[..., None] * offset
    if difficulty.mimicry > 0:
        look_alike = LOOK_ALIKES[label][int(rng.integers(2))]
        weight = strength * rng.uniform(0.0, difficulty.mimicry)
        for mask, offset in RENDERERS[look_alike](size, rng, palette):
            lab += weight * mask[..., None] * offset
    lab[..., 0] *= rng.uniform(0.92, 1.05)  # exposure
    return _to_uint8(lab, rng)
