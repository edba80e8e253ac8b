"""A DVC remote over SSH (the dvc-ssh plugin) against Debian's OpenSSH server on 127.0.0.1, keys made here.

The session's OpenAI study (conftest's `openai_repo`, paid images from a fake server that counts
every request) is pushed to the SSH remote; a fresh `git clone` pulls from it and reproduces with
no stage run and no request: the paid images are never paid twice. The server accepts only the
key this test makes, and the client checks the server's host key against a known_hosts file.
Skipped, with the reason, where sshd or ssh-keygen is absent (.ci/run installs openssh-server).
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import commit_all, git, run_ok, store_env
from .fake_openai import CANARY

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
MISSING = None if Path(SSHD).exists() and shutil.which("ssh-keygen") else "OpenSSH (sshd, ssh-keygen) is not installed"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def sshd() -> Iterator[dict]:
    """sshd on 127.0.0.1 at a free port: key login only, for this user, with a host key made here."""
    base = Path(tempfile.mkdtemp(prefix="dermsynth-sshd-"))
    host_pub = keygen(base / "host_key")
    (base / "authorized_keys").write_text(keygen(base / "client_key") + "\n")
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\nPidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation's empty folder (Debian makes it at boot)
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stderr=subprocess.PIPE, text=True)
    home = base / "home"  # the client's HOME: known_hosts with this server's key, nothing of the developer's
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"sshd did not start: {server.communicate()[1][-2000:]}")
            time.sleep(0.2)
    yield {"port": port, "key": base / "client_key", "home": home, "folder": base / "remote"}
    server.terminate()
    server.wait(timeout=10)
    shutil.rmtree(base, ignore_errors=True)


def ssh_env(root: Path, sshd: dict) -> dict[str, str]:
    return store_env(root, OPENAI_API_KEY=CANARY, HOME=str(sshd["home"]))


@pytest.fixture(scope="module")
def pushed(openai_repo: dict, sshd: dict) -> dict:
    """Clone A adds the SSH remote (the URL in git, the key file in .dvc/config.local) and pushes to it."""
    a = openai_repo["root"]
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{sshd['port']}{sshd['folder']}"
    run_ok(["dvc", "remote", "add", "teamssh", url], a)
    run_ok(["dvc", "remote", "modify", "--local", "teamssh", "keyfile", str(sshd["key"])], a)
    commit_all(a, "the study, and an SSH remote")
    out = run_ok(["dvc", "push", "-r", "teamssh"], a, ssh_env(a, sshd))
    assert "pushed" in out, out
    return {"a": a, **sshd, "server": openai_repo["server"], "paid": openai_repo["paid"]}


def test_push_goes_through_sshd_into_the_servers_folder(pushed: dict):
    stored = [p for p in pushed["folder"].rglob("*") if p.is_file()]
    assert len(stored) > 20
    assert all(CANARY.encode() not in p.read_bytes() for p in stored)


def test_a_fresh_clone_pulls_over_ssh_and_pays_and_trains_nothing(pushed: dict, tmp_path: Path):
    a, b = pushed["a"], tmp_path / "b"
    git("clone", "-q", str(a), str(b), cwd=tmp_path)
    refused = subprocess.run(["dvc", "pull", "-r", "teamssh"], cwd=b, env=ssh_env(b, pushed), capture_output=True)
    assert refused.returncode != 0  # the server takes this test's key and nothing else
    run_ok(["dvc", "remote", "modify", "--local", "teamssh", "keyfile", str(pushed["key"])], b)
    run_ok(["dvc", "pull", "-r", "teamssh"], b, ssh_env(b, pushed))
    out = run_ok(["dvc", "repro"], b, ssh_env(b, pushed))
    assert "Running stage" not in out, out
    assert len(pushed["server"].calls) == pushed["paid"]  # not one request: the paid images came over SSH
    for folder in ("build/generated/images", "build/curated/images", "models"):
        assert sorted(p.name for p in (b / folder).rglob("*")) == sorted(p.name for p in (a / folder).rglob("*"))
    assert (b / "reports/metrics.json").read_bytes() == (a / "reports/metrics.json").read_bytes()
