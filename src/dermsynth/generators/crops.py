"""A random square crop and flip: the variety every offline generator adds to its re-toned seed."""

from __future__ import annotations

import numpy as np
from PIL import Image


def crop_and_flip(rgb: np.ndarray, side: float, rng: np.random.Generator) -> tuple[np.ndarray, list[int], bool]:
    size = rgb.shape[0]
    crop = max(8, round(side * size))
    x0, y0 = (int(v) for v in rng.integers(0, size - crop + 1, 2))
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    image = image.crop((x0, y0, x0 + crop, y0 + crop)).resize((size, size), Image.BICUBIC)
    flip = bool(rng.random() < 0.5)
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(image), [x0, y0, crop, crop], flip
