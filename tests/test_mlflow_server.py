"""The shrunk study restored from DVC's run cache, logging to a real `mlflow server`, read back over REST and client."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from .conftest import REPEATS, REPO, restored_copy, run_ok, tool_env

pytestmark = pytest.mark.slow

TAGS = ("direction", "condition", "arm", "dose", "repeat", "generator")
METRIC = "test/V-VI/psoriasis/acc"


def screenshot_script() -> ModuleType:
    """scripts/mlflow_compare_screenshot.py as a module (its mlflow_server() starts and stops the server)."""
    spec = importlib.util.spec_from_file_location(
        "mlflow_compare_screenshot", REPO / "scripts/mlflow_compare_screenshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def expected_runs(root: Path) -> dict[str, tuple[dict[str, str], dict[str, float]]]:
    """Per configuration (reports/runs/<direction>-<condition>-<arm|doseN>.json): the tags it implies, its metrics."""
    generator = yaml.safe_load((root / "params.yaml").read_text())["generate"]["generator"]
    found = {}
    for path in sorted((root / "reports" / "runs").glob("*.json")):
        direction, condition, arm = path.stem.split("-")
        tags = {"direction": direction, "condition": condition, "arm": arm, "repeat": "all", "generator": generator}
        if arm.startswith("dose"):
            tags.update(arm="synthetic_and_seed", dose=arm.removeprefix("dose"))
        elif arm == "fitz_only":
            tags["dose"] = "0"
        found[path.stem] = (tags, json.loads(path.read_text()))
    return found


def rest(url: str, endpoint: str, body: dict | None = None) -> dict:
    """One MLflow REST call: GET with a query string, or POST with a JSON body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{endpoint}", data=data, method="GET" if body is None else "POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def check_run(name: str, tags: dict[str, str], metrics: dict[str, float], expected: dict) -> None:
    want_tags, want_metrics = expected[name]
    assert {k: tags.get(k) for k in want_tags} == want_tags, name
    assert set(TAGS) <= set(tags), name
    if tags["arm"] == "synthetic_and_seed":
        assert int(tags["dose"]) > 0, name
    assert metrics[METRIC] == pytest.approx(want_metrics[METRIC]), name
    assert {k: metrics[k] for k in want_metrics} == pytest.approx(want_metrics), name


def test_a_copy_restored_from_the_run_cache_logs_its_grid_to_a_tracking_server(study: Path, tmp_path: Path):
    """A second checkout of the same study trains nothing (DVC's run cache) and `track` still logs every run."""
    root = restored_copy(study, tmp_path / "copy")
    server = screenshot_script().mlflow_server(
        f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server.log", artifacts=tmp_path / "artifacts"
    )
    with server as (url, pgid):
        out = run_ok(["dvc", "repro"], root, tool_env(MLFLOW_TRACKING_URI=url))
        assert "Stage 'train@light_to_dark-psoriasis-seed' is cached - skipping run" in out
        assert "Running stage 'track'" in out
        expected = expected_runs(root)
        arms = yaml.safe_load((root / "params.yaml").read_text())["train"]["arms"]
        assert set(expected) == {f"light_to_dark-psoriasis-{a}" for a in ["fitz_only", *arms, "dose2", "dose4"]}
        assert not (root / "mlflow.db").exists(), "the grid wrote a local store instead of the server"

        experiment = rest(url, "experiments/get-by-name?experiment_name=dermsynth")["experiment"]["experiment_id"]
        search = {"experiment_ids": [experiment], "filter": "tags.arm = 'fitz_only'", "max_results": 1000}
        runs = rest(url, "runs/search", search)["runs"]
        trainings = REPEATS * 3  # fitz_only trains repeats x draws of the seeds (3) times in one go
        assert len(runs) == 1 + trainings  # the configuration run and one nested run per training
        by_repeat = {}
        for run in runs:
            tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            by_repeat[tags["repeat"]] = (
                run["info"]["run_id"],
                tags,
                {m["key"]: m["value"] for m in run["data"]["metrics"]},
            )
        assert set(by_repeat) == {"all", *map(str, range(trainings))}
        parent, tags, metrics = by_repeat["all"]
        check_run("light_to_dark-psoriasis-fitz_only", tags, metrics, expected)
        assert all(by_repeat[str(r)][1]["mlflow.parentRunId"] == parent for r in range(trainings))

        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=url)
        everything = client.search_runs([experiment], "tags.repeat = 'all'", max_results=1000)
        configurations = [r for r in everything if "arm" in r.data.tags]  # not a grid-level parent run
        assert sorted(r.info.run_name for r in configurations) == sorted(expected)
        for run in configurations:
            check_run(run.info.run_name, run.data.tags, run.data.metrics, expected)
            children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
            trained = sorted((c.data.tags["draw"], c.data.tags["repeat"]) for c in children)
            if run.data.tags["arm"] == "fitz_only":  # repeats x draws trainings in one go
                assert trained == sorted(("0", str(i)) for i in range(REPEATS * 3))
            else:  # a nested run per draw of the seeds and repeat
                assert trained == [(str(d), str(r)) for d in range(3) for r in range(REPEATS)]
            assert {"confusion_matrix.png", "predictions.csv"} <= {
                a.path for a in client.list_artifacts(run.info.run_id)
            }
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # no process of the server's group is left
