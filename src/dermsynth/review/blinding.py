"""Served images that cannot give their answer away: one size, one format, one encoder, no metadata.

Real photographs and synthetic candidates differ in file name, format (JPEG or PNG), size,
EXIF/PNG chunks and JPEG quantisation tables; any of those tells a reader (or their browser's
"save as") which is which. Every served image is therefore decoded, centre-cropped to a square,
resized to `review.size` and re-encoded as a baseline JPEG at `review.jpeg_quality` with 4:4:4
sampling and nothing but the JFIF header.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from dermsynth.core.files import load_rgb


def blinded_jpeg(path: Path, size: int, quality: int) -> bytes:
    """The image as every reader sees it, whatever it was made of."""
    image = load_rgb(path)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    square.save(out, format="JPEG", quality=quality, subsampling=0, optimize=False, progressive=False)
    return out.getvalue()
