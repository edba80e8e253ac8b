"""The regression gate: the study's estimands, fresh against the one committed baseline of its scale.

What is gated (analysis/estimands.py), per direction: each configuration's balanced accuracy
near (the skin types it trained on) and far (the seeds' group), its worst-group accuracy, and
the gains of each arm over `fitz_only` and of `synthetic_and_seed` over `seed`, per condition
and pooled over conditions. Not single accuracy cells: each of those moves with the training
stream about as much as a real regression moves it.

The test, per estimand: is the fresh mean lower than the baseline's? Both store the value per
training repeat, the images' part of the variance of the mean and a fingerprint of the test
images. The null distribution has two parts:

- **A new random stream** (`train.seed`, precision, hardware): the spread of the repeats. With
  the few repeats a study affords (2 at CI scale) one estimand's own repeats give a variance on
  1 degree of freedom, and a t on 1-2 degrees of freedom detects nothing. So the within-estimand
  variance of the repeats is pooled over a family of estimands that spread alike (one metric,
  direction and place: e.g. every configuration's far-group balanced accuracy), on both sides:
  the pooled variance of a one-way ANOVA, with its degrees of freedom.
- **A new draw of test images** (`split.seed`): only when the fresh run was scored on other
  images than the baseline (their fingerprints differ) are both sides' image variances added.
  On the same images the comparison is conditional on them: the question is whether this
  training is worse on these images, and the images' own spread cancels.
- **A new draw of seeds** (`split.seed`, with `split.seed_draws` of 2 or more): when the two
  drew other seeds (their fingerprints differ), a mean over K draws varies by the variance of
  the draw means over K, pooled per family like the repeats' and used in their place. The
  calibration's one false alarm at one draw was this: a per-condition gain that a new split
  moved from 0.43 to -0.09. With one draw there is nothing to estimate it from.
- **Another device or precision** (`made_on`): its features differ a little for every image,
  and all of a run's repeats share them, so the repeats' spread does not measure what it
  moves (the calibration's bfloat16 runs showed it: a far-group balanced accuracy 0.058 down,
  p 1e-4, on a null run). Then the images count as other images: the conditional test is
  kept for a run of the baseline's own kind.

Welch's t with Satterthwaite's degrees of freedom gives a one-sided p; Holm's step-down over all
estimands controls the family-wise false-alarm rate at `gate.alpha`, and a regression must also
exceed `gate.min_effect` (absolute) to fail the gate, so that a tiny, real but irrelevant drop
does not stop a commit. benchmarks/gate_calibration.py measures the false-alarm rate and the
power against planted regressions (README, "Reading a gate failure").

There is one baseline per study scale (reports/baseline.json for the default study,
reports/baseline-ci.json for configs/ci.yaml), for every machine: `--baseline` is used as given.
The baseline records what computed it (`made_on`); a failure on other hardware says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
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


def family(key: str) -> str:
    """The estimands whose repeats spread alike: one metric, direction and place (near/far, condition, pooled)."""
    parts = key.split("/")
    return "/".join([*parts[:2], "*", parts[-1]] if parts[0] in ("bal_acc", "gain") else [*parts[:2], "*"])


def _by_draw(entry: dict) -> dict[int, np.ndarray]:
    """An estimand's per-training values grouped by draw of the seeds (one draw when it has none)."""
    values = np.asarray(entry["repeats"], dtype=float)
    draws = np.asarray(entry.get("draws") or [0] * values.size)
    return {int(d): values[draws == d] for d in np.unique(draws)}


def repeat_variances(baseline: dict, fresh: dict) -> dict[str, tuple[float, int]]:
    """Per family, the variance of the repeats within a draw, pooled over its estimands and draws on both sides."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for side in (baseline, fresh):
        for key in set(baseline) & set(fresh):
            for values in _by_draw(side[key]).values():
                if values.size > 1:
                    sums[family(key)][0] += float(((values - values.mean()) ** 2).sum())
                    sums[family(key)][1] += values.size - 1
    return {name: (ss / df, int(df)) for name, (ss, df) in sums.items() if df > 0}


def draw_variances(baseline: dict, fresh: dict) -> dict[str, tuple[float, int]]:
    """Per family, the variance between draw means (each the mean of its repeats), pooled on both sides, and its df.

    It estimates sigma_draw^2 + sigma_repeat^2 / R, so divided by K it is the whole variance of a
    mean over K draws of R repeats when the seeds are drawn anew: what a new `split.seed` moves.
    """
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for side in (baseline, fresh):
        for key in set(baseline) & set(fresh):
            means = np.array([v.mean() for v in _by_draw(side[key]).values()])
            if means.size > 1:
                sums[family(key)][0] += float(((means - means.mean()) ** 2).sum())
                sums[family(key)][1] += means.size - 1
    return {name: (ss / df, int(df)) for name, (ss, df) in sums.items() if df > 0}


def drop_test(
    baseline: dict,
    fresh: dict,
    z: float,
    repeat: tuple[float, int] | None = None,
    same_kind: bool = True,
    draw: tuple[float, int] | None = None,
) -> dict:
    """Welch's one-sided test that the fresh mean is below the baseline's.

    ``repeat`` is the family's pooled repeat variance and its df (else each side's own); the
    images' variances count unless the two were scored on the same images by the same kind of
    run (``same_kind``: device and precision). Where the two drew other seeds and ``draw`` (the
    family's pooled variance of draw means) is known, it replaces the repeats' part: a mean
    over K draws then varies by that variance over K.
    """
    x, y = np.asarray(baseline["repeats"], dtype=float), np.asarray(fresh["repeats"], dtype=float)
    same = same_kind and baseline.get("images") is not None and baseline.get("images") == fresh.get("images")
    same_seeds = baseline.get("seeds") == fresh.get("seeds")
    components = [] if same else [(float(e.get("image_var", 0.0)), max(int(e.get("n", 2)) - 1, 1))
                                  for e in (baseline, fresh)]  # fmt: skip
    k_x, k_y = len(_by_draw(baseline)), len(_by_draw(fresh))
    if not same_seeds and draw is not None and min(k_x, k_y) > 1:
        components.append((draw[0] * (1 / k_x + 1 / k_y), draw[1]))
    elif repeat is not None:
        components.append((repeat[0] * (1 / x.size + 1 / y.size), repeat[1]))
    else:
        components += [(float(v.var(ddof=1)) / v.size, v.size - 1) for v in (x, y) if v.size > 1]
    difference = float(y.mean() - x.mean())
    out = {"baseline": float(x.mean()), "fresh": float(y.mean()), "difference": difference, "same_images": same,
           "same_seeds": same_seeds}  # fmt: skip
    variance = sum(v for v, _ in components)
    if variance <= 0:
        return out | {"low": difference, "high": difference, "p": 0.0 if difference < 0 else 1.0}
    df = variance**2 / sum(v**2 / d for v, d in components if v > 0)
    sd = math.sqrt(variance)
    half = float(sps.t.ppf(sps.norm.cdf(z), df)) * sd
    return out | {"low": difference - half, "high": difference + half, "p": float(sps.t.cdf(difference / sd, df))}


def drop_tests(baseline: dict, fresh: dict, z: float, same_kind: bool = True) -> dict[str, dict]:
    """`drop_test` of every estimand in both, with its family's pooled repeat and draw variances."""
    pooled, draws = repeat_variances(baseline, fresh), draw_variances(baseline, fresh)
    keys = sorted(set(baseline) & set(fresh))
    return {k: drop_test(baseline[k], fresh[k], z, pooled.get(family(k)), same_kind, draws.get(family(k)))
            for k in keys}  # fmt: skip


def compare(baseline: dict, fresh: dict, params: Params, same_kind: bool = True) -> tuple[list[str], int]:
    """One line per regressed or missing estimand (empty when the gate passes), and how many were tested.

    ``same_kind``: the fresh run was made on the baseline's device and precision (see the module's docstring).
    """
    cfg, z = params.gate, params.evaluate.z
    missing = sorted(set(baseline) - set(fresh))
    tested = drop_tests(baseline, fresh, z, same_kind)
    adjusted = holm([t["p"] for t in tested.values()])
    problems = [f"{key}: missing from the fresh metrics" for key in missing]
    level = confidence(z)
    for (key, t), p_holm in zip(tested.items(), adjusted, strict=True):
        if p_holm < cfg.alpha and -t["difference"] > cfg.min_effect:
            images = "the same test images" if t["same_images"] else "other test images"
            images += "" if t["same_seeds"] else " and other seeds"
            problems.append(
                f"{key}: {t['fresh']:.3f} against baseline {t['baseline']:.3f} on {images}, difference "
                f"{t['difference']:+.3f} [{level}: {t['low']:+.3f}, {t['high']:+.3f}], one-sided p {t['p']:.2g} "
                f"(Holm {p_holm:.2g})"
            )
    return problems, len(tested) + len(missing)


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
    same_kind = reference.get("made_on") == now and now["device"] != "unknown"
    problems, tested = compare(reference["estimands"], fresh["estimands"], params, same_kind)
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
