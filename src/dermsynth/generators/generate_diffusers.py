"""Generator `diffusers`: the study's edit with a local inpainting pipeline (optional extra, no hub access).

The same inputs as the OpenAI backend (the annotated square crop, a mask over the lesion and
surrounding skin, the study's prompt, one call per candidate index) go to a diffusers
inpainting pipeline loaded from a folder written by `save_pretrained` (e.g. a copy of
stable-diffusion-2-inpainting), with `local_files_only` and HF_HUB_OFFLINE set: nothing is
downloaded, so a run is reproducible from the folder alone. The original pixels are pasted
back outside the mask, as for the OpenAI backend.

Results go to a content-addressed cache in the real repository keyed by everything that
changes the pixels (a fingerprint of the model folder's files, prompt, image, mask, size,
steps, guidance, precision, candidate seed), so a re-run or a run after a kill recomputes
nothing already made. Pipelines with a safety checker may black out an image they flag;
such candidates are recorded as `safety_blocked` in requests.csv and left out.
Replacing a model folder's files in place is seen by the cache, but not by DVC (the folder is a
parameter, not a dependency): run `dvc repro -f generate` then, or point at a new folder.
"""

from __future__ import annotations

import hashlib
import io as _io
import os
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from dermsynth.core import files, paths
from dermsynth.core.config import DiffusersInpaint, Params
from dermsynth.core.errors import DermsynthError
from dermsynth.generators import annotations
from dermsynth.generators.delivery import OK, SAFETY_BLOCKED
from dermsynth.generators.openai_images import ImageCache, edit_area, paste_outside_mask, to_png

DTYPES = ("float32", "bfloat16", "float16")
EXTRA_HINT = "install the optional extra: pip install -e '.[diffusers]'"


def model_folder(cfg: DiffusersInpaint) -> Path:
    """The pipeline folder, resolved against the repository; a clear error if it is not one."""
    if not cfg.model:
        raise DermsynthError("generate.diffusers.model is not set: give the folder of a local inpainting pipeline")
    folder = Path(cfg.model)
    folder = folder if folder.is_absolute() else paths.tracking_root() / folder
    if not (folder / "model_index.json").is_file():
        raise DermsynthError(
            f"generate.diffusers.model: {folder} is not a diffusers pipeline folder (no model_index.json); "
            "save one with `pipeline.save_pretrained(folder)` on a machine that has the weights"
        )
    return folder


def fingerprint(folder: Path) -> str:
    """sha256 over every file of the pipeline folder (relative name and content): the model's identity."""
    digest = hashlib.sha256(b"dermsynth-diffusers-model-v1")
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def candidate_seed(seed_md5: str, candidate: int, base: int) -> int:
    """The torch seed of one candidate: fixed per (seed image, candidate index), independent of the others."""
    digest = hashlib.sha256(f"{base}:{seed_md5}:{candidate}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def request_key(model_id: str, prompt: str, image: bytes, mask: bytes, cfg: DiffusersInpaint, seed: int) -> str:
    digest = hashlib.sha256(b"dermsynth-diffusers-v1")
    settings = f"{cfg.size}|{cfg.steps}|{cfg.guidance}|{cfg.precision}|{seed}"
    for part in (model_id.encode(), prompt.encode(), image, mask, settings.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def load_pipeline(folder: Path, cfg: DiffusersInpaint) -> Any:
    """AutoPipelineForInpainting from the folder only; errors name the folder and the fix."""
    if cfg.precision not in DTYPES:
        raise DermsynthError(f"generate.diffusers.precision must be one of {DTYPES}, not {cfg.precision!r}")
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub, even for a missing file
    try:
        import torch
        from diffusers import AutoPipelineForInpainting
    except ImportError as err:
        raise DermsynthError(f"generator diffusers needs diffusers and transformers: {EXTRA_HINT} ({err})") from err
    try:
        pipe = AutoPipelineForInpainting.from_pretrained(
            folder, local_files_only=True, dtype=getattr(torch, cfg.precision)
        )
    except (OSError, ValueError, KeyError) as err:
        raise DermsynthError(f"cannot load the inpainting pipeline in {folder}: {err}") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(cfg.device)


def inpaint(pipe: Any, prompt: str, image: bytes, mask: bytes, cfg: DiffusersInpaint, seed: int) -> tuple[bytes, bool]:
    """One edited candidate (PNG, original pixels outside the mask) and whether the safety checker flagged it."""
    import torch

    source = Image.open(_io.BytesIO(image)).convert("RGB")
    white_edits = Image.fromarray((edit_area(mask) * 255).astype("uint8"), "L")  # diffusers: white = repaint
    out = pipe(
        prompt=prompt,
        image=source,
        mask_image=white_edits,
        height=cfg.size,
        width=cfg.size,
        num_inference_steps=cfg.steps,
        guidance_scale=cfg.guidance,
        generator=torch.Generator(device="cpu").manual_seed(seed),
    )
    flagged = bool((getattr(out, "nsfw_content_detected", None) or [False])[0])
    return paste_outside_mask(image, to_png(out.images[0].convert("RGB")), mask), flagged


def candidates(chosen: pd.DataFrame, params: Params, plan_only: bool) -> tuple[list[dict], list[dict]]:
    """Manifest rows for every (seed, candidate); images from the cache when already made."""
    gen = params.generate
    cfg = gen.diffusers
    folder = model_folder(cfg)
    side = cfg.size
    images = paths.dataset_images(params.dataset.root)
    jobs = []
    for _, seed in chosen.iterrows():
        image, mask, box = annotations.edit_inputs(seed, side, images)
        jobs += [(seed, image, mask, box, k) for k in range(gen.candidates)]
    if plan_only:
        print(
            f"diffusers dry run: {len(jobs)} images from {len(chosen)} seeds with {folder} "
            f"({cfg.steps} steps, {cfg.size} px, {cfg.device}); no cost, nothing run"
        )
        return [], []
    model_id = fingerprint(folder)
    cache = ImageCache(paths.tracking_root() / cfg.cache)
    pipe = None
    rows, log = [], []
    with cache.lock():
        for seed, image, mask, box, k in tqdm(jobs, desc="generate (diffusers)", unit="image"):
            torch_seed = candidate_seed(seed["md5hash"], k, gen.seed)
            key = request_key(model_id, seed["prompt"], image, mask, cfg, torch_seed)
            png, status = cache.get(key), OK
            if cache.get_blocked(key) is not None:
                status = SAFETY_BLOCKED
            elif png is None:
                pipe = pipe or load_pipeline(folder, cfg)
                png, flagged = inpaint(pipe, seed["prompt"], image, mask, cfg, torch_seed)
                record = {"prompt": seed["prompt"], "model": str(folder), "seed": torch_seed}
                if flagged:
                    cache.put_blocked(key, record)
                    status = SAFETY_BLOCKED
                else:
                    cache.put(key, png, record)
            detail = "" if status == OK else "the pipeline's safety checker flagged the image"
            log.append(
                {"seed_md5hash": seed["md5hash"], "candidate": k, "status": status, "detail": detail, "key": key}
            )
            if status != OK:
                continue
            name = f"{seed['md5hash']}_{k}.png"
            files.write_bytes(paths.GENERATED / paths.IMAGES_NAME / name, png)
            crop = int(seed["crop_size"])
            rows.append(
                {
                    "file": name,
                    "seed_md5hash": seed["md5hash"],
                    "label": seed["label"],
                    "seed_group": seed["group"],
                    "candidate": k,
                    "generator": "diffusers",
                    "model": gen.model_name(),
                    "prompt": seed["prompt"],
                    "annotation": seed["source"],
                    "crop_box": f"{seed['crop_x0']} {seed['crop_y0']} {crop} {crop}",
                    "mask_box": " ".join(map(str, box)),
                    "torch_seed": torch_seed,
                    "key": key,
                }
            )
    blocked = sum(r["status"] == SAFETY_BLOCKED for r in log)
    print(f"generate (diffusers): {len(rows)} images, {blocked} blocked by the safety checker, model {model_id[:12]}")
    return rows, log
