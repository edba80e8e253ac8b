"""Stage `embedded`: generate the embedded dataset, a stand-in for Fitzpatrick 17k that runs offline.

Counts per (condition, FST) follow the real dataset (study.REAL_COUNTS, scaled by
`size_factor`), FST -1 rows included so that `prepare` has something to drop. Skin colour
is drawn from the ITA band of each row's FST and lesions are rendered by lesions.py, so the
pixels carry the label and the skin type and nothing else does: file names are the md5 of
the file's bytes, every image has the same size and format, and rows are shuffled.
See docs/embedded.md for what it simulates and what it does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dermsynth.core import files, paths
from dermsynth.core.config import Embedded, Params
from dermsynth.core.study import COUNT_COLUMNS, PARTITIONS, REAL_COUNTS
from dermsynth.imaging.lesions import Difficulty, render
from dermsynth.imaging.skin import ITA_BANDS

COLUMNS = [
    "md5hash",
    "fitzpatrick_scale",
    "fitzpatrick_centaur",
    "label",
    "nine_partition_label",
    "three_partition_label",
    "qc",
    "url",
    "url_alphanum",
]


def row_plan(cfg: Embedded) -> list[tuple[str, int]]:
    """(label, fitzpatrick_scale) for every image, in a fixed order before shuffling."""
    plan = []
    for label, counts in REAL_COUNTS.items():
        for fst, count in zip(COUNT_COLUMNS, counts, strict=True):
            plan += [(label, fst)] * round(count * cfg.size_factor)
    return plan


def _centaur(fst: int, rng: np.random.Generator) -> int:
    """A second, noisy annotation of the skin type (most agree, some differ by one)."""
    if fst == -1:
        return -1
    return int(np.clip(fst + rng.choice([-1, 0, 0, 0, 0, 0, 1]), 1, 6))


def make_image(label: str, fst: int, cfg: Embedded, rng: np.random.Generator) -> bytes:
    """The JPEG bytes of one image; unknown-FST rows get the skin of a random type."""
    pixel_fst = fst if fst in ITA_BANDS else int(rng.integers(1, 7))
    lo, hi = ITA_BANDS[pixel_fst]
    rgb = render(label, rng.uniform(lo, hi), cfg.image_size, rng, Difficulty.of(cfg))
    return files.encode_jpeg(rgb, cfg.jpeg_quality)


def build(cfg: Embedded, out: Path) -> pd.DataFrame:
    """Write out/images/<md5>.jpg and out/fitzpatrick17k.csv; return the metadata."""
    plan = row_plan(cfg)
    streams = np.random.SeedSequence(cfg.seed).spawn(len(plan) + 1)
    images = paths.dataset_images(str(out))
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for (label, fst), stream in tqdm(list(zip(plan, streams, strict=False)), desc="embedded", unit="img"):
        rng = np.random.default_rng(stream)
        data = make_image(label, fst, cfg, rng)
        md5 = hashlib.md5(data).hexdigest()
        files.write_bytes(paths.image_file(images, md5), data)
        nine, three = PARTITIONS[label]
        rows.append([md5, fst, _centaur(fst, rng), label, nine, three, "", "", ""])
    frame = pd.DataFrame(rows, columns=COLUMNS)
    order = np.random.default_rng(streams[-1]).permutation(len(frame))
    frame = frame.iloc[order].reset_index(drop=True)
    files.write_csv(paths.dataset_metadata(str(out)), frame)
    return frame


def main(params: Params) -> None:
    frame = build(params.embedded, paths.EMBEDDED)
    print(f"embedded: {len(frame)} images in {paths.EMBEDDED}")
