"""`dermsynth compare-generators` on the shrunk study: tone_transfer, Reinhard's baseline, a tiny diffusers pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import git, run_ok, store_env, tiny_project
from .tiny_diffusers import build_tiny_inpainting_pipeline

pytestmark = pytest.mark.slow
GENERATORS = ["tone_transfer", "reinhard", "diffusers"]


def test_one_table_compares_three_generators_and_the_workspace_is_restored(study: Path, tmp_path: Path):
    root = tiny_project(tmp_path / "repo")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["generate"]["diffusers"].update(size=64, steps=2)  # the tiny pipeline at 512 px and 30 steps takes minutes
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / ".gitignore").write_text("/mlflow.db\n/mlruns/\n/reports/generators/\n")
    git("init", "-q", cwd=root)
    run_ok(["dvc", "init", "-q"], root)
    run_ok(["dvc", "cache", "dir", str(study / ".dvc" / "cache")], root)  # the stages before generate: run cache
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root)
    params_before = (root / "params.yaml").read_bytes()
    pipeline = build_tiny_inpainting_pipeline(tmp_path / "tiny-inpainting")
    out = run_ok(
        ["dermsynth", "compare-generators", *GENERATORS, "--diffusers-model", str(pipeline)], root, store_env(root)
    )
    assert "params.yaml and dvc.lock restored" in out
    assert (root / "params.yaml").read_bytes() == params_before

    table = pd.read_csv(root / "reports/generators/comparison.csv")
    assert list(dict.fromkeys(table["generator"])) == GENERATORS
    assert len(table) == 3 * 2  # one direction and condition, two test groups, per generator
    assert set(table["group"]) == {"III-IV", "V-VI"}
    assert ((table["acc_low"] <= table["acc"]) & (table["acc"] <= table["acc_high"])).all()
    assert table["p_holm"].between(0, 1).all()
    assert table["kid"].notna().all()
    assert table["in_band"].between(0, 1).all()
    assert (table["usd"] == 0).all()  # offline generators cost nothing
    snapshots = {g: json.loads((root / f"reports/generators/{g}.json").read_text()) for g in GENERATORS}
    assert snapshots["diffusers"]["model"] == "tiny-inpainting"
    # the synthetic images differ between generators, so the arm's predictions do too
    assert snapshots["reinhard"]["quality"] != snapshots["tone_transfer"]["quality"]
    assert "| reinhard |" in (root / "reports/generators/comparison.md").read_text()
    recovered = pd.read_csv(root / "reports/generators/recovery.csv", keep_default_na=False)
    assert list(recovered["generator"]) == ["tone_transfer", "reinhard", "diffusers"]  # the far group only
    assert set(recovered["group"]) == {"V-VI"}
    assert ((recovered["gain_vs_seed_low"] <= recovered["gain_vs_seed"]) & (
        recovered["gain_vs_seed"] <= recovered["gain_vs_seed_high"])).all()  # fmt: skip
    assert "**Planted.**" in (root / "reports/generators/recovery.md").read_text()

    experiments = json.loads(run_ok(["dvc", "exp", "show", "--json"], root))
    names = {rev.get("name") for c in experiments for e in c.get("experiments") or [] for rev in e.get("revs") or []}
    assert {n.split("-")[1] for n in names if n and n.startswith("gen-")} == set(GENERATORS)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dermsynth").experiment_id], "tags.grid = 'study'")
    assert {r.data.tags["generator"] for r in runs} == set(GENERATORS)  # the same comparison in the UI
