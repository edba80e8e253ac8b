"""Benchmark of head training and fixed costs: how close the study runs to the machine's GEMM rate.

Measured in one run, so that ratios compare like with like on a noisy machine:
- the 4096 x 4096 GEMM (fc7's shape) in float32 and bfloat16 at 32, R x 32 and 1,024 rows;
- one configuration of the study (R repeats of 20 epochs on 1,036 training images with 4 cached
  views, the size of light_to_dark-psoriasis-seed) trained the way `train` does it (the repeats
  together; the better of two runs) and one repeat after another, as time and as fc7 FLOP/s
  against the GEMM rates (the 1,024-row rate measured before and after, the higher kept);
- the start-up of a stage process (Python, torch, the stage module, params.yaml);
- projections of the feature path at real-data scale from the measured per-image rate of the
  VGG16 convolutions at 224 px (marked as projections).

The activations are random (the speed of a training step does not depend on their values).
Writes the `head` section of reports/benchmarks.json and reports/benchmarks-head.md:

    python benchmarks/head_benchmark.py [--device cuda] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from dermsynth.core import config, files, paths
from dermsynth.model.backbone import DTYPES, FC6_DIM, Fc6Extractor, load_vgg16
from dermsynth.model.fitting import train_repeats
from dermsynth.model.trainset import RunData

N_TRAIN, N_VAL, VIEWS, CLASSES = 1036, 250, 4, 7  # light_to_dark-psoriasis-seed of the default study
REAL_IMAGES, REAL_TRAIN, FULL_GRID = 2707, 1513, 16577  # study images, of which augmented-view images; all of 17k


def gemm_rate(dtype: torch.dtype, rows: int, seconds: float = 1.0) -> float:
    """FLOP/s of (rows x 4096) @ (4096 x 4096), fc7's product."""
    x, w = torch.randn(rows, FC6_DIM).to(dtype), torch.randn(FC6_DIM, FC6_DIM).to(dtype)
    for _ in range(3):
        x @ w
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x @ w
        n += 1
    return 2.0 * rows * FC6_DIM * FC6_DIM * n / (time.perf_counter() - start)


def study_sized_data() -> RunData:
    gen = torch.Generator().manual_seed(0)
    return RunData(
        classes=[f"c{i}" for i in range(CLASSES)],
        train=None,  # type: ignore[arg-type]
        val=None,  # type: ignore[arg-type]
        x_views=torch.rand(N_TRAIN, VIEWS, FC6_DIM, generator=gen),
        y=torch.arange(N_TRAIN) % CLASSES,
        x_val=torch.rand(N_VAL, FC6_DIM, generator=gen),
        y_val=torch.arange(N_VAL) % CLASSES,
        fc7=nn.Linear(FC6_DIM, FC6_DIM).state_dict(),
        input_dropout=0.5,
    )


def configuration_seconds(data: RunData, cfg: config.Train, precision: str, together: bool) -> float:
    """Wall time of one configuration's R trainings: together (as `train` runs them) or one after another."""
    seeds = [cfg.seed + r for r in range(cfg.repeats)]
    start = time.perf_counter()
    if together:
        train_repeats(data, cfg, precision, seeds)
    else:
        for seed in seeds:
            train_repeats(data, cfg, precision, [seed])
    return time.perf_counter() - start


def fc7_flops(cfg: config.Train) -> float:
    """The frozen fc7's forward FLOPs in one configuration: the work the GEMM rate bounds."""
    return 2.0 * FC6_DIM * FC6_DIM * N_TRAIN * cfg.epochs * cfg.repeats


def startup_seconds(code: str, runs: int = 3) -> float:
    """Median wall time of a fresh interpreter running ``code`` (what every DVC stage process pays)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=paths.root())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def backbone_images_per_s(device: torch.device, precision: str, size: int = 224, batches: int = 3) -> float:
    model = Fc6Extractor(load_vgg16("none", 0)).eval().to(device, DTYPES[precision])
    x = torch.randn(16, 3, size, size).to(device, DTYPES[precision]).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 16 * batches / (time.perf_counter() - start)


def projections(rate: float, views: int) -> dict[str, float]:
    """Hours of VGG16 feature extraction at 224 px, from a measured images/s (a projection, not a measurement)."""
    return {
        "study_eval_images_h": REAL_IMAGES / rate / 3600,
        "study_views_h": REAL_TRAIN * views / rate / 3600,
        "full_17k_eval_h": FULL_GRID / rate / 3600,
        "full_17k_views_h": FULL_GRID * 0.8 * views / rate / 3600,  # the training share of an FST holdout, ~80%
    }


def measure(args: argparse.Namespace) -> dict:
    params = config.load()
    cfg = dataclasses.replace(params.train, repeats=args.repeats, epochs=2 if args.quick else params.train.epochs)
    rows = cfg.batch_size * cfg.repeats
    gemm = {
        f"{name}_{n}": gemm_rate(dtype, n)
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
        for n in (cfg.batch_size, rows, 1024)
    }
    data = study_sized_data()
    training = {}
    for precision in ("bfloat16", "float32"):
        # the best of two runs, and the GEMM rate again right after them (the higher of the two kept): this
        # machine shares its cores, and a slow spell during one run should not read as slow training
        together = min(configuration_seconds(data, cfg, precision, together=True) for _ in range(2))
        gemm[f"{precision}_1024"] = max(gemm[f"{precision}_1024"], gemm_rate(DTYPES[precision], 1024))
        alone = configuration_seconds(data, cfg, precision, together=False)
        rate = fc7_flops(cfg) / together
        training[precision] = {
            "together_s": together,
            "one_after_another_s": alone,
            "speedup": alone / together,
            "fc7_flops_per_s": rate,
            "of_gemm_1024_rows": rate / gemm[f"{precision}_1024"],
            f"of_gemm_{rows}_rows": rate / gemm[f"{precision}_{rows}"],
        }
    startup = {
        "python_and_torch_s": startup_seconds("import torch"),
        "train_stage_s": startup_seconds("import dermsynth.train; from dermsynth.core import config; config.load()"),
        "track_stage_s": startup_seconds(
            "import dermsynth.track, mlflow; from dermsynth.core import config; config.load()"
        ),
        "cli_help_s": startup_seconds("from dermsynth.cli import build_parser; build_parser()"),
    }
    device = torch.device(args.device)
    backbone = {p: backbone_images_per_s(device, p) for p in ("bfloat16", "float32")}
    best = max(backbone.values())
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    return {
        "machine": f"{machine}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "configuration": {"n_train": N_TRAIN, "views": VIEWS, "epochs": cfg.epochs, "repeats": cfg.repeats,
                          "batch_size": cfg.batch_size, "gemm_rows_per_step": rows},
        "gemm_flops_per_s": gemm,
        "training": training,
        "startup": startup,
        "backbone_224_images_per_s": {"device": str(device), **backbone},
        "projection_224px_hours": {
            "device": str(device), "images_per_s": best, **projections(best, params.features.views)
        },
    }  # fmt: skip


def markdown(r: dict) -> str:
    c, g = r["configuration"], r["gemm_flops_per_s"]
    rows = c["gemm_rows_per_step"]
    lines = [
        "# Head-training benchmark",
        "",
        f"Machine: {r['machine']}; torch {r['torch']}. One run (`python benchmarks/head_benchmark.py`); random",
        f"activations of the study's size: {c['n_train']} training images x {c['views']} views, {c['epochs']} epochs,",
        f"{c['repeats']} repeats, batch {c['batch_size']}.",
        "",
        "| GEMM 4096 x 4096 (fc7) | 32 rows | " + f"{rows} rows | 1,024 rows |",
        "|---|---|---|---|",
    ]
    for p in ("float32", "bfloat16"):
        cells = [f"{g[f'{p}_{n}'] / 1e9:.0f} GFLOP/s" for n in (c["batch_size"], rows, 1024)]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", "| one configuration | repeats together | one after another | speed-up | fc7 rate | of GEMM "
              f"(1,024 rows) | of GEMM ({rows} rows) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for p, t in r["training"].items():
        lines.append(
            f"| {p} | {t['together_s']:.1f} s | {t['one_after_another_s']:.1f} s | {t['speedup']:.2f}x | "
            f"{t['fc7_flops_per_s'] / 1e9:.0f} GFLOP/s | **{t['of_gemm_1024_rows']:.0%}** | "
            f"{t[f'of_gemm_{rows}_rows']:.0%} |"
        )
    s = r["startup"]
    lines += [
        "",
        "| start-up of a fresh process | seconds |",
        "|---|---|",
        f"| `import torch` | {s['python_and_torch_s']:.2f} |",
        f"| a `train` stage (its module and params.yaml) | {s['train_stage_s']:.2f} |",
        f"| the `track` stage (with MLflow) | {s['track_stage_s']:.2f} |",
        f"| `dermsynth --help` (argument parser only) | {s['cli_help_s']:.2f} |",
    ]
    b, pr = r["backbone_224_images_per_s"], r["projection_224px_hours"]
    lines += [
        "",
        f"VGG16 convolutions to fc6 at 224 px on `{b['device']}`: {b['bfloat16']:.1f} images/s in bfloat16, "
        f"{b['float32']:.1f} in float32 (measured). **Projection** at {pr['images_per_s']:.1f} images/s:",
        f"the study's {REAL_IMAGES:,} real images once take {pr['study_eval_images_h']:.2f} h and its "
        f"{REAL_TRAIN:,} training images' views {pr['study_views_h']:.2f} h; all {FULL_GRID:,} images of "
        f"Fitzpatrick 17k (the 114-label grid) {pr['full_17k_eval_h']:.2f} h, plus {pr['full_17k_views_h']:.2f} h "
        "of views. On a GPU, run this script with `--device cuda` for its own measured rate.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="device for the backbone rate (cpu or cuda)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per configuration (default train.repeats)")
    parser.add_argument("--quick", action="store_true", help="2 epochs instead of train.epochs (a smoke test)")
    args = parser.parse_args()
    args.repeats = args.repeats or config.load().train.repeats
    result = measure(args)
    path = paths.REPORTS / "benchmarks.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged["head"] = result
    files.write_json(path, merged)
    files.write_text(paths.REPORTS / "benchmarks-head.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
