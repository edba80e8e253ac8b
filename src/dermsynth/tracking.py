"""MLflow set-up: one SQLite store at the repository root, the same for every stage and queue run.

The store is `sqlite:///<repo>/mlflow.db` with artifacts in `<repo>/mlruns`, where <repo>
is the real repository also inside `dvc exp run --queue` (paths.tracking_root). Setting
MLFLOW_TRACKING_URI overrides it (tests use a temporary store; teams use a server).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

EXPERIMENT = "dermsynth"


def tracking_uri() -> str:
    from dermsynth.paths import tracking_root

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tracking_root() / 'mlflow.db'}"


def setup(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and return the experiment id (created on first use)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from dermsynth.paths import tracking_root

    mlflow.set_tracking_uri(tracking_uri())
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    artifacts = (tracking_root() / "mlruns").resolve().as_uri()
    try:
        return mlflow.create_experiment(experiment, artifact_location=artifacts)
    except Exception:  # another process created it between the lookup and the create
        return mlflow.get_experiment_by_name(experiment).experiment_id


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
