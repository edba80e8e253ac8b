"""Shared fixtures: the real params.yaml, shrunk, and a small embedded dataset built by the real code."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from dermsynth.core import config

REPO = Path(__file__).resolve().parents[1]
SHARED_CSV = REPO.parent / "shared" / "data" / "fitzpatrick17k.csv"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def shrink(raw: dict) -> dict:
    """The committed parameters made small enough for a test: few images, 1-2 epochs, one arm set."""
    raw = copy.deepcopy(raw)
    raw["embedded"].update(size_factor=0.12, image_size=32, labels="study")  # the 114-label tests ask for all
    raw["split"].update(seeds_per_group=2)
    raw["generate"].update(candidates=3, conditions=["psoriasis"])
    raw["curate"].update(keep=2)
    # float32: exact everywhere, and on CPUs without AMX/AVX512-BF16 bfloat16 is emulated and 2-4x slower
    raw["features"].update(resize=36, crop=32, views=2, batch_size=32, precision="float32")
    raw["train"].update(
        epochs=2, repeats=2, directions=["light_to_dark"], conditions=["psoriasis"], arms=["seed", "synthetic_and_seed"]
    )  # tone_control needs two seeded conditions; tests/test_train.py covers it
    raw["dose"].update(levels=[2])
    return raw


@pytest.fixture
def raw_params() -> dict:
    return shrink(config.read_yaml(REPO / "params.yaml"))


@pytest.fixture
def params(raw_params: dict) -> config.Params:
    return config.parse(raw_params)


@pytest.fixture(scope="session")
def tuning_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Splits, curated images and cached features of the shrunk study, made once by the real stages (tuning's input)."""
    from dermsynth import curate, embedded, features, generate, prepare, quality, split, validate

    root = tmp_path_factory.mktemp("built")
    (root / "dvc.yaml").write_text("stages: {}\n")
    params = config.parse(shrink(config.read_yaml(REPO / "params.yaml")))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        embedded.main(params)
        prepare.main(params)
        split.main(params)
        assert validate.main(params) == 0
        generate.main(params)
        assert quality.main(params) == 0
        assert curate.main(params) == 0
        features.main(params)
    return root / "build"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw_params: dict) -> Path:
    """A temporary project folder (dvc.yaml marker + shrunk params.yaml) as the working directory."""
    import yaml

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config.load.cache_clear()
    return tmp_path


@pytest.fixture
def embedded_data(workdir: Path, params: config.Params):
    """A small embedded dataset written by the real `embedded` stage, then prepared and split."""
    from dermsynth import embedded, prepare, split

    embedded.main(params)
    prepare.main(params)
    split.main(params)
    return workdir


SEED_COLUMNS = ["md5hash", "label", "group", "crop_x0", "crop_y0", "crop_size", "mask_box", "body_part", "noun", "note"]


def project_copy(root: Path, with_annotations: bool = True) -> Path:
    """The pipeline's definition and code copied into ``root``, for end-to-end `dvc repro` runs.

    Without the repository's annotations, every seed is on the defaults (header-only seeds.csv)
    and no reviewer decision exists: what a study on other seeds (another embedded size) starts from.
    """
    import shutil

    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copy(REPO / ".dvcignore", root)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if with_annotations:
        shutil.copytree(REPO / "annotations", root / "annotations")
    else:
        (root / "annotations").mkdir()
        (root / "annotations" / "decisions.csv").write_text("file,decision,note\n")
        (root / "annotations" / "seeds.csv").write_text(",".join(SEED_COLUMNS) + "\n")
        shutil.copyfile(REPO / "annotations" / "review_answers.csv", root / "annotations" / "review_answers.csv")
    (root / "reports" / "generators").mkdir(parents=True, exist_ok=True)
    (root / "reports" / "generators" / "recovery.md").write_text("")  # no compare-generators run yet
    return root


REPEATS = 2  # repeats per configuration in shrink() and tiny_project()


def tiny_project(root: Path, **train: object) -> Path:
    """The pipeline copied into ``root`` with shrink()'s params made smaller: 1 epoch, 2 repeats (and ``train``)."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    project_copy(root)
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    raw["train"].update({"epochs": 1, "repeats": REPEATS, **train})
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def store_env(root: Path, **extra: str) -> dict[str, str]:
    """tool_env() with MLflow pointed at the project's own store (never the developer's)."""
    return tool_env(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", **extra)


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shrunk study, run once per session by `dvc repro` in a temporary copy with its own store.

    Tests that only read its outputs share it; a test that changes it restores what it changed,
    and one that needs a second project starts from `restored_copy` (DVC's run cache, no training).
    """
    import yaml

    root = tmp_path_factory.mktemp("study")
    project_copy(root)
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run_ok(["dvc", "init", "--no-scm", "-q"], root)
    run_ok(["dvc", "repro"], root, store_env(root))
    return root


def restored_copy(study: Path, root: Path) -> Path:
    """A second project with the study's pipeline and params, sharing its DVC cache: `dvc repro` restores, not runs."""
    root.mkdir(parents=True, exist_ok=True)
    project_copy(root)
    (root / "params.yaml").write_text((study / "params.yaml").read_text())
    run_ok(["dvc", "init", "--no-scm", "-q"], root)
    run_ok(["dvc", "cache", "dir", str(study / ".dvc" / "cache")], root)
    return root


def tool_env(**extra: str) -> dict[str, str]:
    """The environment with this interpreter's scripts (dvc, dermsynth) first on PATH."""
    import sys

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def run_ok(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command and fail the test with its output tail unless it exits 0."""
    import subprocess

    done = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def store_contents(store: Path | str, tracked_only: bool = False) -> dict[str, dict]:
    """Every run of a store (a SQLite file or a tracking URI) by fingerprint: its name, tags (less the git
    commit and ids), params and metrics. `tracked_only`: the runs `track` made (a shared server also holds
    tuning runs, which have no fingerprint)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store if isinstance(store, str) else f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("dermsynth")
    runs = client.search_runs([experiment.experiment_id], max_results=10000)
    if tracked_only:
        runs = [r for r in runs if "fingerprint" in r.data.tags]
    parent_fp = {r.info.run_id: r.data.tags.get("fingerprint") for r in runs}
    volatile = {"mlflow.parentRunId", "git_commit", "mlflow.runName", "mlflow.user", "mlflow.source.name"}
    return {
        r.data.tags["fingerprint"]: {
            "name": r.info.run_name,
            "parent": parent_fp.get(r.data.tags.get("mlflow.parentRunId")),
            "tags": {k: v for k, v in r.data.tags.items() if k not in volatile and not k.startswith("mlflow.source")},
            "params": r.data.params,
            "metrics": r.data.metrics,
        }
        for r in runs
    }


def git(*args: str, cwd: Path) -> str:
    return run_ok(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd)


def commit_all(root: Path, message: str) -> None:
    """Commit whatever changed, if anything: session fixtures that share a repository commit in any order."""
    import subprocess

    git("add", "-A", cwd=root)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        git("commit", "-qm", message, cwd=root)


@pytest.fixture(scope="session")
def openai_repo(tmp_path_factory: pytest.TempPathFactory):
    """The shrunk study with `generate.generator: openai` against a fake OpenAI server on 127.0.0.1, run once.

    A git repository with a local-folder DVC remote (the README's set-up, not pushed yet), without
    annotations: every seed on the defaults. Yields its root, the remote's folder, the server
    (which counts every request, each of which would have been paid), and `dvc repro`'s output.
    """
    import shutil

    import yaml

    from .fake_openai import CANARY, FakeOpenAI

    base = tmp_path_factory.mktemp("openai")
    root, remote = base / "a", base / "remote"
    root.mkdir()
    project_copy(root, with_annotations=False)
    shutil.copy(REPO / ".gitignore", root)
    server = FakeOpenAI()
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    raw["generate"].update(generator="openai")
    raw["generate"]["openai"].update(base_url=server.base_url, workers=2, timeout=30)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    git("init", "-q", cwd=root)
    run_ok(["dvc", "init", "-q"], root)
    run_ok(["dvc", "config", "core.analytics", "false"], root)
    run_ok(["dvc", "remote", "add", "--default", "team", str(remote)], root)  # the README's line
    git("add", "-A", cwd=root)
    git("commit", "-qm", "DVC remote for the team", cwd=root)
    output = run_ok(["dvc", "repro"], root, store_env(root, OPENAI_API_KEY=CANARY))
    yield {"root": root, "remote": remote, "server": server, "output": output, "paid": len(server.calls)}
    server.close()
