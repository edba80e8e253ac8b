"""The README's remote section, as written: push from one clone, pull into another, pay and train nothing twice.

Clone A runs the shrunk study with `generator: openai` against a fake OpenAI server on
127.0.0.1 and pushes to a local-folder remote. Clone B (`git clone` of A, same remote) pulls
and reproduces; the server counts every request, each of which would have been paid.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, project_copy, run_ok, shrink, store_contents, tool_env
from .fake_openai import CANARY, FakeOpenAI

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path) -> str:
    return run_ok(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd)


def ran(output: str) -> set[str]:
    """The stages `dvc repro` ran, from its output."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def clones(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("remote")
    remote, a, b = base / "remote", base / "a", base / "b"
    a.mkdir()
    project_copy(a, with_annotations=False)
    shutil.copy(REPO / ".gitignore", a)
    server = FakeOpenAI()
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    raw["generate"].update(generator="openai")
    raw["generate"]["openai"].update(base_url=server.base_url, workers=2, timeout=30)
    (a / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env_a = tool_env(OPENAI_API_KEY=CANARY, MLFLOW_TRACKING_URI=f"sqlite:///{a / 'mlflow.db'}")

    git("init", "-q", cwd=a)
    run_ok(["dvc", "init", "-q"], a)
    run_ok(["dvc", "config", "core.analytics", "false"], a)
    run_ok(["dvc", "remote", "add", "--default", "team", str(remote)], a)  # the README's line
    git("add", "-A", cwd=a)
    git("commit", "-qm", "DVC remote for the team", cwd=a)
    run_ok(["dvc", "repro"], a, env_a)
    git("add", "-A", cwd=a)
    git("commit", "-qm", "the study", cwd=a)
    run_ok(["dvc", "push"], a, env_a)
    paid = len(server.calls)
    assert paid > 0

    git("clone", "-q", str(a), str(b), cwd=base)
    yield {"a": a, "b": b, "remote": remote, "server": server, "paid": paid}
    server.close()


def env_b(clones: dict) -> dict[str, str]:
    return tool_env(OPENAI_API_KEY=CANARY, MLFLOW_TRACKING_URI=f"sqlite:///{clones['b'] / 'mlflow.db'}")


def test_a_fresh_clone_pulls_and_reproduces_without_a_request_or_a_stage(clones):
    a, b, server = clones["a"], clones["b"], clones["server"]
    run_ok(["dvc", "pull", "dvc.yaml"], b, env_b(clones))  # the README's line
    out = run_ok(["dvc", "repro"], b, env_b(clones))
    assert ran(out) == set(), out
    assert "Data and pipelines are up to date" in out
    assert len(server.calls) == clones["paid"]  # zero requests from clone B
    for path in [*sorted((a / "reports" / "tables").iterdir()), a / "reports" / "metrics.json"]:
        assert (b / path.relative_to(a)).read_bytes() == path.read_bytes(), path.name
    for folder in ("build/generated/images", "build/curated/images", "models"):
        assert sorted(p.name for p in (b / folder).rglob("*")) == sorted(p.name for p in (a / folder).rglob("*"))

    out = run_ok(["dermsynth", "cache", "import"], b, env_b(clones))
    assert re.search(r"cache import \(openai\): [1-9]\d* images filed", out), out
    run_ok(["dermsynth", "track"], b, env_b(clones))
    assert store_contents(b / "mlflow.db") == store_contents(a / "mlflow.db")


def test_a_training_change_reruns_only_training_and_what_follows(clones):
    b = clones["b"]
    params = yaml.safe_load((b / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] * 2
    (b / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run_ok(["dvc", "repro"], b, env_b(clones))
    stages = ran(out)
    assert any(s.startswith("train@") for s in stages), out
    assert stages <= {s for s in stages if s.startswith(("fitz_only@", "train@", "dose@"))} | {
        "evaluate",
        "report",
        "track",
    }
    assert len(clones["server"].calls) == clones["paid"]


def test_after_cache_import_a_regeneration_pays_for_nothing_already_made(clones):
    b = clones["b"]
    params = yaml.safe_load((b / "params.yaml").read_text())
    params["generate"]["openai"]["workers"] = 1  # a generate parameter: the stage runs again
    (b / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run_ok(["dvc", "repro", "generate"], b, env_b(clones))
    assert "generate" in ran(out)
    assert len(clones["server"].calls) == clones["paid"]  # every image answered by the imported cache


def test_every_declared_plot_renders_in_a_git_repository(clones):
    """In git, DVC writes reports/epochs/.gitignore beside the curves; .dvcignore keeps it out of the plot."""
    import json

    done = subprocess.run(["dvc", "plots", "show", "--json"], cwd=clones["a"], env=tool_env(), capture_output=True)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert "errors" not in shown, shown.get("errors")
    assert (clones["a"] / "reports" / "epochs" / ".gitignore").exists()
    assert sum(name.startswith("reports/epochs/") for name in shown["data"]) >= 4


def test_the_api_key_is_in_no_file_of_the_remote(clones):
    files = [p for p in clones["remote"].rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path
    done = subprocess.run(["git", "grep", "-I", CANARY], cwd=clones["a"], capture_output=True, text=True)
    assert done.returncode == 1  # nothing in git either
