import subprocess
import sys

import pytest

from dermsynth import cli


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for stage in (
        "embedded",
        "prepare",
        "split",
        "validate",
        "generate",
        "curate",
        "features",
        "train",
        "evaluate",
        "report",
        "gate",
        "tune",
    ):
        assert stage in out


def test_tune_without_features_is_a_clear_error(workdir):
    done = subprocess.run(
        [sys.executable, "-m", "dermsynth", "tune", "--trials", "1"], cwd=workdir, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "dermsynth tune: error:" in done.stderr
    assert "Traceback" not in done.stderr


def test_track_before_any_repro_names_what_is_missing_in_one_line(workdir):
    done = subprocess.run([sys.executable, "-m", "dermsynth", "track"], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dermsynth track: error: track reads build/prepared/metadata.csv, build/splits/splits.csv")
    assert "build/features/info.json" in line
    assert line.endswith("run `dvc repro` (or `make pull`)")


def test_missing_metadata_is_a_clear_error_not_a_traceback(workdir):
    done = subprocess.run(
        [sys.executable, "-m", "dermsynth", "prepare"], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "fitzpatrick17k.csv: metadata file not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_params_are_reported(workdir):
    (workdir / "params.yaml").write_text(
        (workdir / "params.yaml").read_text().replace("epochs: 2", "epochs: 2\n  epochz: 1")
    )
    done = subprocess.run(
        [sys.executable, "-m", "dermsynth", "split"], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "epochz" in done.stderr
    assert "Traceback" not in done.stderr
