"""Stages `fitz_only`, `train` and `dose`: train one classifier head on cached features and predict with it.

Head, optimiser, sampler and schedule follow docs/protocol.md (Groh et al.): Adam, StepLR(7, 0.1),
NLLLoss, a class-balanced WeightedRandomSampler drawing len(train) samples per epoch, with
the frozen fc6/fc7 dropout active. Unlike the reference script, the epoch is chosen on the
validation split (the test sets are only predicted, once, at the end), accuracy compares
like shapes, and the best epoch is tracked from the first.

The stage writes files only: the heads, every repeat's predictions and per-epoch history
(models/<run>/) and the mean learning curves (reports/epochs/<run>.csv, a DVC plot). Metrics
and intervals are `evaluate`'s (so that its parameters never retrain anything), and MLflow is
filled from the files by `track`, so what it shows never depends on which stages DVC ran or
restored from its cache. `fitz_only` trains once per direction: its training set is the same
for every condition (core/paths.py, `trained_as`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.paths import full_dose, trained_as
from dermsynth.core.study import DIRECTIONS, training_seed
from dermsynth.model.fitting import best_epoch, mean_curve, predict, train_repeats
from dermsynth.model.trainset import (
    FeatureStore,
    load_run_data,
)


def check_request(params: Params, condition: str | None, arm: str, dose: int | None) -> None:
    """Refuse a training that the grid never asks for, or that would overwrite a shared one."""
    if arm != "fitz_only" and condition is None:
        raise DermsynthError(f"train: arm {arm} needs --condition (only fitz_only trains once per direction)")
    if dose is not None and not 0 < dose < full_dose(params):
        raise DermsynthError(
            f"train: --dose {dose} must be between 1 and {full_dose(params) - 1}; the whole set "
            f"({full_dose(params)}) is the synthetic_and_seed arm"
        )


def group_accuracies(predictions: pd.DataFrame, direction: str) -> str:
    """Accuracy on each test group, all conditions, mean over repeats: the line the stage prints."""
    test = predictions[predictions["split"] == "test"]
    groups = DIRECTIONS[direction].test_groups
    return ", ".join(f"{g} {test.loc[test['group'] == g, 'correct'].mean():.3f}" for g in groups)


def draws_trained(params: Params, arm: str) -> list[int]:
    """The draws of the seeds a configuration trains on: each draw for a seed arm, draw 0 alone for fitz_only.

    fitz_only never sees a seed, and every draw is scored on the same test images (the test
    sets leave out the seeds of all draws), so its trainings are every draw's reference: it
    trains repeats x draws times in draw 0 (`repeats_of`), one training per seed-arm training.
    """
    return [0] if arm == "fitz_only" else list(range(params.split.seed_draws))


def repeats_of(params: Params, arm: str) -> int:
    """Trainings per draw: train.repeats, or repeats x draws for fitz_only (see `draws_trained`)."""
    return params.train.repeats * (params.split.seed_draws if arm == "fitz_only" else 1)


def train_draw(
    params: Params, feats: FeatureStore, splits: pd.DataFrame, request: tuple, draw: int, out: Path
) -> tuple[pd.DataFrame, dict]:
    """Every repeat of one draw: heads saved, predictions (columns draw, repeat) and the draw's training record.

    The scored rows (validation and test) are the same for every draw.
    """
    direction, condition, arm, dose, name = request
    scored = splits[(splits["direction"] == direction) & splits["role"].isin(["val", "test"])].drop_duplicates()
    cfg = params.train
    data = load_run_data(params, direction, condition, arm, dose, feats, draw)
    seeds = [training_seed(cfg.seed, cfg.repeats, draw, r) for r in range(repeats_of(params, arm))]
    label = name if params.split.seed_draws == 1 or arm == "fitz_only" else f"{name} draw {draw}"
    frames, histories = [], []
    for r, (model, history) in enumerate(train_repeats(data, cfg, data.precision, seeds, label)):
        frames.append(predict(model, feats, scored, data.classes).assign(draw=draw, repeat=r))
        # the trained head and its input standardisation; fc7 is the backbone's and lives in build/features
        head = {k: v for k, v in model.state_dict().items() if not k.startswith("fc7.")}
        torch.save(head, out / paths.head_name(draw, r))
        histories.append(history)
    n_synthetic = int((~data.train["key"].isin(set(splits["md5hash"]))).sum())
    return pd.concat(frames, ignore_index=True), {"draw": draw, "n_train": len(data.train),
                                                  "n_synthetic": n_synthetic, "histories": histories}  # fmt: skip


def main(params: Params, direction: str, condition: str | None, arm: str, dose: int | None = None) -> int:
    check_request(params, condition, arm, dose)
    name = trained_as(params, direction, condition or "", arm, dose)
    feats = FeatureStore(paths.FEATURES)
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    out = paths.run_dir(name)
    shutil.rmtree(out, ignore_errors=True)  # no head of an earlier, larger grid of draws or repeats stays behind
    out.mkdir(parents=True)
    request = (direction, condition, arm, dose, name)
    runs = [train_draw(params, feats, splits, request, d, out) for d in draws_trained(params, arm)]
    predictions = pd.concat([p for p, _ in runs], ignore_index=True)
    files.write_csv(out / "predictions.csv", predictions)
    first = runs[0][1]
    training = {k: first[k] for k in ("n_train", "n_synthetic", "histories")} | {"draws": [r for _, r in runs]}
    files.write_json(out / paths.TRAINING_NAME, training)
    histories = [h for _, record in runs for h in record["histories"]]
    files.write_csv(paths.EPOCHS / f"{name}.csv", mean_curve(histories))
    print(
        f"train {name}: n_train={first['n_train']} draws={len(runs)} repeats={repeats_of(params, arm)} "
        f"best val acc {np.mean([best_epoch(h)['val_acc'] for h in histories]):.3f} (mean); "
        f"test accuracy {group_accuracies(predictions, direction)}"
    )
    return 0
