"""Groh et al.'s 114-label study, step one of the paper: schemes, top-k accuracy and count ranks (cohort/groh.py)."""

from __future__ import annotations

import csv
from collections import Counter
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from dermsynth.cohort import groh
from dermsynth.core.study import source_of

DERMAAMIN = "https://www.dermaamin.com/site/images/clinical-pic/a/a1.jpg"
ATLAS = "http://atlasdermatologico.com.br/img?imageId=12"


def _rows(spec: list[tuple[str, int, str, str]]) -> pd.DataFrame:
    """A metadata frame from (label, FST, qc, url) tuples, as read_metadata reads the CSV (strings)."""
    columns = ("label", "fitzpatrick_scale", "qc", "url")
    frame = pd.DataFrame([dict(zip(columns, (label, str(fst), qc, url), strict=True)) for label, fst, qc, url in spec])
    return frame.assign(md5hash=[f"{i:032x}" for i in range(len(frame))])


@pytest.fixture
def hand_made() -> pd.DataFrame:
    """Four labels: `a` everywhere, `b` only on light skin, `c` only on dark skin, `d` only in the second atlas."""
    spec = []
    for fst in (1, 2, 3, 4, 5, 6):
        spec += [("a", fst, "", DERMAAMIN), ("a", fst, "", ATLAS)]
    spec += [("a", 3, "1 Diagnostic", DERMAAMIN), ("a", 5, "1 Diagnostic", ATLAS), ("b", 1, "1 Diagnostic", ATLAS)]
    spec += [("b", 1, "", DERMAAMIN), ("b", 2, "", DERMAAMIN), ("c", 5, "", DERMAAMIN), ("c", 6, "", DERMAAMIN)]
    spec += [("d", 3, "", ATLAS), ("d", 4, "", ATLAS), ("a", -1, "", DERMAAMIN), ("b", -1, "", ATLAS)]
    spec += [("a", 2, "5 Potentially", DERMAAMIN), ("c", 4, "", "")]
    return _rows(spec)


def test_fst_holdouts_keep_labels_on_both_sides_and_leave_out_unknown_skin_types(hand_made):
    a12 = groh.scheme_split(hand_made, "a12")
    assert set(a12.train["fitzpatrick_scale"]) == {"1", "2"}
    assert set(a12.test["fitzpatrick_scale"]) == {"3", "4", "5", "6"}  # FST -1 on neither side
    assert a12.labels == ("a",)  # b is only at I-II, c and d never there
    assert set(a12.train["label"]) == set(a12.test["label"]) == {"a"}
    a56 = groh.scheme_split(hand_made, "a56")
    assert a56.labels == ("a", "c")  # c: V-VI in training and FST 4 in the test set
    assert set(a56.test["fitzpatrick_scale"]) == {"1", "2", "3", "4"}


def test_expert_select_trains_on_unreviewed_rows_and_tests_on_diagnostic_ones(hand_made):
    split = groh.scheme_split(hand_made, "expert_select")
    assert set(split.test["qc"]) == {"1 Diagnostic"}
    assert set(split.train["qc"]) == {""}  # "5 Potentially" is neither side, as in Groh's code
    assert split.labels == ("a", "b")
    assert len(split.test) == 3


def test_source_holdouts_split_by_the_url_host(hand_made):
    dermaamin = groh.scheme_split(hand_made, "dermaamin")  # tests on dermaamin.com, trains on the other atlas
    assert set(dermaamin.test["source"]) == {"dermaamin"}
    assert set(dermaamin.train["source"]) == {"atlas"}
    assert dermaamin.labels == ("a", "b")  # c only on dermaamin, d only in the atlas
    br = groh.scheme_split(hand_made, "br")
    assert set(br.test["source"]) == {"atlas"}
    assert set(br.train["source"]) == {"dermaamin"}
    assert len(br.train) == len(dermaamin.test)
    assert len(br.test) == len(dermaamin.train)
    assert source_of("") is None
    assert source_of("https://example.org/x.jpg") is None


def test_random_holdout_is_stratified_seeded_and_disjoint():
    sizes = (("a", 50), ("b", 20), ("c", 1))
    frame = _rows([(label, 1 + i % 6, "", DERMAAMIN) for label, n in sizes for i in range(n)])
    one, two = groh.scheme_split(frame, "random_holdout"), groh.scheme_split(frame, "random_holdout")
    assert one.test["md5hash"].tolist() == two.test["md5hash"].tolist()
    assert Counter(one.test["label"]) == {"a": 10, "b": 4}  # 20% of each label; c's only image trains
    assert set(one.train["md5hash"]).isdisjoint(one.test["md5hash"])
    other = groh.scheme_split(frame, "random_holdout", seed=1)
    assert other.test["md5hash"].tolist() != one.test["md5hash"].tolist()


def test_unknown_scheme_and_empty_sides_are_named(hand_made):
    with pytest.raises(groh.SchemeError, match="unknown scheme 'a78'"):
        groh.scheme_split(hand_made, "a78")
    with pytest.raises(groh.SchemeError, match="expert_select: no label"):
        groh.scheme_split(hand_made.assign(qc=""), "expert_select")


def test_validation_comes_from_the_training_side_and_leaves_every_label_a_fitting_image():
    train = _rows([("a", 1, "", "")] * 10 + [("b", 1, "", "")] * 2 + [("c", 2, "", "")])
    mask = groh.validation_mask(train, 0.2, seed=3)
    assert mask.sum() == 2 + 0 + 0  # round(10 x 0.2) for a; b keeps one of two; c its only image
    assert Counter(train.loc[mask, "label"]) == {"a": 2}
    mask_b = groh.validation_mask(train, 0.5, seed=3)
    assert Counter(train.loc[mask_b, "label"]) == {"a": 5, "b": 1}
    for label in "abc":
        assert (~mask_b[train["label"].to_numpy() == label]).any()


def test_top_k_accuracy_on_hand_made_predictions():
    probabilities = np.array(
        [
            [0.50, 0.30, 0.15, 0.05],  # truth 0: top-1
            [0.40, 0.35, 0.20, 0.05],  # truth 2: third
            [0.10, 0.20, 0.30, 0.40],  # truth 0: last
            [0.25, 0.25, 0.25, 0.25],  # truth 3: a four-way tie, broken by class order: 4th
            [0.05, 0.60, 0.05, 0.30],  # truth 3: second
        ]
    )
    truth = np.array([0, 2, 0, 3, 3])
    assert groh.top_k_correct(probabilities, truth, 1).tolist() == [True, False, False, False, False]
    assert groh.top_k_correct(probabilities, truth, 3).tolist() == [True, True, False, False, True]
    assert groh.top_k_correct(probabilities, truth, 3).mean() == pytest.approx(0.6)
    assert groh.top_k_correct(probabilities, truth, 9).all()  # k beyond the classes: every class


def test_extreme_counts_on_the_real_csv_match_the_csv_and_the_papers_ranks():
    text = resources.files("dermsynth").joinpath("resources", "fitzpatrick17k.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    table = groh.extreme_counts(pd.DataFrame(rows))
    assert len(table) == 114
    light = Counter(r["label"] for r in rows if r["fitzpatrick_scale"] in ("1", "2"))
    dark = Counter(r["label"] for r in rows if r["fitzpatrick_scale"] in ("5", "6"))
    assert table["I-II"].to_dict() == {label: light[label] for label in table.index}
    assert table["V-VI"].to_dict() == {label: dark[label] for label in table.index}
    paper = {  # issue 27's table: count and rank at I-II, count and rank at V-VI
        "psoriasis": (345, 1, 85, 4),
        "squamous cell carcinoma": (280, 2, 63, 7),
        "basal cell carcinoma": (241, 4, 31, 22.5),
        "neutrophilic dermatoses": (185, 7, 46, 11),
        "folliculitis": (127, 12, 40, 15),
        "nematode infection": (71, 32.5, 44, 12.5),
        "prurigo nodularis": (35, 90, 38, 17),
    }
    for label, expected in paper.items():
        row = table.loc[label]
        assert (row["I-II"], row["rank I-II"], row["V-VI"], row["rank V-VI"]) == expected, label
