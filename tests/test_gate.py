import json

from dermsynth import gate

BASE = {
    "arms": {"light_to_dark/psoriasis/seed/V-VI": {"acc": 0.50, "n": 40}},
    "dose": {"light_to_dark/psoriasis/dose8/V-VI": {"acc": 0.40, "n": 40}},
}


def test_gate_passes_within_tolerance():
    fresh = json.loads(json.dumps(BASE))
    fresh["arms"]["light_to_dark/psoriasis/seed/V-VI"]["acc"] = 0.46
    assert gate.compare(BASE, fresh, 0.05) == []


def test_gate_names_every_regressed_or_missing_cell():
    fresh = {"arms": {"light_to_dark/psoriasis/seed/V-VI": {"acc": 0.30, "n": 40}}, "dose": {}}
    problems = gate.compare(BASE, fresh, 0.05)
    assert len(problems) == 2
    assert problems[0].startswith("arms/light_to_dark/psoriasis/seed/V-VI: accuracy 0.300 < baseline 0.500")
    assert "dose/light_to_dark/psoriasis/dose8/V-VI: missing" in problems[1]


def test_gate_command_exit_codes(tmp_path, params):
    base, fresh = tmp_path / "base.json", tmp_path / "fresh.json"
    base.write_text(json.dumps(BASE))
    fresh.write_text(json.dumps({"arms": {}, "dose": {}}))
    assert gate.main(params, str(base), str(fresh)) == 1
    fresh.write_text(json.dumps(BASE))
    assert gate.main(params, str(base), str(fresh)) == 0
    assert gate.main(params, str(tmp_path / "none.json"), str(fresh)) == 2


def test_gate_fails_when_balanced_accuracy_regresses_even_if_condition_accuracy_rises():
    base = {"arms": {"light_to_dark/psoriasis/seed/V-VI": {"acc": 0.50, "bal_acc": 0.40, "n": 40}}, "dose": {}}
    fresh = {"arms": {"light_to_dark/psoriasis/seed/V-VI": {"acc": 0.90, "bal_acc": 0.30, "n": 40}}, "dose": {}}
    (problem,) = gate.compare(base, fresh, 0.05)
    assert problem == "arms/light_to_dark/psoriasis/seed/V-VI: balanced accuracy 0.300 < baseline 0.400 - 0.05"
    fresh["arms"]["light_to_dark/psoriasis/seed/V-VI"].pop("bal_acc")
    assert "balanced accuracy missing" in gate.compare(base, fresh, 0.05)[0]


def test_update_keeps_the_gated_values_and_n(workdir, params):
    tmp_path = workdir  # a project of the test's own: no build/features/info.json, whatever the checkout holds
    fresh = tmp_path / "fresh.json"
    cell = {"acc": 0.5, "bal_acc": 0.4, "n": 40, "d_share": 0.1, "wilson_low": 0.3}
    fresh.write_text(json.dumps({"arms": {"k": cell}, "dose": {}, "spillover": {}}))
    assert gate.main(params, str(tmp_path / "base.json"), str(fresh), update=True) == 0
    assert json.loads((tmp_path / "base.json").read_text()) == {
        "arms": {"k": {"acc": 0.5, "bal_acc": 0.4, "n": 40}},
        "dose": {},
        "made_on": {"device": "unknown", "precision": "unknown"},  # no build/features/info.json in workdir
    }


def test_a_failure_on_another_device_says_so(workdir, params, capsys):
    features = workdir / "build/features"
    features.mkdir(parents=True)
    (features / "info.json").write_text(json.dumps({"device": "cpu (amx_bf16)", "precision": "bfloat16"}))
    base = {
        "arms": {"k": {"acc": 0.6, "n": 40}},
        "dose": {},
        "made_on": {"device": "cpu (avx512_bf16)", "precision": "bfloat16"},
    }
    (workdir / "base.json").write_text(json.dumps(base))
    (workdir / "fresh.json").write_text(json.dumps({"arms": {"k": {"acc": 0.4, "n": 40}}, "dose": {}}))
    assert gate.main(params, "base.json", "fresh.json") == 1
    out = capsys.readouterr().out
    assert "baseline was made on cpu (avx512_bf16) in bfloat16, these metrics on cpu (amx_bf16)" in out
    (features / "info.json").write_text(json.dumps(base["made_on"]))  # the same device: no note
    assert gate.main(params, "base.json", "fresh.json") == 1
    assert "note" not in capsys.readouterr().out


def test_a_baseline_made_on_this_kind_of_cpu_is_preferred(workdir, params, capsys):
    features = workdir / "build/features"
    features.mkdir(parents=True)
    (features / "info.json").write_text(json.dumps({"device": "cpu (amx_bf16)", "precision": "float32"}))
    (workdir / "fresh.json").write_text(json.dumps({"arms": {"k": {"acc": 0.4, "n": 40}}, "dose": {}}))
    (workdir / "base.json").write_text(json.dumps({"arms": {"k": {"acc": 0.6, "n": 40}}, "dose": {}}))
    assert gate.main(params, "base.json", "fresh.json") == 1  # no sibling yet: the general baseline
    (workdir / "base.amx_bf16.json").write_text(json.dumps({"arms": {"k": {"acc": 0.42, "n": 40}}, "dose": {}}))
    assert gate.main(params, "base.json", "fresh.json") == 0
    assert "base.amx_bf16.json: the baseline made on this kind of CPU (cpu (amx_bf16))" in capsys.readouterr().out
    (features / "info.json").write_text(json.dumps({"device": "cpu (avx512_bf16)", "precision": "float32"}))
    assert gate.main(params, "base.json", "fresh.json") == 1  # another kind: the general one again
    (features / "info.json").write_text(json.dumps({"device": "cpu (amx_bf16)", "precision": "float32"}))
    assert gate.main(params, "base.json", "fresh.json", update=True) == 0  # --update renews this kind's sibling
    assert json.loads((workdir / "base.amx_bf16.json").read_text())["arms"]["k"]["acc"] == 0.4
    assert json.loads((workdir / "base.json").read_text())["arms"]["k"]["acc"] == 0.6


def test_a_baseline_of_this_cpu_vendor_comes_before_one_of_its_units_only(tmp_path):
    """An Intel Xeon and an AMD EPYC, both AVX512-BF16, gave other tables from one code: the vendor refines the kind."""
    now = {"device": "cpu (avx512_bf16)", "precision": "float32"}
    base = tmp_path / "base.json"
    assert gate.for_this_device(base, now, vendor="intel") == base  # no sibling at all: the general baseline
    (tmp_path / "base.avx512_bf16.json").write_text("{}")
    assert gate.for_this_device(base, now, vendor="intel") == tmp_path / "base.avx512_bf16.json"
    (tmp_path / "base.avx512_bf16_intel.json").write_text("{}")
    assert gate.for_this_device(base, now, vendor="intel") == tmp_path / "base.avx512_bf16_intel.json"
    assert gate.for_this_device(base, now, vendor="amd") == tmp_path / "base.avx512_bf16.json"
    assert gate.for_this_device(base, now, vendor="") == tmp_path / "base.avx512_bf16.json"
    gpu = {"device": "cuda:0 (NVIDIA H100)", "precision": "bfloat16"}
    assert gate.siblings(base, gpu, "intel") == []  # a GPU is not a kind of CPU: its baseline is the general one
    assert gate.cpu_vendor() in ("intel", "amd", "")
