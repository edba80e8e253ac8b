"""Stage `generate`: synthetic candidates from the seeds, with an offline generator that needs no weights.

`tone_transfer` (the default) re-tones the skin of each seed toward a target ITA drawn inside
the FST group that the seed represents (the group opposite to training, whose images the arms
add), restricted to skin pixels so the lesion keeps its own contrast, then takes a random
square crop and flip. It stands in for the study's text-to-image editing: it makes new
views of the same lesions on new shades of the target skin, not new lesions. `reinhard`
(generators/reinhard.py) is the classical colour-transfer baseline; `oracle` and `null`
(generators/controls.py) are controls with a known answer; `openai` and `diffusers`
are the image-editing backends. Every candidate is written with its lineage (seed md5,
generator, parameters).
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dermsynth.core import files, paths
from dermsynth.core.config import Generate, Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import GROUPS, load_conditions
from dermsynth.generators import annotations, delivery, reinhard
from dermsynth.generators.controls import CONTROLS, MAKERS
from dermsynth.generators.crops import crop_and_flip
from dermsynth.imaging.skin import group_ita_range, lab_to_rgb, rgb_to_lab, skin_mask

MANIFEST_COLUMNS = [
    "file",
    "seed_md5hash",
    "label",
    "seed_group",
    "candidate",
    "generator",
    "model",
    "prompt",
    "annotation",
    "seed_ita",
    "target_ita",
    "strength",
    "crop_box",
    "flip",
]


def candidate_rng(cfg: Generate, seed_md5: str, index: int) -> np.random.Generator:
    """A stream per (seed, candidate): a candidate does not change when others are added."""
    digest = hashlib.sha256(f"{cfg.seed}:{seed_md5}:{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def shift_tone(rgb: np.ndarray, target_ita: float, strength: float) -> tuple[np.ndarray, float]:
    """Move the skin's ITA ``strength`` of the way to ``target_ita``; lesion pixels move 70% as far."""
    lab = rgb_to_lab(rgb)
    mask = skin_mask(lab)
    skin = np.median(lab[mask], axis=0) if mask.any() else np.median(lab.reshape(-1, 3), axis=0)
    seed_ita = float(np.degrees(np.arctan2(skin[0] - 50.0, max(skin[2], 1e-3))))
    new_ita = seed_ita + strength * (target_ita - seed_ita)
    delta_l = 50.0 + max(skin[2], 1e-3) * np.tan(np.radians(new_ita)) - skin[0]
    weight = np.where(mask, 1.0, 0.7)
    lab[..., 0] += delta_l * weight
    return lab_to_rgb(lab), seed_ita


def tone_transfer(seed_rgb: np.ndarray, group: str, cfg: Generate, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One candidate image (uint8) and the parameters that made it."""
    lo, hi = group_ita_range(GROUPS[group])
    target = float(rng.uniform(lo, hi))
    strength = float(rng.uniform(*cfg.strength))
    toned, seed_ita = shift_tone(seed_rgb, target, strength)
    out, box, flip = crop_and_flip(toned, float(rng.uniform(*cfg.crop)), rng)
    return out, {
        "seed_ita": round(seed_ita, 2),
        "target_ita": round(target, 2),
        "strength": round(strength, 3),
        "crop_box": " ".join(map(str, box)),
        "flip": flip,
    }


OFFLINE = ("tone_transfer", "reinhard", *CONTROLS)  # weight-free generators, run here (controls: known answers)
BACKENDS = (*OFFLINE, "openai", "diffusers")


def seeds_to_use(seeds: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The seeds of the augmented conditions, each with its annotation (file row or defaults)."""
    cfg = params.generate
    unknown = sorted(set(cfg.conditions) - set(load_conditions()))
    if unknown:
        raise DermsynthError(f"generate.conditions: {unknown} are not among the study's conditions {load_conditions()}")
    # a seed drawn in several draws (split.seed_draws) is one image: its candidates are made once
    chosen = seeds[seeds["label"].isin(cfg.conditions)].drop_duplicates("md5hash").reset_index(drop=True)
    images = paths.dataset_images(params.dataset.root)
    notes = annotations.for_seeds(chosen, images, Path(cfg.annotations))
    return notes.assign(prompt=[annotations.prompt(row) for _, row in notes.iterrows()])


def offline(chosen: pd.DataFrame, params: Params) -> tuple[list[dict], list[dict]]:
    """Candidates from a weight-free generator (no prompt is used; the study's prompt is recorded), and their log."""
    cfg = params.generate
    if cfg.generator == "reinhard":
        make = reinhard.maker(chosen, params.dataset.root)
    elif cfg.generator in CONTROLS:
        make = MAKERS[cfg.generator](chosen, params)
    else:
        make = lambda rgb, group, cfg, rng, _seed: tone_transfer(rgb, group, cfg, rng)  # noqa: E731
    images = paths.dataset_images(params.dataset.root)
    rows, log = [], []
    for seed in tqdm(chosen.itertuples(), total=len(chosen), desc="generate", unit="seed"):
        seed_rgb = files.load_array(paths.image_file(images, seed.md5hash))
        for k in range(cfg.candidates):
            pixels, info = make(seed_rgb, seed.group, cfg, candidate_rng(cfg, seed.md5hash, k), seed.md5hash)
            name = f"{seed.md5hash}_{k}.jpg"
            files.write_bytes(paths.GENERATED / paths.IMAGES_NAME / name, files.encode_jpeg(pixels, cfg.jpeg_quality))
            log.append({"seed_md5hash": seed.md5hash, "candidate": k, "status": delivery.OK, "detail": ""})
            rows.append(
                {
                    "file": name,
                    "seed_md5hash": seed.md5hash,
                    "label": seed.label,
                    "seed_group": seed.group,
                    "candidate": k,
                    "generator": cfg.generator,
                    "model": "",
                    "prompt": seed.prompt,
                    "annotation": seed.source,
                    **info,
                }
            )
    return rows, log


@dataclass(frozen=True)
class Run:
    """What a generation run planned and made: the manifest of stored images and one log row per planned image."""

    planned: int
    manifest: pd.DataFrame
    log: pd.DataFrame


def draw_plan(seeds: pd.DataFrame, params: Params) -> list[str]:
    """Per draw of the seeds: its seeds, those new to it (not in an earlier draw) and what their images cost.

    Images are made per seed image and cached, so a draw pays only for seeds no earlier draw
    had; the price is the output images' (generate.openai), offline generators are free.
    """
    cfg = params.generate
    each = 0.0
    if cfg.generator == "openai":
        from dermsynth.generators.openai_budget import price

        each = price(cfg.openai.model, cfg.openai.quality, cfg.openai.size)
    augmented = seeds[seeds["label"].isin(cfg.conditions)]
    seen: set[str] = set()
    lines = []
    for draw, block in augmented.groupby("draw" if "draw" in augmented else np.zeros(len(augmented)), sort=True):
        new = set(block["md5hash"]) - seen
        seen |= new
        images = len(new) * cfg.candidates
        cost = f", ${images * each:.2f}" if cfg.generator == "openai" else ""
        lines.append(f"draw {int(draw)}: {len(block)} seeds, {len(new)} new: {images} images{cost}")
    return lines


def generate(seeds: pd.DataFrame, params: Params, dry_run: bool = False) -> Run:
    cfg = params.generate
    if cfg.generator not in BACKENDS:
        raise DermsynthError(f"generate.generator: unknown {cfg.generator!r}; available: {list(BACKENDS)}")
    chosen = seeds_to_use(seeds, params)
    if dry_run:
        print("\n".join(["seed draws (split.seed_draws):", *(f"  {line}" for line in draw_plan(seeds, params))]))
    if cfg.generator in ("openai", "diffusers"):  # imported on demand: each has its own dependencies
        backend = importlib.import_module(f"dermsynth.generators.generate_{cfg.generator}")
        rows, log = backend.candidates(chosen, params, dry_run)
    else:
        rows, log = offline(chosen, params)
    frame = pd.DataFrame(rows, columns=None if rows else MANIFEST_COLUMNS)
    ordered = [c for c in MANIFEST_COLUMNS if c in frame.columns]
    manifest = frame[ordered + [c for c in frame.columns if c not in ordered]]
    log_frame = pd.DataFrame(log, columns=None if log else ["seed_md5hash", "candidate", "status", "detail"])
    return Run(len(chosen) * cfg.candidates, manifest, log_frame)


def clear_outputs() -> None:
    """Start from an empty build/generated, as `dvc repro` does, so a hand run leaves no stale image behind.

    The content caches (.cache/...) live elsewhere and are untouched: nothing is paid or made twice.
    """
    shutil.rmtree(paths.GENERATED, ignore_errors=True)


def main(params: Params, dry_run: bool = False) -> None:
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype={"md5hash": str})
    if not dry_run:
        clear_outputs()
    run = generate(seeds, params, dry_run)
    if dry_run:
        return
    log_path = paths.GENERATED / paths.REQUESTS_NAME
    files.write_csv(log_path, run.log)
    print(delivery.check(run.planned, run.log, params.generate.allow_partial, log_path))
    files.write_csv(paths.GENERATED / paths.MANIFEST_NAME, run.manifest)
    print(f"generate: {len(run.manifest)} candidates from {run.manifest['seed_md5hash'].nunique()} seeds")
