"""The Great Expectations suites and their readable report: metadata, splits, synthetic lineage, near-duplicates.

A failure names the rows and rule in reports/validation/*.md and stops the stage that ran
it (`validate` for the data, `curate` for synthetic sets).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import DIRECTIONS, load_conditions

FST_VALUES = ["1", "2", "3", "4", "5", "6"]


@dataclass
class Rule:
    """One expectation with a sentence a person reads in the report."""

    text: str
    expectation: Any


@dataclass
class Failure:
    suite: str
    rule: str
    count: int
    rows: list[dict] = field(default_factory=list)


class ValidationFailed(DermsynthError, RuntimeError):
    """At least one expectation failed; the message is the readable report."""


def run_suite(name: str, frame: pd.DataFrame, rules: list[Rule], id_columns: list[str]) -> list[Failure]:
    """Validate ``frame`` against ``rules`` with an ephemeral GX context; return the failures."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
    batch = context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for rule in rules:
        suite.add_expectation(rule.expectation)
    definition = gx.ValidationDefinition(data=batch, suite=suite, name=name)
    result = definition.run(
        batch_parameters={"dataframe": frame.reset_index(drop=True)},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": id_columns},
    )
    failures = []
    for rule, outcome in zip(rules, result.results, strict=True):
        if not outcome.success:
            rows = [
                {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                for row in outcome.result.get("unexpected_index_list") or []
            ]
            count = outcome.result.get("unexpected_count")
            failures.append(Failure(name, rule.text, int(count if count is not None else len(rows)), rows))
    return failures


def image_status(path: Path) -> str:
    """'ok', or what is wrong with the file, for the image-file rule."""
    try:
        files.load_rgb(path)
    except files.BadImageError as err:
        return str(err).split(": ", 1)[1]
    return "ok"


def metadata_rules(conditions: list[str]) -> list[Rule]:
    import great_expectations.expectations as gxe

    return [
        Rule(
            f"label is one of the study's {len(conditions)} conditions",
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=conditions),
        ),
        Rule(
            "fitzpatrick_scale is an integer in 1..6",
            gxe.ExpectColumnValuesToBeInSet(column="fitzpatrick_scale", value_set=FST_VALUES),
        ),
        Rule("md5hash is unique", gxe.ExpectColumnValuesToBeUnique(column="md5hash")),
        Rule(
            "md5hash is 32 lowercase hex digits",
            gxe.ExpectColumnValuesToMatchRegex(column="md5hash", regex=paths.MD5_PATTERN),
        ),
        Rule(
            "the image file <md5hash>.jpg exists and decodes",
            gxe.ExpectColumnValuesToBeInSet(column="image_status", value_set=["ok"]),
        ),
    ]


def metadata_frame(prepared: pd.DataFrame, images: Path) -> pd.DataFrame:
    frame = prepared[["row", "md5hash", "label", "fitzpatrick_scale"]].copy()
    frame["image_status"] = [
        image_status(paths.image_file(images, h)) if re.match(paths.MD5_PATTERN, h) else "no file name (bad md5hash)"
        for h in frame["md5hash"]
    ]
    return frame


def split_rules(seed_md5: list[str]) -> list[Rule]:
    import great_expectations.expectations as gxe

    return [
        Rule(
            "an image has one role per direction and draw (train, validation, test and seeds are disjoint)",
            gxe.ExpectColumnValuesToBeUnique(column="direction_md5"),
        ),
        Rule(
            "each role draws from its FST group (validation only from the training group)",
            gxe.ExpectColumnValuesToBeInSet(column="group_ok", value_set=[True]),
        ),
        Rule(
            "no seed of any draw is in any test set",
            gxe.ExpectColumnValuesToNotBeInSet(column="test_md5", value_set=seed_md5),
        ),
    ]


def expected_groups(direction: str, role: str) -> tuple[str, ...]:
    d = DIRECTIONS[direction]
    return {"train": (d.train_group,), "val": (d.train_group,), "test": d.test_groups, "seed": (d.seed_group,)}[role]


def splits_frame(splits: pd.DataFrame) -> pd.DataFrame:
    frame = splits[["direction", "role", "md5hash", "group"]].copy()
    # one role per image within each draw of the seeds: a seed may be drawn again by another draw
    draw = splits["draw"].fillna("").astype(str) if "draw" in splits else ""
    frame["direction_md5"] = frame["direction"] + "/" + frame["md5hash"] + "/" + draw
    frame["group_ok"] = [
        g in expected_groups(d, r) for d, r, g in zip(frame["direction"], frame["role"], frame["group"], strict=True)
    ]
    frame["test_md5"] = frame["md5hash"].where(frame["role"] == "test")
    return frame


def synthetic_rules(seed_md5: list[str], test_md5: list[str]) -> list[Rule]:
    import great_expectations.expectations as gxe

    return [
        Rule(
            "every synthetic image's parent is a drawn seed",
            gxe.ExpectColumnValuesToBeInSet(column="seed_md5hash", value_set=seed_md5),
        ),
        Rule(
            "no synthetic image's parent seed is in any test set",
            gxe.ExpectColumnValuesToNotBeInSet(column="seed_md5hash", value_set=test_md5),
        ),
        Rule("synthetic file names are unique", gxe.ExpectColumnValuesToBeUnique(column="file")),
    ]


def render_report(failures: list[Failure], checked: dict[str, int], limit: int) -> str:
    lines = ["# Validation report", ""]
    lines += [f"- suite `{name}`: {n} rows checked" for name, n in checked.items()]
    if not failures:
        return "\n".join([*lines, "", "All expectations passed.", ""])
    lines += ["", f"**{len(failures)} expectation(s) failed.**", ""]
    for f in failures:
        lines += [f"## [{f.suite}] {f.rule}: {f.count} row(s)", ""]
        for row in f.rows[:limit]:
            lines.append("- " + ", ".join(f"{k}={v}" for k, v in row.items()))
        if len(f.rows) > limit:
            lines.append(f"- ... and {len(f.rows) - limit} more (see failures.json)")
        lines.append("")
    return "\n".join(lines)


def publish(failures: list[Failure], checked: dict[str, int], limit: int, name: str, stop: bool = True) -> None:
    """Write the report; raise ValidationFailed when anything failed and ``stop`` is set."""
    folder = paths.VALIDATION_REPORTS
    text = render_report(failures, checked, limit)
    files.write_text(folder / f"{name}.md", text)
    files.write_json(folder / f"{name}.json", {"checked": checked, "failures": [f.__dict__ for f in failures]})
    if failures and stop:
        raise ValidationFailed(text + f"\n(report: {folder / f'{name}.md'})")


def check_data(prepared: pd.DataFrame, splits: pd.DataFrame, seeds: pd.DataFrame, params: Params) -> None:
    meta = metadata_frame(prepared, paths.dataset_images(params.dataset.root))
    seed_md5 = sorted(seeds["md5hash"])
    failures = run_suite("metadata", meta, metadata_rules(load_conditions()), ["row", "md5hash"])
    failures += run_suite("splits", splits_frame(splits), split_rules(seed_md5), ["direction", "role", "md5hash"])
    publish(failures, {"metadata": len(meta), "splits": len(splits)}, params.validate.max_rows_in_report, "report")


def near_duplicate_rules(max_bits: int) -> list[Rule]:
    import great_expectations.expectations as gxe

    return [
        Rule(
            f"a candidate is no near-duplicate of any test image (perceptual-hash distance > {max_bits} bits)",
            gxe.ExpectColumnValuesToBeBetween(column="nearest_test_phash", min_value=max_bits + 1),
        )
    ]


def screen_near_duplicates(candidates: pd.DataFrame, max_bits: int, limit: int) -> set[str]:
    """Files of candidates that the near-duplicate rule rejects (they would leak a test image into training).

    The rule rejects candidates rather than stopping the stage: the other candidates of the
    seed can still be used. reports/validation/near_duplicates.md lists every rejection.
    """
    frame = candidates[["file", "nearest_test_md5", "nearest_test_phash"]]
    failures = run_suite("near_duplicates", frame, near_duplicate_rules(max_bits), ["file", "nearest_test_md5"])
    publish(failures, {"near_duplicates": len(frame)}, limit, "near_duplicates", stop=False)
    return {row["file"] for f in failures for row in f.rows}


def check_synthetic(manifest: pd.DataFrame, splits: pd.DataFrame, seeds: pd.DataFrame, params: Params) -> None:
    """The lineage suite for generated or curated images (run by `curate`)."""
    test_md5 = sorted(set(splits.loc[splits["role"] == "test", "md5hash"]))
    rules = synthetic_rules(sorted(seeds["md5hash"]), test_md5)
    failures = run_suite("synthetic", manifest[["file", "seed_md5hash"]], rules, ["file", "seed_md5hash"])
    publish(failures, {"synthetic": len(manifest)}, params.validate.max_rows_in_report, "synthetic")
