"""Stage `curate`: keep k candidates per seed (4 of 8 in the study) by documented scores.

Scores per candidate (all recorded in build/curated/scores.csv):
- `ita`, `in_band` (measured by stage `quality`, with `distance_to_seed` and `seed_diversity`):
  median ITA of the skin pixels and whether it lies in the seed's FST group. A candidate
  outside the group it is meant to represent is ranked last.
- `sharpness`: variance of the Laplacian relative to the seed (capped at 1): resampling
  blurs, and the study's reviewers kept photorealistic images.
- `novelty`: mean absolute pixel difference to the seed, capped at 0.1 and scaled to 1:
  a near-copy of the seed adds nothing the seed does not already add.
- `change_in_mask`, `change_outside_mask` (mask-based generators): mean absolute change inside
  and outside the edit mask against the seed crop the editor saw.
- `nearest_test_phash`, `nearest_test_md5`: the smallest perceptual-hash (pHash, 64 bits)
  Hamming distance to any test image of any split. A Great Expectations rule rejects
  candidates within `curate.near_duplicate_bits` of a test image: training on them would leak
  that test image (reports/validation/near_duplicates.md lists them).
Ranking (`curate.mode: auto`): in_band first, then score = sharpness + novelty, ties by
candidate index; the top `keep` per seed are kept. In `human` mode a reviewer's decisions CSV
(`curate.decisions`, in git: file, decision accept/reject, note) decides instead, and the stage
refuses to run while any candidate lacks a decision, listing them and writing a template.
Both modes write reports/curation/contact_sheet.html (seed beside its candidates, with scores).
Before writing, the lineage suite of `validate` checks that no parent seed is a test image.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from dermsynth.checks.suites import ValidationFailed, check_synthetic, screen_near_duplicates
from dermsynth.core import files, paths
from dermsynth.core.config import Curate, Params
from dermsynth.core.errors import DermsynthError
from dermsynth.imaging import contact_sheet


def laplacian_variance(rgb: np.ndarray) -> float:
    gray = rgb.mean(axis=2)
    lap = -4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
    return float(lap.var())


def score_candidate(candidate: np.ndarray, seed: np.ndarray) -> dict:
    sharpness = min(laplacian_variance(candidate) / max(laplacian_variance(seed), 1e-12), 1.0)
    novelty = min(float(np.abs(candidate - seed).mean()) / 0.1, 1.0)
    return {
        "sharpness": round(sharpness, 4),
        "novelty": round(novelty, 4),
        "score": round(sharpness + novelty, 4),
    }


def same_size(seed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The seed resampled to a candidate's size (an API backend returns e.g. 1024 px for a 64 px seed)."""
    if seed.shape == shape:
        return seed
    image = Image.fromarray((seed * 255).round().astype(np.uint8)).resize((shape[1], shape[0]), Image.LANCZOS)
    return np.asarray(image, dtype=np.float64) / 255.0


def mask_change(candidate: np.ndarray, seed: np.ndarray, crop_box: str, mask_box: str) -> dict:
    """Mean absolute change inside and outside the edit mask, against the seed crop the editor saw.

    An editor should change the lesion area and leave the rest; a large change outside the mask
    means the paste-back failed or the mask was wrong. NaN for generators without a mask.
    """
    if not isinstance(mask_box, str) or not mask_box.strip():
        return {"change_in_mask": float("nan"), "change_outside_mask": float("nan")}
    x0, y0, width, height = (int(v) for v in crop_box.split())
    reference = same_size(seed[y0 : y0 + height, x0 : x0 + width], candidate.shape)
    inside = np.zeros(candidate.shape[:2], dtype=bool)
    mx0, my0, mx1, my1 = (int(v) for v in mask_box.split())
    inside[my0:my1, mx0:mx1] = True
    diff = np.abs(candidate - reference).mean(axis=2)
    return {
        "change_in_mask": round(float(diff[inside].mean()), 4),
        "change_outside_mask": round(float(diff[~inside].mean()), 4) if (~inside).any() else 0.0,
    }


def phash_bits(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return imagehash.phash(image).hash.flatten()


def test_hashes(splits: pd.DataFrame, images: Path) -> tuple[list[str], np.ndarray]:
    """pHash bits (N, 64) of every test image of every direction."""
    md5s = sorted(set(splits.loc[splits["role"] == "test", "md5hash"]))
    return md5s, np.array([phash_bits(paths.image_file(images, h)) for h in md5s]).reshape(len(md5s), 64)


def score_all(manifest: pd.DataFrame, splits: pd.DataFrame, params: Params) -> pd.DataFrame:
    images = paths.dataset_images(params.dataset.root)
    test_md5, test_bits = test_hashes(splits, images)
    seeds: dict[str, np.ndarray] = {}
    scores = []
    for row in manifest.itertuples():
        if row.seed_md5hash not in seeds:
            seeds[row.seed_md5hash] = files.load_array(paths.image_file(images, row.seed_md5hash))
        path = paths.GENERATED / paths.IMAGES_NAME / row.file
        candidate = files.load_array(path)
        score = score_candidate(candidate, same_size(seeds[row.seed_md5hash], candidate.shape))
        distances = (test_bits != phash_bits(path)).sum(axis=1) if len(test_md5) else np.array([64])
        nearest = int(distances.argmin())
        score["nearest_test_phash"] = int(distances[nearest])
        score["nearest_test_md5"] = test_md5[nearest] if len(test_md5) else ""
        score.update(
            mask_change(candidate, seeds[row.seed_md5hash], getattr(row, "crop_box", ""), getattr(row, "mask_box", ""))
        )
        scores.append(score)
    return pd.concat([manifest.reset_index(drop=True), pd.DataFrame(scores)], axis=1)


def near_copies(scored: pd.DataFrame, minimum: float) -> dict[str, str]:
    """Candidates closer to their seed than ``minimum`` (feature cosine distance, stage quality), with the reason."""
    if minimum <= 0:
        return {}
    close = scored[scored["distance_to_seed"] < minimum]
    return {f: f"rejected: near-copy of its seed (feature distance {d:.4f} < {minimum})"
            for f, d in zip(close["file"], close["distance_to_seed"], strict=True)}  # fmt: skip


def select(scored: pd.DataFrame, keep: int, rejected: set[str], copies: dict[str, str] | None = None) -> pd.DataFrame:
    """The top ``keep`` candidates of every seed, among those not rejected (test near-duplicates, seed near-copies)."""
    copies = copies or {}
    ranked = scored.assign(allowed=~scored["file"].isin(rejected | set(copies)))
    ranked = ranked.sort_values(
        ["seed_md5hash", "allowed", "in_band", "score", "candidate"], ascending=[True, False, False, False, True]
    )
    ranked["rank"] = ranked.groupby("seed_md5hash").cumcount()
    ranked["selected"] = ranked["allowed"] & (ranked["rank"] < keep)
    ranked["decision"] = np.where(ranked["selected"], "auto: kept (top-k)", "auto: not in top-k")
    ranked.loc[~ranked["allowed"], "decision"] = "rejected: near-duplicate of test image " + ranked["nearest_test_md5"]
    is_copy = ranked["file"].isin(set(copies)) & ~ranked["file"].isin(rejected)
    ranked.loc[is_copy, "decision"] = ranked.loc[is_copy, "file"].map(copies)
    return ranked.drop(columns=["allowed"]).sort_values(["seed_md5hash", "candidate"]).reset_index(drop=True)


def apply_decisions(ranked: pd.DataFrame, cfg: Curate) -> pd.DataFrame:
    """Human mode: the reviewer's accept/reject replaces the automatic choice (near-duplicates stay out)."""
    path = Path(cfg.decisions)
    decisions = (
        pd.read_csv(path, dtype=str, keep_default_na=False)
        if path.exists()
        else pd.DataFrame(columns=["file", "decision", "note"])
    )
    verdict = dict(zip(decisions["file"], decisions["decision"].str.strip().str.lower(), strict=True))
    choice = ranked["file"].map(verdict)
    reviewable = ~ranked["decision"].str.startswith("rejected")
    pending = reviewable & ~choice.isin(["accept", "reject"])
    if pending.any():
        template = ranked[["file", "seed_md5hash", "label", "score", "decision"]]
        template = template.rename(columns={"decision": "suggestion"}).assign(decision="", note="")
        files.write_csv(paths.CURATION_REPORTS / "decisions_template.csv", template)
        missing = ranked.loc[pending, "file"].tolist()
        raise CurationPending(
            f"{len(missing)} candidates have no decision in {path}: {missing[:10]}{' ...' if len(missing) > 10 else ''}"
            f". Review {paths.CURATION_REPORTS / 'contact_sheet.html'}, fill "
            f"{paths.CURATION_REPORTS / 'decisions_template.csv'} and save it as {path}."
        )
    reviewed = ranked.copy()
    reviewed["selected"] = reviewable & choice.eq("accept")
    reviewed.loc[reviewable, "decision"] = "reviewer: " + choice[reviewable]
    return reviewed


class CurationPending(DermsynthError):
    """Human mode with decisions missing: the CLI prints the files to review and fill, in one line."""


def shortfall(curated: pd.DataFrame, seeds: pd.DataFrame, conditions: list[str], keep: int) -> list[str]:
    """Seeds of the augmented conditions with fewer than ``keep`` images kept, one line each.

    A partial generation run (generate.allow_partial), near-duplicate rejections or a reviewer's
    rejections can leave a seed short; the arms and dose levels then train on fewer synthetic
    images than planned, so this is said here and again by `train`.
    """
    counts = curated.groupby("seed_md5hash").size()
    wanted = seeds[seeds["label"].isin(conditions)].drop_duplicates("md5hash")  # once, whatever the draws
    wanted = wanted.sort_values(["label", "group", "md5hash"])
    return [
        f"{row.md5hash} ({row.label}, {row.group}): {int(counts.get(row.md5hash, 0))} of {keep}"
        for row in wanted.itertuples()
        if counts.get(row.md5hash, 0) < keep
    ]


def write_outputs(scored: pd.DataFrame, curated: pd.DataFrame, params: Params) -> None:
    """build/curated from scratch: a hand run after a bigger one must not leave stale images behind."""
    shutil.rmtree(paths.CURATED, ignore_errors=True)
    out_images = paths.CURATED / paths.IMAGES_NAME
    out_images.mkdir(parents=True, exist_ok=True)
    for name in curated["file"]:
        shutil.copyfile(paths.GENERATED / paths.IMAGES_NAME / name, out_images / name)
    files.write_csv(paths.CURATED / "scores.csv", scored)
    files.write_csv(paths.CURATED / paths.MANIFEST_NAME, curated)


def main(params: Params) -> int:
    cfg = params.curate
    manifest = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    seeds = pd.read_csv(paths.SEEDS_TABLE, dtype=str, keep_default_na=False)
    quality = pd.read_csv(paths.QUALITY / "scores.csv")[
        ["file", "ita", "in_band", "distance_to_seed", "seed_diversity"]
    ]
    scored = score_all(manifest, splits, params).merge(quality, on="file", how="left", validate="one_to_one")
    rejected = screen_near_duplicates(scored, cfg.near_duplicate_bits, params.validate.max_rows_in_report)
    scored = select(scored, cfg.keep, rejected, near_copies(scored, cfg.min_seed_distance))
    sheet = contact_sheet.render(
        scored,
        paths.dataset_images(params.dataset.root),
        paths.GENERATED / paths.IMAGES_NAME,
        f"Synthetic candidates ({params.generate.generator})",
    )
    files.write_text(paths.CURATION_REPORTS / "contact_sheet.html", sheet)
    try:
        if cfg.mode == "human":
            scored = apply_decisions(scored, cfg)
        curated = scored[scored["selected"]].drop(columns=["selected"])
        check_synthetic(curated, splits, seeds, params)
    except ValidationFailed as err:  # a report of several lines; CurationPending reaches the CLI
        print(f"curate: FAILED\n{err}")
        return 1
    write_outputs(scored, curated, params)
    short = shortfall(curated, seeds, params.generate.conditions, cfg.keep)
    if short:
        print(f"curate: WARNING {len(short)} seeds have fewer than curate.keep={cfg.keep} images kept:")
        print("\n".join(f"  {line}" for line in short))
    print(
        f"curate ({cfg.mode}): kept {len(curated)} of {len(scored)} candidates; {len(rejected)} near-duplicates "
        f"of test images rejected; {int((~curated['in_band']).sum())} kept outside their FST band"
    )
    return 0
