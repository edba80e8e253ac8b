"""Stages `train` and `dose`: train one classifier head on cached features and predict with it.

Head, optimiser, sampler and schedule follow docs/protocol.md (Groh et al.): Adam, StepLR(7, 0.1),
NLLLoss, a class-balanced WeightedRandomSampler drawing len(train) samples per epoch, with
the frozen fc6/fc7 dropout active. Unlike the reference script, the epoch is chosen on the
validation split (the test sets are only predicted, once, at the end), accuracy compares
like shapes, and the best epoch is tracked from the first.

The stage writes files only: the heads, every repeat's predictions and per-epoch history
(models/<run>/), the pooled metrics (reports/runs/<run>.json) and the mean learning curves
(reports/epochs/<run>.csv, a DVC plot). MLflow is filled from these files by the `track`
stage, so what it shows never depends on which stages DVC ran or restored from its cache.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dermsynth.analysis.metrics import fairness, run_metrics
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.paths import run_name
from dermsynth.core.study import DIRECTIONS
from dermsynth.model.fitting import best_epoch, mean_curve, predict, train_once
from dermsynth.model.trainset import (
    FeatureStore,
    load_run_data,
)


def main(params: Params, direction: str, condition: str, arm: str, dose: int | None = None) -> int:
    cfg = params.train
    name = run_name(direction, condition, arm, dose)
    feats = FeatureStore(paths.FEATURES)
    data = load_run_data(params, direction, condition, arm, dose, feats)
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    scored = splits[(splits["direction"] == direction) & splits["role"].isin(["val", "test"])]
    out = paths.run_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    repeats = []
    for r in tqdm(range(cfg.repeats), desc=f"train {name}", unit="repeat", disable=cfg.repeats < 2):
        model, history = train_once(data, cfg, params.features.precision, cfg.seed + r)
        predictions = predict(model, feats, scored, data.classes).assign(repeat=r)
        # the trained head and its input standardisation; fc7 is the backbone's and lives in build/features
        torch.save({k: v for k, v in model.state_dict().items() if not k.startswith("fc7.")}, out / f"head_r{r}.pt")
        repeats.append((predictions, history))
    predictions = pd.concat([p for p, _ in repeats], ignore_index=True)
    metrics = {**run_metrics(predictions, params.evaluate.z), **fairness(predictions)}
    files.write_csv(out / "predictions.csv", predictions)
    files.write_json(paths.RUN_METRICS / f"{name}.json", metrics)
    n_synthetic = int((~data.train["key"].isin(set(splits["md5hash"]))).sum())
    histories = [history for _, history in repeats]
    training = {"n_train": len(data.train), "n_synthetic": n_synthetic, "histories": histories}
    files.write_json(out / paths.TRAINING_NAME, training)
    files.write_csv(paths.EPOCHS / f"{name}.csv", mean_curve(histories))
    print(
        f"train {name}: n_train={len(data.train)} repeats={cfg.repeats} "
        f"best val acc {np.mean([best_epoch(h)['val_acc'] for _, h in repeats]):.3f} (mean); "
        + ", ".join(f"{g} {metrics[f'test/{g}/acc']:.3f}" for g in DIRECTIONS[direction].test_groups)
    )
    return 0
