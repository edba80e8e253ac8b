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

from dermsynth.core.study import label_partitions, labels_of_family
from dermsynth.imaging import parametric
from dermsynth.imaging.shapes import Layers, Palette, Rng, blob, centre, grid, irregular_blob, ring, texture
from dermsynth.imaging.skin import lab_from_ita, lab_to_rgb

if TYPE_CHECKING:
    from dermsynth.core.config import Embedded


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


def basal_cell_carcinoma(size: int, rng: Rng, p: Palette) -> Layers:
    """One pearly, translucent nodule with a rolled border, telangiectasia, sometimes ulcerated."""
    cx, cy = centre(size, rng)
    r = rng.uniform(0.12, 0.22) * size
    body = blob(size, cx, cy, r, r * rng.uniform(0.8, 1.0), rng.uniform(0, np.pi), edge=1.5)
    layers: Layers = [(body, np.array([7.0, 4.0 * p.vis, -3.0]) + 0.3 * p.erythema())]
    layers.append((ring(size, cx, cy, r * 0.9, 1.6) * 0.8, p.erythema(0.8) + np.array([4.0, 0, 0])))
    x, y = grid(size)
    for _ in range(rng.integers(2, 5)):
        a = rng.uniform(0, 2 * np.pi)
        d = np.abs((x - cx) * np.sin(a) - (y - cy) * np.cos(a))
        along = (x - cx) * np.cos(a) + (y - cy) * np.sin(a)
        vessel = np.clip(1.0 - d / 0.7, 0, 1) * (np.abs(along) < r * 0.8)
        layers.append((vessel * body * 0.9, p.erythema(1.3)))
    if rng.random() < 0.5:
        layers.append((blob(size, cx, cy, r * 0.35, r * 0.3, 0.0), p.crust() * 0.9))
    return layers


def folliculitis(size: int, rng: Rng, p: Palette) -> Layers:
    """Many small follicular papules and pustules scattered over a wide area."""
    layers: Layers = []
    for _ in range(rng.integers(14, 36)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(1.0, 2.2)
        layers.append((blob(size, cx, cy, r * 1.6, r * 1.6, 0.0, edge=1.2), p.erythema(0.9)))
        if rng.random() < 0.6:
            layers.append((blob(size, cx, cy, r * 0.7, r * 0.7, 0.0, edge=0.8), p.pus() * 0.8))
    return layers


def nematode_infection(size: int, rng: Rng, p: Palette) -> Layers:
    """Cutaneous larva migrans: one or two thin, raised, serpiginous erythematous tracks."""
    x, y = grid(size)
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
        cx, cy = centre(size, rng, 0.2)
        r = rng.uniform(0.16, 0.28) * size
        layers.append((blob(size, cx, cy, r, r * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi), 3.0), p.erythema(0.7)))
        violet = p.erythema(1.0) + np.array([-10.0, 0.0, -12.0])
        layers.append((ring(size, cx, cy, r * 0.85, rng.uniform(2.0, 3.5)), violet))
        layers.append((blob(size, cx, cy, r * 0.55, r * 0.5, 0.0, 2.0) * 0.8, p.ulcer() * 0.7))
    return layers


def prurigo_nodularis(size: int, rng: Rng, p: Palette) -> Layers:
    """Several firm, dome-shaped, hyperpigmented nodules, many excoriated at the top."""
    layers: Layers = []
    for _ in range(rng.integers(5, 13)):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(2.5, 4.5)
        layers.append((blob(size, cx, cy, r, r, 0.0, edge=1.5), p.pigment(1.0) + p.erythema(0.3)))
        if rng.random() < 0.6:
            layers.append((blob(size, cx, cy, r * 0.4, r * 0.4, 0.0, 0.8), p.crust() * 0.7 + np.array([-10.0, 0, 0])))
    return layers


def psoriasis(size: int, rng: Rng, p: Palette) -> Layers:
    """Well-demarcated oval plaques of erythema under silvery scale."""
    layers: Layers = []
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        rx = rng.uniform(0.08, 0.2) * size
        plaque = blob(size, cx, cy, rx, rx * rng.uniform(0.5, 0.9), rng.uniform(0, np.pi), edge=0.8)
        layers.append((plaque, p.erythema(1.0)))
        flakes = np.clip(texture(size, rng, 0.8) * 0.5 + 0.35, 0, 1)
        layers.append((plaque * flakes * 0.85, p.scale()))
    return layers


def squamous_cell_carcinoma(size: int, rng: Rng, p: Palette) -> Layers:
    """One irregular, keratotic nodule or plaque with a thick, rough crust on an erythematous base."""
    cx, cy = centre(size, rng)
    r = rng.uniform(0.14, 0.24) * size
    base = irregular_blob(size, rng, cx, cy, r, 0.35)
    layers: Layers = [(base, p.erythema(1.0))]
    keratin = np.clip(texture(size, rng, 1.2) * 0.6 + 0.5, 0, 1)
    core = irregular_blob(size, rng, cx, cy, r * 0.7, 0.4)
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
    lab[..., 0] += 1.6 * texture(size, rng, 1.0) + 2.5 * texture(size, rng, 6.0)
    x, y = grid(size)
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


def layers(label: str, size: int, rng: Rng, palette: Palette) -> Layers:
    """The colour layers of one image of ``label``: the hand-made renderer of the seven, else its parametric look."""
    if label in RENDERERS:
        return RENDERERS[label](size, rng, palette)
    return parametric.render_layers(parametric.morphology(label, _family(label)), size, rng, palette)


def look_alikes(label: str) -> tuple[str, ...]:
    """What an image of ``label`` may also show: the seven's differentials, else two labels of its family."""
    if label in LOOK_ALIKES:
        return LOOK_ALIKES[label]
    family = _family(label)
    return parametric.look_alikes(label, family, labels_of_family(family))


def _family(label: str) -> str:
    partitions = label_partitions()
    if label not in partitions:
        raise KeyError(f"{label!r} is not a Fitzpatrick 17k label: the simulator has no look for it")
    return partitions[label][0]


def render(label: str, ita: float, size: int, rng: Rng, difficulty: Difficulty = Difficulty()) -> np.ndarray:
    """An sRGB uint8 image (size, size, 3) of ``label`` on skin of the given ITA, as hard as ``difficulty``."""
    skin = lab_from_ita(ita, b=rng.uniform(12.0, 20.0), a=rng.uniform(7.0, 14.0))
    palette = Palette(skin, difficulty.tone_shift)
    lab = _skin(skin, size, rng)
    strength = rng.uniform(*difficulty.contrast)
    for mask, offset in layers(label, size, rng, palette):
        lab += strength * mask[..., None] * offset
    alikes = look_alikes(label) if difficulty.mimicry > 0 else ()
    if alikes:
        look_alike = alikes[int(rng.integers(len(alikes)))]
        weight = strength * rng.uniform(0.0, difficulty.mimicry)
        for mask, offset in layers(look_alike, size, rng, palette):
            lab += weight * mask[..., None] * offset
    lab[..., 0] *= rng.uniform(0.92, 1.05)  # exposure
    return _to_uint8(lab, rng)
