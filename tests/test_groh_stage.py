"""Step one on a small embedded dataset of all 114 labels: the `groh` and `selection` stages and the study they pick."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dermsynth.cohort import groh as schemes
from dermsynth.core import config, paths
from dermsynth.core.study import GROH_SCHEMES, PAPER_CONDITIONS

from .conftest import REPO, shrink


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Iterator[config.Params]:
    """The shrunk study with all 114 labels, its `embedded`, `groh` and `selection` stages run once for the module."""
    from dermsynth import embedded, groh, selection
    from dermsynth.views import groh_report

    raw = shrink(config.read_yaml(REPO / "params.yaml"))
    raw["embedded"].update(labels="all", size_factor=0.08)
    raw["groh"].update(repeats=2)
    raw["selection"].update(min_per_extreme=3)  # 8% of the real counts
    folder = tmp_path_factory.mktemp("groh")
    (folder / "dvc.yaml").write_text("stages: {}\n")
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        config.load.cache_clear()
        loaded = config.load()
        embedded.main(loaded)
        groh.main(loaded)
        groh_report.write(loaded)  # the report stage's part: the tables with intervals
        selection.main(loaded)
        yield loaded
    config.load.cache_clear()


def test_every_scheme_is_trained_and_scored_on_its_own_test_side(params):
    predictions = pd.read_csv(paths.GROH / "predictions.csv", dtype={"md5hash": str})
    assert list(dict.fromkeys(predictions["scheme"])) == list(GROH_SCHEMES)
    frame = pd.read_csv(paths.dataset_metadata(params.dataset.root), dtype=str, keep_default_na=False)
    for scheme in GROH_SCHEMES:
        split = schemes.scheme_split(frame, scheme, params.groh.test_fraction, params.groh.seed)
        mine = predictions[predictions["scheme"] == scheme]
        assert set(mine["repeat"]) == {0, 1}
        assert set(mine["md5hash"]) == set(split.test["md5hash"])  # the whole test side, and nothing of training
        assert set(mine["md5hash"]).isdisjoint(split.train["md5hash"])
        assert (mine["top_k"] | ~mine["correct"]).all()  # top-1 right implies top-3 right
    a12 = predictions[predictions["scheme"] == "a12"]
    assert set(a12["fst"]) <= {3, 4, 5, 6}


def test_results_tables_and_per_label_accuracies(params):
    results = json.loads((paths.GROH_REPORTS / "results.json").read_text())["schemes"]
    predictions = pd.read_csv(paths.GROH / "predictions.csv", dtype={"md5hash": str})
    a56 = results["a56"]
    assert set(a56["by_fst"]) == {"1", "2", "3", "4"}
    rows = predictions[(predictions["scheme"] == "a56") & (predictions["fst"] == 2)]
    assert a56["by_fst"]["2"]["accuracy"]["estimate"] == pytest.approx(rows["correct"].mean(), abs=1e-4)
    assert a56["by_fst"]["2"]["n"] == rows["md5hash"].nunique()
    cell = a56["overall"]["top_k"]
    assert cell["low"] <= cell["estimate"] <= cell["high"]
    assert set(results["br"]["by_source"]) == {"atlas"}
    table = pd.read_csv(paths.GROH_REPORTS / "per_label.csv")
    mine = table[(table["scheme"] == "a12") & (table["label"] == "psoriasis")].iloc[0]
    rows = predictions[(predictions["scheme"] == "a12") & (predictions["label"] == "psoriasis")]
    assert mine["accuracy"] == pytest.approx(rows["correct"].mean(), abs=1e-4)
    assert mine["accuracy_far"] == pytest.approx(rows.loc[rows["fst"] >= 5, "correct"].mean(), abs=1e-4)
    text = (paths.GROH_REPORTS / "groh.md").read_text()
    assert "Simulated results" in text
    assert "## Top-3 accuracy" in text
    assert "| a34 |" in text


def test_the_rule_ranks_every_label_by_its_counts_and_held_out_accuracy(params):
    table = pd.read_csv(paths.SELECTION / "ranked.csv")
    frame = pd.read_csv(paths.dataset_metadata(params.dataset.root), dtype=str, keep_default_na=False)
    light = frame[frame["fitzpatrick_scale"].isin(["1", "2"])]["label"].value_counts()
    assert len(table) == frame["label"].nunique()
    assert table.set_index("label")["I-II"].to_dict() == light.reindex(table["label"], fill_value=0).to_dict()
    counts_met = table[["I-II", "V-VI"]].min(axis=1) >= 3
    assert (table["counts met"] == counts_met).all()
    accuracy_met = (table["a12 accuracy"] > 0) & (table["a56 accuracy"] > 0)
    assert (table["accuracy met"] == accuracy_met).all()
    ranked = table[table["rank"].notna()]
    assert (ranked["counts met"] & ranked["accuracy met"]).all()
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
    assert ranked["min extremes"].is_monotonic_decreasing
    assert table["rank"].isna().sum() == (~(counts_met & accuracy_met)).sum()
    chosen = json.loads((paths.SELECTION / "selection.json").read_text())
    assert chosen["conditions"] == ranked["label"].head(params.prepare.auto_count).tolist()
    text = (paths.SELECTION / "selection.md").read_text()
    for label in PAPER_CONDITIONS:
        assert f"| {label} | yes |" in text


def test_the_rule_on_the_real_csv_keeps_its_counts_and_says_why_a_label_is_left_out(params):
    from dermsynth import selection

    text = resources.files("dermsynth").joinpath("resources", "fitzpatrick17k.csv").read_text()
    real = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    labels = sorted(set(real["label"]))
    per_label = pd.DataFrame([{"scheme": s, "label": label, "n_test": 10, "accuracy": 0.0 if label == "lichen planus"
                               else 0.2} for s in ("a12", "a56") for label in labels])  # fmt: skip
    strict = dataclasses.replace(params, selection=dataclasses.replace(params.selection, min_per_extreme=20))
    table = selection.ranked_table(real, per_label, strict).set_index("label")
    assert table.loc["psoriasis", ["I-II", "V-VI", "rank I-II", "rank V-VI"]].tolist() == [345, 85, 1.0, 4.0]
    assert table.loc["prurigo nodularis", ["I-II", "V-VI", "rank I-II", "rank V-VI"]].tolist() == [35, 38, 90.0, 17.0]
    assert table.loc["lichen planus", "counts met"]
    assert not table.loc["lichen planus", "accuracy met"]
    assert "held-out accuracy not above 0.0: a12 0.000 (N 10), a56 0.000" in selection.why_not(
        table.reset_index().set_index("label").loc["lichen planus"], strict
    )
    assert (
        table.loc["lupus erythematosus", "rank"] == 1
    )  # min(154, 89): the largest rarer extreme once lichen planus is out


def test_prepare_groh_takes_the_rules_choice_through_split_generate_and_training(params):
    from dermsynth import curate, features, generate, prepare, quality, split, train, validate
    from dermsynth.core.study import slug

    chosen = json.loads((paths.SELECTION / "selection.json").read_text())["conditions"]
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["prepare"].update(selection="groh", auto_count=3)
    raw["generate"].update(conditions=[chosen[0]])
    raw["train"].update(conditions=[slug(chosen[0])], epochs=1)
    with open("params.yaml", "w") as fh:
        yaml.safe_dump(raw, fh)
    config.load.cache_clear()
    study = config.load()
    prepare.main(study)
    conditions = json.loads(paths.PREPARED_CONDITIONS.read_text())
    assert conditions["mode"] == "groh"
    assert conditions["conditions"] == chosen[:3]
    split.main(study)
    assert set(pd.read_csv(paths.SPLITS_TABLE)["label"]) == set(chosen[:3])
    assert validate.main(study) == 0
    generate.main(study)
    assert quality.main(study) == 0
    assert curate.main(study) == 0
    features.main(study)
    assert train.main(study, "light_to_dark", slug(chosen[0]), "synthetic_and_seed") == 0
    trained = paths.trained_as(study, "light_to_dark", slug(chosen[0]), "synthetic_and_seed", None)
    predictions = pd.read_csv(paths.run_dir(trained) / "predictions.csv")
    assert set(predictions["pred"]) <= set(chosen[:3])


def test_prepare_groh_refuses_a_choice_made_from_other_metadata(params):
    from dermsynth import prepare
    from dermsynth.core.errors import DermsynthError

    made = json.loads((paths.SELECTION / "selection.json").read_text())
    (paths.SELECTION / "selection.json").write_text(json.dumps(made | {"metadata_md5": "0" * 32}))
    groh_mode = dataclasses.replace(params, prepare=dataclasses.replace(params.prepare, selection="groh"))
    with pytest.raises(DermsynthError, match="other metadata"):
        prepare.main(groh_mode)
    (paths.SELECTION / "selection.json").write_text(json.dumps(made))


def test_track_adds_a_groh_run_with_a_run_per_scheme_once(params, tmp_path, monkeypatch):
    import mlflow

    from dermsynth.track import flatten
    from dermsynth.views import groh_tracking, tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracking.setup()
    client = mlflow.MlflowClient()
    flat = flatten(config.read_yaml(Path("params.yaml")))
    assert "1 run and 7 scheme runs added" in groh_tracking.log(client, experiment, flat)
    assert groh_tracking.log(client, experiment, flat) == "step one (groh) already there"
    runs = client.search_runs([experiment], "tags.stage = 'groh'")
    schemes = {r.data.tags.get("scheme"): r for r in runs if "scheme" in r.data.tags}
    assert set(schemes) == set(GROH_SCHEMES)
    results = json.loads((paths.GROH_REPORTS / "results.json").read_text())["schemes"]
    a12 = schemes["a12"].data
    assert a12.metrics["accuracy"] == results["a12"]["overall"]["accuracy"]["estimate"]
    assert a12.metrics["top_k_fst5"] == results["a12"]["by_fst"]["5"]["top_k"]["estimate"]
    assert "accuracy_fst1" not in a12.metrics  # a12 trains on FST 1-2: nothing tested there
    assert schemes["br"].data.metrics["n_atlas"] == results["br"]["by_source"]["atlas"]["n"]
    parent = next(r for r in runs if "scheme" not in r.data.tags)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in schemes.values())
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "selection")}
    assert "selection/selection.md" in artifacts


def test_the_study_report_sets_the_rules_choice_beside_the_papers_seven(params):
    from dermsynth.views.report_sections import step_one_section

    section = "\n".join(step_one_section())
    assert section.startswith("### Step one: the rule that chose them")
    assert "[reports/selection/ranked.csv](selection/ranked.csv)" in section
    for label in PAPER_CONDITIONS:
        assert f"| {label} | yes |" in section
