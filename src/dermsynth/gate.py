"""The regression gate: fresh accuracy tables against a committed baseline.

Every cell of the arms and dose-response tables in reports/metrics.json is compared with
reports/baseline.json; a cell that fell by more than `gate.tolerance` (absolute accuracy),
or that disappeared, fails the gate and is named. Runs are seeded, so on the same machine
and library versions the tables reproduce exactly; the tolerance absorbs the small
numerical differences between CPUs and BLAS builds.
"""

from __future__ import annotations

from pathlib import Path

from dermsynth import io, paths
from dermsynth.config import Params

GATED_TABLES = ("arms", "dose")


def compare(baseline: dict, fresh: dict, tolerance: float) -> list[str]:
    """One line per regressed or missing cell; empty when the gate passes."""
    problems = []
    for table in GATED_TABLES:
        for key, cell in sorted(baseline.get(table, {}).items()):
            now = fresh.get(table, {}).get(key)
            if now is None or now.get("acc") is None:
                problems.append(f"{table}/{key}: missing from the fresh metrics")
            elif cell.get("acc") is not None and now["acc"] < cell["acc"] - tolerance:
                problems.append(f"{table}/{key}: accuracy {now['acc']:.3f} < baseline {cell['acc']:.3f} - {tolerance}")
    return problems


def main(params: Params, baseline: str | None = None, metrics: str | None = None, update: bool = False) -> int:
    baseline_path = Path(baseline) if baseline else paths.BASELINE
    fresh = io.read_json(Path(metrics) if metrics else paths.STUDY_METRICS)
    if update:
        io.write_json(baseline_path, {t: fresh[t] for t in GATED_TABLES})
        print(f"gate: wrote {baseline_path}")
        return 0
    if not baseline_path.exists():
        print(f"gate: no baseline at {baseline_path}; create one with `dermsynth gate --update`")
        return 2
    problems = compare(io.read_json(baseline_path), fresh, params.gate.tolerance)
    cells = sum(len(io.read_json(baseline_path).get(t, {})) for t in GATED_TABLES)
    if problems:
        print(f"gate: FAILED, {len(problems)} of {cells} cells regressed (tolerance {params.gate.tolerance}):")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"gate: passed, {cells} cells within {params.gate.tolerance} of the baseline")
    return 0
