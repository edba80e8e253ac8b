"""A team's services, started the documented way (`dermsynth services`), against the real PostgreSQL.

Workers are real `dermsynth tune` processes on one PostgreSQL study, logging to the MLflow server
that runs on the same cluster. The password is a canary: it must reach no file and no output.
Skipped, with the reason, where PostgreSQL's server binaries are absent (.ci/run installs them).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from dermsynth.team import postgres, services

from .conftest import REPO, restored_copy, run_ok, store_contents, store_env, tool_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(postgres.missing() is not None, reason=str(postgres.missing())),
]
CANARY = "canary-Pw-7f3a9c51e2"  # the cluster's password in these tests: grepped for at the end
BUDGET = 6


@pytest.fixture(scope="module")
def up() -> Iterator[services.State]:
    """The services in a folder under /tmp (pytest's own are 0700: the cluster's owner could not enter)."""
    folder = Path(tempfile.mkdtemp(prefix="dermsynth-services-"))
    env = tool_env(PGPASSWORD=CANARY)
    client = pytest.MonkeyPatch()
    client.setenv("PGPASSWORD", CANARY)  # this process reads the studies as a client too
    try:
        run_ok(["dermsynth", "services", "start", "--dir", str(folder)], REPO, env)
        state = services.load(folder)
        assert state is not None
        yield state
    finally:
        run_ok(["dermsynth", "services", "stop", "--dir", str(folder)], REPO, env)
        client.undo()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def raw_params(raw_params: dict) -> dict:
    """The shrunk study with a small search space whose trials last a few seconds (a worker is killed in one)."""
    return {**raw_params, "tune": {**raw_params["tune"], "epochs": [25, 30], "hidden": [16, 32]}}


@pytest.fixture
def team_project(workdir: Path, tuning_build: Path) -> Path:
    shutil.copytree(tuning_build, workdir / "build", ignore=shutil.ignore_patterns("embedded", "generated"))
    return workdir


def worker(project: Path, state: services.State, study: str, *extra: str) -> subprocess.Popen:
    """`dermsynth tune` as a teammate runs it: the URL without a password, the password in the environment."""
    env = tool_env(PGPASSWORD=CANARY, MLFLOW_TRACKING_URI=state.tracking_uri, OMP_NUM_THREADS="1")
    cmd = ["dermsynth", "tune", "--trials", str(BUDGET), "--storage", state.optuna_storage, "--study-name", study]
    return subprocess.Popen([*cmd, *extra], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def load(state: services.State, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=state.optuna_storage)


def finished(procs: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    try:
        return [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_start_is_idempotent_and_keeps_its_ports(up: services.State):
    again = run_ok(["dermsynth", "services", "start", "--dir", up.folder], REPO, tool_env(PGPASSWORD=CANARY))
    assert f"127.0.0.1:{up.pg_port}" in again
    assert up.tracking_uri in again
    assert services.status(Path(up.folder)) == {"started": True, "postgres": True, "postgres_url": up.optuna_storage,
                                                 "mlflow": True, "tracking_uri": up.tracking_uri}  # fmt: skip


def test_the_cluster_takes_the_password_from_the_environment_and_no_other(up: services.State):
    import psycopg

    where = {"host": "127.0.0.1", "port": up.pg_port, "user": up.user, "dbname": "optuna"}
    with psycopg.connect(**where, password=CANARY) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**where, password="not-the-password")


def test_two_workers_share_one_postgresql_study_and_its_budget(up: services.State, team_project: Path):
    procs = [worker(team_project, up, "shared") for _ in range(2)]
    outs = finished(procs)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "tune shared trial" in out, out[-3000:]  # both did work
    study = load(up, "shared")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == BUDGET
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)  # pruned: surplus only
    assert len({t.number for t in study.trials}) == len(study.trials)  # each trial assigned once
    assert len({tuple(sorted(t.params.items())) for t in complete}) == BUDGET
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    assert sum("; wrote reports/tuning/best_params.yaml" in out for out in outs) == 1  # one worker writes it
    client = MlflowClient(tracking_uri=up.tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("dermsynth").experiment_id], "tags.optuna_study = 'shared'"
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = sorted(int(r.data.tags["optuna_trial"]) for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert children == sorted(t.number for t in complete)
    assert parents[0].data.tags["optuna_storage"] == f"postgresql+psycopg://***@127.0.0.1:{up.pg_port}/optuna"


def running_trials(state: services.State, study: str) -> list[int]:
    if study not in {s.study_name for s in optuna.get_all_study_summaries(state.optuna_storage)}:
        return []
    return [t.number for t in load(state, study).get_trials(states=(TrialState.RUNNING,))]


def test_a_killed_workers_trial_fails_by_heartbeat_and_the_other_completes_the_study(
    up: services.State, team_project: Path
):
    fast = ("--heartbeat", "1", "--grace", "5")
    doomed = worker(team_project, up, "killed", *fast)
    deadline, running = time.monotonic() + 180, []
    while not running and time.monotonic() < deadline and doomed.poll() is None:
        time.sleep(0.1)
        running = running_trials(up, "killed")
    assert running, "the first worker never started a trial"
    survivor = worker(team_project, up, "killed", *fast)  # its start-up takes seconds: the kill comes first
    doomed.send_signal(signal.SIGKILL)  # mid-trial: its heartbeat stops, its trial stays RUNNING
    doomed.wait()
    out = finished([survivor])[0]
    assert survivor.returncode == 0, out[-3000:]
    study = load(up, "killed")
    assert {t.number: t.state for t in study.trials}[running[0]] == TrialState.FAIL
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == BUDGET
    best = yaml.safe_load((team_project / "reports/tuning/best_params.yaml").read_text())
    assert best["source"]["complete_trials"] == BUDGET
    assert best["source"]["study"] == "killed"


def test_no_file_the_services_or_the_workers_wrote_holds_the_password(up: services.State, team_project: Path):
    worker_out = finished([worker(team_project, up, "canary")])[0]
    assert "complete trials" in worker_out
    assert CANARY not in worker_out
    written = [p for root in (Path(up.folder), team_project) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.log" for p in written)
    assert any(p.name == "postgres.log" for p in written)
    holding = [str(p) for p in written if CANARY.encode() in p.read_bytes()]
    assert holding == []


def registry_and_datasets(store: str) -> dict:
    """What a store holds beside the runs, keyed by run fingerprint: each run's dataset inputs, and each
    registered model's versions (their tags and run) and aliases."""
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("dermsynth").experiment_id
    found = client.search_runs([experiment], max_results=10000)
    runs = {r.info.run_id: r for r in found if "fingerprint" in r.data.tags}  # track's runs, not tuning's
    fingerprint = {run_id: r.data.tags["fingerprint"] for run_id, r in runs.items()}
    inputs = {run_id: r.inputs.dataset_inputs for run_id, r in runs.items()}
    datasets = {
        fingerprint[run_id]: sorted((d.dataset.name, d.dataset.digest, d.dataset.source_type) for d in found)
        for run_id, found in inputs.items()
    }
    models = {}
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        models[model.name] = {
            # versions are ints from a SQLite store and strings over REST: compared as strings
            "versions": {str(v.version): (fingerprint[v.run_id], v.tags) for v in versions},
            "aliases": {k: str(v) for k, v in client.get_registered_model(model.name).aliases.items()},
        }
    return {"datasets": datasets, "models": models}


def test_track_into_the_postgresql_server_gives_what_it_gives_into_sqlite(up: services.State, study: Path,
                                                                       tmp_path: Path):  # fmt: skip
    """Two copies of the shrunk study restored from DVC's run cache (no training), one tracking into a fresh
    SQLite store, one into the PostgreSQL-backed server: the same runs, datasets, registered versions and
    aliases, read back by the client. (Not the study's own store: other tests change it.)"""
    reference = restored_copy(study, tmp_path / "sqlite")
    assert "Running stage 'track'" in run_ok(["dvc", "repro"], reference, store_env(reference))
    root = restored_copy(study, tmp_path / "server")
    env = tool_env(MLFLOW_TRACKING_URI=up.tracking_uri, PGPASSWORD=CANARY)
    assert "Running stage 'track'" in run_ok(["dvc", "repro"], root, env)
    sqlite = f"sqlite:///{reference / 'mlflow.db'}"
    on_server = store_contents(up.tracking_uri, tracked_only=True)  # the server also holds the tuning tests' runs
    assert len(on_server) > 20  # the grid, its trainings and the groh runs: not an empty comparison
    assert on_server == store_contents(sqlite)
    theirs, ours = registry_and_datasets(up.tracking_uri), registry_and_datasets(sqlite)
    assert any(ours["datasets"].values())
    assert ours["models"]
    assert all(m["aliases"] for m in ours["models"].values())
    assert theirs == ours
