"""The real-data configuration end to end on a stand-in for the Fitzpatrick 17k images.

The test writes a few dozen JPEGs named after real md5hash values of the seven conditions
(their bytes cannot hash to those names, so md5 verification stays off and its result is
recorded), imports them with `dermsynth data import`, and runs `dvc repro report` with
dataset.root=data: prepare drops and counts the rows without an image, and every later
stage runs on the subset, at the real image size, with backbone weights from a file.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dermsynth import metadata
from dermsynth.core import config
from dermsynth.core.study import REAL_COUNTS
from dermsynth.imaging.lesions import render
from dermsynth.imaging.skin import ITA_BANDS
from dermsynth.model.backbone import load_vgg16

from .conftest import REPO, project_copy, run_ok

pytestmark = pytest.mark.slow
PER_CELL = 2  # images per (condition, FST group)


def pick_rows() -> list[dict]:
    """PER_CELL real rows per condition and FST group (I-II, III-IV, V-VI), in CSV order."""
    chosen, seen = [], {}
    with open(metadata.shipped_csv()) as fh:
        for row in csv.DictReader(fh):
            fst = int(row["fitzpatrick_scale"])
            if row["label"] not in REAL_COUNTS or fst < 1:
                continue
            key = (row["label"], (fst + 1) // 2)
            if seen.get(key, 0) < PER_CELL:
                seen[key] = seen.get(key, 0) + 1
                chosen.append(row)
    return chosen


def real_configuration() -> dict:
    """configs/real-data.yaml as written, but for the ImageNet weights (not downloadable here): a state_dict file."""
    settings = config.read_overrides(REPO / "configs" / "real-data.yaml")
    assert settings["features.weights"] == "imagenet"
    return {**settings, "features.weights": "vgg16_weights.pt"}


@pytest.fixture(scope="module")
def real_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real")
    project_copy(root)
    torch.save(load_vgg16("none", seed=1).state_dict(), root / "vgg16_weights.pt")
    raw = config.apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), real_configuration())
    # Only the study's size shrinks (none of these keys is in the real configuration): a few dozen images.
    raw["split"].update(seeds_per_group=1)
    raw["generate"].update(candidates=2, conditions=["psoriasis"])
    raw["curate"].update(keep=2)  # 1 seed x 2: the whole set, so that dose 1 is a dose below it
    raw["features"].update(views=1, batch_size=16)
    raw["train"].update(
        epochs=2, directions=["light_to_dark"], conditions=["psoriasis"], arms=["seed", "synthetic_and_seed"]
    )
    raw["dose"].update(levels=[1])
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    rng = np.random.default_rng(0)
    archive = root / "maintainers.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for row in pick_rows():
            lo, hi = ITA_BANDS[int(row["fitzpatrick_scale"])]
            path = root / "tmp.jpg"
            Image.fromarray(render(row["label"], rng.uniform(lo, hi), 256, rng)).save(path, quality=90)
            zf.write(path, f"fitzpatrick17k/{row['md5hash']}.jpg")
    run_ok([sys.executable, "-m", "dermsynth", "data", "metadata"], root)
    run_ok([sys.executable, "-m", "dermsynth", "data", "import", str(archive)], root)
    run_ok(["dvc", "init", "--no-scm", "-q"], root)
    run_ok(["dvc", "repro", "report"], root)
    return root


def test_import_records_md5_mismatch_without_rejecting(real_study: Path):
    report = (real_study / "reports/data/import.csv").read_text().splitlines()
    assert len(report) == 1 + 7 * 3 * PER_CELL
    rows = list(csv.DictReader(report))
    assert {r["status"] for r in rows} == {"imported"}
    assert {r["md5_matches"] for r in rows} == {"False"}
    assert len(list((real_study / "data/images").glob("*.jpg"))) == 7 * 3 * PER_CELL


def test_missing_images_are_counted_not_silent(real_study: Path):
    summary = json.loads((real_study / "build/prepared/summary.json").read_text())
    assert summary["rows_kept"] == 7 * 3 * PER_CELL
    assert summary["missing_images_dropped"] == 2707 - 7 * 3 * PER_CELL
    report = (real_study / "reports/report.md").read_text()
    assert f"{2707 - 7 * 3 * PER_CELL} study rows have no image file" in report


def test_real_configuration_runs_to_the_report(real_study: Path):
    metrics = json.loads((real_study / "reports/metrics.json").read_text())
    assert set(metrics["arms"]) == {
        f"light_to_dark/psoriasis/{arm}/{group}"
        for arm in ("fitz_only", "seed", "synthetic_and_seed")
        for group in ("III-IV", "V-VI")
    }
    info = json.loads((real_study / "build/features/info.json").read_text())
    assert info["weights"] == "vgg16_weights.pt"
    assert info["crop"] == 224
    validation = (real_study / "reports/validation/report.md").read_text()
    assert "All expectations passed" in validation


def test_real_configuration_is_applied_as_written(real_study: Path):
    used = config.parse(yaml.safe_load((real_study / "params.yaml").read_text()))
    for key, value in real_configuration().items():
        section, name = key.split(".")
        assert getattr(getattr(used, section), name) == value, key


def test_a_real_dataset_with_weights_from_a_file_gets_no_simulation_header(real_study: Path):
    report = (real_study / "reports/report.md").read_text()
    assert report.startswith("# dermsynth study report")
    assert "Simulated results" not in report
    assert "## Net benefit" in report
