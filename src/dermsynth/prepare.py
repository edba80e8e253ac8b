"""Stage `prepare`: load the dataset's metadata, drop FST -1 rows (counted), keep the study's rows.

Rows of other Fitzpatrick 17k labels are out of scope and only counted. A label that is
not a Fitzpatrick 17k label at all is kept, so that `validate` reports it by row instead of
it vanishing here; the same holds for a skin type outside 1..6 other than -1.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

from dermsynth import io, paths
from dermsynth.config import Params
from dermsynth.errors import DermsynthError

REQUIRED = ["md5hash", "fitzpatrick_scale", "label"]


class MetadataError(DermsynthError, ValueError):
    """The metadata file is missing or lacks required columns."""


@cache
def fitzpatrick_labels() -> frozenset[str]:
    text = resources.files("dermsynth").joinpath("fitzpatrick_labels.txt").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def read_metadata(path: Path) -> pd.DataFrame:
    """The metadata CSV as strings, with its source row number (1 = first data row) kept."""
    if not path.exists():
        raise MetadataError(f"{path}: metadata file not found (dataset.root in params.yaml?)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise MetadataError(f"{path}: missing required columns {missing}")
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame


def clean(frame: pd.DataFrame, conditions: list[str]) -> tuple[pd.DataFrame, dict]:
    """Drop unknown-FST rows and out-of-scope labels; return the table and what was dropped."""
    fst = pd.to_numeric(frame["fitzpatrick_scale"], errors="coerce")
    unknown_fst = fst == -1
    out_of_scope = ~frame["label"].isin(conditions) & frame["label"].isin(fitzpatrick_labels())
    kept = frame[~unknown_fst & ~out_of_scope].copy()
    in_study = frame["label"].isin(conditions)
    summary = {
        "rows_in_metadata": len(frame),
        "rows_kept": len(kept),
        "fst_unknown_dropped": int((unknown_fst & in_study).sum()),
        "fst_unknown_dropped_by_label": {c: int((unknown_fst & (frame["label"] == c)).sum()) for c in conditions},
        "out_of_scope_rows": int((out_of_scope | (unknown_fst & ~in_study)).sum()),
    }
    return kept, summary


def main(params: Params) -> None:
    source = paths.dataset_metadata(params.dataset.root)
    frame = read_metadata(source)
    kept, summary = clean(frame, params.prepare.conditions)
    summary["source"] = str(source)
    io.write_csv(paths.PREPARED_TABLE, kept)
    io.write_json(paths.PREPARED_SUMMARY, summary)
    print(
        f"prepare: kept {summary['rows_kept']} of {summary['rows_in_metadata']} rows; "
        f"dropped {summary['fst_unknown_dropped']} study rows with FST -1"
    )
