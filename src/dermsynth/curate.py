"""Stage `curate`: keep k candidates per seed (4 of 8 in the study) by documented scores.

Scores per candidate (all recorded in build/curated/scores.csv):
- `ita`, `in_band`: median ITA of the skin pixels and whether it lies in the seed's FST
  group. A candidate outside the group it is meant to represent is ranked last.
- `sharpness`: variance of the Laplacian relative to the seed (capped at 1): resampling
  blurs, and the study's reviewers kept photorealistic images.
- `novelty`: mean absolute pixel difference to the seed, capped at 0.1 and scaled to 1:
  a near-copy of the seed adds nothing the seed does not already add.
Ranking: in_band first, then score = sharpness + novelty, ties by candidate index.
Before writing, the lineage suite of `validate` checks that no parent seed is a test image.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from dermsynth import io, paths
from dermsynth.config import Params
from dermsynth.skin import group_ita_range, skin_ita
from dermsynth.study import GROUPS
from dermsynth.validate import ValidationFailed, check_synthetic


def laplacian_variance(rgb: np.ndarray) -> float:
    gray = rgb.mean(axis=2)
    lap = -4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
    return float(lap.var())


def score_candidate(candidate: np.ndarray, seed: np.ndarray, group: str) -> dict:
    ita = skin_ita(candidate)
    lo, hi = group_ita_range(GROUPS[group])
    sharpness = min(laplacian_variance(candidate) / max(laplacian_variance(seed), 1e-12), 1.0)
    novelty = min(float(np.abs(candidate - seed).mean()) / 0.1, 1.0)
    return {
        "ita": round(ita, 2),
        "in_band": bool(lo <= ita <= hi),
        "sharpness": round(sharpness, 4),
        "novelty": round(novelty, 4),
        "score": round(sharpness + novelty, 4),
    }


def score_all(manifest: pd.DataFrame, params: Params) -> pd.DataFrame:
    images = paths.dataset_images(params.dataset.root)
    seeds: dict[str, np.ndarray] = {}
    scores = []
    for row in manifest.itertuples():
        if row.seed_md5hash not in seeds:
            seeds[row.seed_md5hash] = io.load_array(paths.image_file(images, row.seed_md5hash))
        candidate = io.load_array(paths.GENERATED / paths.IMAGES_NAME / row.file)
        scores.append(score_candidate(candidate, seeds[row.seed_md5hash], row.seed_group))
    return pd.concat([manifest.reset_index(drop=True), pd.DataFrame(scores)], axis=1)


def select(scored: pd.DataFrame, keep: int) -> pd.DataFrame:
    """Mark the top ``keep`` candidates of every seed as selected."""
    ranked = scored.sort_values(["seed_md5hash", "in_band", "score", "candidate"], ascending=[True, False, False, True])
    ranked["rank"] = ranked.groupby("seed_md5hash").cumcount()
    ranked["selected"] = ranked["rank"] < keep
    return ranked.sort_values(["seed_md5hash", "candidate"]).reset_index(drop=True)


def main(params: Params) -> int:
    manifest = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str, keep_default_na=False)
    scored = select(score_all(manifest, params), params.curate.keep)
    curated = scored[scored["selected"]].drop(columns=["selected"])
    try:
        check_synthetic(curated, splits, seeds, params)
    except ValidationFailed as err:
        print(f"curate: FAILED\n{err}")
        return 1
    out_images = paths.CURATED / paths.IMAGES_NAME
    out_images.mkdir(parents=True, exist_ok=True)
    for name in curated["file"]:
        shutil.copyfile(paths.GENERATED / paths.IMAGES_NAME / name, out_images / name)
    io.write_csv(paths.CURATED / "scores.csv", scored)
    io.write_csv(paths.CURATED / paths.MANIFEST_NAME, curated)
    print(
        f"curate: kept {len(curated)} of {len(scored)} candidates "
        f"({int((~curated['in_band']).sum())} kept outside their FST band)"
    )
    return 0
