"""Wall time of a `dvc repro` (or `dvc exp run`) broken down by stage, from DVC's own progress lines.

Each "Running stage 'X'" line is stamped as it arrives; a stage lasts until the next stage
starts (or DVC exits), so start-up, the stage's work and DVC's bookkeeping after it are all
counted. Writes the `repro` section of reports/benchmarks.json (stages, the matrix stages
summed by family, the total) and prints a table:

    python benchmarks/repro_timings.py                      # dvc repro
    python benchmarks/repro_timings.py exp run -S train.repeats=2
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import defaultdict

from dermsynth.core import files, paths

STAGE = re.compile(r"^Running stage '([^']+)'")


def timed_run(args: list[str]) -> tuple[list[tuple[str, float]], float, int]:
    """Stage start offsets (seconds from the start), the total, and DVC's exit code; DVC's output passes through."""
    start = time.perf_counter()
    starts: list[tuple[str, float]] = []
    with subprocess.Popen(["dvc", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if match := STAGE.match(line):
                starts.append((match.group(1), time.perf_counter() - start))
    return starts, time.perf_counter() - start, proc.returncode


def durations(starts: list[tuple[str, float]], total: float) -> dict[str, float]:
    ends = [t for _, t in starts[1:]] + [total]
    return {name: end - begin for (name, begin), end in zip(starts, ends, strict=True)}


def families(stages: dict[str, float]) -> dict[str, dict[str, float]]:
    """Matrix stages (train@..., dose@...) summed per family, with their count and mean."""
    sums: dict[str, list[float]] = defaultdict(list)
    for name, seconds in stages.items():
        sums[name.split("@")[0]].append(seconds)
    return {k: {"stages": len(v), "seconds": sum(v), "mean_s": sum(v) / len(v)} for k, v in sums.items()}


def main() -> int:
    args = sys.argv[1:] or ["repro"]
    starts, total, code = timed_run(args)
    stages = durations(starts, total)
    result = {"command": "dvc " + " ".join(args), "exit_code": code, "total_s": total, "stages": stages,
              "families": families(stages)}  # fmt: skip
    path = paths.REPORTS / "benchmarks.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged["repro"] = result
    files.write_json(path, merged)
    print(f"\n{result['command']}: {total:.0f} s, exit {code}")
    for family, f in result["families"].items():
        print(f"  {family:<10} {f['stages']:>3} stage(s) {f['seconds']:>8.1f} s  (mean {f['mean_s']:.1f} s)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
