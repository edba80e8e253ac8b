"""The recovery table (analysis/recovery.py) on hand-made snapshots: far group only, verdicts from intervals."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dermsynth.analysis import recovery
from dermsynth.core import paths


def snapshot(
    generator: str,
    gain: tuple[float, float, float],
    collapse: bool = False,
    auc: tuple[float, float, float] = (0.0, -0.02, 0.02),
) -> dict:
    """One generator's snapshot with light_to_dark psoriasis tested on III-IV and V-VI (the far group)."""
    point, low, high = gain
    tests = [
        {"direction": "light_to_dark", "condition": "psoriasis", "group": group, "n": 20, "acc_seed": 0.5,
         "acc_synthetic_and_seed": 0.5 + point, "difference": point, "difference_low": low, "difference_high": high,
         "bal_acc_difference": -0.01, "bal_acc_diff_low": -0.03, "bal_acc_diff_high": 0.01, "p_holm": 0.5,
         "bal_acc_p_holm": 0.5, "auc_reference": 0.8, "auc_arm": 0.8 + auc[0], "auc_difference": auc[0],
         "auc_diff_low": auc[1], "auc_diff_high": auc[2]}
        for group in ("III-IV", "V-VI")
    ]  # fmt: skip
    versus_fitz = [{**t, "arm": "synthetic_and_seed", "difference": point + 0.1} for t in tests]
    arms = {"light_to_dark/psoriasis/synthetic_and_seed/V-VI": {"collapse": collapse}}
    return {"generator": generator, "synthetic_vs_seed": tests, "paired_tests": versus_fitz, "arms": arms}


def test_rows_are_the_far_group_in_control_order_with_verdicts_from_the_interval():
    snaps = [snapshot("null", (0.0, -0.1, 0.1)), snapshot("mine", (-0.2, -0.3, -0.1)),
             snapshot("oracle", (0.3, 0.1, 0.5), collapse=True)]  # fmt: skip
    table = recovery.table(snaps)
    assert list(table["generator"]) == ["oracle", "null", "mine"]  # controls first, unknown generators last
    assert set(table["group"]) == {"V-VI"}
    assert list(table["verdict"]) == ["gain", "none shown", "loss"]
    assert list(table["collapse"]) == [True, False, False]
    assert table["gain_vs_fitz_only"].round(3).tolist() == [0.4, 0.1, -0.1]
    assert recovery.counts(table)["oracle"] == {"gain": 1, "none shown": 0, "loss": 0}


def test_a_snapshot_without_intervals_says_not_available():
    old = snapshot("tone_transfer", (0.1, 0.0, 0.2))
    for t in old["synthetic_vs_seed"]:
        del t["difference_low"], t["difference_high"]
        del t["auc_diff_low"], t["auc_diff_high"]
    del old["paired_tests"]
    row = recovery.table([old]).iloc[0]
    assert row["verdict"] == row["auc_verdict"] == "n/a"
    assert math.isnan(row["gain_vs_fitz_only"])


def test_the_section_states_what_was_planted_and_what_was_recovered():
    table = recovery.table([snapshot("oracle", (0.3, 0.1, 0.5)), snapshot("null", (0.0, -0.1, 0.1))])
    signal = {"light_to_dark": {"near_bal_acc": 0.7, "far_bal_acc": 0.5, "gap": 0.2, "gap_low": 0.15,
                                "gap_high": 0.25}}  # fmt: skip
    planted = recovery.planted({"tone_shift": 1.0, "contrast": [0.2, 0.9], "mimicry": 0.5}, signal)
    text = recovery.markdown(table, planted, "95%")
    assert "gap 0.200 [0.150, 0.250]" in text
    assert "`embedded.tone_shift` 1.0" in text
    assert "| oracle | light_to_dark | psoriasis | V-VI | 20 | 0.500 -> 0.800 | +0.300 [+0.100, +0.500] |" in text
    summary = "- `oracle` (of 1): condition accuracy 1 / 0 / 0; balanced accuracy 0 / 1 / 0; condition AUC 0 / 1 / 0"
    assert summary in text
    assert "- `null` (of 1): condition accuracy 0 / 1 / 0" in text
    assert "| 0.800 -> 0.800 | +0.000 [-0.020, +0.020] | no |" in text  # the AUC columns, then the collapse flag
    assert recovery.markdown(recovery.table([]), planted, "95%") == ""


def test_the_paired_difference_interval_follows_the_pairs():
    from dermsynth.analysis.compare import paired_difference

    seed = pd.DataFrame([[0.0] * 10 + [1.0] * 10] * 3)
    better = pd.DataFrame([[1.0] * 8 + [0.0] * 2 + [1.0] * 10] * 3)  # 8 images fixed, none broken, in every repeat
    gain = paired_difference(seed, better, "test", 1.959964)
    assert 0 < gain["low"] <= 0.4 <= gain["high"]  # the point gain is 8 / 20
    assert gain["estimate"] == pytest.approx(0.4)
    same = paired_difference(seed, seed, "test", 1.959964)
    assert (same["low"], same["high"]) == (0.0, 0.0)  # the same outcomes: no gain
    swapped = pd.DataFrame([[1.0] * 5 + [0.0] * 5 + [1.0] * 5 + [0.0] * 5] * 3)  # as many fixed as broken
    gain = paired_difference(seed, swapped, "test", 1.959964)
    assert gain["low"] < 0 < gain["high"]


def test_every_generator_name_reaches_params_yaml_as_a_string(tmp_path):
    """`-S generate.generator=null` would set None (Hydra's grammar): the null control's experiment failed so."""
    import yaml
    from dvc.utils.hydra import apply_overrides

    from dermsynth.compare_cli import settings

    params = tmp_path / "params.yaml"
    for name in ("null", "oracle", "tone_transfer", "true", "1"):
        params.write_text("generate:\n  generator: reinhard\n")
        apply_overrides(str(params), [settings(name, None, False)[1]])
        assert yaml.safe_load(params.read_text())["generate"]["generator"] == name


def test_the_finding_says_which_measures_tell_the_controls_apart():
    oracle = snapshot("oracle", (0.3, 0.1, 0.5), auc=(0.05, 0.01, 0.09))
    shifted = snapshot("null", (0.2, 0.05, 0.3))  # gains in accuracy by a prior shift, none in AUC
    text = "\n".join(recovery.finding(recovery.table([oracle, shifted])))
    assert "- condition accuracy: null 1, oracle 1: does not separate them" in text
    assert "- condition AUC: null 0, oracle 1: separates them" in text
    assert "a shift of the prior" in text
    assert "Read the real generators on what separates the controls: condition AUC." in text
    neither = recovery.table([snapshot("oracle", (0.3, 0.1, 0.5)), shifted])  # the oracle gains no AUC either
    assert "No measure separates the controls" in "\n".join(recovery.finding(neither))
    clean = "\n".join(recovery.finding(recovery.table([oracle, snapshot("null", (0.0, -0.1, 0.1))])))
    assert "a shift of the prior" not in clean
    assert "what separates the controls: condition accuracy, condition AUC." in clean
    assert recovery.finding(recovery.table([oracle])) == []  # no null control


def test_the_finding_names_where_the_oracle_falls_short_beside_the_null():
    """A second pair where the oracle loses AUC about as much as the null: named, with both changes and the limit."""
    table = recovery.table(
        [snapshot("oracle", (0.3, 0.1, 0.5), auc=(0.05, 0.01, 0.09)), snapshot("null", (0.0, -0.1, 0.1))]
    )
    second = table.assign(condition="squamous_cell_carcinoma", auc_vs_seed=[-0.04, -0.045], auc_verdict="loss")
    text = "\n".join(recovery.finding(pd.concat([table, second], ignore_index=True)))
    assert "On condition AUC the oracle shows no gain in 1 of 2 pairs: light_to_dark squamous cell carcinoma" in text
    assert "(loss: oracle -0.040, null -0.045)" in text
    assert "What limits it" in text
    assert "On condition accuracy" not in text  # accuracy separates them too, and the oracle gains in both pairs
    assert "shows no gain" not in "\n".join(recovery.finding(table))  # the first pair alone: the oracle gains


def test_tables_only_rebuilds_the_tables_from_stored_snapshots(workdir, params):
    from dermsynth import compare_cli
    from dermsynth.core import files
    from dermsynth.core.errors import DermsynthError

    with pytest.raises(DermsynthError, match=r"no snapshot for oracle.*run without --tables-only first"):
        compare_cli.main(params, ["oracle"], None, False, tables_only=True)
    for name, gain in (("oracle", (0.3, 0.1, 0.5)), ("null", (0.2, 0.05, 0.3))):
        made = {"condition": "Psoriasis", "group": "V-VI", "kid": 0.01, "kid_se": 0.001, "in_band": 1.0,
                "seed_diversity": 0.1, "distance_to_seed": 0.2}  # fmt: skip
        snap = snapshot(name, gain) | {"quality": {"cells": [made]}, "usd": 0.0, "generate_s": 0.0, "cached": True}
        for group in ("III-IV", "V-VI"):
            cell = {"n": 20, "acc": 0.8, "wilson_low": 0.6, "wilson_high": 0.9, "bal_acc": 0.5, "collapse": False}
            snap["arms"][f"light_to_dark/psoriasis/synthetic_and_seed/{group}"] = cell
        snap |= {"signal": {}, "embedded": {"tone_shift": 1.0, "contrast": [0.2, 0.9], "mimicry": 0.5}}
        files.write_json(compare_cli.OUT / f"{name}.json", snap)
    assert compare_cli.main(params, ["oracle", "null"], None, False, tables_only=True) == 0
    assert "condition accuracy: null 1, oracle 1: does not separate them" in paths.RECOVERY.read_text()
    names = pd.read_csv(paths.RECOVERY_TABLE, keep_default_na=False)["generator"]  # pandas reads "null" as NaN
    assert list(names) == ["oracle", "null"]
