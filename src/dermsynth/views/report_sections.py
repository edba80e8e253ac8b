"""The study report's sections on the signal, the controls, and the synthetic images themselves.

Each reads versioned outputs only (reports/summary.json's `signal` block from stage `evaluate`,
reports/quality/quality.json from stage `quality`, reports/generators/recovery.md that
`dermsynth compare-generators` writes, and the answers `dermsynth review publish` committed to
`review.answers`), so `dvc repro report` rebuilds them like every other table.
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


def signal_section(signal: dict, level: str) -> list[str]:
    """fitz_only near and far: is there a cross-tone gap for synthetic images to close?"""
    lines = [
        "## The signal: is there a gap to close?",
        "",
        "`fitz_only`'s balanced accuracy (all conditions) on the skin types it trained on (validation split) and on "
        f"the test group at the other extreme (the seeds' group), and the gap with a {level} interval over repeats and "
        "images. A study whose gap is about 0, or whose near accuracy is at chance, has nothing for synthetic images "
        "to close.",
        "",
        "| direction | near (validation) | far (test) | gap [interval] |",
        "|---|---|---|---|",
    ]
    for direction, s in signal.items():
        lines.append(
            f"| {direction} | {s['near_bal_acc']:.3f} | {s['far_bal_acc']:.3f} | {s['gap']:.3f} "
            f"[{s['gap_low']:.3f}, {s['gap_high']:.3f}] |"
        )
    return [*lines, ""]


def recovery_section(recovery_md: Path, embedded: bool) -> list[str]:
    """What the pipeline recovers with the control generators (`dermsynth compare-generators`), on simulated data."""
    if not embedded:
        return []
    head = ["## What the pipeline recovers on simulated data", ""]
    body = recovery_md.read_text().strip()
    if not body:
        return [
            *head,
            f"No comparison on record (`{recovery_md}` is empty). `dermsynth compare-generators oracle tone_transfer "
            "reinhard null` runs the study once per generator, the positive and negative controls among them, and "
            "writes it; `dvc repro report` then adds it here.",
            "",
        ]
    return [*head, body, "", f"From `{recovery_md}` (`dermsynth compare-generators`).", ""]


def step_one_section() -> list[str]:
    """Step one of the paper: the rule's choice of conditions beside the paper's seven (the `selection` stage)."""
    chosen = paths.SELECTION / "selection.md"
    if not chosen.exists():
        return []
    body = chosen.read_text().split("\n", 1)[1].strip()  # without its title
    body = body.replace("reports/groh/", "[reports/groh/groh.md](groh/groh.md)")
    body = body.replace("reports/selection/ranked.csv", "[reports/selection/ranked.csv](selection/ranked.csv)")
    return ["### Step one: the rule that chose them", "", body, ""]
