"""The metadata-only report on the real CSV, checked by hand against the CSV with the csv module."""

import csv
from collections import Counter

import pytest

from dermsynth import config, metadata, paths, prepare
from dermsynth.study import LABELS

from .conftest import REPO

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
    for label in LABELS:
        row = numbers["counts"][label]
        assert [row[str(f)] for f in (-1, 1, 2, 3, 4, 5, 6)] == [
            hand_counts[(label, f)] for f in (-1, 1, 2, 3, 4, 5, 6)
        ]
    assert numbers["fst_unknown_dropped"] == sum(hand_counts[(label, -1)] for label in LABELS) == 128
    assert numbers["labels_in_metadata"] == 114
    assert numbers["urls"]["rows_without_url"] == 41
    assert numbers["urls"]["study_rows_without_url"] == 0
    assert (paths.METADATA_REPORTS / "report.md").read_text().startswith("# Metadata report")


def test_split_sizes_match_the_csv(hand_counts):
    """Sizes under the committed study parameters (8 + 8 seeds, 20% validation)."""
    committed = config.parse(config.read_yaml(REPO / "params.yaml"))
    numbers, _ = metadata.feasibility(prepare.read_metadata(CSV), committed)
    sizes = {(r["direction"], r["condition"]): r for r in numbers["split_sizes"]}

    def group(label_set, fsts):
        return sum(hand_counts[(label, f)] for label in label_set for f in fsts)

    light, dark = sizes[("light_to_dark", "all")], sizes[("dark_to_light", "all")]
    assert light["train"] + light["val"] == group(LABELS, (1, 2)) == 1284
    assert light["test III-IV"] == group(LABELS, (3, 4)) == 1076
    assert light["test V-VI"] == group(LABELS, (5, 6)) - 7 * 8 == 291
    assert light["seeds added"] == 56
    assert dark["train"] + dark["val"] == group(LABELS, (5, 6)) == 347
    assert dark["test I-II"] == group(LABELS, (1, 2)) - 56 == 1228
    psoriasis = sizes[("light_to_dark", "psoriasis")]
    assert psoriasis["val"] == round(0.2 * group(["psoriasis"], (1, 2))) == 69
    assert psoriasis["test V-VI"] == group(["psoriasis"], (5, 6)) - 8 == 77
    assert (
        sizes[("dark_to_light", "squamous cell carcinoma")]["test I-II"]
        == group(["squamous cell carcinoma"], (1, 2)) - 8
    )
