"""The training loop of one head (Groh et al.'s protocol, docs/protocol.md), prediction, best-epoch rule.

Adam, StepLR, NLLLoss and a class-balanced WeightedRandomSampler, with the frozen fc6/fc7
dropout active; the epoch is chosen on the validation split, never on test.
"""

from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn
from torch.utils.data import RandomSampler, WeightedRandomSampler

from dermsynth.core.config import Train
from dermsynth.model.backbone import FC6_DIM, Head
from dermsynth.model.trainset import (
    FeatureStore,
    RunData,
)


def fit(
    model: Head,
    x_views: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    cfg: Train,
    gen: torch.Generator,
) -> tuple[Head, list[dict]]:
    """Train for cfg.epochs; return the head of the best validation epoch and the history."""
    if cfg.sampler:
        counts = torch.bincount(y, minlength=int(y.max()) + 1).float()
        sampler = WeightedRandomSampler((1.0 / counts)[y].double(), num_samples=len(y), replacement=True, generator=gen)
    else:
        sampler = RandomSampler(range(len(y)), generator=gen)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=cfg.step_size, gamma=cfg.gamma)
    loss_fn = nn.NLLLoss()
    best, best_key, history = copy.deepcopy(model.state_dict()), (-1.0, 0.0), []
    model.eval()
    h_val = model.frozen_features(x_val)  # deterministic in eval mode: computed once, not every epoch
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.tensor(list(sampler))
        view = torch.randint(x_views.shape[1], (len(order),), generator=gen)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx, v = order[start : start + cfg.batch_size], view[start : start + cfg.batch_size]
            loss = loss_fn(model(x_views[idx, v]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        schedule.step()
        model.eval()
        with torch.inference_mode():
            out = model.head(h_val)
            val_loss, val_acc = float(loss_fn(out, y_val)), float((out.argmax(1) == y_val).float().mean())
        history.append({"epoch": epoch, "train_loss": total / len(order), "val_loss": val_loss, "val_acc": val_acc})
        if epoch_rank(val_acc, val_loss) > best_key:
            best_key, best = epoch_rank(val_acc, val_loss), copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    return model, history


def predict(model: Head, feats: FeatureStore, rows: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    model.eval()
    with torch.inference_mode():
        logp = model(feats.eval_features(list(rows["md5hash"])))
    out = rows[["md5hash", "role", "group", "fitzpatrick_scale", "label"]].rename(columns={"role": "split"}).copy()
    out["pred"] = [classes[i] for i in logp.argmax(1).tolist()]
    out["prob_pred"] = logp.max(1).values.exp().numpy().round(5)
    out["correct"] = out["pred"] == out["label"]
    return out.reset_index(drop=True)


def train_once(data: RunData, cfg: Train, precision: str, seed: int) -> tuple[Head, list[dict]]:
    """One training of the head with training seed ``seed`` (initialisation, sampler, views, dropout)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    fc7 = nn.Linear(FC6_DIM, FC6_DIM)  # the backbone's frozen fc7, loaded from build/features
    fc7.load_state_dict(data.fc7)
    model = Head(fc7, cfg.hidden, len(data.classes), cfg.dropout, precision)
    if cfg.standardize:
        model.standardize(data.x_views.flatten(0, 1))
    return fit(model, data.x_views, data.y, data.x_val, data.y_val, cfg, gen)


def mean_curve(histories: list[list[dict]]) -> pd.DataFrame:
    """Per epoch, the mean over repeats of the training loss and the validation loss and accuracy."""
    frame = pd.concat([pd.DataFrame(h) for h in histories], ignore_index=True)
    return frame.groupby("epoch", as_index=False).mean().round(6)


def epoch_rank(val_acc: float, val_loss: float) -> tuple[float, float]:
    """The one rule for the best epoch: highest validation accuracy, then lowest validation loss."""
    return (val_acc, -val_loss)


def best_epoch(history: list[dict]) -> dict:
    """The history entry of the epoch whose head `fit` kept."""
    return max(history, key=lambda h: epoch_rank(h["val_acc"], h["val_loss"]))
