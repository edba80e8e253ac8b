"""Stage `prepare`: load the metadata, choose the study's conditions, drop FST -1 rows (counted).

Conditions are either the explicit list of docs/protocol.md (`prepare.selection: explicit`) or
chosen automatically (`auto`): all labels ranked by the smaller of their image counts at the
two FST extremes (I-II and V-VI), the study's first selection criterion; the top
`prepare.auto_count` are kept. With `groh`, the top `prepare.auto_count` of the paper's own rule
(counts and held-out accuracy in Groh et al.'s FST holdouts; stage `selection`) are kept. The
choice and its reason go to build/prepared/conditions.json,
which every later stage reads (not params.yaml), and to the report.

Rows of other Fitzpatrick 17k labels are out of scope and only counted. A label that is not a
Fitzpatrick 17k label at all is kept, so that `validate` reports it by row instead of it
vanishing here; the same holds for a skin type outside 1..6 other than -1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dermsynth.cohort.selection import (
    clean,
    drop_missing_images,
    image_names,
    read_metadata,
    select_conditions,
)
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError


def rule(params: Params, source: Path) -> dict | None:
    """The `selection` stage's choice, when `prepare.selection: groh` (it must have read this very metadata)."""
    if params.prepare.selection != "groh":
        return None
    chosen = files.read_json(paths.SELECTION / "selection.json")
    if chosen.get("metadata_md5") != hashlib.md5(source.read_bytes()).hexdigest():
        raise DermsynthError(f"{paths.SELECTION / 'selection.json'} was made from other metadata than {source}: "
                             "run `dvc repro selection` (or the whole pipeline) first")  # fmt: skip
    return chosen


def main(params: Params) -> None:
    source = paths.dataset_metadata(params.dataset.root)
    frame = read_metadata(source)
    drop = params.dataset.missing_images == "drop"
    present = image_names(paths.dataset_images(params.dataset.root)) if drop else set()
    usable = frame[frame["md5hash"].isin(present)] if drop else frame
    selection = select_conditions(usable, params.prepare, rule(params, source))
    kept, summary = clean(frame, selection["conditions"])
    summary["source"] = str(source)
    if drop:
        kept, missing = drop_missing_images(kept, present)
        summary.update(missing, rows_kept=len(kept))
        print(f"prepare: {missing['missing_images_dropped']} rows have no image file and are left out")
        malformed = int((~kept["md5hash"].astype(str).str.fullmatch(paths.MD5_PATTERN.strip("^$"))).sum())
        if malformed:
            print(f"prepare: {malformed} rows have a malformed md5hash; they are kept for `validate` to name")
    files.write_csv(paths.PREPARED_TABLE, kept)
    files.write_json(paths.PREPARED_SUMMARY, summary)
    files.write_json(paths.PREPARED_CONDITIONS, selection)
    print(
        f"prepare: {selection['mode']} conditions {selection['conditions']}; kept {summary['rows_kept']} of "
        f"{summary['rows_in_metadata']} rows; dropped {summary['fst_unknown_dropped']} study rows with FST -1"
    )
