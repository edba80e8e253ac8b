"""The gate calibration benchmark's plants and bookkeeping (benchmarks/gate_calibration.py, gate_plants.py).

The plants must do what the benchmark says they do to the real `training_set`, reach a
`dermsynth train` process only through GATE_PLANT, and every run must get its own training
stream, or DVC's run cache could hand a planted run a clean run's results.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dermsynth.core import config
from dermsynth.model.trainset import training_set

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gate_calibration  # noqa: E402 (from benchmarks/, not a package)
import gate_plants  # noqa: E402


def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """10 psoriasis and 5 squamous cell carcinoma training images, 2 psoriasis seeds with 2 synthetic images each."""
    rows = [
        ("p", "psoriasis", "train", 10),
        ("c", "squamous cell carcinoma", "train", 5),
        ("s", "psoriasis", "seed", 2),
    ]
    splits = pd.DataFrame(
        [
            {"md5hash": f"{prefix}{i}", "label": label, "role": role, "direction": "light_to_dark"}
            for prefix, label, role, count in rows
            for i in range(count)
        ]
    )
    curated = pd.DataFrame(
        [
            {"file": f"s{i}_{k}.png", "label": "psoriasis", "seed_group": "V-VI", "rank": k, "seed_md5hash": f"s{i}"}
            for i in range(2)
            for k in range(2)
        ]
    )
    return splits, curated


def planted(plant: str, arm: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    splits, curated = tables()
    clean = training_set(splits, curated, "light_to_dark", "psoriasis", arm, None, 2)
    wrapped = gate_plants.planted(training_set, plant)
    return clean, wrapped(splits, curated, "light_to_dark", "psoriasis", arm, None, 2)


def test_flip_labels_relabels_a_fifth_of_psoriasis_training_images_in_every_arm():
    for arm in ("fitz_only", "synthetic_and_seed"):
        clean, dirty = planted("flip_labels", arm)
        changed = dirty[clean["label"] != dirty["label"]]
        assert len(changed) == 2  # 20% of the 10 real psoriasis images
        assert set(changed["label"]) == {"squamous cell carcinoma"}
        assert changed["key"].str.startswith("p").all()  # real training images; seeds and synthetic keep theirs
    assert list(planted("flip_labels", "fitz_only")[1]["key"]) == list(planted("flip_labels", "seed")[1]["key"][:15])


def test_drop_synthetic_leaves_the_seed_arm():
    clean, dirty = planted("drop_synthetic", "synthetic_and_seed")
    assert len(clean) == 15 + 2 + 4
    seed_arm, _ = planted("drop_synthetic", "seed")
    assert sorted(dirty["key"]) == sorted(seed_arm["key"])


def test_near_seeds_swaps_the_seeds_for_near_group_images_of_their_condition():
    clean, dirty = planted("near_seeds", "synthetic_and_seed")
    assert len(dirty) == len(clean)
    real = dirty[~dirty["key"].str.endswith(".png")]
    assert not real["key"].isin(["s0", "s1"]).any()  # no far-group seed left
    assert real["key"].value_counts().max() == 2  # two near-group psoriasis images now appear twice
    assert set(dirty.loc[dirty["key"].duplicated(), "label"]) == {"psoriasis"}
    assert dirty["key"].str.endswith(".png").sum() == 4  # the synthetic images stay
    fitz_clean, fitz = planted("near_seeds", "fitz_only")
    assert fitz.equals(fitz_clean)  # no seeds, nothing to swap


def test_the_plant_reaches_a_process_only_through_gate_plant(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(gate_calibration.SITECUSTOMIZE)
    probe = "from dermsynth.model import trainset; print(trainset.training_set.__qualname__)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(BENCHMARKS), *sys.path])}
    plain = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "training_set"
    env["GATE_PLANT"] = "drop_synthetic"
    patched = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert patched.stdout.strip() == "planted.<locals>.training_set"
    env["GATE_PLANT"] = "typo"
    wrong = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert wrong.returncode != 0
    assert "not one of" in wrong.stderr


def test_every_run_has_its_own_training_stream_and_the_runs_interleave():
    runs = gate_calibration.specs(null=6, per_plant=2, epochs=20)
    assert len(runs) == 6 + 2 * 4
    assert len({r["overrides"]["train.seed"] for r in runs}) == len(runs)
    assert [r["kind"] for r in runs[:6]] == ["null", "null", "plant"] * 2
    assert [r["kind"] for r in runs[-2:]] == ["plant", "plant"]  # the nulls ran out first
    assert {r["variant"] for r in runs if r["kind"] == "null"} == {"train_seed", "split_seed", "bfloat16"}
    quarter = [r for r in runs if r["variant"] == "quarter_epochs"]
    assert {r["overrides"]["train.epochs"] for r in quarter} == {5}
    assert all(r["overrides"]["train.epochs"] == 20 for r in runs if r["variant"] != "quarter_epochs")
    split = [r for r in runs if r["variant"] == "split_seed"]
    assert all(r["overrides"]["split.seed"] != 2022 for r in split)


def test_the_summary_counts_alarms_detections_and_broken_runs():
    def record(kind: str, variant: str, failed: int | None) -> dict:
        return {"kind": kind, "variant": variant, "failed": failed}

    records = [record("null", "train_seed", 0)] * 18 + [
        record("null", "bfloat16", 3),
        record("null", "split_seed", None),
    ]
    records += [record("plant", "flip_labels", 5)] * 4 + [record("plant", "flip_labels", 0)]
    section = gate_calibration.summary(records, "abc")
    assert (section["null_runs"], section["false_alarms"], section["errors"]) == (19, 1, 1)
    assert section["false_alarm_rate"] == pytest.approx(1 / 19)
    assert section["false_alarm_interval"][0] < 1 / 19 < section["false_alarm_interval"][1]
    assert section["planted"]["flip_labels"]["detection_rate"] == pytest.approx(0.8)
    assert section["complete"] is False  # 19 null runs, and three plants not run


def test_a_run_retried_after_it_broke_counts_once():
    broke = {"name": "plant-drop_synthetic-0", "kind": "plant", "variant": "drop_synthetic", "failed": None}
    retried = {**broke, "failed": 4}
    records = gate_calibration.latest([broke, {**broke, "name": "other"}, retried])
    assert [r["failed"] for r in records] == [4, None]
    assert gate_calibration.summary(records, "abc")["planted"]["drop_synthetic"]["runs"] == 1


def test_effects_list_the_largest_drops_first_with_holm_p_pass_or_fail():
    steady = {"repeats": [0.70, 0.72, 0.71], "image_var": 1e-5, "n": 100}
    baseline = {"a": steady, "b": steady, "c": steady}
    fresh = {
        "a": steady,
        "b": {**steady, "repeats": [0.50, 0.52, 0.51]},
        "c": {**steady, "repeats": [0.69, 0.71, 0.70]},
    }
    seen = gate_calibration.effects(baseline, fresh, 1.96)
    assert [d["estimand"] for d in seen["largest_drops"]] == ["b", "c", "a"]
    assert seen["largest_drops"][0]["difference"] == pytest.approx(-0.2)
    assert seen["min_p_holm"] == seen["largest_drops"][0]["p_holm"] < 0.01
    assert seen["largest_drops"][1]["p_holm"] >= seen["largest_drops"][1]["p"]


def test_verdicts_are_the_gate_at_head_on_each_runs_stored_estimands():
    def estimand(repeats: list[float]) -> dict:
        return {"repeats": repeats, "image_var": 1e-4, "n": 200}

    baseline = {f"e{i}": estimand([0.70, 0.71, 0.69, 0.70, 0.71]) for i in range(3)}
    same = {"name": "null", "failed": 0, "estimands": dict(baseline)}
    worse = {"name": "plant", "failed": 0, "estimands": {**baseline, "e1": estimand([0.40, 0.41, 0.39, 0.40, 0.41])}}
    broke = {"name": "broke", "failed": None}
    params = config.load(Path(__file__).resolve().parent.parent / "params.yaml")
    judged = gate_calibration.judge([same, worse, broke], baseline, params)
    assert [r["failed"] for r in judged] == [0, 1, None]  # the stored verdict (0) is replaced by the gate's
    assert judged[1]["regressions"][0].startswith(
        "e1: 0.402 against baseline 0.702 on other test images, difference -0.300"
    )
    assert judged[1]["effects"]["largest_drops"][0]["estimand"] == "e1"
    assert judged[0]["effects"]["min_p_holm"] == 1.0


def test_detectable_drop_follows_the_pooled_repeat_sd_and_holm():
    """Ten estimands of one family, repeats 0.02 apart: repeat variance 2e-4 on 10 df; 10 estimands in all."""
    import gate_power
    from scipy import stats as sps

    baseline = {f"bal_acc/d/arm{i}/far": {"repeats": [0.40, 0.42], "image_var": 1e-3, "n": 300} for i in range(10)}
    params = config.load(Path(__file__).resolve().parent.parent / "params.yaml")
    (floor,) = gate_power.detectable(baseline, params).values()
    quantile = sps.t.ppf(1 - params.gate.alpha / 10, 20) + sps.t.ppf(0.8, 20)
    assert floor["repeat_sd"] == pytest.approx(0.02**0.5 * 0.1, abs=1e-4)
    assert floor["same_images"] == pytest.approx(quantile * (2 * 2e-4 / 2) ** 0.5, abs=1e-4)
    assert floor["other_images"] == pytest.approx(quantile * (2 * 2e-4 / 2 + 2e-3) ** 0.5, abs=1e-4)


def test_a_plants_effect_is_its_runs_move_beyond_the_null_runs():
    import gate_power

    def run(kind: str, variant: str, shift: float) -> dict:
        keys = ("bal_acc/d/a/far", "bal_acc/d/b/far")
        estimands = {k: {"repeats": [0.4 + (shift if k.endswith("a/far") else 0.01)] * 2} for k in keys}
        return {"kind": kind, "variant": variant, "failed": 0, "estimands": estimands}

    baseline = run("null", "train_seed", 0.0)["estimands"] | {
        "bal_acc/d/a/far": {"repeats": [0.39, 0.41]},
        "bal_acc/d/b/far": {"repeats": [0.39, 0.41]},
    }
    records = [run("null", "train_seed", 0.02), run("null", "split_seed", 0.5), run("plant", "flip_labels", -0.08)]
    params = config.load(Path(__file__).resolve().parent.parent / "params.yaml")
    (worst, other) = gate_power.planted_effects(baseline, records, params, {"train_seed"})["flip_labels"]
    assert worst["estimand"] == "bal_acc/d/a/far"
    assert worst["effect"] == pytest.approx(-0.10)  # -0.08 against the same-image null's +0.02; split_seed not used
    assert other["effect"] == pytest.approx(0.0)
    assert worst["repeats_to_detect"] == math.ceil(2 * (worst["detectable"] / 0.10) ** 2)


def test_the_tables_show_every_plant_and_family():
    import gate_power

    records = [{"kind": "null", "variant": "train_seed", "failed": 0}] * 3
    records += [{"kind": "plant", "variant": "near_seeds", "failed": 2}]
    section = gate_calibration.summary(records, "0123456789abcdef") | {
        "study": "key",
        "detectable": {
            "bal_acc/d/*/far": {
                "estimands": 10,
                "repeats": 5,
                "repeat_sd": 0.03,
                "same_images": 0.07,
                "other_images": 0.2,
            }
        },
        "planted_effects": {
            "near_seeds": [
                {"estimand": "gain/d/seed/pooled", "effect": -0.12, "detectable": 0.07, "repeats_to_detect": 2}
            ]
        },
    }
    text = gate_power.markdown(section)
    assert "| null (new train.seed, split.seed or bfloat16) | 3 | 0 | 0.00 [0.00, 0.56] |" in text
    assert "| plant: near_seeds | 1 | 1 | 1.00 [" in text
    assert "| `bal_acc/d/*/far` | 10 | 5 | 0.030 | 0.070 | 0.200 |  |  |" in text  # no default-study figures
    assert "| near_seeds | `gain/d/seed/pooled` | -0.120 | 0.070 | 2 |" in text
    assert "partial" in text


def test_a_bfloat16_run_is_judged_as_another_kind_of_run():
    made_on = {"device": "cpu (avx512_bf16)", "precision": "float32"}
    base = {"bal_acc/d/a/far": {"repeats": [0.60, 0.61, 0.59, 0.60, 0.60], "image_var": 4e-3, "n": 300,
                                "images": "a"}}  # fmt: skip
    lower = {"bal_acc/d/a/far": {**base["bal_acc/d/a/far"], "repeats": [0.54, 0.55, 0.53, 0.54, 0.54]}}
    kinds = (("f32", {"features.precision": "float32"}), ("bf16", {"features.precision": "bfloat16"}))
    runs = [{"name": n, "failed": None, "overrides": o, "estimands": lower} for n, o in kinds]
    params = config.load(Path(__file__).resolve().parent.parent / "params.yaml")
    judged = gate_calibration.judge(runs, base, params, made_on)
    assert [r["failed"] for r in judged] == [1, 0]  # the same drop: conditional on the images only for float32
    assert gate_calibration.run_kind({"overrides": {}, "made_on": {"device": "x", "precision": "y"}}, made_on) == {
        "device": "x",
        "precision": "y",
    }
