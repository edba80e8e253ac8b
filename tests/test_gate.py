"""The regression gate (gate.py) on hand-made estimands: a one-sided Welch test per estimand with Holm."""

import json
from dataclasses import replace

import numpy as np
import pytest

from dermsynth import gate
from dermsynth.core.errors import DermsynthError


def estimand(mean: float, spread: float = 0.01, image_var: float = 1e-4, n: int = 100) -> dict:
    """Five repeats around ``mean``; ``image_var`` is the images' part of the mean's variance."""
    return {"repeats": list(mean + spread * np.array([-2, -1, 0, 1, 2])), "image_var": image_var, "n": n}


BASE = {
    "bal_acc/light_to_dark/fitz_only/far": estimand(0.55),
    "gain/light_to_dark/synthetic_vs_seed/pooled": estimand(0.05),
}


def test_a_reseed_within_the_noise_passes_and_a_clear_drop_fails(params):
    fresh = {**BASE, "bal_acc/light_to_dark/fitz_only/far": estimand(0.54)}  # 0.01 down: noise
    assert gate.compare(BASE, fresh, params) == ([], 2)
    fresh["gain/light_to_dark/synthetic_vs_seed/pooled"] = estimand(-0.10)  # the gain is gone
    problems, tested = gate.compare(BASE, fresh, params)
    assert tested == 2
    (line,) = problems
    assert line.startswith("gain/light_to_dark/synthetic_vs_seed/pooled: -0.100 against baseline 0.050 on other test ")
    assert "difference -0.150 [95%: " in line
    assert "one-sided p" in line and "(Holm " in line  # noqa: PT018


def test_a_significant_drop_smaller_than_the_minimum_effect_passes(params):
    tight = {"k": estimand(0.600, spread=0.0005, image_var=1e-8)}
    fresh = {"k": estimand(0.585, spread=0.0005, image_var=1e-8)}  # p tiny, but a drop of 0.015 < min_effect 0.02
    assert gate.drop_test(tight["k"], fresh["k"], 1.96)["p"] < 1e-6
    assert gate.compare(tight, fresh, params) == ([], 1)


def test_the_images_variance_widens_the_null():
    """The same repeats, but test images drawn anew (split.seed) move the mean too: the p grows with image_var."""
    base, fresh = estimand(0.60), estimand(0.56)
    calm = gate.drop_test({**base, "image_var": 1e-5}, {**fresh, "image_var": 1e-5}, 1.96)["p"]
    noisy = gate.drop_test({**base, "image_var": 4e-3}, {**fresh, "image_var": 4e-3}, 1.96)["p"]
    assert calm < 0.01 < 0.1 < noisy


def test_holm_controls_the_family():
    """Twenty estimands each a little down: one alone would be 'significant', Holm over twenty is not."""
    base = {f"k{i}": estimand(0.60, spread=0.02) for i in range(20)}
    fresh = {f"k{i}": estimand(0.60 - (0.05 if i == 0 else 0.0), spread=0.02) for i in range(20)}
    p = gate.drop_test(base["k0"], fresh["k0"], 1.96)["p"]
    assert p < 0.05
    assert p * 20 > 0.05
    assert gate.compare(base, fresh, gate_params(min_effect=0.0))[0] == []


def gate_params(**values):
    from dermsynth.core import config

    params = config.load()
    return replace(params, gate=replace(params.gate, **values))


def test_a_missing_estimand_fails(params):
    problems, tested = gate.compare(BASE, {"bal_acc/light_to_dark/fitz_only/far": estimand(0.55)}, params)
    assert problems == ["gain/light_to_dark/synthetic_vs_seed/pooled: missing from the fresh metrics"]
    assert tested == 2


def test_the_baseline_is_used_as_given(workdir, params, capsys):
    """One baseline per study scale: no sibling per CPU kind is looked for, whatever files lie beside it."""
    (workdir / "fresh.json").write_text(json.dumps({"estimands": BASE}))
    (workdir / "base.json").write_text(json.dumps({"estimands": BASE}))
    worse = {k: estimand(v["repeats"][2] - 0.2) for k, v in BASE.items()}
    for sibling in ("base.avx512_bf16.json", "base.amx_bf16.json", "base.avx512_bf16_intel.json"):
        (workdir / sibling).write_text(json.dumps({"estimands": worse}))
    assert gate.main(params, "base.json", "fresh.json") == 0
    assert "gate: passed against base.json: none of 2 estimands regressed" in capsys.readouterr().out
    (workdir / "base.json").write_text(json.dumps({"estimands": {k: estimand(0.9) for k in BASE}}))
    assert gate.main(params, "base.json", "fresh.json") == 1
    assert "FAILED against base.json" in capsys.readouterr().out
    assert gate.main(params, str(workdir / "none.json"), "fresh.json") == 2


def test_update_writes_the_estimands_and_where_they_were_made(workdir, params):
    (workdir / "fresh.json").write_text(json.dumps({"arms": {}, "estimands": BASE}))
    assert gate.main(params, "base.json", "fresh.json", update=True) == 0
    assert json.loads((workdir / "base.json").read_text()) == {
        "estimands": BASE,
        "made_on": {"device": "unknown", "precision": "unknown"},  # no build/features/info.json in workdir
    }


def test_an_old_baseline_or_metrics_without_estimands_is_a_clear_error(workdir, params):
    (workdir / "fresh.json").write_text(json.dumps({"estimands": BASE}))
    (workdir / "base.json").write_text(json.dumps({"arms": {"k": {"acc": 0.5, "n": 40}}, "dose": {}}))
    with pytest.raises(DermsynthError, match=r"old gate's format.*gate --update --baseline base\.json"):
        gate.main(params, "base.json", "fresh.json")
    (workdir / "fresh.json").write_text(json.dumps({"arms": {}}))
    with pytest.raises(DermsynthError, match=r"has no estimands: re-run `dvc repro`"):
        gate.main(params, "base.json", "fresh.json")


def test_a_failure_on_another_device_says_so(workdir, params, capsys):
    features = workdir / "build/features"
    features.mkdir(parents=True)
    (features / "info.json").write_text(json.dumps({"device": "cpu (amx_bf16)", "precision": "bfloat16"}))
    base = {"estimands": {"k": estimand(0.9)}, "made_on": {"device": "cpu (avx512_bf16)", "precision": "bfloat16"}}
    (workdir / "base.json").write_text(json.dumps(base))
    (workdir / "fresh.json").write_text(json.dumps({"estimands": {"k": estimand(0.5)}}))
    assert gate.main(params, "base.json", "fresh.json") == 1
    assert (
        "baseline was made on cpu (avx512_bf16) in bfloat16, these metrics on cpu (amx_bf16)" in capsys.readouterr().out
    )
    (features / "info.json").write_text(json.dumps(base["made_on"]))  # the same device: no note
    assert gate.main(params, "base.json", "fresh.json") == 1
    assert "note" not in capsys.readouterr().out


def test_the_images_count_only_when_the_fresh_run_was_scored_on_other_images():
    """On the same test images (one fingerprint) the images' spread cancels; on others it widens the null."""
    base, fresh = estimand(0.60, image_var=4e-3), estimand(0.56, image_var=4e-3)
    other = gate.drop_test({**base, "images": "a"}, {**fresh, "images": "b"}, 1.96)
    same = gate.drop_test({**base, "images": "a"}, {**fresh, "images": "a"}, 1.96)
    assert (other["same_images"], same["same_images"]) == (False, True)
    assert same["p"] < 0.01 < 0.1 < other["p"]
    assert gate.drop_test(base, fresh, 1.96)["p"] == other["p"]  # no fingerprint (an old estimand): other images


def two_repeats(rng: np.random.Generator, mean: float, sd: float) -> dict:
    return {"repeats": list(mean + sd * rng.standard_normal(2)), "image_var": 0.0, "n": 100, "images": "same"}


def test_pooling_the_repeats_over_a_family_gives_two_repeats_power():
    """Ten configurations' far-group balanced accuracy, 2 repeats each (CI scale): one drops by 0.08, 4 SDs.

    Its own 2 + 2 repeats give a t on about 2 degrees of freedom, too wide to see it; the
    family's pooled variance has 20 and does.
    """
    rng = np.random.default_rng(0)
    keys = [f"bal_acc/light_to_dark/arm{i}/far" for i in range(10)]
    base = {k: two_repeats(rng, 0.40, 0.02) for k in keys}
    fresh = {k: two_repeats(rng, 0.40 - (0.08 if k == keys[0] else 0.0), 0.02) for k in keys}
    variance, df = gate.repeat_variances(base, fresh)["bal_acc/light_to_dark/*/far"]
    assert df == 20
    assert 0.01**2 < variance < 0.04**2
    alone = gate.drop_test(base[keys[0]], fresh[keys[0]], 1.96)
    pooled = gate.drop_tests(base, fresh, 1.96)[keys[0]]
    assert pooled["p"] < alone["p"] / 10
    assert gate.compare(base, fresh, gate_params(min_effect=0.02))[0][0].startswith(keys[0])


def test_families_group_one_metric_direction_and_place():
    assert gate.family("bal_acc/light_to_dark/seed/psoriasis/far") == "bal_acc/light_to_dark/*/far"
    assert gate.family("bal_acc/light_to_dark/fitz_only/far") == "bal_acc/light_to_dark/*/far"
    assert gate.family("gain/dark_to_light/synthetic_vs_seed/psoriasis") == "gain/dark_to_light/*/psoriasis"
    assert gate.family("worst_group_acc/dark_to_light/seed/psoriasis") == "worst_group_acc/dark_to_light/*"


@pytest.mark.parametrize("same_images", [True, False])
def test_the_one_sided_test_holds_its_level_under_the_null(same_images):
    """2,000 null studies of a 10-estimand family, 2 repeats a side: p < 0.05 about 5% of the time.

    With other images, each side's mean also moves by its images' variance (drawn here), which
    the test must then include; on the same images the drawn image effect is shared and cancels.
    """
    rng = np.random.default_rng(1)
    image_sd, rejections, total = 0.03, 0, 0
    for _ in range(200):
        shared = rng.normal(0, image_sd, 10)
        sides = []
        for side in ("a", "b"):
            shift = shared if same_images else rng.normal(0, image_sd, 10)
            fingerprint = "same" if same_images else side
            sides.append({f"bal_acc/d/arm{i}/far": {"repeats": list(0.4 + shift[i] + 0.02 * rng.standard_normal(2)),
                                                   "image_var": image_sd**2, "n": 300, "images": fingerprint}
                          for i in range(10)})  # fmt: skip
        p = [t["p"] for t in gate.drop_tests(sides[0], sides[1], 1.96).values()]
        rejections += sum(v < 0.05 for v in p)
        total += len(p)
    assert 0.035 < rejections / total < 0.065


def test_a_run_on_another_device_or_precision_counts_the_images(workdir, params, capsys):
    """Features made another way differ for every image and all repeats share them: not a conditional comparison."""
    kind = {"device": "cpu (avx512_bf16)", "precision": "bfloat16"}
    features = workdir / "build/features"
    features.mkdir(parents=True)
    (features / "info.json").write_text(json.dumps(kind))
    base = {"k": {**estimand(0.60, image_var=4e-3), "images": "a"}}
    fresh = {"k": {**estimand(0.54, image_var=4e-3), "images": "a"}}  # 0.06 down on the same images
    (workdir / "fresh.json").write_text(json.dumps({"estimands": fresh}))
    (workdir / "base.json").write_text(json.dumps({"estimands": base, "made_on": kind}))
    assert gate.main(params, "base.json", "fresh.json") == 1
    assert "on the same test images" in capsys.readouterr().out
    (workdir / "base.json").write_text(json.dumps({"estimands": base, "made_on": {**kind, "precision": "float32"}}))
    assert gate.main(params, "base.json", "fresh.json") == 0
    assert gate.drop_test(base["k"], fresh["k"], 1.96, same_kind=False)["same_images"] is False


def drawn_side(rng: np.random.Generator, draw_effects: np.ndarray, seeds: str) -> dict:
    """A 10-estimand family, 3 draws of the seeds x 2 repeats: each draw moves an estimand by its own effect."""
    family = {}
    for i in range(10):
        values = [0.4 + draw_effects[i, d] + 0.02 * rng.standard_normal() for d in range(3) for _ in range(2)]
        family[f"gain/d/arm{i}/far"] = {"repeats": values, "draws": [0, 0, 1, 1, 2, 2], "image_var": 1e-4,
                                        "n": 300, "images": "same", "seeds": seeds}  # fmt: skip
    return family


@pytest.mark.parametrize("same_seeds", [True, False])
def test_a_new_draw_of_seeds_is_in_the_null(same_seeds):
    """Null studies whose seed draws move each estimand (SD 0.06 per draw): p < 0.05 about 5% of the time.

    With other seeds (a new split.seed) the draw effects differ on the two sides, and the test
    uses the variance between draw means; with the same seeds they are shared and cancel, and
    the repeats' spread is the null. Claiming the same seeds for other seeds would over-reject.
    """
    rng = np.random.default_rng(2)
    rates = {"honest": [0, 0], "blind": [0, 0]}
    for _ in range(150):
        shared = rng.normal(0, 0.06, (10, 3))
        a = drawn_side(rng, shared, "s0")
        b = drawn_side(rng, shared if same_seeds else rng.normal(0, 0.06, (10, 3)), "s0" if same_seeds else "s1")
        blind = {k: {**v, "seeds": "s0"} for k, v in b.items()}
        for name, fresh in (("honest", b), ("blind", blind)):
            p = [t["p"] for t in gate.drop_tests(a, fresh, 1.96).values()]
            rates[name][0] += sum(v < 0.05 for v in p)
            rates[name][1] += len(p)
    honest = rates["honest"][0] / rates["honest"][1]
    assert 0.03 < honest < 0.075
    if not same_seeds:
        assert rates["blind"][0] / rates["blind"][1] > 0.2
