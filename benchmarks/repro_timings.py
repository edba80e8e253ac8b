"""Wall time of a `dvc repro` (or `dvc exp run`) broken down by stage, from DVC's own progress lines.

Each "Running stage 'X'" line is stamped as it arrives; a stage lasts until the next stage
starts (or DVC exits), so start-up, the stage's work and DVC's bookkeeping after it are all
counted. Writes one entry of the `repro` section of reports/benchmarks.json (stages, the
matrix stages summed by family, the total), under a label, and prints a table:

    python benchmarks/repro_timings.py                      # dvc repro, as `repro.default`
    python benchmarks/repro_timings.py --label ci exp run $(dermsynth overrides configs/ci.yaml)

Run it in a fresh clone (empty DVC cache, no MLflow store) for a cold figure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

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
            # a progress bar redraws with carriage returns and no newline, so a stage's first line can
            # follow the last bar of the previous stage on the same line: match each redrawn segment
            for segment in line.split("\r"):
                if match := STAGE.match(segment):
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


def machine() -> str:
    """The CPU and thread count the timings were taken on (they differ between machines of the same kind)."""
    import platform

    import torch

    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    return f"{model}, {torch.get_num_threads()} threads"


TRAINING_FAMILIES = ("fitz_only", "train", "dose")


def fc7_work(stages: dict[str, float]) -> dict[str, float] | None:
    """The trainings' frozen-fc7 work (from models/*/training.json) against this machine's GEMM rate, measured now.

    The floor is the time the trainings would take if the step were nothing but fc7 at the
    rate of a 1,024-row GEMM: what no change to the training loop can beat on this machine.
    """

    from dermsynth.core import config
    from dermsynth.model.backbone import DTYPES, FC6_DIM

    sys.path.insert(0, str(Path(__file__).parent))
    from head_benchmark import gemm_rate

    params = config.load()
    runs = [files.read_json(p) for p in sorted(paths.MODELS.glob(f"*/{paths.TRAINING_NAME}"))]
    if not runs or params.features.backbone != "vgg16":  # the Lite models have no frozen fc7 after the cache
        return None
    flops = sum(2.0 * FC6_DIM * FC6_DIM * r["n_train"] * sum(len(h) for h in r["histories"]) for r in runs)
    precision = params.features.precision
    rate = gemm_rate(DTYPES[precision], 1024)
    seconds = sum(t for name, t in stages.items() if name.split("@")[0] in TRAINING_FAMILIES)
    return {
        "trainings": len(runs),
        "precision": precision,
        "fc7_tflop": flops / 1e12,
        "gemm_flops_per_s": rate,
        "fc7_floor_s": flops / rate,
        "training_stages_s": seconds,
        "training_stages_of_gemm": flops / rate / seconds if seconds else float("nan"),
    }


def main() -> int:
    args = sys.argv[1:]
    label = "default"
    if args[:1] == ["--label"]:
        label, args = args[1], args[2:]
    args = args or ["repro"]
    starts, total, code = timed_run(args)
    stages = durations(starts, total)
    result = {"command": "dvc " + " ".join(args), "exit_code": code, "total_s": total, "stages": stages,
              "families": families(stages), "machine": machine(), "fc7": fc7_work(stages)}  # fmt: skip
    path = paths.REPORTS / "benchmarks.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged["repro"] = {**merged.get("repro", {}), label: result}
    files.write_json(path, merged)
    print(f"\n{result['command']}: {total:.0f} s, exit {code}")
    for family, f in result["families"].items():
        print(f"  {family:<10} {f['stages']:>3} stage(s) {f['seconds']:>8.1f} s  (mean {f['mean_s']:.1f} s)")
    if work := result["fc7"]:
        print(
            f"  fc7: {work['fc7_tflop']:.1f} TFLOP in {work['trainings']} trainings; at the {work['precision']} GEMM "
            f"rate ({work['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s) at least {work['fc7_floor_s']:.0f} s; the training "
            f"stages took {work['training_stages_s']:.0f} s ({work['training_stages_of_gemm']:.0%} of that rate)"
        )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
