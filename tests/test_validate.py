"""Every Great Expectations rule fails on a deliberately broken input and names the row."""

import pandas as pd
import pytest

from dermsynth import prepare, split, validate
from dermsynth.checks import suites
from dermsynth.core import config, paths


def raw_metadata() -> pd.DataFrame:
    return pd.read_csv(paths.dataset_metadata(str(paths.EMBEDDED)), dtype=str, keep_default_na=False)


def rerun_with(params, meta: pd.DataFrame, capsys) -> tuple[int, str]:
    """Write broken metadata, run prepare -> split -> validate as the pipeline does."""
    meta.to_csv(paths.dataset_metadata(str(paths.EMBEDDED)), index=False)
    prepare.main(params)
    split.main(params)
    capsys.readouterr()
    code = validate.main(params)
    return code, capsys.readouterr().out


def study_row(meta: pd.DataFrame, fst: str = "2") -> int:
    return int(meta.index[(meta["label"] == "psoriasis") & (meta["fitzpatrick_scale"] == fst)][0])


def test_clean_data_passes(embedded_data, params, capsys):
    assert validate.main(params) == 0
    assert "All expectations passed" in (paths.VALIDATION_REPORTS / "report.md").read_text()


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("fitzpatrick_scale", "7", "fitzpatrick_scale is an integer in 1..6"),
        ("label", "psoriasiss", "label is one of the study's"),
        ("md5hash", "NOT-A-HASH", "md5hash is 32 lowercase hex digits"),
    ],
)
def test_bad_metadata_value_is_named(embedded_data, params, capsys, column, value, rule):
    meta = raw_metadata()
    i = study_row(meta)
    meta.loc[i, column] = value
    code, out = rerun_with(params, meta, capsys)
    assert code == 1
    assert rule in out
    assert f"row={i + 1}" in out  # 1-based row number of the source CSV
    assert "Traceback" not in out


def test_duplicate_md5_is_named(embedded_data, params, capsys):
    meta = raw_metadata()
    i, j = study_row(meta, "2"), study_row(meta, "1")
    meta.loc[j, "md5hash"] = meta.loc[i, "md5hash"]
    code, out = rerun_with(params, meta, capsys)
    assert code == 1
    assert "md5hash is unique" in out
    assert f"row={j + 1}" in out


def test_missing_and_truncated_images_are_named(embedded_data, params, capsys):
    meta = raw_metadata()
    images = paths.dataset_images(str(paths.EMBEDDED))
    gone, cut = meta.loc[study_row(meta, "2"), "md5hash"], meta.loc[study_row(meta, "1"), "md5hash"]
    paths.image_file(images, gone).unlink()
    data = paths.image_file(images, cut).read_bytes()
    paths.image_file(images, cut).write_bytes(data[: len(data) // 2])
    code, out = rerun_with(params, meta, capsys)
    assert code == 1
    assert "exists and decodes" in out
    assert gone in out
    assert cut in out
    report = (paths.VALIDATION_REPORTS / "report.md").read_text()
    assert "file not found" in report
    assert "cannot decode" in report


@pytest.mark.parametrize("value", ["NOT-A-HASH", "../../etc/passwd", "0" * 31])
def test_a_malformed_md5hash_is_named_in_drop_mode_not_dropped(embedded_data, raw_params, capsys, value):
    """Only a missing file may be dropped; a bad identifier (or a path) stops validation in either mode."""
    raw_params["dataset"]["missing_images"] = "drop"
    meta = raw_metadata()
    i = study_row(meta)
    meta.loc[i, "md5hash"] = value
    code, out = rerun_with(config.parse(raw_params), meta, capsys)
    assert code == 1
    assert "md5hash is 32 lowercase hex digits" in out
    assert f"row={i + 1}" in out
    assert value in out


def test_an_empty_image_file_is_named_as_empty(embedded_data, raw_params, capsys):
    raw_params["dataset"]["missing_images"] = "drop"  # an empty file exists: it is not "missing", it is bad
    meta = raw_metadata()
    empty = meta.loc[study_row(meta, "2"), "md5hash"]
    paths.image_file(paths.dataset_images(str(paths.EMBEDDED)), empty).write_bytes(b"")
    code, out = rerun_with(config.parse(raw_params), meta, capsys)
    assert code == 1
    assert empty in out
    assert "empty file (0 bytes)" in (paths.VALIDATION_REPORTS / "report.md").read_text()


def split_failures(splits: pd.DataFrame) -> list[suites.Failure]:
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str)
    return suites.run_suite(
        "splits",
        suites.splits_frame(splits),
        suites.split_rules(sorted(seeds["md5hash"])),
        ["direction", "role", "md5hash"],
    )


def test_overlapping_roles_fail(embedded_data):
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str)
    leaked = splits[(splits["role"] == "train")].head(1).assign(role="val")
    failures = split_failures(pd.concat([splits, leaked], ignore_index=True))
    assert [f.rule for f in failures] == [suites.split_rules([])[0].text]
    assert failures[0].rows[0]["md5hash"] == leaked["md5hash"].iloc[0]


def test_seed_in_test_set_fails(embedded_data):
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str)
    seed = splits[splits["role"] == "seed"].head(1)
    other = "dark_to_light" if seed["direction"].iloc[0] == "light_to_dark" else "light_to_dark"
    failures = split_failures(pd.concat([splits, seed.assign(role="test", direction=other)], ignore_index=True))
    assert "no seed of any draw is in any test set" in [f.rule for f in failures]


def test_validation_from_another_group_fails(embedded_data):
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str)
    i = splits.index[(splits["role"] == "test") & (splits["direction"] == "light_to_dark")][0]
    splits.loc[i, "role"] = "val"
    failures = split_failures(splits)
    assert [f.rule for f in failures] == [suites.split_rules([])[1].text]


def test_synthetic_parent_in_test_set_fails(embedded_data, params):
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str)
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str)
    test_md5 = splits.loc[splits["role"] == "test", "md5hash"].iloc[0]
    manifest = pd.DataFrame({"file": ["a_0.jpg", "b_0.jpg"], "seed_md5hash": [seeds["md5hash"].iloc[0], test_md5]})
    with pytest.raises(suites.ValidationFailed) as err:
        suites.check_synthetic(manifest, splits, seeds, params)
    text = str(err.value)
    assert "no synthetic image's parent seed is in any test set" in text
    assert "b_0.jpg" in text
    assert "every synthetic image's parent is a drawn seed" in text
