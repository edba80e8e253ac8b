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
