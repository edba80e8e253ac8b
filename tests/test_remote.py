"""The README's remote section, as written: push from one clone, pull into another, pay and train nothing twice.

Clone A (conftest's `openai_repo`) runs the shrunk study with `generator: openai` against a
fake OpenAI server on 127.0.0.1 and pushes to a local-folder remote. Clone B (`git clone` of A, same remote) pulls
and reproduces; the server counts every request, each of which would have been paid.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from .conftest import commit_all, git, run_ok, store_contents, store_env, tool_env
from .fake_openai import CANARY

pytestmark = pytest.mark.slow


def ran(output: str) -> set[str]:
    """The stages `dvc repro` ran, from its output."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def clones(openai_repo: dict):
    """Clone A (the session's OpenAI study) commits and pushes; clone B is a `git clone` of A, same remote."""
    a = openai_repo["root"]
    b = a.parent / "b"
    assert openai_repo["paid"] > 0
    commit_all(a, "the study")
    run_ok(["dvc", "push"], a, store_env(a, OPENAI_API_KEY=CANARY))
    git("clone", "-q", str(a), str(b), cwd=a.parent)
    return {"a": a, "b": b, **{k: openai_repo[k] for k in ("remote", "server", "paid")}}


def env_b(clones: dict) -> dict[str, str]:
    return store_env(clones["b"], OPENAI_API_KEY=CANARY)


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
        "groh",  # step one trains with the study's head protocol, so its rule and the study's prepare follow
        "selection",
        "prepare",
        "evaluate",
        "register",
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
