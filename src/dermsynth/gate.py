"""The regression gate: the study's estimands, fresh against the one committed baseline of its scale.

What is gated (analysis/estimands.py), per direction: each configuration's balanced accuracy
near (the skin types it trained on) and far (the seeds' group), its worst-group accuracy, and
the gains of each arm over `fitz_only` and of `synthetic_and_seed` over `seed`, per condition
and pooled over conditions. Not single accuracy cells: each of those moves with the training
stream about as much as a real regression moves it.

The test, per estimand: is the fresh mean lower than the baseline's? Both store the value per
training repeat and the images' part of the variance of the mean, so the null distribution
includes what a new random stream moves (the repeats' spread on each side) and what a new draw
of test images moves (`split.seed`). Welch's t with Satterthwaite's degrees of freedom gives a
one-sided p; Holm's step-down over all estimands controls the family-wise false-alarm rate at
`gate.alpha`, and a regression must also exceed `gate.min_effect` (absolute) to fail the gate,
so that a tiny, real but irrelevant drop does not stop a commit.

There is one baseline per study scale (reports/baseline.json for the default study,
reports/baseline-ci.json for configs/ci.yaml), for every machine: `--baseline` is used as given.
The baseline records what computed it (`made_on`); a failure on other hardware says so.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats as sps

from dermsynth.analysis.stats import holm
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.views.figures import confidence


class BaselineFormat(DermsynthError, ValueError):
    """A baseline written by an older gate (accuracy cells, no estimands)."""

    def __init__(self, path: Path):
        super().__init__(
            f"{path} holds accuracy cells, the old gate's format, not estimands: re-accept it with "
            f"`dermsynth gate --update --baseline {path}` after a run you trust, and say why in the commit"
        )


def drop_test(baseline: dict, fresh: dict, z: float) -> dict[str, float]:
    """Welch's one-sided test that the fresh mean is below the baseline's, both images' variances included."""
    x, y = np.asarray(baseline["repeats"], dtype=float), np.asarray(fresh["repeats"], dtype=float)
    components = [(float(baseline.get("image_var", 0.0)), max(int(baseline.get("n", 2)) - 1, 1))]
    components.append((float(fresh.get("image_var", 0.0)), max(int(fresh.get("n", 2)) - 1, 1)))
    components += [(float(v.var(ddof=1)) / v.size, v.size - 1) for v in (x, y) if v.size > 1]
    difference = float(y.mean() - x.mean())
    variance = sum(v for v, _ in components)
    if variance <= 0:
        p = 0.0 if difference < 0 else 1.0
        return {"baseline": float(x.mean()), "fresh": float(y.mean()), "difference": difference, "low": difference,
                "high": difference, "p": p}  # fmt: skip
    df = variance**2 / sum(v**2 / d for v, d in components if v > 0)
    sd = math.sqrt(variance)
    half = float(sps.t.ppf(sps.norm.cdf(z), df)) * sd
    return {
        "baseline": float(x.mean()),
        "fresh": float(y.mean()),
        "difference": difference,
        "low": difference - half,
        "high": difference + half,
        "p": float(sps.t.cdf(difference / sd, df)),
    }


def compare(baseline: dict, fresh: dict, params: Params) -> tuple[list[str], int]:
    """One line per regressed or missing estimand (empty when the gate passes), and how many were tested."""
    cfg, z = params.gate, params.evaluate.z
    missing = sorted(set(baseline) - set(fresh))
    keys = sorted(set(baseline) & set(fresh))
    tests = [drop_test(baseline[k], fresh[k], z) for k in keys]
    adjusted = holm([t["p"] for t in tests])
    problems = [f"{key}: missing from the fresh metrics" for key in missing]
    level = confidence(z)
    for key, t, p_holm in zip(keys, tests, adjusted, strict=True):
        if p_holm < cfg.alpha and -t["difference"] > cfg.min_effect:
            problems.append(
                f"{key}: {t['fresh']:.3f} against baseline {t['baseline']:.3f}, difference {t['difference']:+.3f} "
                f"[{level}: {t['low']:+.3f}, {t['high']:+.3f}], one-sided p {t['p']:.2g} (Holm {p_holm:.2g})"
            )
    return problems, len(keys) + len(missing)


def made_on() -> dict[str, str]:
    """The device and precision of the features behind the metrics (build/features/info.json), when present."""
    info_path = paths.FEATURES / "info.json"
    info = files.read_json(info_path) if info_path.exists() else {}
    return {"device": str(info.get("device", "unknown")), "precision": str(info.get("precision", "unknown"))}


def device_note(baseline: dict, now: dict[str, str]) -> str:
    """A line when the fresh metrics come from another device or precision than the baseline's."""
    then = baseline.get("made_on")
    if not then or then == now or now["device"] == "unknown":
        return ""
    return (
        f"gate: note: the baseline was made on {then['device']} in {then['precision']}, these metrics on "
        f"{now['device']} in {now['precision']}; the gate's null includes a new random stream, so this alone "
        "should not fail it, but a failure here is worth re-running on the baseline's kind of device"
    )


def main(params: Params, baseline: str | None = None, metrics: str | None = None, update: bool = False) -> int:
    baseline_path = Path(baseline) if baseline else paths.BASELINE
    fresh = files.read_json(Path(metrics) if metrics else paths.STUDY_METRICS)
    if "estimands" not in fresh:
        raise DermsynthError(f"{metrics or paths.STUDY_METRICS} has no estimands: re-run `dvc repro` (evaluate)")
    now = made_on()
    if update:
        files.write_json(baseline_path, {"estimands": fresh["estimands"], "made_on": now})
        print(f"gate: wrote {baseline_path} ({len(fresh['estimands'])} estimands)")
        return 0
    if not baseline_path.exists():
        print(f"gate: no baseline at {baseline_path}; create one with `dermsynth gate --update`")
        return 2
    reference = files.read_json(baseline_path)
    if "estimands" not in reference:
        raise BaselineFormat(baseline_path)
    problems, tested = compare(reference["estimands"], fresh["estimands"], params)
    cfg = params.gate
    rule = f"Holm-adjusted one-sided p < {cfg.alpha} and a drop of more than {cfg.min_effect}"
    if problems:
        print(f"gate: FAILED against {baseline_path}: {len(problems)} of {tested} estimands regressed ({rule}):")
        print("\n".join(f"  {p}" for p in problems))
        if note := device_note(reference, now):
            print(note)
        return 1
    print(f"gate: passed against {baseline_path}: none of {tested} estimands regressed ({rule})")
    return 0
