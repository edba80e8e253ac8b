"""`dvc exp run --queue` + `dvc queue start -j 2` in a temporary git repo: both experiments log into its own store."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import REPEATS, run_ok, tiny_project, tool_env

pytestmark = pytest.mark.slow

LRS = {"lr-high": 0.002, "lr-low": 0.0005}
TIMEOUT_S = 1500
DONE = ("Success", "Failed")


def env() -> dict[str, str]:
    """No MLFLOW_TRACKING_URI (nor a stray DVC_ROOT): the store must come from DVC_ROOT set by the queue."""
    return {k: v for k, v in tool_env().items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}


def sh(*cmd: str, cwd: Path) -> str:
    return run_ok(list(cmd), cwd, env())


def queue_status(root: Path) -> dict[str, str]:
    """`dvc queue status` as {experiment name: Queued | Running | Success | Failed}."""
    lines = sh("dvc", "queue", "status", cwd=root).splitlines()
    return {parts[1]: parts[-1] for line in lines if len(parts := line.split()) >= 4 and parts[1] in LRS}


def wait_for_queue(root: Path) -> dict[str, str]:
    deadline = time.monotonic() + TIMEOUT_S
    while (status := queue_status(root)) and not all(s in DONE for s in status.values()):
        assert time.monotonic() < deadline, f"queue not done after {TIMEOUT_S} s: {status}"
        time.sleep(5)
    return status


def exp_data(root: Path) -> dict[str, dict]:
    """{experiment name: its data (params, metrics, ...)} from `dvc exp show --json`."""
    found = {}
    for commit in json.loads(sh("dvc", "exp", "show", "--json", cwd=root)):
        for experiment in commit.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                found[rev.get("name")] = rev["data"]
    return found


def test_queued_experiments_run_in_parallel_and_log_into_the_repository_store(study: Path, tmp_path: Path):
    root = tiny_project(tmp_path / "repo")
    (root / ".gitignore").write_text("/mlflow.db\n/mlruns/\n")  # git-ignored: not copied into queued runs
    git = ("git", "-c", "user.name=dermsynth-test", "-c", "user.email=test@example.invalid")
    sh(*git, "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    # the session study's cache (a team's shared cache): the stages before training, whose params are the
    # study's, come from DVC's run cache; each experiment trains, evaluates and tracks its own
    sh("dvc", "cache", "dir", str(study / ".dvc" / "cache"), cwd=root)
    sh(*git, "add", "-A", cwd=root)
    sh(*git, "commit", "-q", "-m", "base", cwd=root)
    from mlflow import MlflowClient

    # No store yet: both queued runs create it at once, which races in MLflow's schema migration unless
    # tracking.setup() serialises the first use (it holds a lock file beside the database).
    assert not (root / "mlflow.db").exists()
    for name, lr in LRS.items():
        sh("dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}", cwd=root)
    try:
        sh("dvc", "queue", "start", "-j", "2", cwd=root)
        status = wait_for_queue(root)
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=root, env=env(), capture_output=True, check=False)
    logs = {n: sh("dvc", "queue", "logs", n, cwd=root)[-3000:] for n, s in status.items() if s != "Success"}
    assert status == dict.fromkeys(LRS, "Success"), f"{status}\n" + "\n".join(f"{n}:\n{t}" for n, t in logs.items())

    shown = exp_data(root)
    params = {name: shown[name]["params"]["params.yaml"]["data"]["train"] for name in LRS}
    assert {name: p["lr"] for name, p in params.items()} == LRS
    assert all(p["repeats"] == REPEATS for p in params.values())
    summaries = {name: shown[name]["metrics"]["reports/summary.json"]["data"] for name in LRS}
    assert all("light_to_dark/psoriasis" in summary for summary in summaries.values())

    assert not list((root / ".dvc").rglob("mlflow.db")), "a store was written inside .dvc/tmp/exps"
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dermsynth")
    runs = client.search_runs([experiment.experiment_id], "tags.repeat = 'all'", max_results=1000)
    configurations = [r for r in runs if "arm" in r.data.tags]
    lrs = sorted({float(r.data.params["train.lr"]) for r in configurations})
    assert lrs == sorted(LRS.values())
    per_lr = {
        lr: sorted(r.info.run_name for r in configurations if float(r.data.params["train.lr"]) == lr) for lr in lrs
    }
    assert per_lr[lrs[0]] == per_lr[lrs[1]]  # the same grid for both experiments
    assert "light_to_dark-psoriasis-fitz_only" in per_lr[lrs[0]]
    grids = client.search_runs([experiment.experiment_id], "tags.grid = 'study'")
    assert len(grids) == 2
    for grid in grids:  # each grid run holds exactly its own experiment's configuration runs
        children = [r for r in configurations if r.data.tags.get("mlflow.parentRunId") == grid.info.run_id]
        assert sorted(r.info.run_name for r in children) == per_lr[lrs[0]]
        assert {r.data.params["train.lr"] for r in children} == {grid.data.params["train.lr"]}
    artifacts = Path(experiment.artifact_location.removeprefix("file://"))
    assert artifacts.resolve() == (root / "mlruns").resolve()
    assert artifacts.is_dir()
