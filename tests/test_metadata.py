"""The metadata-only report on the real CSV, checked by hand against the CSV with the csv module."""

import csv
from collections import Counter

import pytest

from dermsynth import metadata
from dermsynth.cohort import selection
from dermsynth.core import config, paths
from dermsynth.core.study import REAL_COUNTS

from .conftest import REPO

STUDY_LABELS = tuple(REAL_COUNTS)  # the seven labels of the study, as in fitzpatrick17k.csv

CSV = metadata.shipped_csv()


@pytest.fixture(scope="module")
def hand_counts() -> Counter:
    with open(CSV) as fh:
        return Counter((r["label"], int(r["fitzpatrick_scale"])) for r in csv.DictReader(fh))


def test_shipped_csv_is_the_pinned_file():
    assert metadata.sha256(CSV) == metadata.SHIPPED_SHA256


def test_install_copies_the_verified_csv(tmp_path):
    dest = metadata.install_metadata(tmp_path / "data" / "fitzpatrick17k.csv")
    assert metadata.sha256(dest) == metadata.SHIPPED_SHA256


def test_report_without_any_image(workdir, params, hand_counts):
    images = paths.dataset_images(params.dataset.root)
    assert not images.exists()
    metadata.main(params, str(CSV))
    numbers = __import__("json").loads((paths.METADATA_REPORTS / "summary.json").read_text())
    for label in STUDY_LABELS:
        row = numbers["counts"][label]
        assert [row[str(f)] for f in (1, 2, 3, 4, 5, 6)] == [hand_counts[(label, f)] for f in (1, 2, 3, 4, 5, 6)]
        assert row["FST -1 dropped"] == hand_counts[(label, -1)]
        assert row["total"] == sum(hand_counts[(label, f)] for f in (1, 2, 3, 4, 5, 6))
    assert numbers["counts"]["total"]["total"] == 2707
    assert numbers["counts"]["total"]["FST -1 dropped"] == 128
    report = (paths.METADATA_REPORTS / "report.md").read_text()
    assert "differs by one image. Here it is 46 (46 rows at FST V-VI minus 0 seeds" in report  # no ND seeds here
    assert numbers["fst_unknown_dropped"] == sum(hand_counts[(label, -1)] for label in STUDY_LABELS) == 128
    assert numbers["labels_in_metadata"] == 114
    assert numbers["urls"]["rows_without_url"] == 41
    assert numbers["urls"]["study_rows_without_url"] == 0
    assert (paths.METADATA_REPORTS / "report.md").read_text().startswith("# Metadata report")


def test_split_sizes_match_the_csv(hand_counts):
    """Sizes under the committed study parameters (8 + 8 seeds, 20% validation)."""
    committed = config.parse(config.read_yaml(REPO / "params.yaml"))
    numbers, _ = metadata.feasibility(selection.read_metadata(CSV), committed)
    sizes = {(r["direction"], r["condition"]): r for r in numbers["split_sizes"]}

    def group(label_set, fsts):
        return sum(hand_counts[(label, f)] for label in label_set for f in fsts)

    light, dark = sizes[("light_to_dark", "all")], sizes[("dark_to_light", "all")]
    assert light["train"] + light["val"] == group(STUDY_LABELS, (1, 2)) == 1284
    assert light["test III-IV"] == group(STUDY_LABELS, (3, 4)) == 1076
    assert light["test V-VI"] == group(STUDY_LABELS, (5, 6)) - 3 * 8 == 323  # seeds of the 3 augmented conditions only
    assert light["seeds added"] == 24
    assert dark["train"] + dark["val"] == group(STUDY_LABELS, (5, 6)) == 347
    assert dark["test I-II"] == group(STUDY_LABELS, (1, 2)) - 24 == 1260
    psoriasis = sizes[("light_to_dark", "psoriasis *")]
    assert psoriasis["val"] == round(0.2 * group(["psoriasis"], (1, 2))) == 69
    assert psoriasis["test V-VI"] == group(["psoriasis"], (5, 6)) - 8 == 77
    assert (
        sizes[("dark_to_light", "squamous cell carcinoma *")]["test I-II"]
        == group(["squamous cell carcinoma"], (1, 2)) - 8
    )


# Test-set sizes of the paper's design (seeds only for the three augmented conditions), per condition: the paper's
# Tables 2-3 and its spillover table (e.g. basal cell carcinoma on all 241 FST I-II and 188 III-IV images).
PAPER_TEST_SIZES = {
    ("light_to_dark", "III-IV"): {
        "basal cell carcinoma": 188,
        "folliculitis": 150,
        "nematode infection": 139,
        "neutrophilic dermatoses *": 119,
        "prurigo nodularis": 95,
        "psoriasis *": 192,
        "squamous cell carcinoma *": 193,
    },
    ("light_to_dark", "V-VI"): {
        "basal cell carcinoma": 31,
        "folliculitis": 40,
        "nematode infection": 44,
        "neutrophilic dermatoses *": 38,
        "prurigo nodularis": 38,
        "psoriasis *": 77,
        "squamous cell carcinoma *": 55,
    },
    ("dark_to_light", "I-II"): {
        "basal cell carcinoma": 241,
        "folliculitis": 127,
        "nematode infection": 71,
        "neutrophilic dermatoses *": 177,
        "prurigo nodularis": 35,
        "psoriasis *": 337,
        "squamous cell carcinoma *": 272,
    },
    ("dark_to_light", "III-IV"): {
        "basal cell carcinoma": 188,
        "folliculitis": 150,
        "nematode infection": 139,
        "neutrophilic dermatoses *": 119,
        "prurigo nodularis": 95,
        "psoriasis *": 192,
        "squamous cell carcinoma *": 193,
    },
}


def test_test_sizes_per_condition_follow_the_papers_seed_design():
    committed = config.parse(config.read_yaml(REPO / "params.yaml"))
    numbers, text = metadata.feasibility(selection.read_metadata(CSV), committed)
    sizes = {(r["direction"], r["condition"]): r for r in numbers["split_sizes"]}
    for (direction, group), expected in PAPER_TEST_SIZES.items():
        assert {c: sizes[(direction, c)][f"test {group}"] for c in expected} == expected
    assert "differs by one image. Here it is 38 (46 rows at FST V-VI minus 8 seeds" in text


def test_seeds_for_every_condition_stay_available_as_a_parameter(hand_counts):
    raw = config.read_yaml(REPO / "params.yaml")
    raw["split"]["seed_conditions"] = "all"
    numbers, _ = metadata.feasibility(selection.read_metadata(CSV), config.parse(raw))
    sizes = {(r["direction"], r["condition"]): r for r in numbers["split_sizes"]}
    assert sizes[("light_to_dark", "all")]["seeds added"] == 56
    assert sizes[("dark_to_light", "basal cell carcinoma")]["test I-II"] == 241 - 8
