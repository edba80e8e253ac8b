"""`reinhard`: a classical colour-transfer baseline (Reinhard et al. 2001, "Color Transfer between Images").

Each candidate takes the per-channel CIELAB mean and standard deviation of a seed's skin and
matches them to those of another seed of the same FST group (a reference drawn per
candidate), the whole image moved by the same linear map, then cropped and flipped as
`tone_transfer`'s candidates are. References are seeds only, never test images: seeds are
removed from every test set, so no test image's colours reach a training image. It makes no
new lesion and needs no weights: the floor a learned generator has to beat.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from dermsynth.core import files, paths
from dermsynth.core.config import Generate
from dermsynth.generators.crops import crop_and_flip
from dermsynth.imaging.skin import ita_degrees, lab_to_rgb, rgb_to_lab, skin_mask

Stats = tuple[np.ndarray, np.ndarray]


def skin_stats(rgb: np.ndarray) -> Stats:
    """Mean and SD (floored) of the skin pixels' CIELAB values."""
    lab = rgb_to_lab(rgb)
    mask = skin_mask(lab)
    pixels = lab[mask] if mask.sum() > 1 else lab.reshape(-1, 3)
    return pixels.mean(axis=0), np.maximum(pixels.std(axis=0), 1e-3)


def transfer(rgb: np.ndarray, source: Stats, target: Stats) -> np.ndarray:
    """Reinhard's map: (lab - mean_source) / sd_source * sd_target + mean_target, then back to sRGB in [0, 1]."""
    lab = (rgb_to_lab(rgb) - source[0]) / source[1] * target[1] + target[0]
    return np.clip(lab_to_rgb(lab), 0.0, 1.0)


def maker(chosen: pd.DataFrame, images_root: str) -> Callable:
    """The candidate function for these seeds: references are the other seeds of the same group."""
    images = paths.dataset_images(images_root)
    stats = {
        row.md5hash: skin_stats(files.load_array(paths.image_file(images, row.md5hash))) for row in chosen.itertuples()
    }
    by_group = {g: sorted(part["md5hash"]) for g, part in chosen.groupby("group")}

    def make(seed_rgb: np.ndarray, group: str, cfg: Generate, rng: np.random.Generator, seed_md5: str) -> tuple:
        others = [m for m in by_group[group] if m != seed_md5] or [seed_md5]
        reference = others[int(rng.integers(len(others)))]
        moved = transfer(seed_rgb, stats[seed_md5], stats[reference])
        out, box, flip = crop_and_flip(moved, float(rng.uniform(*cfg.crop)), rng)
        ita = lambda s: float(ita_degrees(s[0][None])[0])  # noqa: E731
        return out, {
            "seed_ita": round(ita(stats[seed_md5]), 2),
            "target_ita": round(ita(stats[reference]), 2),
            "strength": 1.0,
            "crop_box": " ".join(map(str, box)),
            "flip": flip,
            "reference_md5hash": reference,
        }

    return make
