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
from dermsynth.study import group_of

REQUIRED = ["md5hash", "fitzpatrick_scale", "label"]


class MetadataError(DermsynthError, ValueError):
    """The metadata file is missing or lacks required columns."""


@cache
def fitzpatrick_labels() -> frozenset[str]:
    text = resources.files("dermsynth").joinpath("resources", "fitzpatrick_labels.txt").read_text()
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


def drop_missing_images(kept: pd.DataFrame, images: Path) -> tuple[pd.DataFrame, dict]:
    """Rows whose image file is absent, dropped and counted by label and FST group.

    For the real dataset most URLs are dead, so the study runs on whatever subset is present;
    the counts land in the summary and the report so that nothing goes missing silently.
    Files that exist but do not decode are kept: `validate` names them.
    """
    present = set(p.stem for p in images.glob("*.jpg")) if images.exists() else set()
    missing = ~kept["md5hash"].isin(present)
    groups = pd.to_numeric(kept["fitzpatrick_scale"], errors="coerce").map(
        lambda v: group_of(int(v)) if pd.notna(v) else None
    )
    by_group = kept[missing].groupby([kept["label"], groups]).size()
    counts = {f"{label} / {group}": int(n) for (label, group), n in by_group.items()}
    return kept[~missing].copy(), {"missing_images_dropped": int(missing.sum()), "missing_images_by_group": counts}


def main(params: Params) -> None:
    source = paths.dataset_metadata(params.dataset.root)
    frame = read_metadata(source)
    kept, summary = clean(frame, params.prepare.conditions)
    summary["source"] = str(source)
    if params.dataset.missing_images == "drop":
        kept, missing = drop_missing_images(kept, paths.dataset_images(params.dataset.root))
        summary.update(missing, rows_kept=len(kept))
        print(f"prepare: {missing['missing_images_dropped']} rows have no image file and are left out")
    io.write_csv(paths.PREPARED_TABLE, kept)
    io.write_json(paths.PREPARED_SUMMARY, summary)
    print(
        f"prepare: kept {summary['rows_kept']} of {summary['rows_in_metadata']} rows; "
        f"dropped {summary['fst_unknown_dropped']} study rows with FST -1"
    )
