"""Stage `features`: run the frozen backbone once per image and view, and cache fc6 activations.

Every real image of the splits gets the test transform (Resize, CenterCrop); every image
that can be trained on (training groups, seeds, curated synthetic images) also gets
`views` augmented views with the train transform of Groh et al. Training then draws one
cached view per image per epoch instead of re-running the backbone: the augmentation is the
same distribution, but an image only ever shows `views` distinct augmentations instead of
a fresh one per epoch. Activations are cut after fc6+ReLU (see backbone.py) and stored as
float16 memory-mapped arrays, so memory stays bounded for the full 16,577-image dataset.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dermsynth.core import files, paths
from dermsynth.core.config import Features, Params
from dermsynth.model.backbone import DTYPES, FC6_DIM, Fc6Extractor, file_digest, load_vgg16, state_digest
from dermsynth.model.preprocess import eval_transform, train_transform


class ImageViews(Dataset):
    """(path, view) pairs; view -1 is the test transform, view k >= 0 a seeded augmented view."""

    def __init__(self, items: list[tuple[Path, int]], cfg: Features):
        self.items = items
        self.eval_tf = eval_transform(cfg.resize, cfg.crop)
        self.train_tf = train_transform(cfg.resize, cfg.crop)
        self.seed = cfg.seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        path, view = self.items[i]
        image = files.load_rgb(path)
        if view < 0:
            return self.eval_tf(image)
        digest = hashlib.sha256(f"{self.seed}:{path.name}:{view}".encode()).digest()
        torch.manual_seed(int.from_bytes(digest[:8], "little"))  # same view whatever the worker or order
        return self.train_tf(image)


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def extract(model: torch.nn.Module, items: list[tuple[Path, int]], cfg: Features, out: Path, desc: str) -> None:
    """Write fc6 activations of ``items`` to the .npy file ``out`` (float16), atomically."""
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    workers = 1 if (os.cpu_count() or 1) > 1 else 0
    loader = DataLoader(ImageViews(items, cfg), batch_size=cfg.batch_size, num_workers=workers)
    with files.atomic_path(out) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(items), FC6_DIM))
        start = 0
        with torch.inference_mode(), tqdm(total=len(items), desc=desc, unit="img") as bar:
            for batch in loader:
                x = batch.to(device, dtype).contiguous(memory_format=torch.channels_last)
                array[start : start + len(batch)] = model(x).float().cpu().numpy()
                start += len(batch)
                bar.update(len(batch))
        array.flush()
        del array


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


def describe(device: torch.device) -> str:
    """The device as recorded in info.json and MLflow's `device` tag: "cpu (amx_bf16)", or "cuda:0 (<GPU name>)".

    bfloat16 kernels, and so the last bits of the features and every number after them, differ
    between GPU models and between CPUs with AMX, with AVX512-BF16 only, or with neither: the
    record names which one computed them.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({cpu_bf16_units()})" if device.type == "cpu" else device.type


def cpu_bf16_units() -> str:
    """The CPU's bfloat16 matrix units as Linux names them (amx_bf16, avx512_bf16), or none."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "bf16 units unknown"
    return next((unit for unit in ("amx_bf16", "avx512_bf16") if unit in flags), "no bf16 units")


def main(params: Params, device: str | None = None) -> None:
    cfg = params.features
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    curated = pd.read_csv(paths.CURATED / paths.MANIFEST_NAME, dtype=str, keep_default_na=False)
    eval_index, views_index = inventory(splits, curated, params)
    vgg = load_vgg16(cfg.weights, cfg.seed)
    backbone_sha256 = state_digest(vgg)  # before the extractor is cast to `precision` in place
    chosen = pick_device(device)
    model = Fc6Extractor(vgg).eval().to(chosen, DTYPES[cfg.precision])
    model = model.to(memory_format=torch.channels_last)
    out = paths.FEATURES
    extract(model, [(Path(p), -1) for p in eval_index["path"]], cfg, out / "eval.npy", "features/eval")
    items = [(Path(p), k) for p in views_index["path"] for k in range(cfg.views)]
    extract(model, items, cfg, out / "views.npy", f"features/{cfg.views} views")
    torch.save(vgg.classifier[3].state_dict(), out / "fc7.pt")
    files.write_csv(out / "eval_index.csv", eval_index)
    files.write_csv(out / "views_index.csv", views_index)
    files.write_json(
        out / "info.json",
        {
            "backbone": cfg.backbone,
            "weights": cfg.weights,
            "precision": cfg.precision,
            "views": cfg.views,
            "crop": cfg.crop,
            "resize": cfg.resize,
            "seed": cfg.seed,
            "backbone_sha256": backbone_sha256,  # what a served model checks its rebuilt backbone against
            "weights_sha256": file_digest(Path(cfg.weights)) if cfg.weights not in ("none", "imagenet") else "",
            "device": describe(chosen),  # bfloat16 kernels (and so the last bits of the features) differ by device
            "note": "weights 'none' is a seeded random initialisation: no pretrained weights exist offline"
            if cfg.weights == "none"
            else "",
        },
    )
    print(f"features: {len(eval_index)} eval images, {len(views_index)} x {cfg.views} augmented views")
