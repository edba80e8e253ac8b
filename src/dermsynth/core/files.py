"""Atomic file writes and image reading with errors that name the item.

A stage killed half-way must never leave a half-written file that a later run takes for a
good one, so every write goes to a temporary file in the same folder and is renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from dermsynth.core.errors import DermsynthError

_UMASK = os.umask(0)
os.umask(_UMASK)


def require(reader: str, *inputs: Path, hint: str = "run `dvc repro` first") -> None:
    """One DermsynthError naming every input of ``reader`` that is absent, with the step that makes them.

    A command run before the pipeline that writes its inputs must say so, not end in a
    FileNotFoundError from deep inside pandas or json.
    """
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise DermsynthError(f"{reader} reads {', '.join(missing)}, which do not exist yet: {hint}")


class BadImageError(DermsynthError, ValueError):
    """An image file is missing, truncated or not an image."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a fresh (not yet existing) folder path beside ``path``; on success it replaces ``path`` whole."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.rmdir()  # writers such as mlflow's save_model refuse an existing folder
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_rgb(path: Path) -> Image.Image:
    """Open, fully decode and convert an image to RGB; raise BadImageError naming the file."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise BadImageError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as err:
        raise BadImageError(f"{path}: file not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise BadImageError(f"{path}: cannot decode image ({err})") from err


def load_array(path: Path) -> np.ndarray:
    """An image as float sRGB in [0, 1], shape (H, W, 3)."""
    return np.asarray(load_rgb(path), dtype=np.float64) / 255.0


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a uint8 RGB array (fixed encoder settings so bytes are reproducible)."""
    import io as _io

    buf = _io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=0, optimize=False)
    return buf.getvalue()
