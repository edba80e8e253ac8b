"""End to end: the real dvc.yaml and stages on the shrunk configuration (the session's `study`, conftest.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import run_ok, store_contents, store_env, tool_env

pytestmark = pytest.mark.slow


def dvc(*args: str, cwd: Path) -> str:
    return run_ok(["dvc", *args], cwd, store_env(cwd))


@contextmanager
def edited_params(study: Path, section: str, key: str, value: object) -> Iterator[None]:
    """params.yaml with one value changed, restored afterwards (the module's tests share the study)."""
    original = (study / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params[section][key] = value
    (study / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        yield
    finally:
        (study / "params.yaml").write_text(original)


TRAINING_STAGES = ("fitz_only@", "train@", "dose@")


def test_study_tables_are_complete(study: Path):
    metrics = json.loads((study / "reports/metrics.json").read_text())
    arms = metrics["arms"]
    assert set(arms) == {
        f"light_to_dark/psoriasis/{arm}/{g}"
        for arm in ("fitz_only", "seed", "synthetic_and_seed")
        for g in ("III-IV", "V-VI")
    }
    for key, cell in arms.items():
        assert 0.0 <= cell["wald_low"] <= cell["acc"] <= cell["wald_high"] <= 1.0
        assert 0.0 <= cell["wilson_low"] <= cell["acc"] <= cell["wilson_high"] <= 1.0
        assert cell["n"] > 0
        assert cell["acc_mean"] == pytest.approx(cell["acc"])  # every repeat scores the same images
        assert cell["acc_sd"] >= 0.0
        if "/fitz_only/" in key:
            assert cell["p"] is None  # the reference arm
            assert cell["d_acc"] == cell["d_bal_acc"] == cell["d_share"] == 0.0
        else:
            assert 0.0 < cell["p"] <= cell["p_holm"] <= 1.0
        for net in ("group_acc", "bal_acc", "macro_f1", "share"):  # the net benefit beside every gain
            assert 0.0 <= cell[f"{net}_low"] <= cell[net] <= cell[f"{net}_high"] <= 1.0
        assert cell["collapse"] == (cell["d_acc"] > 0 and cell["d_bal_acc"] < 0)
    # dose0 is the seed arm and dose4 (2 seeds x curate.keep 2, the whole set) the synthetic_and_seed arm
    assert {k.split("/")[2] for k in metrics["dose"]} == {"dose0", "dose2", "dose4"}
    assert all(
        metrics["dose"][f"light_to_dark/psoriasis/dose4/{g}"]["acc"]
        == metrics["arms"][f"light_to_dark/psoriasis/synthetic_and_seed/{g}"]["acc"]
        for g in ("III-IV", "V-VI")
    )
    assert len(metrics["spillover"]) == 5 * 2 * 7  # 5 configurations x 2 test groups x 7 conditions
    report = (study / "reports/report.md").read_text()
    for heading in (
        "Counts by condition and FST",
        "Arms",
        "Paired tests against `fitz_only`",
        "Net benefit: every gain beside its cost",
        "The central question: do synthetic images add anything over their seeds?",
        "Test images per condition (N)",
        "Dose-response",
        "Fairness across FST groups",
        "Spillover",
        "validation accuracy",
    ):
        assert heading in report
    assert "mean (SD) over repeats" in report
    assert report.splitlines()[2].startswith("> **Simulated results.**")  # embedded data, random backbone
    central = pd.read_csv(study / "reports/tables/synthetic_vs_seed.csv")
    assert list(central["group"]) == ["III-IV", "V-VI"]
    assert (central["p"] <= central["p_holm"]).all()
    assert (central["bal_acc_p"] <= central["bal_acc_p_holm"]).all()
    assert (central["bal_acc_diff_low"] <= central["bal_acc_difference"]).all()
    assert (central["bal_acc_difference"] <= central["bal_acc_diff_high"]).all()
    assert (central["difference_low"] <= central["difference"]).all()
    assert (central["difference"] <= central["difference_high"]).all()
    gated = json.loads((study / "reports/metrics.json").read_text())["estimands"]
    configs = ["fitz_only", "seed/psoriasis", "synthetic_and_seed/psoriasis"]
    assert set(gated) == {
        *(f"bal_acc/light_to_dark/{c}/{side}" for c in configs for side in ("near", "far")),
        *(f"worst_group_acc/light_to_dark/{c}" for c in configs),
        *(f"gain/light_to_dark/{a}/{c}" for a in ("seed", "synthetic_and_seed", "synthetic_vs_seed")
          for c in ("psoriasis", "pooled")),
    }  # fmt: skip
    # one value per training: 3 draws x 2 repeats of a seed arm, 6 trainings of fitz_only in draw 0
    assert all(len(e["repeats"]) == len(e["draws"]) == 6 for e in gated.values())
    assert all(e["image_var"] >= 0 and e["n"] > 0 for e in gated.values())
    fingerprint = {k: gated[f"bal_acc/light_to_dark/{k}"]["images"] for k in ("fitz_only/far", "seed/psoriasis/far")}
    assert fingerprint["fitz_only/far"] == fingerprint["seed/psoriasis/far"]  # one far group: the same images
    assert fingerprint["fitz_only/far"] != gated["bal_acc/light_to_dark/fitz_only/near"]["images"]
    far = json.loads((study / "reports/metrics.json").read_text())["arms"]
    assert np.mean(gated["bal_acc/light_to_dark/seed/psoriasis/far"]["repeats"]) == pytest.approx(
        far["light_to_dark/psoriasis/seed/V-VI"]["bal_acc"]
    )
    tests = pd.read_csv(study / "reports/tables/paired_tests.csv")
    assert len(tests) == 2 * 2  # (seed, synthetic_and_seed) x 2 test groups
    assert (tests["b_only_fitz_only"] + tests["c_only_arm"] <= tests["n"]).all()
    trends = pd.read_csv(study / "reports/tables/dose_trend.csv")
    assert len(trends) == 2
    assert (trends["clusters"] == tests["n"].iloc[:2].to_numpy()).all()  # one cluster per test image
    assert (trends["n"] == trends["clusters"] * 3 * 2 * 3).all()  # doses 0, 2 and 4, 2 repeats, 3 draws
    fairness = pd.read_csv(study / "reports/tables/fairness.csv")
    assert {"acc I-II", "acc III-IV", "acc V-VI", "pqd", "dpm", "eom", "ece"} <= set(fairness.columns)
    assert (fairness["acc_gap"] >= 0).all()
    assert (study / "reports/figures/arms.png").stat().st_size > 1000
    assert (study / "reports/figures/dose_response.png").stat().st_size > 1000


def test_mlflow_runs_are_tagged_nested_and_match_the_metrics_files(study: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dermsynth").experiment_id
    runs = client.search_runs([experiment], "tags.arm = 'synthetic_and_seed' and tags.repeat = 'all'")
    assert sorted(r.data.tags["dose"] for r in runs) == ["2", "4", "4"]  # dose2, the arm and dose4 (2 seeds x 2)
    run = next(r for r in runs if r.data.tags["configuration"] == "light_to_dark-psoriasis-synthetic_and_seed")
    whole = next(r for r in runs if r.data.tags["configuration"] == "light_to_dark-psoriasis-dose4")
    assert run.data.tags["trained_as"] == whole.data.tags["trained_as"] == run.data.tags["configuration"]
    assert run.data.metrics == whole.data.metrics  # one training, shown under both names
    for tag in ("direction", "condition", "arm", "dose", "repeat", "dataset", "generator", "model", "git_commit"):
        assert tag in run.data.tags
    info = json.loads((study / "build/features/info.json").read_text())
    assert info["device"] == run.data.tags["device"]  # the device the features were computed on
    assert re.fullmatch(r"cpu \((amx_bf16|avx512_bf16|no bf16 units)\)", info["device"])  # bfloat16 bits follow it
    on_disk = json.loads((study / "reports/runs/light_to_dark-psoriasis-synthetic_and_seed.json").read_text())
    assert on_disk == pytest.approx({k: run.data.metrics[k] for k in on_disk}, nan_ok=True)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "predictions.csv"} <= artifacts

    repeats = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    trainings = sorted((r.data.tags["draw"], r.data.tags["repeat"]) for r in repeats)  # 3 draws of the seeds x 2
    assert trainings == [(d, r) for d in ("0", "1", "2") for r in ("0", "1")]
    assert {r.data.tags["train_seed"] for r in repeats} == {str(s) for s in range(6)}  # a stream per training
    assert run.data.tags["draw"] == "all"
    query = "tags.configuration = 'light_to_dark-psoriasis-fitz_only' and tags.repeat = 'all'"
    (reference,) = client.search_runs([experiment], query)
    once = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{reference.info.run_id}'")
    # fitz_only sees no seed: one draw of repeats x draws trainings, each with a seed arm training's seed
    assert sorted((r.data.tags["draw"], r.data.tags["train_seed"]) for r in once) == [("0", str(s)) for s in range(6)]

    grids = client.search_runs([experiment], "tags.grid = 'study'")
    assert len(grids) == 1
    grid = grids[0]
    assert run.data.tags["mlflow.parentRunId"] == grid.info.run_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{grid.info.run_id}'")
    assert len(children) == 3 + 2  # three arms, dose2 and the whole set, one configuration run each
    tables = {a.path for a in client.list_artifacts(grid.info.run_id, "tables")}
    assert {"tables/arms.json", "tables/paired_tests.json", "tables/fairness.json"} <= tables
    p = pd.read_csv(study / "reports/tables/paired_tests.csv").iloc[0]
    key = f"mcnemar_p_holm/{p['direction']}/{p['condition']}/{p['group']}/{p['arm']}"
    assert grid.data.metrics[key] == pytest.approx(p["p_holm"])


def test_track_adds_nothing_twice_and_rebuilds_a_deleted_store(study: Path):
    db = study / "mlflow.db"
    before = store_contents(db)
    # the grid, 3 arms + 2 dose levels, 6 trainings each (3 draws of the seeds x 2 repeats; fitz_only in one go),
    # and step one: a groh run with a run per scheme this dataset forms (the seven alone have no qc or atlas)
    schemes = json.loads((study / "reports/groh/results.json").read_text())["schemes"]
    assert len(before) == 1 + 5 + 5 * 3 * 2 + 1 + len(schemes)
    for _ in range(2):
        out = run_ok([sys.executable, "-m", "dermsynth", "track"], study, store_env(study))
        assert "0 configuration runs added, 5 already there" in out
    assert store_contents(db) == before
    db.rename(study / "old.db")
    (study / "mlruns").rename(study / "old-mlruns")
    run_ok([sys.executable, "-m", "dermsynth", "track"], study, store_env(study))
    assert store_contents(db) == before
    on_disk = json.loads((study / "reports/runs/light_to_dark-psoriasis-seed.json").read_text())
    seed = next(v for v in before.values() if v["name"] == "light_to_dark-psoriasis-seed")
    assert seed["metrics"] == pytest.approx(on_disk, nan_ok=True)
    assert seed["params"]["train.lr"] == "0.001"  # the whole params.yaml, flattened
    assert seed["params"]["curate.keep"] == "2"


def test_the_experiment_opens_on_its_training_runs(study: Path):
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}").get_experiment_by_name("dermsynth")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_summary_has_the_signal_and_the_collapse_flags_beside_each_change(study: Path):
    summary = json.loads((study / "reports/summary.json").read_text())
    signal = summary["signal"]["light_to_dark"]
    assert set(signal) == {"near_bal_acc", "far_bal_acc", "gap", "gap_low", "gap_high"}
    assert signal["gap"] == pytest.approx(signal["near_bal_acc"] - signal["far_bal_acc"], abs=2e-4)
    assert signal["gap_low"] <= signal["gap"] <= signal["gap_high"]
    cell = summary["light_to_dark/psoriasis"]
    assert {"seed/d_acc", "seed/collapse", "synthetic_and_seed/collapse"} <= set(cell)
    assert {"seed_draws", "collapse_flags", "collapse_share_flags", "collapse_bal_flags"} == set(summary["study"])
    assert summary["study"]["seed_draws"] == 3


def test_effects_are_reported_across_the_draws_of_the_seeds(study: Path):
    """Three draws: every seed arm trained per draw on the same test images, its change summarised over them."""
    summary = json.loads((study / "reports/summary.json").read_text())
    for arm in ("seed", "synthetic_and_seed"):
        cell = summary["light_to_dark/psoriasis"]
        low, high, sd = (cell[f"{arm}/d_acc_draw_{k}"] for k in ("min", "max", "sd"))
        assert low <= cell[f"{arm}/d_acc"] + 1e-9
        assert cell[f"{arm}/d_acc"] <= high + 1e-9
        assert sd >= 0
        predictions = pd.read_csv(
            study / f"models/light_to_dark-psoriasis-{arm}/predictions.csv", dtype={"md5hash": str}
        )
        per_draw = [set(rows.loc[rows["split"] == "test", "md5hash"]) for _, rows in predictions.groupby("draw")]
        assert len(per_draw) == 3
        assert per_draw[0] == per_draw[1] == per_draw[2]
        per_draw_acc = []
        for draw in range(3):
            rows = predictions[(predictions["draw"] == draw) & (predictions["split"] == "test")]
            rows = rows[(rows["group"] == "V-VI") & (rows["label"] == "psoriasis")]
            per_draw_acc.append(rows["correct"].mean())
        reference = pd.read_csv(study / "models/light_to_dark-fitz_only/predictions.csv", dtype={"md5hash": str})
        ref = reference[(reference["split"] == "test") & (reference["group"] == "V-VI")]
        ref_acc = ref.loc[ref["label"] == "psoriasis", "correct"].mean()
        assert min(per_draw_acc) - ref_acc == pytest.approx(low, abs=1e-4)
        assert max(per_draw_acc) - ref_acc == pytest.approx(high, abs=1e-4)
    metrics = json.loads((study / "reports/metrics.json").read_text())
    gain = metrics["estimands"]["gain/light_to_dark/synthetic_and_seed/psoriasis"]
    assert gain["draws"] == [0, 0, 1, 1, 2, 2]
    assert gain["seeds"] is not None
    assert metrics["estimands"]["bal_acc/light_to_dark/fitz_only/far"]["seeds"] is None
    runs = json.loads((study / "reports/runs/light_to_dark-psoriasis-seed.json").read_text())
    assert {"test/V-VI/collapse", "test/V-VI/collapse_share", "test/V-VI/collapse_bal"} <= set(runs)
    assert 0 < runs["test/V-VI/prevalence"] < 1


def test_dvc_shows_a_short_summary_and_renders_every_declared_plot(study: Path):
    shown = json.loads(dvc("metrics", "show", "--json", cwd=study))
    metrics = next(iter(shown.values()))["data"]
    assert set(metrics) == {"reports/summary.json", "reports/validation/report.json"}
    flat = [k for block in metrics["reports/summary.json"]["data"].values() for k in block]
    assert len(flat) <= 50
    plots = json.loads(dvc("plots", "show", "--json", cwd=study))
    assert "errors" not in plots, plots.get("errors")
    names = set(plots["data"])
    assert {
        "Dose-response (accuracy on the augmented condition)",
        "Arms (accuracy on the augmented condition)",
    } <= names
    assert any(n.startswith("reports/epochs/") for n in names)
    dose = plots["data"]["Dose-response (accuracy on the augmented condition)"][0]["content"]["data"]["values"]
    assert {point["series"] for point in dose} == {"psoriasis III-IV", "psoriasis V-VI"}


def test_second_repro_is_a_no_op_and_a_dose_change_reruns_only_its_dependents(study: Path):
    again = dvc("repro", cwd=study)
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in again
    with edited_params(study, "dose", "levels", [1]):
        changed = set(json.loads(dvc("status", "--json", cwd=study)))
    assert changed == {"dose@psoriasis-1", "evaluate", "register", "track"}


def test_each_distinct_training_set_is_trained_once(study: Path):
    from dermsynth.analysis.grid import planned_runs, trainings
    from dermsynth.core import config

    params = config.parse(yaml.safe_load((study / "params.yaml").read_text()))
    assert len(planned_runs(params)) == 5  # fitz_only, seed, synthetic_and_seed, dose2, dose4
    assert trainings(params) == [
        "light_to_dark-fitz_only",
        "light_to_dark-psoriasis-seed",
        "light_to_dark-psoriasis-synthetic_and_seed",
        "light_to_dark-psoriasis-dose2",
    ]
    lock = yaml.safe_load((study / "dvc.lock").read_text())["stages"]
    assert sorted(s for s in lock if s.startswith(TRAINING_STAGES)) == [
        "dose@psoriasis-2",
        "fitz_only@light_to_dark",
        "train@light_to_dark-psoriasis-seed",
        "train@light_to_dark-psoriasis-synthetic_and_seed",
    ]
    assert sorted(p.name for p in (study / "models").iterdir()) == sorted(trainings(params))
    assert len(list((study / "reports/runs").glob("*.json"))) == 5  # every configuration has its metrics


def test_training_a_configuration_again_gives_identical_predictions(study: Path):
    run = study / "models/light_to_dark-psoriasis-synthetic_and_seed"
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.suffix in (".csv", ".json")}
    args = ["--direction", "light_to_dark", "--condition", "psoriasis", "--arm", "synthetic_and_seed"]
    run_ok([sys.executable, "-m", "dermsynth", "train", *args], study, store_env(study))
    assert {f.name: f.read_bytes() for f in run.iterdir() if f.suffix in (".csv", ".json")} == before
    assert json.loads(dvc("status", "--json", cwd=study)) == {}  # same bytes: DVC sees nothing to re-run


def test_a_new_interval_level_reruns_only_the_stages_that_compute_intervals(study: Path):
    with edited_params(study, "evaluate", "z", 1.644854):
        # evaluate, register (model cards) and track compute intervals; report names their coverage; nothing trains
        assert set(json.loads(dvc("status", "--json", cwd=study))) == {"evaluate", "register", "report", "track"}
        out = dvc("repro", cwd=study)
        ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
        assert ran == {"evaluate", "register", "report", "track"}
        arms = json.loads((study / "reports/metrics.json").read_text())["arms"]
        narrow = {k: c["wilson_high"] - c["wilson_low"] for k, c in arms.items()}
    dvc("repro", cwd=study)
    arms = json.loads((study / "reports/metrics.json").read_text())["arms"]
    assert all(narrow[k] < c["wilson_high"] - c["wilson_low"] for k, c in arms.items() if c["n"])


def test_a_generator_model_that_is_not_used_retrains_nothing(study: Path):
    with edited_params(
        study,
        "generate",
        "openai",
        {**yaml.safe_load((study / "params.yaml").read_text())["generate"]["openai"], "model": "gpt-image-9"},
    ):
        out = dvc("repro", cwd=study)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert not {s for s in ran if s.startswith(TRAINING_STAGES) or s in ("curate", "features", "evaluate")}, ran
    assert "generate" in ran  # tone_transfer ignores the model: same outputs, so nothing after it re-runs
    dvc("repro", cwd=study)
    assert "Running stage" not in dvc("repro", cwd=study)


def test_gate_accepts_its_own_baseline_and_rejects_a_regression(study: Path):
    env = tool_env()
    gate = [sys.executable, "-m", "dermsynth", "gate"]
    assert subprocess.run([*gate, "--update"], cwd=study, env=env, check=False).returncode == 0
    assert subprocess.run(gate, cwd=study, env=env, check=False).returncode == 0
    baseline = json.loads((study / "reports/baseline.json").read_text())
    gated = baseline["estimands"]
    key = min(gated, key=lambda k: gated[k]["image_var"] + np.var(gated[k]["repeats"]))  # the most precise one
    gated[key]["repeats"] = [v + 1.0 for v in gated[key]["repeats"]]  # the baseline a whole unit better
    (study / "reports/baseline.json").write_text(json.dumps(baseline))
    done = subprocess.run(gate, cwd=study, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert key in done.stdout
