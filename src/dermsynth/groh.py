"""Stage `groh`: step one of the paper, Groh et al.'s 114-label study under their seven holdout schemes.

The paper chose its seven conditions after reproducing Groh et al.'s analysis of all 114
labels (docs/groh.md). This stage runs that analysis with the study's own backbone and head
protocol (`features` and `train`, in Groh's batches of `groh.batch_size`): the frozen backbone
once over every image of known skin type (`groh.views` augmented views for training, the test
transform for scoring), then, per scheme (cohort/groh.py), `groh.repeats` heads over the labels
both sides share, validated on a per-label share of the training side. Every test image's top-1
and top-k outcome per repeat goes to build/groh/predictions.csv, each label's accuracy per scheme
to reports/groh/per_label.csv (what the `selection` stage reads). The Groh-style tables with
intervals over repeats and images are the `report` stage's (views/groh_report.py), so that a new
interval level (`evaluate.z`) retrains nothing.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import torch

from dermsynth.analysis.groh_results import per_label
from dermsynth.cohort import groh
from dermsynth.cohort.selection import drop_missing_images, image_names, read_metadata
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.model import embedding
from dermsynth.model.backbone import DTYPES, build_backbone
from dermsynth.model.embedding import describe, extract, pick_device
from dermsynth.model.fitting import train_repeats
from dermsynth.model.precision import resolve
from dermsynth.model.trainset import FeatureStore, RunData

FEATURES = paths.GROH / "features"
PREDICTIONS = paths.GROH / "predictions.csv"
SCHEMES = paths.GROH / "schemes.json"  # each scheme's sizes, and the schemes this dataset cannot form


def dataset_rows(params: Params) -> pd.DataFrame:
    """Every row of known skin type, with its image present (`dataset.missing_images: drop`) or required."""
    root = params.dataset.root
    rows = groh.known_skin_type(read_metadata(paths.dataset_metadata(root)))
    if params.dataset.missing_images == "drop":
        rows, missing = drop_missing_images(rows, image_names(paths.dataset_images(root)))
        print(f"groh: {missing['missing_images_dropped']} rows have no image file and are left out")
    return rows.reset_index(drop=True)


def cache_features(params: Params, rows: pd.DataFrame, device: str | None = None) -> FeatureStore:
    """The frozen backbone's features of every image (test transform) and `groh.views` augmented views of each.

    The same layout as build/features, so the study's FeatureStore and head training read them.
    """
    cfg = params.features
    torch.set_num_threads(max(1, os.cpu_count() or 2))
    frozen = build_backbone(cfg.backbone, cfg.weights, cfg.seed, cfg.crop)
    chosen = pick_device(device)
    precision = resolve(cfg.precision, chosen)
    model = embedding.prepare(frozen.extractor, DTYPES[precision], chosen)
    keys = sorted(set(rows["md5hash"]))
    images = paths.dataset_images(params.dataset.root)
    items = [(paths.image_file(images, k), -1) for k in keys]
    FEATURES.mkdir(parents=True, exist_ok=True)
    extract(model, items, cfg, FEATURES / "eval.npy", "groh/features", frozen.dim)
    views = [(path, v) for path, _ in items for v in range(params.groh.views)]
    extract(model, views, cfg, FEATURES / "views.npy", f"groh/{params.groh.views} views", frozen.dim)
    if frozen.tail is not None:  # VGG16's fc7, applied after the cache
        torch.save(frozen.tail.state_dict(), FEATURES / "fc7.pt")
    else:
        (FEATURES / "fc7.pt").unlink(missing_ok=True)
    for name in ("eval_index.csv", "views_index.csv"):
        files.write_csv(FEATURES / name, pd.DataFrame({"key": keys}))
    files.write_json(FEATURES / "info.json", {"backbone": cfg.backbone, "weights": cfg.weights, "precision": precision,
                                              "views": params.groh.views, "dim": frozen.dim, "device": describe(chosen),
                                              "input_dropout": frozen.input_dropout})  # fmt: skip
    return FeatureStore(FEATURES)


def run_data(split: groh.SchemeSplit, feats: FeatureStore, params: Params) -> RunData:
    """A scheme's training and validation tensors over its shared labels; its test side is not in them."""
    val = groh.validation_mask(split.train, params.groh.val_fraction, params.groh.seed)
    fit, check = split.train[~val], split.train[val]
    if check.empty:  # every label has a single training image (a tiny dataset): the epoch is picked on training
        check = fit
    index = {label: i for i, label in enumerate(split.labels)}
    return RunData(
        classes=list(split.labels),
        train=pd.DataFrame({"key": fit["md5hash"].to_numpy(), "label": fit["label"].to_numpy()}),
        val=check,
        x_views=feats.train_views(list(fit["md5hash"])),
        y=torch.tensor([index[label] for label in fit["label"]], dtype=torch.long),
        x_val=feats.eval_features(list(check["md5hash"])),
        y_val=torch.tensor([index[label] for label in check["label"]], dtype=torch.long),
        fc7=feats.fc7,
        input_dropout=feats.input_dropout,
        precision=feats.precision,
    )


def score(model: torch.nn.Module, split: groh.SchemeSplit, feats: FeatureStore, k: int) -> pd.DataFrame:
    """One trained head's top-1 prediction and top-k outcome on every test image of its scheme."""
    model.eval()
    with torch.inference_mode():
        probabilities = model(feats.eval_features(list(split.test["md5hash"]))).exp().numpy()
    truth = np.array([split.labels.index(label) for label in split.test["label"]])
    out = split.test[["md5hash", "label", "fst", "source"]].copy()
    out["pred"] = [split.labels[i] for i in probabilities.argmax(1)]
    out["correct"] = out["pred"] == out["label"]
    out["top_k"] = groh.top_k_correct(probabilities, truth, k)
    return out


def run_scheme(split: groh.SchemeSplit, feats: FeatureStore, params: Params) -> tuple[pd.DataFrame, dict]:
    """Train a scheme's repeats together and score each on the scheme's test side."""
    cfg, scheme = params.groh, split.scheme
    data = run_data(split, feats, params)
    seeds = [params.train.seed + r for r in range(cfg.repeats)]
    protocol = dataclasses.replace(params.train, batch_size=cfg.batch_size)  # Groh's batch, the study's head
    trained = train_repeats(data, protocol, data.precision, seeds, f"groh {scheme}")
    frames = [score(model, split, feats, cfg.top_k).assign(scheme=scheme, repeat=r)
              for r, (model, _) in enumerate(trained)]  # fmt: skip
    predictions = pd.concat(frames, ignore_index=True)
    record = {"scheme": scheme, "labels": len(split.labels), "n_fit": len(data.train), "n_val": len(data.val),
              "n_test": len(split.test), "accuracy": round(float(predictions["correct"].mean()), 4)}  # fmt: skip
    sizes = f"{record['n_fit']} fit / {record['n_val']} val / {record['n_test']} test images"
    print(f"groh {scheme}: {record['labels']} labels, {sizes}, accuracy {record['accuracy']:.3f} (mean of repeats)")
    return predictions, record


def main(params: Params, device: str | None = None) -> None:
    rows = dataset_rows(params)
    print(f"groh: {len(rows)} images of known skin type, {rows['label'].nunique()} labels")
    feats = cache_features(params, rows, device)
    runs, skipped = [], {}
    for scheme in params.groh.schemes:
        try:
            split = groh.scheme_split(rows, scheme, params.groh.test_fraction, params.groh.seed)
        except groh.SchemeError as err:  # e.g. no qc or no source on this dataset: said, and in the report
            skipped[scheme] = str(err)
            print(f"groh {scheme}: not formed on this dataset: {err}")
            continue
        runs.append(run_scheme(split, feats, params))
    if not runs:
        raise DermsynthError(f"groh: none of the schemes {params.groh.schemes} can be formed: {skipped}")
    predictions = pd.concat([p for p, _ in runs], ignore_index=True)
    columns = ["scheme", "repeat", "md5hash", "label", "fst", "source", "pred", "correct", "top_k"]
    files.write_csv(PREDICTIONS, predictions[columns])
    files.write_json(SCHEMES, {"schemes": [r for _, r in runs], "skipped": skipped})
    files.write_csv(paths.GROH_REPORTS / "per_label.csv", per_label(predictions))
