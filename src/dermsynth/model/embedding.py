"""Images through the frozen backbone in batches: the one loop that `features`, `quality` and the served chain share.

All three must compute fc6 the same way, down to the last bit in bfloat16: the same memory
format (channels_last, which picks other convolution kernels than the default layout), the
same dtype cast and the same batch size. A served model's prediction then equals the one in
`predictions.csv`, and the quality stage's features of a real image equal the cached ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dermsynth.core import files
from dermsynth.core.config import Features
from dermsynth.model.backbone import normalisation
from dermsynth.model.precision import cpu_bf16_units
from dermsynth.model.preprocess import eval_transform, train_transform


class ImageViews(Dataset):
    """(path, view) pairs; view -1 is the test transform, view k >= 0 a seeded augmented view."""

    def __init__(self, items: Sequence[tuple[Path, int]], cfg: Features):
        self.items = items
        stats = normalisation(cfg.backbone)
        self.eval_tf = eval_transform(cfg.resize, cfg.crop, stats)
        self.train_tf = train_transform(cfg.resize, cfg.crop, stats)
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


class Transformed(Dataset):
    """Image files or decoded images, each through ``transform`` (another backbone's, e.g. Inception's)."""

    def __init__(self, images: Sequence[Path | Image.Image], transform: Callable[[Image.Image], torch.Tensor]):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.images[i]
        return self.transform(image if isinstance(image, Image.Image) else files.load_rgb(image))


def prepare(model: torch.nn.Module, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The backbone in inference mode, in ``dtype`` and channels_last, as every caller of `batches` needs it."""
    return model.eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)


def batches(model: torch.nn.Module, dataset: Dataset, batch_size: int, desc: str | None = None,
            workers: int | None = None) -> Iterator[np.ndarray]:  # fmt: skip
    """The model's outputs (float32 arrays) batch by batch, images decoded in a worker process beside it.

    ``workers`` defaults to one where there is a second core (decoding JPEGs then overlaps the
    backbone), and none for a single batch, where starting a process costs more than it saves.
    """
    param = next(model.parameters())
    if workers is None:
        workers = 1 if (os.cpu_count() or 1) > 1 and len(dataset) > batch_size else 0  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    total = len(dataset)  # type: ignore[arg-type]
    with tqdm(total=total, desc=desc, unit="img", disable=desc is None) as bar:
        for batch in loader:
            with torch.inference_mode():  # not around the yield: grad mode is thread state the caller would inherit
                x = batch.to(param.device, param.dtype).contiguous(memory_format=torch.channels_last)
                out = model(x).float().cpu().numpy()
            bar.update(len(batch))
            yield out


def embed(model: torch.nn.Module, dataset: Dataset, batch_size: int, desc: str | None = None) -> np.ndarray:
    """All outputs (n, d) of ``dataset`` in memory: for the few thousand images of a quality check."""
    parts = list(batches(model, dataset, batch_size, desc))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def extract(model: torch.nn.Module, items: list[tuple[Path, int]], cfg: Features, out: Path, desc: str,
            dim: int) -> None:  # fmt: skip
    """Write the features (dim wide) of ``items`` to the .npy file ``out`` (float16), atomically."""
    with files.atomic_path(out) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(items), dim))
        start = 0
        for fc6 in batches(model, ImageViews(items, cfg), cfg.batch_size, desc):
            array[start : start + len(fc6)] = fc6
            start += len(fc6)
        array.flush()
        del array
