"""Stage `validate`: Great Expectations suites over the metadata, the splits and the image files.

A failed expectation stops the pipeline (exit 1) after writing reports/validation/report.md,
which names the rule and every offending row, so a bad row in a 16k-row CSV is found in
seconds. `curate` runs the synthetic-lineage suite through `check_synthetic` the same way.
Great Expectations is imported lazily: it costs seconds of start-up.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.checks.suites import (
    ValidationFailed,
    check_data,
)
from dermsynth.core import paths
from dermsynth.core.config import Params


def main(params: Params) -> int:
    prepared = pd.read_csv(paths.PREPARED_TABLE, dtype=str, keep_default_na=False)
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str, keep_default_na=False)
    try:
        check_data(prepared, splits, seeds, params)
    except ValidationFailed as err:
        print(f"validate: FAILED\n{err}")
        return 1
    print(f"validate: all expectations passed ({len(prepared)} metadata rows, {len(splits)} split rows)")
    return 0
