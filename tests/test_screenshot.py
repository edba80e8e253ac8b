"""scripts/mlflow_compare_screenshot.py against a tiny store made here: a real server and headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, tool_env

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "mlflow_compare_screenshot.py"


def tiny_store(root: Path) -> tuple[str, dict[str, str]]:
    """Two configuration runs (fitz_only, synthetic_and_seed) logged with MLflow's client, plus a decoy dose run."""
    from mlflow import MlflowClient

    store = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.create_experiment("dermsynth", artifact_location=(root / "mlruns").as_uri())
    ids = {}
    for arm, stage, acc in [("fitz_only", "train", 0.4), ("synthetic_and_seed", "train", 0.6), ("dose", "dose", 0.5)]:
        tags = {"arm": arm if stage == "train" else "synthetic_and_seed", "stage": stage, "repeat": "all"}
        tags |= {"condition": "psoriasis", "direction": "light_to_dark"}
        run = client.create_run(experiment, tags=tags, run_name=f"light_to_dark-psoriasis-{arm}")
        client.log_param(run.info.run_id, "train.lr", 0.001)
        client.log_param(run.info.run_id, "n_synthetic", 0 if arm == "fitz_only" else 4)
        for epoch in range(3):
            client.log_metric(run.info.run_id, "epoch/val_acc", acc * (epoch + 1) / 3, step=epoch)
        client.log_metric(run.info.run_id, "test/V-VI/psoriasis/acc", acc)
        client.set_terminated(run.info.run_id)
        ids[arm] = run.info.run_id
    return store, ids


def screenshot(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_screenshot_of_the_two_arms_is_written_and_not_blank(tmp_path: Path):
    from PIL import Image

    store, ids = tiny_store(tmp_path)
    out = tmp_path / "figures" / "compare.png"
    done = screenshot(tmp_path, "--store", store, "--out", str(out), "--arms", "fitz_only", "synthetic_and_seed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "#/compare-runs?runs=" in done.stdout
    assert ids["fitz_only"] in done.stdout
    assert ids["synthetic_and_seed"] in done.stdout
    assert ids["dose"] not in done.stdout  # dose-stage runs are not an arm's run
    with Image.open(out) as image:
        assert image.size == (1600, 1200)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 32
    assert not list(tmp_path.glob("mlartifacts")), "the server must not write into the working directory"


def test_no_matching_run_is_a_clear_error(tmp_path: Path):
    store, _ = tiny_store(tmp_path)
    done = screenshot(tmp_path, "--store", store, "--out", str(tmp_path / "x.png"), "--condition", "folliculitis")
    assert done.returncode == 2
    assert "no run in" in done.stderr
    assert "condition=folliculitis" in done.stderr
    assert not (tmp_path / "x.png").exists()


def test_missing_chromium_is_a_clear_error(tmp_path: Path):
    store, _ = tiny_store(tmp_path)
    env = tool_env(PATH=str(Path(sys.executable).parent))  # the venv's scripts only: no chromium
    done = screenshot(tmp_path, "--store", store, "--out", str(tmp_path / "x.png"), env=env)
    assert done.returncode == 2
    assert "no Chromium found" in done.stderr
