"""Which images a reader study shows: real and synthetic, stratified by FST group and condition.

For each seed group (the skin types synthetic images were made for) and each augmented
condition, the study takes as many real images of that group and condition as synthetic
candidates made from seeds of that group and condition, drawn with a fixed seed. Real images
come from the splits (seeds included: they are what the candidates were made from); candidates
from build/generated, so that a reader's verdict can later be set against curation's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.core import paths
from dermsynth.core.errors import DermsynthError


def cells(splits: pd.DataFrame, generated: pd.DataFrame) -> list[tuple[str, str]]:
    """(FST group, condition) pairs that have both real images and candidates, in sorted order."""
    made = set(zip(generated["seed_group"], generated["label"], strict=True))
    real = set(zip(splits["group"], splits["label"], strict=True))
    return sorted(made & real)


def draw(splits: pd.DataFrame, generated: pd.DataFrame, images_root: str, n: int, seed: int) -> pd.DataFrame:
    """``n`` images (half real, half synthetic, spread evenly over the cells), one row each, in a stable order."""
    pairs = cells(splits, generated)
    if n < 2 * len(pairs) or n % 2:
        raise DermsynthError(
            f"review.images: {n} cannot hold one real and one synthetic image for each of the {len(pairs)} "
            f"(FST group, condition) cells {pairs}: use an even number of at least {2 * len(pairs)}"
        )
    rng = np.random.default_rng(seed)
    per_cell = [n // 2 // len(pairs) + (i < (n // 2) % len(pairs)) for i in range(len(pairs))]
    real_rows = splits.drop_duplicates("md5hash")
    rows = []
    for (group, label), k in zip(pairs, per_cell, strict=True):
        real = real_rows[(real_rows["group"] == group) & (real_rows["label"] == label)].sort_values("md5hash")
        synth = generated[(generated["seed_group"] == group) & (generated["label"] == label)].sort_values("file")
        if len(real) < k or len(synth) < k:
            found = f"{len(real)} real and {len(synth)} synthetic images"
            raise DermsynthError(f"review: {group} {label} has {found}, {k} of each needed")
        for h in real["md5hash"].to_numpy()[rng.choice(len(real), k, replace=False)]:
            rows.append((str(paths.image_file(paths.dataset_images(images_root), h)), "real", label, group, h))
        for f in synth["file"].to_numpy()[rng.choice(len(synth), k, replace=False)]:
            rows.append((str(paths.GENERATED / paths.IMAGES_NAME / f), "synthetic", label, group, f))
    return pd.DataFrame(rows, columns=["path", "kind", "label", "fst_group", "key"])
