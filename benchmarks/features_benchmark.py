"""Benchmark of the feature path: backbone speed against the machine's GEMM rate, and cached vs recomputed training.

Writes reports/benchmarks.json and reports/benchmarks.md. Run after `dvc repro` (it reads the
cached features and splits of the default configuration):

    python benchmarks/features_benchmark.py [--device cuda] [--skip-grid]

All figures come from this one run, so ratios compare like with like on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from dermsynth.analysis.grid import planned_runs
from dermsynth.core import config, files, paths
from dermsynth.model.backbone import DTYPES, Fc6Extractor, Head, load_vgg16
from dermsynth.model.embedding import ImageViews, pick_device
from dermsynth.model.fitting import train_repeats
from dermsynth.model.trainset import FeatureStore, load_run_data


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_rate(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n matrix product (the roofline the backbone is compared with)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def model_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward pass (2 x multiply-adds of every conv and linear layer), counted with hooks."""
    total = 0.0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2.0 * output.numel() * k
        elif isinstance(module, nn.Linear):
            total += 2.0 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total / x.shape[0]


def backbone_rate(device: torch.device, precision: str, size: int, batch: int, batches: int) -> dict:
    model = Fc6Extractor(load_vgg16("none", 0)).eval().to(device, DTYPES[precision])
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=device, dtype=DTYPES[precision]).contiguous(
        memory_format=torch.channels_last
    )
    flops = model_flops(model, x[:1])
    with torch.inference_mode():
        model(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        sync(device)
    seconds = time.perf_counter() - start
    images_per_s = batch * batches / seconds
    return {
        "precision": precision,
        "size": size,
        "batch": batch,
        "images_per_s": images_per_s,
        "gflop_per_image": flops / 1e9,
        "achieved_flops": images_per_s * flops,
    }


def cached_run(
    params: config.Params, feats: FeatureStore, direction: str, condition: str, arm: str, dose: int | None
) -> float:
    """Seconds for one training on cached features (what a `train` stage does for one repeat, minus start-up)."""
    start = time.perf_counter()
    data = load_run_data(params, direction, condition, arm, dose, feats)
    train_repeats(data, params.train, params.features.precision, [params.train.seed])
    return time.perf_counter() - start


def recomputed_run(params: config.Params, device: torch.device, epochs: int) -> float:
    """Seconds for the same run when the frozen backbone runs on freshly augmented images every epoch."""
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    rows = splits[(splits["direction"] == "light_to_dark") & (splits["role"] == "train")]
    images = paths.dataset_images(params.dataset.root)
    classes = list(params.prepare.conditions)
    y = torch.tensor([classes.index(c) for c in rows["label"]])
    vgg = load_vgg16(params.features.weights, params.features.seed)
    extractor = Fc6Extractor(vgg).eval().to(device, DTYPES[params.features.precision])
    extractor = extractor.to(memory_format=torch.channels_last)
    head = Head(
        vgg.classifier[3], params.train.hidden, len(classes), params.train.dropout, params.features.precision
    ).to(device)
    optimiser = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=params.train.lr)
    start = time.perf_counter()
    for epoch in range(epochs):
        items = [(paths.image_file(images, h), epoch) for h in rows["md5hash"]]
        loader = torch.utils.data.DataLoader(
            ImageViews(items, params.features), batch_size=params.train.batch_size, num_workers=1
        )
        head.train()
        for i, batch in enumerate(loader):
            with torch.inference_mode():
                fc6 = extractor(
                    batch.to(device, DTYPES[params.features.precision]).contiguous(memory_format=torch.channels_last)
                ).float()
            target = y[i * params.train.batch_size : (i + 1) * params.train.batch_size].to(device)
            loss = nn.functional.nll_loss(head(fc6.clone()), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    sync(device)
    return time.perf_counter() - start


def markdown(results: dict) -> str:
    b = results["backbone_224"]
    lines = [
        "# Feature-path benchmark",
        "",
        f"Machine: {results['machine']}; device `{results['device']}`; torch {results['torch']}. One run.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| GEMM 2048^3, float32 | {results['gemm_float32'] / 1e9:.0f} GFLOP/s |",
        f"| GEMM 2048^3, bfloat16 | {results['gemm_bfloat16'] / 1e9:.0f} GFLOP/s |",
    ]
    for r in b:
        gemm = results[f"gemm_{r['precision']}"]
        lines.append(
            f"| VGG16 to fc6 at 224 px, {r['precision']}, batch {r['batch']} | {r['images_per_s']:.1f} img/s = "
            f"{r['achieved_flops'] / 1e9:.0f} GFLOP/s = **{r['achieved_flops'] / gemm:.0%}** of the "
            f"{r['precision']} GEMM rate |"
        )
    t = results["training"]
    lines += [
        f"| one training run on cached features ({t['epochs']} epochs, {t['n_train']} images) "
        f"| {t['cached_s']:.1f} s |",
        f"| the same run recomputing the backbone every epoch | {t['recomputed_s']:.1f} s |",
        f"| speed-up of caching | **{t['recomputed_s'] / t['cached_s']:.1f}x** |",
    ]
    if "grid" in results:
        g = results["grid"]
        lines.append(f"| whole study grid on cached features ({g['runs']} runs, fits only) | {g['seconds']:.0f} s |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches of 16 images at 224 px")
    parser.add_argument("--skip-grid", action="store_true", help="do not time the whole study grid")
    args = parser.parse_args()
    device = pick_device(args.device)
    params = config.load()
    results: dict = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
    }
    results["gemm_float32"] = gemm_rate(device, torch.float32)
    results["gemm_bfloat16"] = gemm_rate(device, torch.bfloat16)
    results["backbone_224"] = [backbone_rate(device, p, 224, 16, args.batches) for p in ("bfloat16", "float32")]
    feats = FeatureStore(paths.FEATURES)
    epochs = params.train.epochs
    cached = cached_run(params, feats, "light_to_dark", "psoriasis", "fitz_only", None)
    recomputed = recomputed_run(params, device, epochs)
    n_train = int(
        (
            (pd.read_csv(paths.SPLITS_TABLE)["direction"] == "light_to_dark")
            & (pd.read_csv(paths.SPLITS_TABLE)["role"] == "train")
        ).sum()
    )
    results["training"] = {
        "epochs": epochs,
        "n_train": n_train,
        "cached_s": cached,
        "recomputed_s": recomputed,
        "image_size": params.features.crop,
    }
    if not args.skip_grid:
        distinct = {run["trained"]: run for run in reversed(planned_runs(params))}  # one per training
        start = time.perf_counter()
        for run in distinct.values():
            cached_run(params, feats, run["direction"], run["condition"], run["arm"], run["dose"])
        results["grid"] = {"runs": len(distinct), "seconds": time.perf_counter() - start}
    path = paths.REPORTS / "benchmarks.json"  # other benchmarks' sections (head, repro) are kept
    results = {**(json.loads(path.read_text()) if path.exists() else {}), **results}
    files.write_json(path, results)
    files.write_text(paths.REPORTS / "benchmarks.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
