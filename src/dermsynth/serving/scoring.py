"""Scoring images with a registered model: loading it from the project's store, and reading files in chunks.

Shared by `dermsynth predict`, `promote` and `score-external`, so that all three score exactly
what `mlflow models serve` would serve, and name every file they could not read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from dermsynth.core.errors import DermsynthError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
CHUNK = 64  # images read and scored at a time: bounded memory for a folder of any size


def load_model(spec: str) -> object:
    """The pyfunc model behind ``spec``, from the project's MLflow store; a clear error when it is not there."""
    import mlflow

    from dermsynth.serving.registry import model_uri
    from dermsynth.views.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    try:
        return mlflow.pyfunc.load_model(model_uri(spec))
    except mlflow.exceptions.MlflowException as err:
        raise DermsynthError(
            f"model {spec}: {err.message} (run `dvc repro` first, or see `mlflow models list`)"
        ) from err


def classes_of(model: object) -> list[str]:
    return list(model.unwrap_python_model().chain.spec.classes)  # type: ignore[attr-defined]


def expand(items: list[str]) -> tuple[list[Path], bool]:
    """Files as given, folders as their image files (sorted); and whether any folder was given."""
    out, folders = [], False
    for item in items:
        path = Path(item)
        if path.is_dir():
            folders = True
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            out.append(path)
    return out, folders


def read(path: Path) -> tuple[bytes, str]:
    """A file's bytes, or no bytes and why (the model then reports the item as unreadable)."""
    try:
        return path.read_bytes(), ""
    except FileNotFoundError:
        return b"", "file not found"
    except OSError as err:
        return b"", f"cannot read ({err.strerror})"


def scored(model: object, images: list[Path], desc: str, bar: bool = True) -> Iterator[tuple[Path, pd.Series]]:
    """Each image with its row of the model's output; unreadable files get an `error` naming them."""
    with tqdm(total=len(images), desc=desc, unit="img", disable=not bar, file=sys.stderr) as progress:
        for start in range(0, len(images), CHUNK):
            chunk = images[start : start + CHUNK]
            data, unread = zip(*(read(p) for p in chunk), strict=True)
            out = model.predict(pd.DataFrame({"image": list(data)}))  # type: ignore[attr-defined]
            for path, reason, (_, row) in zip(chunk, unread, out.iterrows(), strict=True):
                if row["error"]:
                    row = row.copy()
                    row["error"] = f"{path}: {reason or row['error'].split(': ', 1)[-1]}"
                yield path, row
            progress.update(len(chunk))
