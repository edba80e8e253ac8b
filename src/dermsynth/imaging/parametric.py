"""Morphologies for the 107 labels outside the study's seven, and the look of the second atlas.

The seven conditions of the study have hand-made renderers (lesions.py). Groh et al.'s analysis
(step one of the paper, cohort/groh.py) needs every one of the 114 labels, and the simulator
needs them to behave like a taxonomy: labels of one `nine_partition_label` family (inflammatory,
malignant epidermal, genodermatoses, ...) should be more alike than labels of different
families, so that the 114-way classifier makes the within-family confusions a dermatologist
would. Each family gets a base point in a small parameter space (lesion kind, count, size,
colour mix, scale, crust, border), drawn from a hash of the family's name; each label is its
family's point moved by a smaller, label-hashed step. Nothing depends on Python's salted
`hash()` or on the order labels are met: the same label always renders the same way.

`atlas_look` is the second source's photography: Atlas Dermatologico's images are framed closer
and carry a warm colour cast, so that Groh's source holdouts (`dermaamin`, `br`) have a shift to
measure. docs/embedded.md ("All 114 labels") describes both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from dermsynth.imaging.shapes import Layers, Palette, Rng, blob, irregular_blob, ring, texture

KINDS: tuple[str, ...] = ("plaques", "papules", "nodule", "macules", "annular", "linear")
FAMILY_KEEPS_KIND = 0.75  # share of a family's labels that keep the family's lesion kind
LABEL_STEP = 0.12  # SD of a label's step from its family's point, on parameters scaled to [0, 1]
DIMENSIONS = 8  # count, size, erythema, pigment, scale, crust, roughness, elongation


def stable_seed(*parts: str) -> int:
    """A 64-bit seed from text, the same on every run and machine (unlike the built-in hash())."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little")


@dataclass(frozen=True)
class Morphology:
    """One label's look: a lesion kind and eight parameters in [0, 1] (see `params`' names)."""

    kind: str
    params: tuple[float, ...]

    def vector(self) -> np.ndarray:
        """The parameters with the kind one-hot encoded (for distances between labels)."""
        return np.array([*self.params, *(float(k == self.kind) for k in KINDS)])


@cache
def family_point(family: str) -> Morphology:
    rng = np.random.default_rng(stable_seed("family", family))
    return Morphology(KINDS[int(rng.integers(len(KINDS)))], tuple(rng.uniform(0.0, 1.0, DIMENSIONS)))


@cache
def morphology(label: str, family: str) -> Morphology:
    """``label``'s look: its family's point plus a small label-specific step; most labels keep the family's kind."""
    base = family_point(family)
    rng = np.random.default_rng(stable_seed("label", family, label))
    params = np.clip(np.array(base.params) + rng.normal(0.0, LABEL_STEP, DIMENSIONS), 0.0, 1.0)
    kind = base.kind if rng.random() < FAMILY_KEEPS_KIND else KINDS[int(rng.integers(len(KINDS)))]
    return Morphology(kind, tuple(float(v) for v in params))


@cache
def look_alikes(label: str, family: str, family_labels: tuple[str, ...]) -> tuple[str, ...]:
    """Two other labels of ``label``'s family (fewer in a small family): what its images may also show (mimicry)."""
    others = sorted(set(family_labels) - {label})
    rng = np.random.default_rng(stable_seed("look-alikes", family, label))
    return tuple(others[i] for i in sorted(rng.choice(len(others), size=min(2, len(others)), replace=False)))


def _colour(m: Morphology, p: Palette) -> np.ndarray:
    """The lesion's CIELAB offset: a mix of erythema and pigment set by the morphology, on this skin."""
    _, _, erythema, pigment, *_ = m.params
    return p.erythema(0.5 + 1.0 * erythema) + p.pigment(1.2 * pigment)


def _elements(m: Morphology, size: int, rng: Rng) -> list[np.ndarray]:
    """The lesion masks of one image: how many, how large and what shape follow the kind and parameters."""
    count, radius, _, _, _, _, roughness, elongation = m.params
    few, many = {"nodule": (1, 2), "plaques": (1, 4), "annular": (1, 3), "linear": (1, 3)}.get(
        m.kind, (3 + int(6 * count), 8 + int(20 * count))
    )
    side = {"macules": 2.0 + 5.0 * radius, "papules": 1.2 + 2.5 * radius}.get(m.kind, size * (0.05 + 0.2 * radius))
    masks = []
    for _ in range(int(rng.integers(few, many + 1))):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = side * rng.uniform(0.7, 1.2)
        if m.kind == "annular":
            masks.append(ring(size, cx, cy, r, 1.0 + 2.0 * roughness))
        elif m.kind == "linear":
            masks.append(blob(size, cx, cy, size * (0.15 + 0.25 * elongation), 1.0 + radius, rng.uniform(0, np.pi)))
        elif m.kind in ("nodule", "plaques") and roughness > 0.5:
            masks.append(irregular_blob(size, rng, cx, cy, r, roughness - 0.3))
        else:  # macules soft-edged and flat, papules and the rest crisp
            edge = 2.0 if m.kind == "macules" else 1.2
            masks.append(blob(size, cx, cy, r, r * (1.0 - 0.5 * elongation), rng.uniform(0, np.pi), edge=edge))
    return masks


def render_layers(m: Morphology, size: int, rng: Rng, p: Palette) -> Layers:
    """The colour layers of one image of a parametric label (lesions.render adds them to the skin)."""
    scale, crust = m.params[4], m.params[5]
    colour, layers = _colour(m, p), []
    for mask in _elements(m, size, rng):
        layers.append((mask, colour))
        if scale > 0.5:
            flakes = np.clip(texture(size, rng, 0.8) * 0.5 + 0.3, 0, 1)
            layers.append((mask * flakes * (scale - 0.4), p.scale()))
        if crust > 0.6:
            layers.append((mask * (crust - 0.5), p.crust()))
    return layers


def atlas_look(rgb: np.ndarray, rng: Rng) -> np.ndarray:
    """The second atlas's photography on an sRGB uint8 image: framed closer (a central crop) under a warm cast."""
    size = rgb.shape[0]
    side = round(size * rng.uniform(0.72, 0.82))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
    crop = Image.fromarray(rgb[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.Resampling.BILINEAR)
    cast = np.array([1.06, 1.0, 0.88]) * rng.uniform(0.97, 1.03)
    return np.clip(np.asarray(crop, dtype=np.float64) * cast, 0, 255).round().astype(np.uint8)
