"""`dermsynth cache import`: refill the generators' content caches from a pulled build/generated.

(`dermsynth cache forget-refusals` deletes the remembered refusals, which no run retries otherwise.)

Paid (or slow) images live in a content-addressed cache outside DVC (`.cache/openai-images`,
`.cache/diffusers-images`) so that a re-run, a queued experiment or a run after a kill never
makes an image twice. A teammate who clones the repository and runs `dvc pull` receives
build/generated (every stored image, with its request key in manifest.csv and requests.csv)
but not that cache; without it, any change that re-runs `generate` (another candidate count, a
new seed) would pay again for every image already made. This command files each image and
each refusal of build/generated back under its key. It calls no API and never replaces a valid
entry, so running it twice, or on the machine that made the images, changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.core import paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.generators.delivery import OK, REFUSALS
from dermsynth.generators.openai_images import ImageCache


def cache_folder(params: Params, generator: str) -> Path | None:
    """The content cache of ``generator``, or None for generators that need none (tone_transfer)."""
    caches = {"openai": params.generate.openai.cache, "diffusers": params.generate.diffusers.cache}
    return paths.tracking_root() / caches[generator] if generator in caches else None


def read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DermsynthError(f"{path} is missing: run `dvc pull` (or `dvc repro generate`) first")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def import_images(manifest: pd.DataFrame, images: Path, cache: ImageCache, source: Path) -> tuple[int, int]:
    """(imported, already cached) over the manifest's rows; a row without a key or file is an error."""
    added = present = 0
    for row in manifest.itertuples():
        if not row.key:
            raise DermsynthError(f"{source}: row {row.file!r} has no request key; cannot file it in the cache")
        if cache.get(row.key) is not None:
            present += 1
            continue
        png = images / row.file
        if not png.exists():
            raise DermsynthError(f"{png}: listed in the manifest but missing (is `dvc pull` complete?)")
        record = {
            "status": OK,
            "model": row.model,
            "prompt": row.prompt,
            "candidate": int(row.candidate),
            "request_id": getattr(row, "request_id", ""),
            "imported_from": str(source),
            "meta": {"seed_md5hash": row.seed_md5hash, "label": row.label, "seed_group": row.seed_group},
        }
        cache.put(row.key, png.read_bytes(), record)
        added += 1
    return added, present


def import_refusals(log: pd.DataFrame, cache: ImageCache, source: Path) -> int:
    """Refusals are remembered too: a re-run must not pay again to be refused again."""
    added = 0
    for row in log[log["status"].isin(REFUSALS) & log["key"].ne("")].itertuples():
        if cache.get_blocked(row.key) is None:
            cache.put_blocked(row.key, {"status": row.status, "detail": row.detail, "imported_from": str(source)})
            added += 1
    return added


def import_generated(params: Params, folder: Path = paths.GENERATED) -> str:
    manifest = read_table(folder / paths.MANIFEST_NAME)
    log = read_table(folder / paths.REQUESTS_NAME)
    generators = sorted(set(manifest.get("generator", pd.Series(dtype=str))))
    lines = []
    for generator in generators:
        target = cache_folder(params, generator)
        if target is None:
            lines.append(f"cache import: {generator} keeps no content cache; nothing to import")
            continue
        cache = ImageCache(target)
        with cache.lock():
            rows = manifest[manifest["generator"] == generator]
            added, present = import_images(rows, folder / paths.IMAGES_NAME, cache, folder)
            refused = import_refusals(log, cache, folder) if "key" in log.columns else 0
        lines.append(
            f"cache import ({generator}): {added} images filed in {target}, {present} already there, "
            f"{refused} refusals remembered"
        )
    return "\n".join(lines) or f"cache import: {folder} holds no images"


def forget_refusals(params: Params) -> str:
    """Delete the remembered refusals of every generator's cache, so that the next `generate` asks again."""
    lines = []
    for generator in ("openai", "diffusers"):
        folder = cache_folder(params, generator)
        if folder is None or not folder.is_dir():
            continue
        cache = ImageCache(folder)
        with cache.lock():
            forgotten = cache.forget_refusals()
        lines.append(f"cache forget-refusals ({generator}): {forgotten} refusals forgotten in {folder}")
    return "\n".join(lines) or "cache forget-refusals: no generator cache exists yet; nothing to forget"


def main(params: Params, verb: str) -> int:
    if verb == "import":
        print(import_generated(params))
    elif verb == "forget-refusals":
        print(forget_refusals(params))
    return 0
