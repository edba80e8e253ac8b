"""End to end: the real dvc.yaml and stages on the shrunk configuration, in a temporary copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, project_copy, run_ok, shrink, tool_env

pytestmark = pytest.mark.slow


def dvc(*args: str, cwd: Path) -> str:
    return run_ok(["dvc", *args], cwd)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    project_copy(root)
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    dvc("init", "--no-scm", "-q", cwd=root)
    dvc("repro", cwd=root)
    return root


def test_study_tables_are_complete(study: Path):
    metrics = json.loads((study / "reports/metrics.json").read_text())
    arms = metrics["arms"]
    assert set(arms) == {
        f"light_to_dark/psoriasis/{arm}/{g}"
        for arm in ("fitz_only", "seed", "synthetic_and_seed")
        for g in ("III-IV", "V-VI")
    }
    for cell in arms.values():
        assert 0.0 <= cell["wald_low"] <= cell["acc"] <= cell["wald_high"] <= 1.0
        assert cell["n"] > 0
    assert {k.split("/")[2] for k in metrics["dose"]} == {"dose0", "dose2"}
    assert len(metrics["spillover"]) == 4 * 2 * 7
    report = (study / "reports/report.md").read_text()
    for heading in ("Counts by condition and FST", "Arms", "Dose-response", "Spillover", "validation accuracy"):
        assert heading in report
    assert (study / "reports/figures/arms.png").stat().st_size > 1000
    assert (study / "reports/figures/dose_response.png").stat().st_size > 1000


def test_mlflow_runs_are_tagged_and_match_the_metrics_files(study: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dermsynth")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.arm = 'synthetic_and_seed'")
    assert sorted(r.data.tags["dose"] for r in runs) == ["2", "4"]  # dose2 and all 2 seeds x 2 kept
    run = next(r for r in runs if r.data.tags["stage"] == "train")
    for tag in ("direction", "condition", "arm", "dose", "repeat", "dataset", "generator", "git_commit", "stage"):
        assert tag in run.data.tags
    on_disk = json.loads((study / "reports/runs/light_to_dark-psoriasis-synthetic_and_seed.json").read_text())
    assert on_disk == pytest.approx({k: run.data.metrics[k] for k in on_disk})
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "predictions.csv"} <= artifacts


def test_second_repro_is_a_no_op_and_a_dose_change_reruns_only_its_dependents(study: Path):
    again = dvc("repro", cwd=study)
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in again
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["dose"]["levels"] = [1]
    (study / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc("status", "--json", cwd=study)
    changed = set(json.loads(status))
    assert changed == {"dose@psoriasis-1", "evaluate"}


def test_gate_accepts_its_own_baseline_and_rejects_a_regression(study: Path):
    env = tool_env()
    gate = [sys.executable, "-m", "dermsynth", "gate"]
    assert subprocess.run([*gate, "--update"], cwd=study, env=env, check=False).returncode == 0
    assert subprocess.run(gate, cwd=study, env=env, check=False).returncode == 0
    baseline = json.loads((study / "reports/baseline.json").read_text())
    key = next(iter(baseline["arms"]))
    baseline["arms"][key]["acc"] = 1.5
    (study / "reports/baseline.json").write_text(json.dumps(baseline))
    done = subprocess.run(gate, cwd=study, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert key in done.stdout
