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

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import RandomSampler, WeightedRandomSampler
from tqdm import tqdm

from dermsynth import io, paths
from dermsynth.backbone import Head
from dermsynth.config import Params, Train
from dermsynth.errors import DermsynthError
from dermsynth.metrics import fairness, run_metrics
from dermsynth.paths import run_name
from dermsynth.prepare import load_conditions
from dermsynth.study import DIRECTIONS, slug


class Features:
    """The cached activations, addressable by image key (md5hash or synthetic file name)."""

    def __init__(self, folder: Path):
        self.eval = np.load(folder / "eval.npy", mmap_mode="r")
        self.views = np.load(folder / "views.npy", mmap_mode="r")
        self.eval_row = {k: i for i, k in enumerate(pd.read_csv(folder / "eval_index.csv", dtype=str)["key"])}
        self.view_row = {k: i for i, k in enumerate(pd.read_csv(folder / "views_index.csv", dtype=str)["key"])}
        self.n_views = len(self.views) // max(len(self.view_row), 1)
        self.fc7 = torch.load(folder / "fc7.pt", weights_only=True)

    def train_views(self, keys: list[str]) -> torch.Tensor:
        """(N, views, 4096) float32 for training images."""
        rows = np.array([self.view_row[k] for k in keys])
        index = (rows[:, None] * self.n_views + np.arange(self.n_views)[None, :]).ravel()
        return torch.from_numpy(self.views[index].astype(np.float32)).view(len(keys), self.n_views, -1)

    def eval_features(self, keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(self.eval[np.array([self.eval_row[k] for k in keys], dtype=int)].astype(np.float32))


def label_of(condition: str, labels: list[str]) -> str:
    """The label whose slug is ``condition`` (train.conditions holds slugs), or a clear error."""
    for label in labels:
        if slug(label) == condition:
            return label
    raise DermsynthError(f"train.conditions: {condition!r} is not one of the study's conditions {labels}")


def training_set(
    splits: pd.DataFrame,
    curated: pd.DataFrame,
    direction: str,
    condition: str,
    arm: str,
    dose: int | None,
    keep: int,
) -> pd.DataFrame:
    """Keys and labels the run trains on: real training images, plus seeds and synthetic images by arm."""
    rows = splits[(splits["direction"] == direction)]
    parts = [rows.loc[rows["role"] == "train", ["md5hash", "label"]].rename(columns={"md5hash": "key"})]
    label = label_of(condition, sorted(set(splits["label"])))
    seeds = rows[(rows["role"] == "seed") & (rows["label"] == label)]
    if arm in ("seed", "synthetic_and_seed"):
        parts.append(seeds[["md5hash", "label"]].rename(columns={"md5hash": "key"}))
    if arm == "tone_control":
        parts.append(tone_control_images(rows, label))
    if arm == "synthetic_and_seed":
        synth = synthetic_images(curated, seeds, label, DIRECTIONS[direction].seed_group, keep, dose)
        parts.append(synth[["file", "label"]].rename(columns={"file": "key"}))
    return pd.concat(parts, ignore_index=True)


def synthetic_images(
    curated: pd.DataFrame, seeds: pd.DataFrame, label: str, group: str, keep: int, dose: int | None
) -> pd.DataFrame:
    """The curated images of ``label`` made from seeds of ``group``: all of them, or the first ``dose``.

    The plan is ``keep`` images per seed. A shorter set (a partial generation run, rejections) is
    used with a warning naming the short seeds; a dose larger than the set is an error that says
    what is missing.
    """
    synth = curated[(curated["label"] == label) & (curated["seed_group"] == group)]
    synth = synth.sort_values(["rank", "seed_md5hash"])  # round-robin over seeds: a dose spreads over all of them
    counts = synth.groupby("seed_md5hash").size()
    short = [f"{md5} {int(counts.get(md5, 0))} of {keep}" for md5 in seeds["md5hash"] if counts.get(md5, 0) < keep]
    planned = f"{len(synth)} curated images of {label!r} ({group}) of the {keep * len(seeds)} planned"
    detail = f"{planned} (curate.keep {keep} x {len(seeds)} seeds); short seeds: {', '.join(short)}"
    if dose is not None and dose > len(synth):
        raise DermsynthError(
            f"dose {dose} needs {dose} synthetic images: {detail}. Generate the missing images, or lower dose.levels"
        )
    if short:
        print(f"train: WARNING {detail}; training on what there is")
    return synth if dose is None else synth.head(dose)


def tone_control_images(rows: pd.DataFrame, label: str) -> pd.DataFrame:
    """As many seeds as ``label`` has, taken from the other conditions' seeds (same group), relabelled ``label``.

    Round-robin over the other conditions by seed index, so the control mixes them evenly; deterministic.
    """
    seeds = rows[rows["role"] == "seed"]
    wanted = int((seeds["label"] == label).sum())
    others = seeds[seeds["label"] != label].sort_values(["label", "md5hash"])
    others = others.assign(order=others.groupby("label").cumcount())
    if len(others) < wanted or wanted == 0:
        raise DermsynthError(
            f"tone_control for {label!r} needs {wanted or 'its'} seeds of other conditions, found {len(others)}: "
            "it needs at least two seeded conditions (generate.conditions, or split.seed_conditions: all)"
        )
    chosen = others.sort_values(["order", "label", "md5hash"]).head(wanted)
    return pd.DataFrame({"key": chosen["md5hash"].to_numpy(), "label": label})


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
        if (val_acc, -val_loss) > best_key:
            best_key, best = (val_acc, -val_loss), copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    return model, history


def predict(model: Head, feats: Features, rows: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    model.eval()
    with torch.inference_mode():
        logp = model(feats.eval_features(list(rows["md5hash"])))
    out = rows[["md5hash", "role", "group", "fitzpatrick_scale", "label"]].rename(columns={"role": "split"}).copy()
    out["pred"] = [classes[i] for i in logp.argmax(1).tolist()]
    out["prob_pred"] = logp.max(1).values.exp().numpy().round(5)
    out["correct"] = out["pred"] == out["label"]
    return out.reset_index(drop=True)


@dataclass
class RunData:
    """What one configuration trains and validates on; the test sets are not in it."""

    classes: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    x_views: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    fc7: dict


def load_run_data(
    params: Params, direction: str, condition: str, arm: str, dose: int | None, feats: Features
) -> RunData:
    """Training and validation tensors of one configuration (tuning uses this too: no test row is read)."""
    classes = load_conditions()
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    splits = splits[splits["role"] != "test"]
    curated = pd.read_csv(paths.CURATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})
    train = training_set(splits, curated, direction, condition, arm, dose, params.curate.keep)
    val = splits[(splits["direction"] == direction) & (splits["role"] == "val")]
    to_index = {c: i for i, c in enumerate(classes)}
    return RunData(
        classes=classes,
        train=train,
        val=val,
        x_views=feats.train_views(list(train["key"])),
        y=torch.tensor([to_index[c] for c in train["label"]]),
        x_val=feats.eval_features(list(val["md5hash"])),
        y_val=torch.tensor([to_index[c] for c in val["label"]]),
        fc7=feats.fc7,
    )


def train_once(data: RunData, cfg: Train, precision: str, seed: int) -> tuple[Head, list[dict]]:
    """One training of the head with training seed ``seed`` (initialisation, sampler, views, dropout)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    fc7 = nn.Linear(4096, 4096)
    fc7.load_state_dict(data.fc7)
    model = Head(fc7, cfg.hidden, len(data.classes), cfg.dropout, precision)
    if cfg.standardize:
        model.standardize(data.x_views.flatten(0, 1))
    return fit(model, data.x_views, data.y, data.x_val, data.y_val, cfg, gen)


def mean_curve(histories: list[list[dict]]) -> pd.DataFrame:
    """Per epoch, the mean over repeats of the training loss and the validation loss and accuracy."""
    frame = pd.concat([pd.DataFrame(h) for h in histories], ignore_index=True)
    return frame.groupby("epoch", as_index=False).mean().round(6)


def best_epoch(history: list[dict]) -> dict:
    return max(history, key=lambda h: (h["val_acc"], -h["val_loss"]))


def main(params: Params, direction: str, condition: str, arm: str, dose: int | None = None) -> int:
    cfg = params.train
    name = run_name(direction, condition, arm, dose)
    feats = Features(paths.FEATURES)
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
    io.write_csv(out / "predictions.csv", predictions)
    io.write_json(paths.RUN_METRICS / f"{name}.json", metrics)
    n_synthetic = int((~data.train["key"].isin(set(splits["md5hash"]))).sum())
    histories = [history for _, history in repeats]
    training = {"n_train": len(data.train), "n_synthetic": n_synthetic, "histories": histories}
    io.write_json(out / paths.TRAINING_NAME, training)
    io.write_csv(paths.EPOCHS / f"{name}.csv", mean_curve(histories))
    print(
        f"train {name}: n_train={len(data.train)} repeats={cfg.repeats} "
        f"best val acc {np.mean([best_epoch(h)['val_acc'] for _, h in repeats]):.3f} (mean); "
        + ", ".join(f"{g} {metrics[f'test/{g}/acc']:.3f}" for g in DIRECTIONS[direction].test_groups)
    )
    return 0
