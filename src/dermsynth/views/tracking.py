"""MLflow set-up: one SQLite store at the repository root, the same for every stage and queue run.

The store is `sqlite:///<repo>/mlflow.db` with artifacts in `<repo>/mlruns`, where <repo>
is the real repository also inside `dvc exp run --queue` (paths.tracking_root). Setting
MLFLOW_TRACKING_URI overrides it (tests use a temporary store; teams use a server).
"""

from __future__ import annotations

import fcntl
import functools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXPERIMENT = "dermsynth"
# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says it holds model training runs
# (values from the UI's ExperimentKind: custom_model_development opens the runs table).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri() -> str:
    from dermsynth.core.paths import tracking_root

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tracking_root() / 'mlflow.db'}"


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise the first use of a SQLite store: two processes creating its schema at once (e.g.
    `dvc queue start -j 2` on a fresh repository) race in MLflow's migrations and one fails."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def setup(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and return the experiment id (created on first use).

    With the local SQLite store, artifacts go to <repo>/mlruns; with a tracking server, the
    server's own artifact store is used (a client path would be wrong for a team server).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from dermsynth.core.paths import tracking_root

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    with store_lock(uri):
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            local = uri.startswith("sqlite:///")
            artifacts = (tracking_root() / "mlruns").resolve().as_uri() if local else None
            try:
                experiment_id = mlflow.create_experiment(experiment, artifact_location=artifacts)
            except mlflow.exceptions.MlflowException:  # another process (e.g. a server's client) created it first
                found = mlflow.get_experiment_by_name(experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        if (found.tags if found else {}).get(KIND_TAG) != KIND:
            mlflow.MlflowClient().set_experiment_tag(experiment_id, KIND_TAG, KIND)
        return experiment_id


@functools.cache
def git_commit(cwd: Path | None = None) -> str:
    """The checkout's commit, asked of git once per process (every run of a grid carries it)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
