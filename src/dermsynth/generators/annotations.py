"""Seed annotations: where the lesion is and how to describe it, one row per seed, versioned in git.

The study crops each seed square around the lesion, masks the lesion and surrounding skin for
the editor, and prompts "An image of [condition] on the [body part] of a [skin type] [noun]."
Those facts are a person's judgement about each seed, so they live in a CSV that
`dermsynth seeds init` fills with defaults (centred square crop, a central mask box, a generic
body part) for a person to refine; rows already present are never overwritten. A seed without
a row gets the defaults at generation time, and the manifest says so.
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import pandas as pd
from PIL import Image

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import SKIN_WORDS
from dermsynth.generators.openai_images import box_mask

PROMPT_TEMPLATE = "An image of {condition} on the {body_part} of a {skin} {noun}."
COLUMNS = ["md5hash", "label", "group", "crop_x0", "crop_y0", "crop_size", "mask_box", "body_part", "noun", "note"]
MASK_SHARE = 0.6  # default mask: the central 60% of the crop, "the lesion and surrounding skin"


class AnnotationError(DermsynthError, ValueError):
    """An annotation row is malformed (bad crop or mask box, empty description)."""


def default_row(seed: pd.Series, width: int, height: int) -> dict:
    """Centred square crop of the largest side that fits, central mask box, generic description."""
    side = min(width, height)
    margin = round(side * (1 - MASK_SHARE) / 2)
    return {
        "md5hash": seed["md5hash"],
        "label": seed["label"],
        "group": seed["group"],
        "crop_x0": (width - side) // 2,
        "crop_y0": (height - side) // 2,
        "crop_size": side,
        "mask_box": f"{margin} {margin} {side - margin} {side - margin}",
        "body_part": "skin",
        "noun": "person",
        "note": "default: refine crop, mask and description",
    }


def read(path: Path) -> pd.DataFrame:
    if not Path(path).exists():
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise AnnotationError(f"{path}: missing columns {missing}")
    return frame[COLUMNS]


def init(seeds: pd.DataFrame, images: Path, path: Path) -> tuple[pd.DataFrame, int]:
    """Add default rows for seeds not yet annotated; keep every existing row. Returns (table, rows added)."""
    existing = read(path)
    known = set(existing["md5hash"])
    added = []
    for _, seed in seeds[~seeds["md5hash"].isin(known)].drop_duplicates("md5hash").iterrows():
        width, height = files.load_rgb(paths.image_file(images, seed["md5hash"])).size
        added.append(default_row(seed, width, height))
    table = pd.concat([existing, pd.DataFrame(added, columns=COLUMNS)], ignore_index=True)
    files.write_csv(path, table)
    return table, len(added)


def parse_box(text: str, where: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(v) for v in text.split())
    except ValueError as err:
        raise AnnotationError(f"{where}: mask_box {text!r} is not four integers 'x0 y0 x1 y1'") from err
    if not (x0 < x1 and y0 < y1):
        raise AnnotationError(f"{where}: mask_box {text!r} is empty")
    return x0, y0, x1, y1


def check(row: pd.Series, width: int, height: int) -> None:
    """Raise AnnotationError naming the seed when its crop or mask falls outside the image or is empty."""
    where = f"seed {row['md5hash']}"
    x0, y0, side = int(row["crop_x0"]), int(row["crop_y0"]), int(row["crop_size"])
    if side <= 0 or x0 < 0 or y0 < 0 or x0 + side > width or y0 + side > height:
        raise AnnotationError(f"{where}: crop ({x0}, {y0}, size {side}) is outside the {width}x{height} image")
    mx0, my0, mx1, my1 = parse_box(row["mask_box"], where)
    if mx0 < 0 or my0 < 0 or mx1 > side or my1 > side:
        raise AnnotationError(f"{where}: mask_box {row['mask_box']!r} is outside the {side}-px crop")
    if not row["body_part"].strip() or not row["noun"].strip():
        raise AnnotationError(f"{where}: body_part and noun must not be empty")


def for_seeds(seeds: pd.DataFrame, images: Path, path: Path) -> pd.DataFrame:
    """One checked annotation per seed: the file's row, or the defaults (column `source` says which)."""
    table = read(path).set_index("md5hash")
    rows = []
    for _, seed in seeds.iterrows():
        width, height = files.load_rgb(paths.image_file(images, seed["md5hash"])).size
        if seed["md5hash"] in table.index:
            row = pd.Series({"md5hash": seed["md5hash"], **table.loc[seed["md5hash"]].to_dict(), "source": "file"})
        else:
            row = pd.Series({**default_row(seed, width, height), "source": "default"})
        check(row, width, height)
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def prompt(annotation: pd.Series) -> str:
    """The study's prompt for one seed; the skin type words follow the seed's FST group."""
    return PROMPT_TEMPLATE.format(
        condition=annotation["label"],
        body_part=annotation["body_part"],
        skin=SKIN_WORDS[annotation["group"]],
        noun=annotation["noun"],
    )


def square_size(size: str, where: str) -> int:
    """The side of a square size such as "1024x1024" (image APIs take sizes as text)."""
    width, _, height = size.partition("x")
    if not (width.isdigit() and width == height):
        raise DermsynthError(f"{where}: {size!r} is not a square size like 1024x1024")
    return int(width)


def edit_inputs(seed: pd.Series, side: int, images: Path) -> tuple[bytes, bytes, tuple[int, int, int, int]]:
    """What an image editor gets for one annotated seed: the square crop scaled to ``side`` (PNG),
    its mask (RGBA, alpha 0 = area to edit, the OpenAI convention) and the mask box in that frame."""
    image = files.load_rgb(paths.image_file(images, seed["md5hash"]))
    x0, y0, crop = int(seed["crop_x0"]), int(seed["crop_y0"]), int(seed["crop_size"])
    image = image.crop((x0, y0, x0 + crop, y0 + crop)).resize((side, side), Image.LANCZOS)
    buf = _io.BytesIO()
    image.save(buf, format="PNG")
    scale = side / crop
    x0m, y0m, x1m, y1m = (round(v * scale) for v in parse_box(seed["mask_box"], f"seed {seed['md5hash']}"))
    box = (x0m, y0m, x1m, y1m)
    return buf.getvalue(), box_mask(side, box), box


def main(params: Params, verb: str) -> int:
    """`dermsynth seeds init`: default rows for the drawn seeds, existing rows kept."""
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str, keep_default_na=False)
    path = Path(params.generate.annotations)
    table, added = init(seeds, paths.dataset_images(params.dataset.root), path)
    print(
        f"seeds {verb}: {path} has {len(table)} rows ({added} added with defaults); refine crop_x0/crop_y0/"
        "crop_size (square crop around the lesion), mask_box (x0 y0 x1 y1 inside the crop: the area to edit), "
        "body_part and noun, then commit it"
    )
    return 0
