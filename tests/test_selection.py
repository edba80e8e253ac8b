"""Condition selection: the explicit list of the study, or the automatic ranking at the FST extremes."""

import csv
from collections import Counter

import pandas as pd
import pytest

from dermsynth import generate, metadata, prepare, split
from dermsynth.cohort import selection
from dermsynth.core import files, paths
from dermsynth.core.config import Prepare
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import REAL_COUNTS

STUDY_LABELS = tuple(REAL_COUNTS)  # the seven labels of the study, as in fitzpatrick17k.csv


def test_auto_ranks_every_label_by_its_smaller_extreme_count():
    raw = selection.read_metadata(metadata.shipped_csv())
    chosen = selection.select_conditions(raw, Prepare(selection="auto", conditions=[], auto_count=7))
    with open(metadata.shipped_csv()) as fh:
        extremes = Counter()
        for r in csv.DictReader(fh):
            fst = int(r["fitzpatrick_scale"])
            if fst in (1, 2, 5, 6):
                extremes[(r["label"], "light" if fst <= 2 else "dark")] += 1
    labels = {label for label, _ in extremes}
    score = {label: min(extremes[(label, "light")], extremes[(label, "dark")]) for label in labels}
    by_hand = sorted(labels, key=lambda label: (-score[label], -extremes[(label, "dark")]))[:7]
    assert chosen["mode"] == "auto"
    assert chosen["conditions"] == by_hand
    assert chosen["conditions"][:3] == ["lichen planus", "lupus erythematosus", "psoriasis"]
    assert "FST I-II and V-VI" in chosen["reason"]


def test_explicit_is_the_protocol_list(params):
    chosen = selection.select_conditions(pd.DataFrame(), params.prepare)
    assert chosen["mode"] == "explicit"
    assert chosen["conditions"] == list(STUDY_LABELS)


def test_auto_mode_flows_through_the_stages(workdir, raw_params):
    """prepare writes the choice; split and later stages use it, not params.yaml's list."""
    import yaml

    from dermsynth import embedded
    from dermsynth.core import config

    raw_params["prepare"].update(selection="auto", auto_count=3)
    raw_params["generate"].update(conditions=["basal cell carcinoma"])
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw_params))
    config.load.cache_clear()
    params = config.load()
    embedded.main(params)
    prepare.main(params)
    chosen = files.read_json(paths.PREPARED_CONDITIONS)["conditions"]
    assert len(chosen) == 3
    split.main(params)
    assert set(pd.read_csv(paths.SPLITS_TABLE)["label"]) == set(chosen)
    assert chosen == ["psoriasis", "squamous cell carcinoma", "neutrophilic dermatoses"]
    with pytest.raises(DermsynthError, match="not among the study's conditions"):
        generate.generate(pd.read_csv(paths.SEEDS_TABLE, dtype={"md5hash": str}), params)
