"""Everything a team's workers connect to, started on one host: PostgreSQL, and an MLflow server on it.

One folder holds it all (`dermsynth services --dir`; default .services/, which `make clean` keeps):
the cluster's data, the MLflow server's artifacts (proxied by the server, `--artifacts-destination`,
so workers need no shared disk), both logs, and services.json, which records ports and URLs and
never a password.
Optuna's studies live in the database `optuna`, MLflow's runs in `mlflow`, on the same cluster.
`start` is idempotent: it starts what is not running and keeps the ports it chose the first time,
so the URLs a team wrote down stay true across restarts (docs/team.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from dermsynth.core import files
from dermsynth.core.errors import DermsynthError
from dermsynth.team import postgres

DATABASES = ("optuna", "mlflow")
USER = "dermsynth"


@dataclass
class State:
    """What services.json holds: where everything is. No credential, by design (tests grep for one)."""

    folder: str
    pg_port: int
    mlflow_port: int
    user: str = USER
    mlflow_pid: int | None = None

    @property
    def cluster(self) -> postgres.Cluster:
        return postgres.Cluster(Path(self.folder) / "pg", self.pg_port, self.user)

    @property
    def optuna_storage(self) -> str:
        return self.cluster.url("optuna")

    @property
    def mlflow_store(self) -> str:
        return self.cluster.url("mlflow")

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def pgpass(self) -> Path:
        return Path(self.folder) / "pgpass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(folder: Path) -> State | None:
    path = folder / "services.json"
    return State(**json.loads(path.read_text())) if path.exists() else None


def save(state: State) -> None:
    files.write_json(Path(state.folder) / "services.json", asdict(state))


def password(state: State) -> str:
    """PGPASSWORD if the team's secret store sets it; else this folder's pgpass file, made on first start."""
    if os.environ.get("PGPASSWORD"):
        return os.environ["PGPASSWORD"]
    if state.pgpass.exists():
        return state.pgpass.read_text().strip().rsplit(":", 1)[1]
    secret = secrets.token_urlsafe(24)
    private_write(state.pgpass, f"127.0.0.1:{state.pg_port}:*:{state.user}:{secret}\n")
    return secret


def private_write(path: Path, text: str) -> None:
    """Write a 0600 file atomically (libpq ignores a pgpass file that others can read)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def client_env(state: State) -> dict[str, str]:
    """The environment a client of these services needs: the tracking URI, and where libpq finds the password."""
    env = {"MLFLOW_TRACKING_URI": state.tracking_uri}
    if not os.environ.get("PGPASSWORD"):
        env["PGPASSFILE"] = str(state.pgpass.resolve())
    return env


def start(folder: Path, timeout: float = 120.0) -> State:
    """Start (or keep) PostgreSQL with its two databases and the MLflow server; return where they are."""
    reason = postgres.missing()
    if reason:
        raise DermsynthError(reason)
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # the cluster's owner (postgres, when we are root) must reach pg/ inside it
    state = load(folder) or State(str(folder), free_port(), free_port())
    secret = password(state)
    postgres.init(state.cluster.data, state.user, secret)
    postgres.start(state.cluster)
    postgres.create_databases(state.cluster, secret, list(DATABASES))
    if not mlflow_alive(state):
        state.mlflow_pid = start_mlflow(state, timeout)
    save(state)
    return state


def start_mlflow(state: State, timeout: float) -> int:
    """`mlflow server` on the PostgreSQL store, proxying artifacts, in its own process group; its pid."""
    artifacts = Path(state.folder) / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log = Path(state.folder) / "mlflow.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", state.mlflow_store,
           "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(state.mlflow_port),
           "--workers", "2"]  # fmt: skip
    env = {**os.environ, **client_env(state), "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not healthy(state.tracking_uri):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited ({proc.returncode})" if proc.returncode is not None else f"silent for {timeout:.0f} s"
            stop_group(proc.pid)
            raise DermsynthError(f"mlflow server {why} on {state.tracking_uri}; its log {log}:\n"
                                 f"{log.read_text()[-3000:]}")  # fmt: skip
        time.sleep(0.5)
    return proc.pid


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def mlflow_alive(state: State) -> bool:
    return state.mlflow_pid is not None and _pid_alive(state.mlflow_pid) and healthy(state.tracking_uri)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(pid: int, grace: float = 20.0) -> None:
    """SIGTERM the server's process group (gunicorn/uvicorn workers included), SIGKILL what outlives the grace."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)


def stop(folder: Path) -> State | None:
    """Stop the MLflow server, then PostgreSQL (fast shutdown); the data stays for the next start."""
    state = load(folder.resolve())
    if state is None:
        return None
    if state.mlflow_pid is not None:
        stop_group(state.mlflow_pid)
        state.mlflow_pid = None
    postgres.stop(state.cluster)
    save(state)
    return state


def status(folder: Path) -> dict[str, object]:
    """Whether each service answers, with its address: for `dermsynth services status` and for tests."""
    state = load(folder.resolve())
    if state is None:
        return {"started": False}
    return {"started": True, "postgres": state.cluster.running(), "postgres_url": state.optuna_storage,
            "mlflow": mlflow_alive(state), "tracking_uri": state.tracking_uri}  # fmt: skip
