"""What the regression gate can detect at a study's scale, and what the calibration's plants moved.

benchmarks/gate_calibration.py counts alarms and detections. Where a plant goes undetected,
that count alone does not say whether the gate is weak or the plant is small. Two figures say it:

- `detectable`: per family of estimands (gate.family), the smallest drop the gate catches with
  80% power, from the baseline's pooled repeat variance and image variance: a single regressed
  estimand must clear Holm's first step (alpha / m), so the drop must exceed
  (t_{1 - alpha/m} + t_{0.8}) x the SD of the difference, and `gate.min_effect`. On the same
  test images only the repeats count; on other images both sides' image variances add.
- `planted_effects`: per plant, the estimands it moved most relative to the drop the gate can
  detect there, as the mean difference of its runs from the baseline minus that of the null
  runs on the same images (what a new training stream moves on its own), beside that
  detectable drop and the repeats per configuration that would detect it (the repeats' part
  of the variance falls as 1/R). With a few runs per plant these effects are rough.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from scipy import stats as sps

from dermsynth.core.config import Params
from dermsynth.gate import family, repeat_variances

POWER = 0.8


def detectable(baseline: dict, params: Params) -> dict[str, dict]:
    """Per family: repeats, repeat SD, and the smallest drop detected with 80% power on the same and other images."""
    pooled = repeat_variances(baseline, baseline)  # both sides the baseline: its variance, its df twice
    m = len(baseline)
    out = {}
    for name, (variance, df) in sorted(pooled.items()):
        members = [e for k, e in baseline.items() if family(k) == name]
        repeats = statistics.median(len(e["repeats"]) for e in members)
        image_var = statistics.median(float(e.get("image_var", 0.0)) for e in members)
        quantile = float(sps.t.ppf(1 - params.gate.alpha / m, df) + sps.t.ppf(POWER, df))
        same = quantile * math.sqrt(2 * variance / repeats)
        other = quantile * math.sqrt(2 * variance / repeats + 2 * image_var)
        out[name] = {"estimands": len(members), "repeats": repeats, "repeat_sd": round(math.sqrt(variance), 4),
                     "same_images": round(max(same, params.gate.min_effect), 4),
                     "other_images": round(max(other, params.gate.min_effect), 4)}  # fmt: skip
    return out


def differences(baseline: dict, fresh: dict) -> dict[str, float]:
    """Each shared estimand's fresh mean minus the baseline's."""
    return {k: float(np.mean(fresh[k]["repeats"]) - np.mean(baseline[k]["repeats"])) for k in baseline if k in fresh}


def mean_differences(baseline: dict, runs: list[dict]) -> dict[str, float]:
    """Per estimand, the mean over runs of its difference from the baseline."""
    per_run = [differences(baseline, r["estimands"]) for r in runs if r.get("estimands")]
    keys = set.intersection(*(set(d) for d in per_run)) if per_run else set()
    return {k: float(np.mean([d[k] for d in per_run])) for k in keys}


def planted_effects(baseline: dict, records: list[dict], params: Params, same_image_nulls: set[str]) -> dict:
    """Per plant, the three estimands it moved most beyond the null runs, relative to what the gate detects there."""
    nulls = [r for r in records if r["kind"] == "null" and r["variant"] in same_image_nulls]
    null_mean = mean_differences(baseline, nulls)
    floor = detectable(baseline, params)
    out = {}
    for plant in sorted({r["variant"] for r in records if r["kind"] == "plant"}):
        runs = [r for r in records if r["kind"] == "plant" and r["variant"] == plant]
        moved = {k: v - null_mean.get(k, 0.0) for k, v in mean_differences(baseline, runs).items()}
        # ranked by the drop in units of what the gate can see there: raw drops are largest where the noise is
        ranked = sorted(moved, key=lambda k: moved[k] / floor[family(k)]["same_images"])
        out[plant] = [_effect(k, moved[k], floor[family(k)]) for k in ranked[:3]]
    return out


def _effect(key: str, effect: float, floor: dict) -> dict:
    """One estimand's planted effect, the gate's detectable drop there, and the repeats that would detect it."""
    needed = floor["repeats"] * (floor["same_images"] / -effect) ** 2 if effect < 0 else None
    return {"estimand": key, "effect": round(effect, 4), "detectable": floor["same_images"],
            "repeats_to_detect": math.ceil(needed) if needed else None}  # fmt: skip


def markdown(section: dict) -> str:
    """reports/benchmarks-gate.md: the calibration's figures as tables, for people rather than programs."""
    nulls = section.get("null_runs", 0)
    lines = [
        "# The regression gate, calibrated (benchmarks/gate_calibration.py)",
        "",
        f"CI-scale study ({section['scale']}) against {section['baseline']}, study {section.get('study')} "
        f"(commit {section['commit'][:12]}); {'complete' if section.get('complete') else 'partial'}: goals "
        f"{section['goals']['null_runs']} null runs, false alarms <= {section['goals']['false_alarm_rate']}, "
        f"detection >= {section['goals']['detection_rate']} per plant. Intervals: Wilson, 95%.",
        "",
        "| runs | n | failed the gate | rate [95%] | mean largest drop |",
        "|---|---|---|---|---|",
    ]
    if nulls:
        low, high = section["false_alarm_interval"]
        lines.append(f"| null (new train.seed, split.seed or bfloat16) | {nulls} | {section['false_alarms']} | "
                     f"{section['false_alarm_rate']:.2f} [{low:.2f}, {high:.2f}] | "
                     f"{section.get('null_largest_drop_mean')} |")  # fmt: skip
    for plant, p in section.get("planted", {}).items():
        low, high = p["interval"]
        lines.append(f"| plant: {plant} | {p['runs']} | {p['detected']} | {p['detection_rate']:.2f} "
                     f"[{low:.2f}, {high:.2f}] | {p.get('largest_drop_mean')} |")  # fmt: skip
    lines += ["", "## The smallest drop the gate detects with 80% power, per family of estimands", "",
              "From each scale's baseline: CI (the calibrated runs' scale) and the default study (params.yaml).", "",
              "| family | estimands | CI: repeats | CI: repeat SD | CI: same test images | CI: other test images "
              "| default: same test images | default: other test images |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    default = section.get("detectable_default_study", {})
    for name, f in section.get("detectable", {}).items():
        d = default.get(name, {})
        lines.append(f"| `{name}` | {f['estimands']} | {f['repeats']:g} | {f['repeat_sd']:.3f} | "
                     f"{f['same_images']:.3f} | {f['other_images']:.3f} | {d.get('same_images', '')} | "
                     f"{d.get('other_images', '')} |")  # fmt: skip
    lines += ["", "## What each plant moved beyond the same-image null runs (three largest drops, relative to the "
              "detectable drop)", "",
              "| plant | estimand | effect | detectable there | repeats per configuration to detect it |",
              "|---|---|---|---|---|"]  # fmt: skip
    for plant, moved in section.get("planted_effects", {}).items():
        for e in moved:
            lines.append(f"| {plant} | `{e['estimand']}` | {e['effect']:+.3f} | {e['detectable']:.3f} | "
                         f"{e['repeats_to_detect'] or 'not a drop'} |")  # fmt: skip
    return "\n".join(lines) + "\n"
