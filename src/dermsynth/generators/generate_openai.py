"""Generator `openai`: the study's method through the OpenAI images API, glued to seeds and annotations.

Each seed is cropped square as annotated, scaled to the model's size, and sent with a mask
(alpha 0 in the annotated box: the lesion and surrounding skin) and the study's prompt, once
per candidate index. openai_backend does the guarded calls (cache, budget, retries, paste-back);
this module builds the requests and turns the outcomes into manifest rows and a request log.
The cache lives in the real repository (paths.tracking_root), outside every DVC output, so a
re-run, a `dvc exp run --queue` copy or a run after a kill never pays twice for an image.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.generators import annotations
from dermsynth.generators.openai_backend import (
    Budget,
    EditRequest,
    ImageCache,
    cache_key,
    dry_run,
    make_client,
    run_edits,
)


def requests_for(chosen: pd.DataFrame, params: Params) -> list[EditRequest]:
    cfg = params.generate
    side = annotations.square_size(cfg.openai.size, "generate.openai.size")
    requests = []
    for _, seed in chosen.iterrows():
        image, mask, box = annotations.edit_inputs(seed, side, paths.dataset_images(params.dataset.root))
        crop = int(seed["crop_size"])
        meta = {
            "seed_md5hash": seed["md5hash"],
            "label": seed["label"],
            "seed_group": seed["group"],
            "crop_box": f"{seed['crop_x0']} {seed['crop_y0']} {crop} {crop}",
            "mask_box": " ".join(map(str, box)),
        }
        requests += [
            EditRequest(
                prompt=seed["prompt"],
                image=image,
                mask=mask,
                candidate=k,
                model=cfg.openai.model,
                size=cfg.openai.size,
                quality=cfg.openai.quality,
                meta=meta,
            )
            for k in range(cfg.candidates)
        ]
    return requests


def candidates(chosen: pd.DataFrame, params: Params, plan_only: bool) -> tuple[list[dict], list[dict]]:
    """Manifest rows of the stored images, and one log row per request (status, cause, request id)."""
    cfg = params.generate.openai
    requests = requests_for(chosen, params)
    cache = ImageCache(paths.tracking_root() / cfg.cache)
    if plan_only:
        print(dry_run(requests, cache, cfg.max_usd))
        return [], []
    client = make_client(cfg.base_url, timeout=cfg.timeout)
    outcomes = run_edits(requests, client, cache, Budget(cfg.max_usd), workers=cfg.workers, timeout=cfg.timeout)
    log_rows, rows = [], []
    for req, out in zip(requests, outcomes, strict=True):
        key = cache_key(req)
        name = f"{req.meta['seed_md5hash']}_{req.candidate}.png"
        log_rows.append(
            {
                **req.meta,
                "candidate": req.candidate,
                "prompt": req.prompt,
                "status": out.status,
                "request_id": out.request_id or "",
                "attempts": out.attempts,
                "from_cache": out.from_cache,
                "key": key,
                "model": req.model,
                "detail": out.detail,
                "hint": out.hint,
            }
        )
        if out.status != "ok":
            continue
        stored = cache.get(key)
        if stored is None:
            raise DermsynthError(f"the cache lost the image of request {key} right after storing it")
        files.write_bytes(paths.GENERATED / paths.IMAGES_NAME / name, stored)
        rows.append(
            {
                "file": name,
                "seed_md5hash": req.meta["seed_md5hash"],
                "label": req.meta["label"],
                "seed_group": req.meta["seed_group"],
                "candidate": req.candidate,
                "generator": "openai",
                "model": req.model,
                "prompt": req.prompt,
                "annotation": chosen.set_index("md5hash").loc[req.meta["seed_md5hash"], "source"],
                "crop_box": req.meta["crop_box"],
                "mask_box": req.meta["mask_box"],
                "request_id": out.request_id or "",
                "key": key,
            }
        )
    print("generate (openai): " + ", ".join(f"{k}={v}" for k, v in Counter(o.status for o in outcomes).items()))
    return rows, log_rows
