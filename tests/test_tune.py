"""Tuning: validation data only, one MLflow parent per study, one trial budget shared by workers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from dermsynth import tune
from dermsynth.core import config, files, paths
from dermsynth.core.errors import DermsynthError

SEARCHED = {"lr", "weight_decay", "hidden", "dropout", "epochs", "sampler"}


@pytest.fixture
def raw_params(raw_params: dict) -> dict:
    """The shrunk study with a tiny search space (the conftest fixture, extended)."""
    return {**raw_params, "tune": {**raw_params.get("tune", {}), "epochs": [1, 2], "hidden": [16, 32], "trials": 3}}


@pytest.fixture
def project(workdir: Path, tuning_build: Path) -> Path:
    """The temporary project (params.yaml with the tiny search space) holding a copy of the built data."""
    shutil.copytree(tuning_build, workdir / "build", ignore=shutil.ignore_patterns("embedded", "generated"))
    return workdir


def storage(project: Path) -> str:
    return f"sqlite:///{project / 'optuna.db'}"


def runs_of(project: Path, study: str) -> tuple[list, dict[str, list]]:
    """(parent runs, children by parent run id) tagged with the study."""
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dermsynth").experiment_id
    runs = client.search_runs([experiment], f"tags.optuna_study = '{study}'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children: dict[str, list] = {}
    for r in runs:
        if "mlflow.parentRunId" in r.data.tags:
            children.setdefault(r.data.tags["mlflow.parentRunId"], []).append(r)
    return parents, children


def outcome(project: Path, params: config.Params, name: str, trials: int = 2) -> tuple[list, dict]:
    """Tune a fresh study; return its trials (number, params, value, val loss) and the best `train` block."""
    assert tune.main(params, trials=trials, storage=storage(project), study_name=name) == 0
    study = optuna.load_study(study_name=name, storage=storage(project))
    trials = [(t.number, t.params, t.value, t.user_attrs["val_loss"]) for t in study.trials]
    return trials, yaml.safe_load((project / params.tune.best).read_text())["train"]


def test_a_study_has_one_parent_run_a_child_per_trial_and_a_best_params_file(project, params, capsys):
    assert tune.main(params, trials=3, storage=storage(project), study_name="one") == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"tune one trial \d: val_acc", out)) == 3
    assert "tune one: 3 complete trials (3 by this worker)" in out

    best = yaml.safe_load((project / params.tune.best).read_text())
    assert set(best["train"]) == SEARCHED
    raw = config.read_yaml(project / "params.yaml")
    raw["train"].update(best["train"])  # the block promotes into params.yaml as it is
    assert config.parse(raw).train.lr == best["train"]["lr"]
    study = optuna.load_study(study_name="one", storage=storage(project))
    top = study.trials[best["source"]["trial"]]
    source = best["source"]
    assert (source["study"], source["storage"], source["value"], source["val_loss"]) == (
        "one",
        storage(project),
        top.value,
        top.user_attrs["val_loss"],
    )
    assert best["train"] == top.params
    assert top.value == max(t.value for t in study.trials)

    parents, children = runs_of(project, "one")
    assert len(parents) == 1
    parent = parents[0]
    assert study.user_attrs[tune.PARENT_ATTR] == parent.info.run_id
    kids = children[parent.info.run_id]
    assert sorted(int(r.data.tags["optuna_trial"]) for r in kids) == [0, 1, 2]
    assert {r.data.params["lr"] for r in kids} == {str(t.params["lr"]) for t in study.trials}
    assert parent.data.metrics["best_val_acc"] == max(r.data.metrics["val_acc"] for r in kids) == top.value
    assert {k: parent.data.params[f"best.{k}"] for k in SEARCHED} == {k: str(v) for k, v in top.params.items()}


def test_two_workers_share_one_study_and_its_trial_budget(project, monkeypatch):
    worker = textwrap.dedent(f"""
        import pathlib, sys, time
        import mlflow
        from dermsynth import tune
        from dermsynth.core import config
        pathlib.Path(sys.argv[1]).touch()
        while not pathlib.Path("go").exists():
            time.sleep(0.02)
        raise SystemExit(tune.main(config.load(), trials=6, storage={storage(project)!r}, study_name="shared"))
    """)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two workers on two cores
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker, f"ready{i}"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for i in range(2)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((project / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
            time.sleep(0.05)
        (project / "go").touch()  # imports done: both start tuning at the same moment
        outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert re.search(r"tune shared trial \d+: val_acc", out), out[-3000:]  # both did work

    study = optuna.load_study(study_name="shared", storage=storage(project))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)  # pruned: surplus only
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 6
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    parents, children = runs_of(project, "shared")
    assert len(parents) == 1
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children[parents[0].info.run_id]) == sorted(
        t.number for t in complete
    )
    best = yaml.safe_load((project / "reports/tuning/best_params.yaml").read_text())
    assert best["source"]["complete_trials"] == 6


def corrupt_features(keys: set[str]) -> None:
    """Overwrite the cached activations (evaluation and augmented views) of ``keys`` with noise."""
    rng = np.random.default_rng(0)
    for name, n in (("eval", 1), ("views", None)):
        index = pd.read_csv(paths.FEATURES / f"{name}_index.csv", dtype=str)["key"]
        array = np.load(paths.FEATURES / f"{name}.npy")
        n = n or len(array) // len(index)
        rows = [i * n + j for i in np.flatnonzero(index.isin(keys)) for j in range(n)]
        array[rows] = rng.normal(0, 50, (len(rows), array.shape[1])).astype(array.dtype)
        with files.atomic_path(paths.FEATURES / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, array)


def test_tuning_never_reads_a_test_set(project, params):
    before = outcome(project, params, "before")
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    direction = splits["direction"] == params.tune.direction
    test = splits["role"] == "test"
    keys = set(splits.loc[direction & test, "md5hash"])
    assert keys
    assert keys.isdisjoint(splits.loc[direction & ~test, "md5hash"])  # so the noise cannot reach training
    corrupt_features(keys)
    splits.loc[test, "md5hash"] = "f" * 32  # no such image: reading one would fail
    splits.loc[test, "label"] = "not a condition"
    files.write_csv(paths.SPLITS_TABLE, splits)
    assert outcome(project, params, "after") == before

    corrupt_features(set(splits.loc[direction & (splits["role"] == "val"), "md5hash"]))  # the control: val is read
    assert outcome(project, params, "control", trials=1)[0] != before[0][:1]


def test_a_surplus_trial_is_pruned_before_sampling_and_stops_its_worker(params):
    study = optuna.create_study(direction="maximize", sampler=tune.TrialSeededTPE(0))
    study.ask()  # another worker's trial 0, still running, takes the budget of 1
    study.optimize(tune.objective(study, None, params, 1, print), n_trials=5)
    surplus = study.trials[1]
    assert len(study.trials) == 2
    assert surplus.state == TrialState.PRUNED
    assert surplus.user_attrs["surplus"]
    assert not surplus.params


def test_sampling_is_seeded_per_trial_number_not_per_process(params):
    def first_points(seed: int) -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=tune.TrialSeededTPE(seed))
        study.optimize(lambda t: len(tune.suggest(t, params.tune)), n_trials=3)
        return [t.params for t in study.trials]

    points = first_points(0)
    assert points == first_points(0)
    assert len({tuple(p.items()) for p in points}) == 3
    assert points != first_points(1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": [0.0, 0.01]}, "tune.lr must be [low, high] with 0 < low <= high (log scale), got [0.0, 0.01]"),
        ({"weight_decay": ["1e-6", 0.01]}, "tune.weight_decay[0]: expected a number, got '1e-6' (text: YAML reads"),
        ({"dropout": [0.5, 0.2]}, "tune.dropout must be [low, high] within [0, 1), got [0.5, 0.2]"),
        ({"epochs": [0, 3]}, "tune.epochs must be [low, high] whole numbers >= 1"),
        ({"epochs": [1.5, 3]}, "tune.epochs[0]: expected a whole number, got 1.5"),
        ({"hidden": []}, "tune.hidden must be a non-empty list"),
    ],
)
def test_bad_tune_parameters_fail_on_load(raw_params, change, message):
    """The tune block is checked with the rest of params.yaml, not only when `dermsynth tune` runs."""
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.parse({**raw_params, "tune": {**raw_params["tune"], **change}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"condition": "eczema"}, "tune.condition: unknown 'eczema'"),
        ({"arm": "everything"}, "tune.arm: unknown 'everything'"),
    ],
)
def test_bad_tune_choices_are_named(project, raw_params, change, message):
    params = config.parse({**raw_params, "tune": {**raw_params["tune"], **change}})
    with pytest.raises(DermsynthError, match=re.escape(message)):
        tune.main(params, storage=storage(project))
    assert not (project / "optuna.db").exists()


def test_storage_paths_resolve_in_the_real_repository_and_passwords_are_redacted(
    workdir, tmp_path_factory, monkeypatch
):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tune.resolve_storage("sqlite:///optuna.db") == f"sqlite:///{workdir / 'optuna.db'}"
    real = tmp_path_factory.mktemp("real-repo")
    monkeypatch.setenv("DVC_ROOT", str(real))  # inside `dvc exp run --queue`
    assert tune.resolve_storage("sqlite:///build/optuna.db") == f"sqlite:///{real / 'build/optuna.db'}"
    assert tune.resolve_storage("sqlite:////abs/optuna.db") == "sqlite:////abs/optuna.db"
    assert tune.redact("postgresql://ann:s3cr:et@db.lab:5432/optuna") == "postgresql://***@db.lab:5432/optuna"
    assert tune.redact("sqlite:////abs/optuna.db") == "sqlite:////abs/optuna.db"
