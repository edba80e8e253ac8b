"""Stage `quality`: how good the synthetic candidates are, per generator, condition and FST group, before curation.

Later work found that generators render lighter skin better than darker skin and often miss the
skin tone they were asked for, so every score is broken down by the FST group of the seed:

- distribution distance: KID (analysis/quality.py) between the candidates of a (condition,
  group) cell and the real images of that condition and group, on backbone features. By
  default the study's frozen backbone (`features.backbone`: VGG16 fc6 or the Lite models' pooled
  features; Inception-v3 weights cannot be
  downloaded here). With `quality.backbone: inception` and a state_dict file in
  `quality.inception_weights`, torchvision's Inception-v3 pool features (2,048-d), as FID/KID
  use them;
- tone fidelity: median ITA of the candidate's skin outside the lesion (imaging/skin.py)
  against the ITA band of the FST group its prompt asked for; the share in band;
- diversity and copying: mean pairwise cosine distance of the features among a seed's
  candidates, and each candidate's distance to its own seed (a near-copy adds nothing).

Per candidate (build/quality/scores.csv, read by `curate`, which can reject near-copies with
`curate.min_seed_distance`, and shows the distance on the contact sheet) and per cell
(reports/quality/quality.{json,md}).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from dermsynth.analysis.quality import cosine_distance, diversity, kid, markdown, significant
from dermsynth.core import files, paths
from dermsynth.core.config import BACKBONES, Params
from dermsynth.core.study import GROUPS
from dermsynth.imaging.skin import group_ita_range, skin_ita
from dermsynth.model import embedding
from dermsynth.model.backbone import DTYPES, build_backbone, normalisation
from dermsynth.model.precision import resolve


def extractor(params: Params) -> tuple[torch.nn.Module, Callable, str]:
    """The feature network (ready for `embedding.batches`), its transform and a description of the features."""
    from torchvision import models
    from torchvision import transforms as T

    from dermsynth.model.backbone import IMAGENET_MEAN, IMAGENET_STD
    from dermsynth.model.preprocess import eval_transform

    cfg = params.quality
    if cfg.backbone == "inception":
        net = models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        net.load_state_dict(torch.load(cfg.inception_weights, map_location="cpu", weights_only=True))
        net.fc = torch.nn.Identity()
        transform = T.Compose([T.Resize((299, 299)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        net = embedding.prepare(net, torch.float32)
        return net, transform, f"Inception-v3 pool features (2048-d) from {cfg.inception_weights}"
    feats = params.features
    frozen = build_backbone(feats.backbone, feats.weights, feats.seed, feats.crop)
    precision = resolve(feats.precision, torch.device("cpu"))
    net = embedding.prepare(frozen.extractor, DTYPES[precision])
    layer = "fc6" if feats.backbone == "vgg16" else "pooled features"
    what = (f"{BACKBONES[feats.backbone]} {layer} ({frozen.dim}-d) of the study's frozen backbone "
            f"(weights {feats.weights}, {precision})")  # fmt: skip
    return net, eval_transform(feats.resize, feats.crop, normalisation(feats.backbone)), what


def candidate_scores(generated: pd.DataFrame, synth: np.ndarray, seed_feats: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per candidate: distance to its seed, its seed's candidates' diversity, ITA and whether it is in band."""
    rows = []
    for i, row in enumerate(generated.itertuples()):
        lo, hi = group_ita_range(GROUPS[row.seed_group])
        ita = skin_ita(files.load_array(paths.GENERATED / paths.IMAGES_NAME / row.file))
        distance = float(cosine_distance(synth[i : i + 1], seed_feats[row.seed_md5hash][None])[0, 0])
        rows.append({"file": row.file, "distance_to_seed": significant(distance), "ita": round(ita, 2),
                     "in_band": bool(lo <= ita <= hi)})  # fmt: skip
    scores = pd.DataFrame(rows)
    spread = {s: diversity(synth[(generated["seed_md5hash"] == s).to_numpy()]) for s in generated["seed_md5hash"]}
    return scores.assign(seed_diversity=[significant(spread[s]) for s in generated["seed_md5hash"]])


def cells(generated: pd.DataFrame, scores: pd.DataFrame, synth: np.ndarray, real: pd.DataFrame, real_feats: np.ndarray,
          params: Params) -> list[dict]:  # fmt: skip
    """Per (generator, condition, FST group): N, KID against the real images of that cell, tone, diversity, copying."""
    cfg = params.quality
    table = generated.assign(**scores.drop(columns="file"))
    out = []
    for (generator, label, group), part in table.groupby(["generator", "label", "seed_group"], sort=True):
        mask = ((real["label"] == label) & (real["group"] == group)).to_numpy()
        distance = kid(synth[part.index.to_numpy()], real_feats[mask], cfg.kid_subset, cfg.kid_subsets, cfg.seed)
        out.append(
            {
                "generator": generator, "condition": label, "group": group, "n_synthetic": len(part),
                "n_real": int(mask.sum()), **{k: significant(v) for k, v in distance.items()},
                "in_band": significant(part["in_band"].mean()),
                "seed_diversity": significant(part.drop_duplicates("seed_md5hash")["seed_diversity"].mean()),
                "distance_to_seed": significant(part["distance_to_seed"].mean()),
            }
        )  # fmt: skip
    return out


def main(params: Params) -> int:
    generated = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str}, keep_default_na=False)
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    images = paths.dataset_images(params.dataset.root)
    wanted = set(zip(generated["label"], generated["seed_group"], strict=True))
    real = splits.drop_duplicates("md5hash")
    real = real[[(lab, grp) in wanted for lab, grp in zip(real["label"], real["group"], strict=True)]]
    real = real.sort_values("md5hash").reset_index(drop=True)
    net, transform, what = extractor(params)
    candidates = [paths.GENERATED / paths.IMAGES_NAME / f for f in generated["file"]]
    reals = [paths.image_file(images, h) for h in real["md5hash"]]  # the seeds are among them
    feats = embedding.embed(net, embedding.Transformed(candidates + reals, transform), params.features.batch_size,
                            "quality/features")  # fmt: skip
    synth, real_feats = feats[: len(candidates)], feats[len(candidates) :]
    seed_feats = dict(zip(real["md5hash"], real_feats, strict=True))
    scores = candidate_scores(generated, synth, seed_feats)
    files.write_csv(paths.QUALITY / "scores.csv", scores)
    result = {"features": what, "kid_subsets": params.quality.kid_subsets,
              "cells": cells(generated, scores, synth, real, real_feats, params)}  # fmt: skip
    files.write_json(paths.QUALITY_REPORTS / "quality.json", result)
    files.write_text(paths.QUALITY_REPORTS / "quality.md", markdown(result))
    print(f"quality: {len(generated)} candidates, {len(real)} real images; {len(result['cells'])} cells "
          f"(reports/quality/quality.md); features: {what}")  # fmt: skip
    return 0
