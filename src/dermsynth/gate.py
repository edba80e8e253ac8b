"""The regression gate: fresh accuracy tables against a committed baseline.

Every cell of the arms and dose-response tables in reports/metrics.json is compared with
reports/baseline.json: the augmented condition's accuracy (`acc`) and, so that a gain bought
by collapsing the other conditions cannot hide a loss, the test group's balanced accuracy
(`bal_acc`). A value that fell by more than `gate.tolerance` (absolute), or that
disappeared, fails the gate and is named. Runs are seeded, so on the same machine
and library versions the tables reproduce exactly; the tolerance absorbs the small
numerical differences between CPUs and BLAS builds in float32. In bfloat16 the features'
last bits differ between CPUs with AMX, with AVX512-BF16, and GPUs, and training moves on
them like on another random stream: the baseline records what computed it (`made_on`), and
a failure on another kind of device says so. Even float32 convolutions differ between CPUs
with AMX and without (oneDNN picks other kernels), and between CPU models with the same units
(an Intel Xeon and an AMD EPYC with AVX512-BF16), so a baseline may have a sibling per kind of
CPU, <name>.<units>_<vendor>.json or <name>.<units>.json (e.g. reports/baseline-ci.amx_bf16.json),
which the gate uses on that kind, the most specific first.
"""

from __future__ import annotations

import re
from pathlib import Path

from dermsynth.core import files, paths
from dermsynth.core.config import Params

GATED_TABLES = ("arms", "dose")
GATED_VALUES = {"acc": "accuracy", "bal_acc": "balanced accuracy"}


def compare(baseline: dict, fresh: dict, tolerance: float) -> list[str]:
    """One line per regressed or missing value; empty when the gate passes."""
    problems = []
    for table in GATED_TABLES:
        for key, cell in sorted(baseline.get(table, {}).items()):
            now = fresh.get(table, {}).get(key)
            if now is None or now.get("acc") is None:
                problems.append(f"{table}/{key}: missing from the fresh metrics")
                continue
            for value, name in GATED_VALUES.items():
                if cell.get(value) is None:
                    continue  # a baseline written before this value was gated
                if now.get(value) is None:
                    problems.append(f"{table}/{key}: {name} missing from the fresh metrics")
                elif now[value] < cell[value] - tolerance:
                    problems.append(
                        f"{table}/{key}: {name} {now[value]:.3f} < baseline {cell[value]:.3f} - {tolerance}"
                    )
    return problems


def baseline_cells(table: dict[str, dict]) -> dict[str, dict]:
    """What the baseline keeps of each cell: the gated values and N (the rest of the metrics change too often)."""
    return {key: {k: cell.get(k) for k in (*GATED_VALUES, "n")} for key, cell in table.items()}


def made_on() -> dict[str, str]:
    """The device and precision of the features behind the metrics (build/features/info.json), when present."""
    info_path = paths.FEATURES / "info.json"
    info = files.read_json(info_path) if info_path.exists() else {}
    return {"device": str(info.get("device", "unknown")), "precision": str(info.get("precision", "unknown"))}


def cpu_vendor() -> str:
    """This machine's CPU vendor as a sibling suffix ("intel", "amd"), or "" when /proc/cpuinfo does not say."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    found = re.search(r"^vendor_id\s*:\s*(\S+)", text, flags=re.M)
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(found.group(1), "") if found else ""


def siblings(path: Path, now: dict[str, str], vendor: str) -> list[Path]:
    """The baselines made on this kind of CPU, most specific first: <stem>.<units>_<vendor>.json, <stem>.<units>.json.

    The units alone are not the kind: an Intel Xeon and an AMD EPYC, both with AVX512-BF16, gave
    other bfloat16 features and other float32 CI-scale tables from the same code (oneDNN picks
    kernels by CPU model).
    """
    units = re.search(r"\(([a-z0-9_ ]+)\)", now["device"])
    if not units:
        return []
    name = units.group(1).replace(" ", "_")
    kinds = ([f"{name}_{vendor}"] if vendor and now["device"].startswith("cpu") else []) + [name]
    return [path.with_name(f"{path.stem}.{kind}{path.suffix}") for kind in kinds]


def for_this_device(path: Path, now: dict[str, str], vendor: str | None = None) -> Path:
    """The most specific sibling of a baseline made on this kind of CPU that exists; else ``path``."""
    found = [s for s in siblings(path, now, cpu_vendor() if vendor is None else vendor) if s.exists()]
    return found[0] if found else path


def device_note(baseline: dict, now: dict[str, str]) -> str:
    """A line when the fresh metrics come from another device or precision than the baseline's."""
    then = baseline.get("made_on")
    if not then or then == now or now["device"] == "unknown":
        return ""
    return (
        f"gate: note: the baseline was made on {then['device']} in {then['precision']}, these metrics on "
        f"{now['device']} in {now['precision']}; bfloat16 features differ between such devices and move cells "
        "like another random stream: compare on the device the baseline names, or re-accept with a reason"
    )


def main(params: Params, baseline: str | None = None, metrics: str | None = None, update: bool = False) -> int:
    baseline_path = Path(baseline) if baseline else paths.BASELINE
    fresh = files.read_json(Path(metrics) if metrics else paths.STUDY_METRICS)
    now = made_on()
    if update:  # an existing sibling for this kind of CPU is renewed (the vendor's, else the units')
        baseline_path = for_this_device(baseline_path, now)
        files.write_json(baseline_path, {**{t: baseline_cells(fresh[t]) for t in GATED_TABLES}, "made_on": now})
        print(f"gate: wrote {baseline_path}")
        return 0
    if not baseline_path.exists():
        print(f"gate: no baseline at {baseline_path}; create one with `dermsynth gate --update`")
        return 2
    if (chosen := for_this_device(baseline_path, now)) != baseline_path:
        print(f"gate: {chosen}: the baseline made on this kind of CPU ({now['device']})")
        baseline_path = chosen
    reference = files.read_json(baseline_path)
    problems = compare(reference, fresh, params.gate.tolerance)
    cells = sum(len(reference.get(t, {})) for t in GATED_TABLES)
    if problems:
        print(f"gate: FAILED, {len(problems)} of {cells} cells regressed (tolerance {params.gate.tolerance}):")
        print("\n".join(f"  {p}" for p in problems))
        if note := device_note(reference, now):
            print(note)
        return 1
    print(f"gate: passed, {cells} cells within {params.gate.tolerance} of the baseline")
    return 0
