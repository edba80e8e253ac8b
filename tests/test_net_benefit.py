"""Net-benefit metrics and the synthetic-vs-seed paired bootstrap, on prediction tables made by hand.

The hand-made test group has 10 images of three classes (4 A, 4 B, 2 C). `fitz_only` gets
A 2/4, B 3/4, C 1/2 right. The `collapsed` arm predicts A for nearly everything: A 4/4,
B 1/4, C 0/2. Its accuracy on A (the augmented condition) rises from 0.5 to 1.0 while its
balanced accuracy falls from 7/12 to 5/12: the pattern the report must flag.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from dermsynth.analysis.compare import paired_balanced_accuracy
from dermsynth.analysis.metrics import net_benefit, run_metrics
from dermsynth.analysis.stats import bootstrap_p, bootstrap_weights, percentile_interval
from dermsynth.evaluate import with_changes

CLASSES = ["A", "B", "C"]
TRUTH = ["A"] * 4 + ["B"] * 4 + ["C"] * 2
FITZ_ONLY = ["A", "A", "B", "B", "B", "B", "B", "A", "C", "A"]
COLLAPSED = ["A", "A", "A", "A", "B", "A", "A", "A", "A", "A"]


def table(preds: list[str], repeats: int = 1) -> pd.DataFrame:
    rows = [
        {"md5hash": f"img{i:02d}", "label": t, "pred": p, "repeat": r, "split": "test", "group": "V-VI"}
        for r in range(repeats)
        for i, (t, p) in enumerate(zip(TRUTH, preds, strict=True))
    ]
    frame = pd.DataFrame(rows)
    return frame.assign(correct=frame["label"] == frame["pred"], prob_pred=0.5)


def test_balanced_accuracy_macro_f1_and_share_by_hand():
    fitz = net_benefit(table(FITZ_ONLY), CLASSES, 1.959964)
    assert fitz["bal_acc"] == pytest.approx((2 / 4 + 3 / 4 + 1 / 2) / 3)
    # F1 = 2 TP / (predicted + true): A 4/8, B 6/9, C 2/3
    assert fitz["macro_f1"] == pytest.approx((4 / 8 + 6 / 9 + 2 / 3) / 3)
    assert fitz["share/a"] == pytest.approx(4 / 10)
    assert fitz["share/b"] == pytest.approx(5 / 10)
    collapsed = net_benefit(table(COLLAPSED), CLASSES, 1.959964)
    assert collapsed["bal_acc"] == pytest.approx((4 / 4 + 1 / 4 + 0 / 2) / 3)
    assert collapsed["macro_f1"] == pytest.approx((8 / 13 + 2 / 5 + 0) / 3)
    assert collapsed["share/a"] == pytest.approx(9 / 10)


@pytest.mark.parametrize("preds", [FITZ_ONLY, COLLAPSED])
def test_point_estimates_equal_sklearn(preds):
    got = net_benefit(table(preds), CLASSES, 1.959964)
    assert got["bal_acc"] == pytest.approx(balanced_accuracy_score(TRUTH, preds))
    assert got["macro_f1"] == pytest.approx(f1_score(TRUTH, preds, average="macro", zero_division=0))


def test_repeats_pool_and_intervals_bracket_the_estimate():
    once, thrice = net_benefit(table(FITZ_ONLY), CLASSES, 1.96), net_benefit(table(FITZ_ONLY, 3), CLASSES, 1.96)
    for key in ("bal_acc", "macro_f1", "share/a"):
        assert thrice[key] == pytest.approx(once[key])
        assert thrice[f"{key}_low"] <= thrice[key] <= thrice[f"{key}_high"]
        assert thrice[f"{key}_low"] < thrice[f"{key}_high"]  # ten images leave real uncertainty


def test_run_metrics_carry_the_net_benefit_per_test_group():
    preds = pd.concat([table(COLLAPSED), table(FITZ_ONLY).assign(split="val", group="I-II")], ignore_index=True)
    metrics = run_metrics(preds, 1.959964)
    assert metrics["test/V-VI/bal_acc"] == pytest.approx(5 / 12)
    assert metrics["test/V-VI/share/a"] == pytest.approx(0.9)
    assert metrics["test/V-VI/acc"] == pytest.approx(5 / 10)
    assert "val/bal_acc" not in metrics


def cell(arm: str, preds: list[str]) -> dict:
    m = net_benefit(table(preds), CLASSES, 1.959964)
    acc_a = sum(p == t == "A" for p, t in zip(preds, TRUTH, strict=True)) / 4
    return {
        "direction": "light_to_dark",
        "condition": "a",
        "group": "V-VI",
        "arm": arm,
        "acc": acc_a,
        "group_acc": sum(p == t for p, t in zip(preds, TRUTH, strict=True)) / 10,
        "bal_acc": m["bal_acc"],
        "macro_f1": m["macro_f1"],
        "share": m["share/a"],
        "prevalence": TRUTH.count("A") / len(TRUTH),
    }


def test_a_collapse_raises_condition_accuracy_lowers_balanced_accuracy_and_is_flagged():
    rows = with_changes(
        [cell("fitz_only", FITZ_ONLY), cell("seed", COLLAPSED), cell("synthetic_and_seed", FITZ_ONLY)], k=2.0
    )
    fitz, collapsed, same = rows
    assert collapsed["d_acc"] == pytest.approx(0.5)
    assert collapsed["d_bal_acc"] == pytest.approx(5 / 12 - 7 / 12)
    assert collapsed["d_share"] == pytest.approx(0.5)
    assert collapsed["d_group_acc"] == pytest.approx(-0.1)
    assert collapsed["collapse"] is True
    assert (collapsed["collapse_share"], collapsed["collapse_bal"]) == (True, True)  # share 0.9 > 2 x 0.4
    assert same["collapse"] is False
    assert same["d_bal_acc"] == 0
    assert fitz["collapse"] is False
    assert fitz["d_acc"] == 0


def test_no_reference_arm_gives_no_change_and_no_flag():
    (row,) = with_changes([cell("seed", COLLAPSED)], k=3.0)
    assert math.isnan(row["d_acc"])
    assert row["collapse"] is False


SHARE_ONLY = ["A", "A", "B", "C", "A", "A", "A", "B", "A", "A"]  # A still right on 2 of 4, but 7 of 10 called A
BALANCE_ONLY = ["A", "A", "A", "A", "C", "C", "C", "C", "B", "B"]  # A right on 4 of 4, B and C never


def test_each_collapse_rule_flags_on_its_own():
    """Hand-made tables: A is 4 of 10 test images (prevalence 0.4); k = 1.5 puts the share threshold at 0.6."""
    fitz, share, balance = with_changes(
        [cell("fitz_only", FITZ_ONLY), cell("seed", SHARE_ONLY), cell("synthetic_and_seed", BALANCE_ONLY)], k=1.5
    )
    assert (share["share"], share["d_acc"]) == (pytest.approx(0.7), pytest.approx(0.0))
    assert (share["collapse_share"], share["collapse_bal"], share["collapse"]) == (True, False, True)
    assert (balance["share"], balance["d_acc"]) == (pytest.approx(0.4), pytest.approx(0.5))
    assert balance["d_bal_acc"] == pytest.approx(1 / 3 - (2 / 4 + 3 / 4 + 1 / 2) / 3)
    assert (balance["collapse_share"], balance["collapse_bal"], balance["collapse"]) == (False, True, True)
    assert (fitz["collapse_share"], fitz["collapse"]) == (False, False)  # fitz_only's share 0.4 is the reference
    (calm,) = with_changes([cell("seed", SHARE_ONLY)], k=2.0)  # 0.7 is not above 2 x 0.4
    assert calm["collapse"] is False


def test_the_report_counts_each_rule_and_calls_no_flagged_cell_a_gain():
    from dermsynth.views.report_tables import flag_text, flagged_cells

    rows = pd.DataFrame(
        with_changes(
            [cell("fitz_only", FITZ_ONLY), cell("seed", SHARE_ONLY), cell("synthetic_and_seed", BALANCE_ONLY)], k=1.5
        )
    )
    text = "\n".join(flagged_cells(rows, 1.5))
    assert "over 2 augmented cells: **1** flagged by prediction share (more than 1.5 x" in text
    assert "**1** by balanced accuracy" in text
    assert "**2 cells are flagged `collapse`: their change in condition accuracy is not a gain.**" in text
    assert [flag_text(r) for r in rows.to_dict("records")] == ["", "collapse (share)", "collapse (balanced)"]


# --- the paired difference in balanced accuracy (synthetic_and_seed vs seed) -------------------------------------


def test_paired_difference_of_identical_arms_is_null():
    result = paired_balanced_accuracy(table(FITZ_ONLY, 2), table(FITZ_ONLY, 2), 1.959964)
    assert result["bal_acc_difference"] == 0
    assert (result["bal_acc_diff_low"], result["bal_acc_diff_high"]) == (0, 0)
    assert result["bal_acc_p"] == 1.0


def test_paired_difference_known_value_and_p():
    result = paired_balanced_accuracy(table(FITZ_ONLY), table(COLLAPSED), 1.959964)
    assert result["bal_acc_reference"] == pytest.approx(7 / 12)
    assert result["bal_acc_arm"] == pytest.approx(5 / 12)
    assert result["bal_acc_difference"] == pytest.approx(-2 / 12)
    assert result["bal_acc_diff_low"] < -2 / 12 < result["bal_acc_diff_high"]
    # an arm right on every image against one wrong on every image, in every repeat: no spread, p 0
    wrong = [{"A": "B", "B": "C", "C": "A"}[t] for t in TRUTH]
    better = paired_balanced_accuracy(table(wrong, 2), table(TRUTH, 2), 1.959964)
    assert better["bal_acc_difference"] == 1.0
    assert better["bal_acc_p"] == 0.0


def copies(preds: list[str], repeat: int, n: int = 10) -> pd.DataFrame:
    """The hand-made group ``n`` times over (other images, same answers), as one repeat."""
    parts = [table(preds).assign(md5hash=lambda f, c=c: f["md5hash"] + f"-{c}") for c in range(n)]
    return pd.concat(parts, ignore_index=True).assign(repeat=repeat)


def test_repeats_that_disagree_widen_the_interval():
    """100 images and 4 repeats, once all alike and once alternating all right / collapsed: the second interval is
    wider, because the spread between trainings is part of it. (With 10 images and 2 repeats both intervals fill
    [0, 1]: a t on one degree of freedom, clipped to the rate's bounds.)"""
    from dermsynth.analysis.metrics import balanced_weights

    agree = pd.concat([copies(FITZ_ONLY, r) for r in range(4)], ignore_index=True)
    disagree = pd.concat([copies(p, r) for r, p in enumerate([TRUTH, COLLAPSED] * 2)], ignore_index=True)
    calm, torn = net_benefit(agree, CLASSES, 1.959964), net_benefit(disagree, CLASSES, 1.959964)
    assert calm["bal_acc_high"] - calm["bal_acc_low"] < torn["bal_acc_high"] - torn["bal_acc_low"]
    weighted = (disagree["correct"] * balanced_weights(disagree)).mean()  # the weights' mean is balanced accuracy
    assert weighted == pytest.approx(torn["bal_acc"])
    assert torn["bal_acc"] == pytest.approx(balanced_accuracy_score(TRUTH * 2, TRUTH + COLLAPSED))


def test_paired_bootstrap_refuses_unpaired_arms():
    """A user error (stale predictions), so the CLI's one error type, in one line with the next step."""
    from dermsynth.core.errors import DermsynthError

    with pytest.raises(DermsynthError, match="different images") as caught:
        paired_balanced_accuracy(table(FITZ_ONLY), table(FITZ_ONLY).assign(md5hash=lambda f: f["md5hash"] + "x"), 1.96)
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith("re-run `dvc repro` so that every training reads the current build/splits")


def test_bootstrap_p_and_interval_known_values():
    assert bootstrap_p([1.0, 2.0, 3.0]) == pytest.approx(2 * 1 / 4)
    assert bootstrap_p([-1.0, 1.0]) == 1.0
    assert bootstrap_p([0.0] * 9) == 1.0
    values = np.arange(1001, dtype=float)  # percentiles 2.5 and 97.5 of 0..1000
    assert percentile_interval(values, 1.959964) == pytest.approx((25.0, 975.0), abs=1e-3)
    weights = bootstrap_weights(7, 50, seed=3)
    assert weights.shape == (50, 7)
    assert (weights.sum(axis=1) == 7).all()
    assert (bootstrap_weights(7, 50, seed=3) == weights).all()


def test_signal_is_the_near_far_gap_of_balanced_accuracy_with_an_interval():
    from dermsynth.analysis.metrics import signal

    near = table(TRUTH).assign(split="val", group="I-II", md5hash=lambda f: "v" + f["md5hash"])  # all right
    far = table(COLLAPSED)  # test at V-VI: balanced accuracy (4/4 + 1/4 + 0/2) / 3
    other = table(FITZ_ONLY).assign(group="III-IV", md5hash=lambda f: "m" + f["md5hash"])  # not the far group
    got = signal(pd.concat([near, far, other], ignore_index=True), "V-VI", 1.959964)
    assert got["near_bal_acc"] == pytest.approx(1.0)
    assert got["far_bal_acc"] == pytest.approx((1 + 1 / 4 + 0) / 3)
    assert got["gap"] == pytest.approx(1 - 5 / 12)
    assert got["gap_low"] <= got["gap"] <= got["gap_high"]
    assert got["gap_low"] > 0  # ten far images that far from the near ones


def probabilities(logits: np.ndarray, repeats: int = 2) -> pd.DataFrame:
    """A prediction table with every class's probability (softmax of ``logits``), as `train` writes it."""
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    frame = table([CLASSES[i] for i in probs.argmax(1)], repeats)
    for k, name in enumerate(CLASSES):
        frame[f"prob_{name.lower()}"] = np.tile(probs[:, k], repeats)
    return frame


def test_a_shift_of_the_prior_raises_accuracy_but_not_the_auc():
    """Adding a constant to A's logit (what one-label augmentation at one tone teaches) calls A more often,
    and leaves the ranking of images by A's probability, so A's AUC, exactly as it was."""
    from dermsynth.analysis.compare import paired_auc

    logits = np.random.default_rng(0).normal(size=(len(TRUTH), 3))
    logits[:4, 0] += 1.0  # A's images lean toward A
    shifted = logits + np.array([2.0, 0.0, 0.0])
    reference, arm = probabilities(logits), probabilities(shifted)
    assert arm["correct"][arm["label"] == "A"].mean() > reference["correct"][reference["label"] == "A"].mean()
    same = paired_auc(reference, arm, "A", 1.959964)
    assert same["auc_difference"] == pytest.approx(0.0, abs=1e-6)
    assert same["auc_diff_low"] == pytest.approx(0.0, abs=1e-6)
    assert same["auc_diff_high"] == pytest.approx(0, abs=1e-6)
    sharper = logits.copy()
    sharper[:4, 0] += 3.0  # A's images told apart better: a real gain in AUC
    better = paired_auc(reference, probabilities(sharper), "A", 1.959964)
    assert better["auc_difference"] > 0
    assert better["auc_arm"] == pytest.approx(1.0)


def test_auc_needs_every_class_probability():
    from dermsynth.analysis.compare import paired_auc
    from dermsynth.core.errors import DermsynthError

    with pytest.raises(DermsynthError, match=r"no column 'prob_a'.*re-run `dvc repro`"):
        paired_auc(table(FITZ_ONLY), table(FITZ_ONLY), "A", 1.96)
