"""Stage `embedded`: generate the embedded dataset, a stand-in for Fitzpatrick 17k that runs offline.

Counts per (condition, FST) follow the real dataset (study.REAL_COUNTS, scaled by
`size_factor`), FST -1 rows included so that `prepare` has something to drop. Skin colour
is drawn from the ITA band of each row's FST and lesions are rendered by lesions.py, so the
pixels carry the label and the skin type and nothing else does: file names are the md5 of
the file's bytes, every image has the same size and format, and rows are shuffled.

With `labels: all` the other 107 labels follow (Groh et al.'s 114-label study needs them):
each (label, FST) cell copies the real CSV's rows, with their source atlas and `qc`, in their
own random streams and after the seven's rows, so the seven's images and rows are the same
whichever `labels` is set, and so is the study on them. Their images from the second atlas
get its photography (parametric.atlas_look); the seven's images carry no source.
See docs/embedded.md for what it simulates and what it does not.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dermsynth.core import files, paths
from dermsynth.core.config import Embedded, Params
from dermsynth.core.study import (
    COUNT_COLUMNS,
    PARTITIONS,
    REAL_COUNTS,
    label_partitions,
    real_metadata,
    slug,
    source_of,
)
from dermsynth.imaging.lesions import Difficulty, render
from dermsynth.imaging.parametric import atlas_look
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


def other_plan(cfg: Embedded) -> list[tuple[str, int, str, str]]:
    """(label, fitzpatrick_scale, url host's source, qc) for every image of the labels outside the seven.

    Each (label, FST) cell takes round(n x size_factor) of the real CSV's n rows (in a fixed,
    seeded order; repeated when size_factor > 1), so at size_factor 1 the counts per label, FST,
    source and qc are the real ones.
    """
    cells: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
    for r in real_metadata():
        if r["label"] not in REAL_COUNTS:
            cells[(r["label"], int(r["fitzpatrick_scale"]))].append((source_of(r["url"]) or "", r["qc"]))
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 114]))
    plan = []
    for (label, fst), rows in sorted(cells.items()):
        want = round(len(rows) * cfg.size_factor)
        tiled = [rows[i] for i in rng.permutation(len(rows))] * (want // len(rows) + 1)
        plan += [(label, fst, source, qc) for source, qc in tiled[:want]]
    return plan


def make_image(label: str, fst: int, cfg: Embedded, rng: np.random.Generator, source: str = "") -> bytes:
    """The JPEG bytes of one image; unknown-FST rows get the skin of a random type."""
    pixel_fst = fst if fst in ITA_BANDS else int(rng.integers(1, 7))
    lo, hi = ITA_BANDS[pixel_fst]
    rgb = render(label, rng.uniform(lo, hi), cfg.image_size, rng, Difficulty.of(cfg))
    if source == "atlas":
        rgb = atlas_look(rgb, rng)
    return files.encode_jpeg(rgb, cfg.jpeg_quality)


def _url(label: str, source: str, k: int) -> tuple[str, str]:
    """A URL of the image's atlas in the real CSV's form, and its alphanumeric file name ("" when unknown)."""
    url = {"dermaamin": f"https://www.dermaamin.com/site/images/clinical-pic/{slug(label)}/{slug(label)}{k}.jpg",
           "atlas": f"http://atlasdermatologico.com.br/img?imageId={k}"}.get(source, "")  # fmt: skip
    return url, (re.sub(r"[^A-Za-z0-9]", "", url) + ".jpg" if url else "")


def _write_rows(plan: list[tuple], cfg: Embedded, seed: object, images: Path, desc: str) -> pd.DataFrame:
    """Render every planned (label, FST, source, qc) row in its own stream; the rows shuffled by one more."""
    streams = np.random.SeedSequence(seed).spawn(len(plan) + 1)
    rows = []
    for k, ((label, fst, source, qc), stream) in enumerate(tqdm(list(zip(plan, streams, strict=False)), desc=desc)):
        rng = np.random.default_rng(stream)
        data = make_image(label, fst, cfg, rng, source)
        md5 = hashlib.md5(data).hexdigest()
        files.write_bytes(paths.image_file(images, md5), data)
        nine, three = PARTITIONS.get(label) or label_partitions()[label]
        rows.append([md5, fst, _centaur(fst, rng), label, nine, three, qc, *_url(label, source, k)])
    frame = pd.DataFrame(rows, columns=COLUMNS)
    order = np.random.default_rng(streams[-1]).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def _study_qc(frame: pd.DataFrame, seed: int) -> pd.Series:
    """The seven's `qc`, drawn per (label, FST) from the real CSV's values in a stream of their own (no pixel moves)."""
    real = pd.DataFrame(real_metadata())
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    qc = pd.Series("", index=frame.index)
    for (label, fst), index in sorted(frame.groupby(["label", "fitzpatrick_scale"]).groups.items()):
        values = real.loc[(real["label"] == label) & (real["fitzpatrick_scale"] == str(fst)), "qc"].to_numpy()
        qc[index] = rng.choice(values, size=len(index)) if len(values) else ""
    return qc


def build(cfg: Embedded, out: Path) -> pd.DataFrame:
    """Write out/images/<md5>.jpg and out/fitzpatrick17k.csv; return the metadata."""
    images = paths.dataset_images(str(out))
    images.mkdir(parents=True, exist_ok=True)
    study = [(label, fst, "", "") for label, fst in row_plan(cfg)]
    frame = _write_rows(study, cfg, cfg.seed, images, "embedded (the seven)")
    if cfg.labels == "all":
        frame["qc"] = _study_qc(frame, cfg.seed)
        others = _write_rows(other_plan(cfg), cfg, [cfg.seed, 114], images, "embedded (107 other labels)")
        frame = pd.concat([frame, others], ignore_index=True)
    files.write_csv(paths.dataset_metadata(str(out)), frame)
    return frame


def main(params: Params) -> None:
    frame = build(params.embedded, paths.EMBEDDED)
    print(f"embedded: {len(frame)} images in {paths.EMBEDDED}")
