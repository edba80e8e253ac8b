"""A PostgreSQL cluster in a folder of ours, on 127.0.0.1: what Optuna and MLflow share in a team.

Why a folder of ours and not the host's cluster: a team host may have none, a test needs one it
owns and throws away, and the same commands serve both (docs/team.md). Debian puts the server's
binaries in /usr/lib/postgresql/<version>/bin, off PATH. `initdb` refuses to run as root, so as
root the cluster belongs to the `postgres` system user (runuser), as Debian's own clusters do.

The password is set once, from a file that exists only while initdb reads it; clients get it
from PGPASSWORD or a pgpass file, never from a URL (docs/team.md, "Credentials").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dermsynth.core.errors import DermsynthError

SERVER_TOOLS = ("initdb", "pg_ctl")
OWNER = "postgres"  # the system user that owns the cluster when we run as root


def bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    return next((v for v in versions if all((v / t).exists() for t in SERVER_TOOLS)), None)


def missing() -> str | None:
    """Why a cluster cannot be made here (for a clear error, and for tests that skip), or None."""
    if bin_dir() is None:
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
    if os.geteuid() == 0 and not _owner_exists():
        return f"running as root, and the {OWNER!r} system user that would own the cluster does not exist"
    return None


def _owner_exists() -> bool:
    import pwd

    try:
        pwd.getpwnam(OWNER)
    except KeyError:
        return False
    return True


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *command] if os.geteuid() == 0 else command


def _give(path: Path) -> None:
    """Hand a folder to the cluster's owner (as root); its parents must let that user through."""
    if os.geteuid() == 0:
        shutil.chown(path, OWNER, OWNER)


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(_as_owner(command), capture_output=True, text=True)
    if done.returncode != 0:
        raise DermsynthError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}")
    return done.stdout


@dataclass(frozen=True)
class Cluster:
    """One cluster: its data folder, port and superuser (the password lives in no field)."""

    data: Path
    port: int
    user: str

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """The SQLAlchemy URL without a password (libpq reads PGPASSWORD or PGPASSFILE)."""
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def log(self) -> Path:
        return self.data.parent / "postgres.log"

    def running(self) -> bool:
        done = subprocess.run(_as_owner([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "status"]),
                              capture_output=True, text=True)  # fmt: skip
        return done.returncode == 0


def init(data: Path, user: str, password: str) -> None:
    """initdb with password authentication over TCP (scram-sha-256); local socket access stays with the owner."""
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    _give(data)
    data.chmod(0o700)
    hold = Path(tempfile.mkdtemp(dir=data.parent, prefix=".initdb-"))  # 0700; initdb wants the data folder empty
    pwfile = hold / "password"
    try:
        pwfile.write_text(password + "\n")
        _give(hold)
        _give(pwfile)
        _run([str(bin_dir() / "initdb"), "-D", str(data), "-U", user, "-E", "UTF8", "--auth-host=scram-sha-256",
              "--auth-local=peer", f"--pwfile={pwfile}"], f"initdb {data}")  # fmt: skip
    finally:
        shutil.rmtree(hold, ignore_errors=True)


def start(cluster: Cluster) -> None:
    """Start on 127.0.0.1:port (socket in the cluster's own folder, not /var/run); wait until it accepts."""
    if cluster.running():
        return
    cluster.log.touch()
    _give(cluster.log)
    options = f"-p {cluster.port} -k {cluster.data} -c listen_addresses=127.0.0.1"
    _run([str(bin_dir() / "pg_ctl"), "-D", str(cluster.data), "-o", options, "-l", str(cluster.log), "-w", "-t", "60",
          "start"], f"pg_ctl start (log: {cluster.log})")  # fmt: skip


def stop(cluster: Cluster) -> None:
    """Fast shutdown: open transactions roll back, clients are told (docs/team.md on a service that dies)."""
    if cluster.running():
        _run([str(bin_dir() / "pg_ctl"), "-D", str(cluster.data), "-m", "fast", "-w", "stop"], "pg_ctl stop")


def create_databases(cluster: Cluster, password: str, names: list[str]) -> None:
    """CREATE DATABASE for each name that does not exist yet, over TCP as a client would connect."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=cluster.port, user=cluster.user, password=password,
                         dbname="postgres", autocommit=True) as conn:  # fmt: skip
        have = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in have:
                conn.execute(f'CREATE DATABASE "{name}"')
