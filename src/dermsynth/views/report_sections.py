"""The study report's sections on the synthetic images themselves: their measured quality and the reader study.

Both read versioned outputs only (reports/quality/quality.json from stage `quality`, and the
answers `dermsynth review publish` committed to `review.answers`), so `dvc repro report`
rebuilds them like every other table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.analysis import quality
from dermsynth.core import files, paths
from dermsynth.review import analysis


def quality_section(quality_json: Path) -> list[str]:
    """KID, tone fidelity, diversity and copying per generator x condition x FST group (stage `quality`)."""
    lines = quality.markdown(files.read_json(quality_json)).splitlines()
    where = f"Per candidate: `{paths.QUALITY / 'scores.csv'}`, and on the contact sheet."
    return [lines[0].replace("# ", "## ", 1), *lines[1:], "", where, ""]


def reader_study_section(answers_csv: Path, kept: set[str] | None, z: float, data: str) -> list[str]:
    """The published reader study (review.answers), or how to run one where none has been published."""
    answers = pd.read_csv(answers_csv, dtype={"key": str}, keep_default_na=False)
    if answers.empty:
        return [
            "## Reader study: real or synthetic?",
            "",
            f"No reader study published yet (`{answers_csv}` holds no answers). `dermsynth review plan`, "
            "`review reader NAME`, `review serve`, then `review publish` and `dvc repro report` add one here "
            "(docs/review.md).",
            "",
        ]
    result = analysis.analyse(answers, kept, z) | {"data": data}
    body = analysis.markdown(result).splitlines()
    return [body[0].replace("# ", "## ", 1), *body[1:], "", f"Answers: `{answers_csv}`.", ""]
