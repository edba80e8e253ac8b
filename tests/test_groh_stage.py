"""The `groh` stage on a small embedded dataset of all 114 labels: Groh et al.'s seven schemes, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
import pytest
import yaml

from dermsynth.cohort import groh as schemes
from dermsynth.core import config, paths
from dermsynth.core.study import GROH_SCHEMES

from .conftest import REPO, shrink


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Iterator[config.Params]:
    """The shrunk study with all 114 labels, its `embedded` and `groh` stages run once for the module's tests."""
    from dermsynth import embedded, groh

    raw = shrink(config.read_yaml(REPO / "params.yaml"))
    raw["embedded"].update(labels="all", size_factor=0.08)
    raw["groh"].update(repeats=2)
    folder = tmp_path_factory.mktemp("groh")
    (folder / "dvc.yaml").write_text("stages: {}\n")
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        config.load.cache_clear()
        loaded = config.load()
        embedded.main(loaded)
        groh.main(loaded)
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
