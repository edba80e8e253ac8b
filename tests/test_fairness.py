import math

import numpy as np
import pandas as pd
import pytest

from dermsynth.analysis.fairness import expected_calibration_error, fairness_metrics, summarise_repeats


def _table(rows: list[tuple], group_col: str = "group") -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[group_col, "label", "pred", "prob_pred"])
    return df.assign(correct=df["label"] == df["pred"])


# 2 groups x 2 classes. A: 3/4 right (acc 0.75), B: 2/4 right (acc 0.5).
TWO_BY_TWO = _table(
    [
        ("A", "x", "x", 0.9),
        ("A", "x", "x", 0.8),
        ("A", "y", "y", 0.7),
        ("A", "y", "x", 0.6),
        ("B", "x", "x", 0.9),
        ("B", "x", "y", 0.4),
        ("B", "y", "y", 0.8),
        ("B", "y", "x", 0.3),
    ]
)


def test_accuracy_gap_ratio_and_worst_group_accuracy():
    m = fairness_metrics(TWO_BY_TWO, bins=2)
    assert m["acc"] == pytest.approx(5 / 8)
    assert m["acc/A"] == pytest.approx(0.75)
    assert m["acc/B"] == pytest.approx(0.5)
    assert m["acc_gap"] == pytest.approx(0.25)
    assert m["acc_ratio"] == pytest.approx(2 / 3)
    assert m["pqd"] == pytest.approx(2 / 3)  # FairDisCo PQD = min acc / max acc
    assert m["worst_group_acc"] == pytest.approx(0.5)


def test_dpm_and_eom_by_hand():
    # P(pred=x | A) = 3/4, P(pred=x | B) = 2/4 -> 2/3; P(pred=y | A) = 1/4, P(pred=y | B) = 2/4 -> 1/2
    # DPM = (2/3 + 1/2) / 2 = 7/12
    # recall x: A 2/2 = 1, B 1/2 -> 1/2; recall y: A 1/2, B 1/2 -> 1; EOM = (1/2 + 1) / 2 = 3/4
    m = fairness_metrics(TWO_BY_TWO, bins=2)
    assert m["dpm"] == pytest.approx(7 / 12)
    assert m["dpm_classes"] == 2
    assert m["eom"] == pytest.approx(0.75)
    assert m["eom_classes"] == 2


def test_ece_with_two_bins_by_hand():
    # bins (0, 0.5] and (0.5, 1].
    # A: all four in the high bin, acc 3/4, conf (0.9+0.8+0.7+0.6)/4 = 0.75 -> ECE 0
    # B: low {0.4 wrong, 0.3 wrong}: |0 - 0.35| * 2/4 = 0.175; high {0.9, 0.8 right}: |1 - 0.85| * 2/4 = 0.075 -> 0.25
    # all: low n=2 |0 - 0.35| * 2/8 = 0.0875; high n=6 acc 5/6 conf 4.7/6 -> |0.3/6| * 6/8 = 0.0375 -> 0.125
    m = fairness_metrics(TWO_BY_TWO, bins=2)
    assert m["ece/A"] == pytest.approx(0.0, abs=1e-12)
    assert m["ece/B"] == pytest.approx(0.25)
    assert m["ece"] == pytest.approx(0.125)


def test_exact_keys():
    assert list(fairness_metrics(TWO_BY_TWO)) == [
        "acc",
        "acc/A",
        "acc/B",
        "acc_gap",
        "acc_ratio",
        "worst_group_acc",
        "pqd",
        "dpm",
        "dpm_classes",
        "eom",
        "eom_classes",
        "ece",
        "ece/A",
        "ece/B",
    ]


def test_ece_bin_edges_are_right_closed():
    # bins=10: 0.3 lies in (0.2, 0.3], 0.35 in (0.3, 0.4] -> 0.5 * |1 - 0.3| + 0.5 * |0 - 0.35| = 0.525
    # (if both shared a bin it would be |0.5 - 0.325| = 0.175)
    assert expected_calibration_error(np.array([0.3, 0.35]), np.array([1, 0])) == pytest.approx(0.525)
    # bins=2: 0.5 lies in (0, 0.5] with 0.2, 1.0 alone in (0.5, 1]: 2/3 * |1/2 - 0.35| + 1/3 * |1 - 1| = 0.1
    assert expected_calibration_error(np.array([0.5, 0.2, 1.0]), np.array([1, 0, 1]), bins=2) == pytest.approx(0.1)
    assert math.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_undefined_classes_are_skipped():
    # A: (x->x), (z->x), (y->x); B: (x->x), (x->y), (y->x)
    # DPM: z never predicted -> skipped. x: P(x|A) = 1, P(x|B) = 2/3 -> 2/3; y: 0 / (1/3) = 0 -> DPM = 1/3
    # EOM: x: recall A 1, B 1/2 -> 1/2; y: recall 0 in both groups (0/0) -> skipped; z: not a label in B -> skipped
    df = _table(
        [
            ("A", "x", "x", 0.9),
            ("A", "z", "x", 0.9),
            ("A", "y", "x", 0.9),
            ("B", "x", "x", 0.9),
            ("B", "x", "y", 0.9),
            ("B", "y", "x", 0.9),
        ]
    )
    m = fairness_metrics(df)
    assert m["dpm"] == pytest.approx(1 / 3)
    assert m["dpm_classes"] == 2
    assert m["eom"] == pytest.approx(0.5)
    assert m["eom_classes"] == 1


def test_no_usable_class_and_zero_accuracy_give_nan():
    # everything wrong: accuracies 0 and 0 -> ratio 0/0; the only true label y is never recalled -> EOM undefined
    df = _table([("A", "y", "x", 0.6), ("B", "y", "x", 0.6)])
    m = fairness_metrics(df)
    assert m["acc_gap"] == 0.0
    assert math.isnan(m["pqd"])
    assert math.isnan(m["acc_ratio"])
    assert math.isnan(m["eom"])
    assert m["eom_classes"] == 0
    assert m["dpm"] == pytest.approx(1.0)  # both groups always predict x
    assert m["ece"] == pytest.approx(0.6)


def test_grouping_by_fitzpatrick_scale_with_float_values_and_missing_group():
    df = _table(
        [
            (1.0, "x", "x", 0.9),
            (1.0, "x", "y", 0.9),
            (5.0, "x", "x", 0.9),
            (np.nan, "x", "y", 0.9),
        ],
        group_col="fitzpatrick_scale",
    )
    m = fairness_metrics(df, group_col="fitzpatrick_scale")
    assert m["acc/1"] == pytest.approx(0.5)
    assert m["acc/5"] == pytest.approx(1.0)
    assert m["acc"] == pytest.approx(0.5)  # overall keeps the ungrouped row: 2/4
    assert m["acc_gap"] == pytest.approx(0.5)


def test_missing_columns_are_reported():
    with pytest.raises(ValueError, match="prob_pred"):
        fairness_metrics(TWO_BY_TWO.drop(columns="prob_pred"))
    with pytest.raises(ValueError, match="skin"):
        fairness_metrics(TWO_BY_TWO, group_col="skin")


def test_summarise_repeats_mean_and_sample_sd_ignoring_nan():
    runs = [{"acc": 0.5, "dpm": math.nan}, {"acc": 0.7, "dpm": 0.4}, {"acc": 0.6, "dpm": 0.6, "eom": 0.9}]
    s = summarise_repeats(runs)
    # acc: mean 0.6, sd sqrt((0.01 + 0.01 + 0) / 2) = 0.1; dpm: mean 0.5, sd sqrt(0.02 / 1); eom: one value -> sd 0
    assert list(s) == ["acc", "acc_sd", "dpm", "dpm_sd", "eom", "eom_sd"]
    assert s["acc"] == pytest.approx(0.6)
    assert s["acc_sd"] == pytest.approx(0.1)
    assert s["dpm"] == pytest.approx(0.5)
    assert s["dpm_sd"] == pytest.approx(math.sqrt(0.02))
    assert s["eom"] == pytest.approx(0.9)
    assert s["eom_sd"] == 0.0


def test_summarise_single_repeat_and_all_nan():
    assert summarise_repeats([{"acc": 0.8}]) == {"acc": pytest.approx(0.8), "acc_sd": 0.0}
    s = summarise_repeats([{"ece": math.nan}, {"ece": math.nan}])
    assert math.isnan(s["ece"])
    assert math.isnan(s["ece_sd"])
    assert summarise_repeats([]) == {}
