"""Pixels and storage for the OpenAI image edits: masks, paste-back and a content-addressed cache.

Mask convention (OpenAI): a PNG with alpha, the size of the image, alpha = 0 where the model
may edit. GPT image models treat the mask as guidance and may change pixels outside it, so
`paste_outside_mask` puts the original pixels back there: only the masked area is synthetic.

Every image costs money, so the cache is keyed by the content of the request (see
`openai_backend.cache_key`) and written so that a run killed at any instant never leaves a
file that a later run takes for a good image: `<key>.png` is renamed into place first and
`<key>.json` (which holds the png's sha256) last; a png without its json, or one that does not
decode or match, is treated as absent and asked for again.
"""

from __future__ import annotations

import fcntl
import hashlib
import io as _io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dermsynth.core import files
from dermsynth.core.errors import DermsynthError


def decode(data: bytes, what: str = "image") -> Image.Image:
    """Fully decode image bytes; raise DermsynthError (with ``what``) if they are not an image."""
    try:
        with Image.open(_io.BytesIO(data)) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DermsynthError(f"{what}: cannot decode image ({err})") from err


def to_png(im: Image.Image) -> bytes:
    buf = _io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def edit_area(mask_png: bytes) -> np.ndarray:
    """Boolean (H, W) array, True where the mask's alpha is 0 (the area the model may edit)."""
    mask = decode(mask_png, "mask")
    if "A" not in mask.getbands():
        raise DermsynthError(f"mask has no alpha channel (mode {mask.mode}); alpha = 0 must mark the area to edit")
    return np.asarray(mask.getchannel("A")) == 0


def check_pair(image_png: bytes, mask_png: bytes) -> None:
    """Raise DermsynthError unless image and mask decode, match in size and the mask marks some pixels."""
    image = decode(image_png, "image")
    area = edit_area(mask_png)
    if area.shape != (image.height, image.width):
        raise DermsynthError(f"mask is {area.shape[1]}x{area.shape[0]} but image is {image.width}x{image.height}")
    if not area.any():
        raise DermsynthError("mask has no pixel with alpha 0: nothing to edit")


def paste_outside_mask(original_png: bytes, edited_png: bytes, mask_png: bytes) -> bytes:
    """Edited pixels where the mask's alpha is 0, the original's exactly elsewhere, as PNG bytes.

    The edited image is resized (Lanczos) to the original's size first if the model returned
    another size; the result has the original's mode (RGB, or RGBA if it had alpha).
    """
    original = decode(original_png, "original image")
    mode = "RGBA" if "A" in original.getbands() else "RGB"
    original = original.convert(mode)
    edited = decode(edited_png, "edited image").convert(mode)
    if edited.size != original.size:
        edited = edited.resize(original.size, Image.Resampling.LANCZOS)
    area = edit_area(mask_png)
    if area.shape != (original.height, original.width):
        raise DermsynthError(f"mask is {area.shape[1]}x{area.shape[0]} but image is {original.size}")
    keep_edit = area[..., None]
    pixels = np.where(keep_edit, np.asarray(edited), np.asarray(original))
    return to_png(Image.fromarray(pixels.astype(np.uint8), mode))


def box_mask(size: int | tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    """An RGBA PNG mask of ``size`` (side or (width, height)): alpha 0 inside box (x0, y0, x1, y1), 255 outside.

    The box follows PIL's crop convention: x1 and y1 are exclusive.
    """
    width, height = (size, size) if isinstance(size, int) else size
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise DermsynthError(f"box {box} is empty or outside the {width}x{height} image")
    alpha = np.full((height, width), 255, dtype=np.uint8)
    alpha[y0:y1, x0:x1] = 0
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., 3] = alpha
    return to_png(Image.fromarray(rgba, "RGBA"))


class ImageCache:
    """Edited images by request key: ``<key>.png`` + ``<key>.json``; refusals as ``<key>.blocked.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def png_path(self, key: str) -> Path:
        return self.folder / f"{key}.png"

    def json_path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def blocked_path(self, key: str) -> Path:
        return self.folder / f"{key}.blocked.json"

    def get(self, key: str) -> bytes | None:
        """The stored png bytes, or None if absent, incomplete, undecodable or not matching its record."""
        return self.inspect(key)[0]

    def inspect(self, key: str) -> tuple[bytes | None, str]:
        """(png bytes, "") for a good entry; (None, why) for a damaged one; (None, "") when there is none.

        A damaged entry is asked for (and paid for) again, so the caller says so, naming the file.
        """
        png_path = self.png_path(key)
        if not png_path.exists():
            return None, ""
        record = self._read_record(self.json_path(key))
        if record is None:
            return None, f"{png_path}: its record {self.json_path(key).name} is missing or unreadable"
        data = png_path.read_bytes()
        if record.get("png_sha256") != hashlib.sha256(data).hexdigest():
            return None, f"{png_path}: its sha256 differs from the one in {self.json_path(key).name}"
        try:
            decode(data)
        except DermsynthError as err:
            return None, f"{png_path}: {err}"
        return data, ""

    def forget_refusals(self) -> int:
        """Delete every remembered refusal, so that the next run asks again (and pays for what it asks)."""
        refusals = sorted(self.folder.glob("*.blocked.json"))
        for path in refusals:
            path.unlink()
        return len(refusals)

    def record(self, key: str) -> dict[str, Any] | None:
        return self._read_record(self.json_path(key))

    def put(self, key: str, png: bytes, record: dict[str, Any]) -> None:
        """Store an image: png renamed into place first, its json record (with the png's sha256) last."""
        decode(png, f"image for {key}")
        files.write_bytes(self.png_path(key), png)
        files.write_json(self.json_path(key), {**record, "key": key, "png_sha256": hashlib.sha256(png).hexdigest()})

    def get_blocked(self, key: str) -> dict[str, Any] | None:
        return self._read_record(self.blocked_path(key))

    def put_blocked(self, key: str, record: dict[str, Any]) -> None:
        files.write_json(self.blocked_path(key), {**record, "key": key})

    def keys(self) -> list[str]:
        """Keys with a complete, decodable image."""
        names = sorted(p.stem for p in self.folder.glob("*.png") if not p.name.startswith("."))
        return [key for key in names if self.get(key) is not None]

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one run: refuse a second run at once, and sweep temp files left by a killed one."""
        with open(self.folder / ".lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                raise DermsynthError(f"{self.folder}: another run is using this image cache") from err
            try:
                for tmp in self.folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _read_record(path: Path) -> dict[str, Any] | None:
        try:
            record = files.read_json(path)
        except (FileNotFoundError, ValueError, OSError):
            return None
        return record if isinstance(record, dict) else None


def temp_files(folder: Path) -> list[Path]:
    """Temporary files of atomic writes still in ``folder`` (none after a clean or resumed run)."""
    return sorted(Path(folder).glob(".*.tmp"))


__all__ = [
    "ImageCache",
    "box_mask",
    "check_pair",
    "decode",
    "edit_area",
    "paste_outside_mask",
    "temp_files",
    "to_png",
]
