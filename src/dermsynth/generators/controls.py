"""Control generators with a known answer: `oracle` (what a perfect generator gives) and `null` (nothing).

A study of synthetic images needs to show what it would find if the answer were known:

- `oracle` draws **new lesions from the embedded simulator itself** (imaging/lesions.py), of the
  seed's condition on skin of the seed's Fitzpatrick type: exactly the distribution the test
  images of that group come from. A pipeline that cannot recover a gain from these images
  cannot recover one from any generator. The real dataset has no generating process to draw
  from, so `oracle` is refused there.
- `null` keeps the seed's skin tone (the median CIELAB colour of its skin pixels) and nothing
  else: plain skin with the embedded images' nuisances (texture, lighting, exposure, noise) and
  no lesion. Labelled as the seed's condition, these images carry no information about it; a
  gain over `seed` from them is what the pipeline would report for nothing. It works on any
  dataset. (`tone_control`, an arm, measures what skin tone alone explains with real images.)

Both draw one stream per (seed, candidate) like every offline generator, and record the skin
tone they used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth.core import paths
from dermsynth.core.config import Generate, Params
from dermsynth.core.errors import DermsynthError
from dermsynth.imaging.lesions import Difficulty, plain_skin, render
from dermsynth.imaging.skin import ITA_BANDS, ita_degrees, rgb_to_lab, skin_mask

CONTROLS = ("oracle", "null")


def is_embedded(params: Params) -> bool:
    return Path(params.dataset.root).resolve() == paths.EMBEDDED.resolve()


def seed_skin(rgb: np.ndarray) -> np.ndarray:
    """The median CIELAB colour of a seed's skin pixels (all pixels if none is classed as skin)."""
    lab = rgb_to_lab(rgb)  # float sRGB in [0, 1], as files.load_array gives it
    mask = skin_mask(lab)
    return np.median(lab[mask] if mask.any() else lab.reshape(-1, 3), axis=0)


def oracle_maker(chosen: pd.DataFrame, params: Params) -> Callable:
    """Candidates drawn from the simulator: the seed's condition on a new skin of the seed's FST."""
    if not is_embedded(params):
        raise DermsynthError(
            f"generate.generator: oracle draws new lesions from the embedded simulator, so it exists only for "
            f"dataset.root {paths.EMBEDDED} (not {params.dataset.root}): real images have no process to draw from"
        )
    table = pd.read_csv(paths.SEEDS_TABLE, dtype={"md5hash": str}).drop_duplicates("md5hash")  # one row per image
    fst = table.set_index("md5hash")["fitzpatrick_scale"]
    seeds = {row.md5hash: (row.label, int(fst[row.md5hash])) for row in chosen.itertuples()}
    difficulty = Difficulty.of(params.embedded)  # the process the seed's test group was drawn from

    def make(seed_rgb: np.ndarray, group: str, cfg: Generate, rng: np.random.Generator, seed_md5: str) -> tuple:
        label, fst = seeds[seed_md5]
        ita = float(rng.uniform(*ITA_BANDS[fst]))
        info = {"target_ita": round(ita, 2), "strength": 1.0, "crop_box": "", "flip": False}
        return render(label, ita, seed_rgb.shape[0], rng, difficulty), info

    return make


def null_maker(chosen: pd.DataFrame, params: Params) -> Callable:
    """Candidates of plain skin in the seed's tone: no lesion, so no information about the label."""

    def make(seed_rgb: np.ndarray, group: str, cfg: Generate, rng: np.random.Generator, seed_md5: str) -> tuple:
        skin = seed_skin(seed_rgb)
        ita = round(float(ita_degrees(skin[None])[0]), 2)
        info = {"seed_ita": ita, "target_ita": ita, "strength": 0.0, "crop_box": "", "flip": False}
        return plain_skin(skin, seed_rgb.shape[0], rng), info

    return make


MAKERS: dict[str, Callable[[pd.DataFrame, Params], Callable]] = {"oracle": oracle_maker, "null": null_maker}
