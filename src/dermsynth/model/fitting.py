"""The training loop of the heads (Groh et al.'s protocol, docs/protocol.md), prediction, best-epoch rule.

Adam, StepLR, NLLLoss and a class-balanced WeightedRandomSampler, with the frozen fc6/fc7
dropout active; the epoch is chosen on the validation split, never on test. The repeats of a
configuration train together (`Stacked`): their batches share one pass through the frozen fc7,
which is most of the work, while each keeps its own initialisation, sampler, views and dropout.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import sys
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import RandomSampler, WeightedRandomSampler
from tqdm import tqdm

from dermsynth.core.config import Train
from dermsynth.core.study import prob_column
from dermsynth.model.backbone import FC6_DIM, Head, mixed_product, standardisation
from dermsynth.model.trainset import (
    FeatureStore,
    RunData,
)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> None:
    """Let glibc reuse freed blocks instead of returning them to the OS after every step.

    A training step allocates and frees tens of MB (fc7's activations, the bfloat16 copy of
    the head's weights and its gradient). By default glibc serves such blocks with fresh
    mmap pages and trims the heap after each free, so every step pays page faults: about a
    third of the head's time on a 2-core machine. Other C libraries are left as they are.
    """
    name = ctypes.util.find_library("c") if sys.platform == "linux" else None
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's maximum on 64-bit systems
        libc.mallopt(M_TRIM_THRESHOLD, 2**30)
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt): nothing to tune
        return


@dataclass
class Repeat:
    """One repeat's own randomness: its sampler and view stream (``gen``) and its dropout stream (``noise``).

    Both follow the repeat's training seed alone, so a repeat's result does not depend on how
    many repeats train beside it.
    """

    model: Head
    gen: torch.Generator
    noise: torch.Generator


def frozen_parts(data: RunData, cfg: Train) -> tuple[nn.Linear | None, torch.Tensor, torch.Tensor]:
    """The backbone's fc7 (VGG16; None for the Lite models) and the input standardisation, shared by all repeats.

    The standardisation is fitted on the run's training views.
    """
    fc7 = None
    if data.fc7 is not None:
        fc7 = nn.Linear(FC6_DIM, FC6_DIM, device="meta").to_empty(device="cpu")  # no random init: weights are loaded
        fc7.load_state_dict(data.fc7)
    if cfg.standardize:
        return fc7, *standardisation(data.x_views.flatten(0, 1))
    dim = data.x_views.shape[-1]
    return fc7, torch.zeros(dim), torch.ones(dim)


def new_repeat(data: RunData, cfg: Train, precision: str, seed: int, frozen: tuple) -> Repeat:
    """A freshly initialised head for training seed ``seed`` (initialisation, then the repeat's own streams)."""
    fc7, mean, std = frozen
    torch.manual_seed(seed)
    model = Head(fc7, cfg.hidden, len(data.classes), cfg.dropout, precision, mean.shape[0], data.input_dropout)
    model.mean.copy_(mean)
    model.std.copy_(std)
    return Repeat(model, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 2**31))


def epoch_draws(repeats: list[Repeat], y: torch.Tensor, n_views: int, cfg: Train) -> tuple[torch.Tensor, torch.Tensor]:
    """Each repeat's sample order (class-balanced with replacement, or a permutation) and view per sample: (R, N)."""
    orders, views = [], []
    weights = (1.0 / torch.bincount(y, minlength=int(y.max()) + 1).float())[y].double()  # the same for every repeat
    for rep in repeats:
        if cfg.sampler:
            sampler = WeightedRandomSampler(weights, num_samples=len(y), replacement=True, generator=rep.gen)
        else:
            sampler = RandomSampler(range(len(y)), generator=rep.gen)
        order = torch.tensor(list(sampler))
        orders.append(order)
        views.append(torch.randint(n_views, (len(order),), generator=rep.gen))
    return torch.stack(orders), torch.stack(views)


BITS = torch.arange(8, dtype=torch.uint8)
LITTLE_ENDIAN = sys.byteorder == "little"


def random_bits(repeats: list[Repeat], n: int) -> torch.Tensor:
    """(R, n) random bits as uint8 0/1: the low 32 bits of each repeat's int64 draws, bit k of word w at 32w + k.

    The bits are unpacked from bytes (one byte per bit) rather than from int64 words (eight):
    the unpacking costs more than drawing, and the order, hence every stream, is the same.
    """
    words = torch.stack([torch.empty((n + 31) // 32, dtype=torch.int64).random_(generator=r.noise) for r in repeats])
    if LITTLE_ENDIAN:  # byte j of a little-endian int32 holds its bits 8j .. 8j + 7
        octets = words.to(torch.int32).view(torch.uint8)
        return ((octets.unsqueeze(-1) >> BITS) & 1).flatten(1)[:, :n]
    return ((words.unsqueeze(-1) >> torch.arange(32)) & 1).flatten(1)[:, :n].to(torch.uint8)


def masks(repeats: list[Repeat], shape: tuple[int, ...], p: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverted-dropout masks (R, *shape): kept with probability 1 - p and scaled by 1 / (1 - p), per repeat's stream.

    The fc6/fc7 dropouts (p = 0.5) take one random bit per unit, 32 from each draw: per-element
    Bernoulli draws cost more than the fc7 GEMM on CPUs where PyTorch has no vectorised sampler.
    Their masks (0 or 2) are exact in bfloat16, so they can scale bfloat16 activations.
    """
    n = math.prod(shape)
    if p == 0.5:
        keep = random_bits(repeats, n)
    else:
        keep = torch.stack([torch.rand(n, generator=r.noise) for r in repeats]) >= p
    return keep.view(len(repeats), *shape).to(dtype).div_(1 - p)


class Stacked(nn.Module):
    """The R trainable heads as stacked tensors, so that one step trains all of them.

    fc7 is frozen and shared, so the R batches pass through it as one (R x batch)-row GEMM, the
    cost of every step; the small trainable layers run as batched matmuls. Each repeat's loss
    reaches only its own slice, and Adam is elementwise, so this is R independent trainings.
    """

    def __init__(self, heads: list[Head]):
        super().__init__()
        self.w1 = nn.Parameter(torch.stack([h.head[0].weight.detach().t() for h in heads]))  # (R, 4096, hidden)
        self.b1 = nn.Parameter(torch.stack([h.head[0].bias.detach() for h in heads]).unsqueeze(1))
        self.w2 = nn.Parameter(torch.stack([h.head[3].weight.detach().t() for h in heads]))  # (R, hidden, classes)
        self.b2 = nn.Parameter(torch.stack([h.head[3].bias.detach() for h in heads]).unsqueeze(1))
        self.reference = [heads[0]]  # the shared frozen part (a list: not a sub-module, so not optimised)
        self.dropout = heads[0].head[2].p
        self.dtype = heads[0].dtype  # fc7's precision, and that of the head's first product (MixedLinear)

    def frozen_train(self, fc6: torch.Tensor, repeats: list[Repeat]) -> torch.Tensor:
        """(R, B, 4096) standardised fc6 in fc7's dtype -> dropout, fc7 (one GEMM), ReLU, dropout; per-repeat masks.

        The masks are 0 or 2, so scaling in bfloat16 gives the bits that scaling in float32 and
        rounding would: the activations stay in fc7's dtype from the cache to the head. Without
        fc7 (the Lite models) only the input dropout applies, at the backbone's own rate.
        """
        ref = self.reference[0]
        with torch.no_grad():
            if ref.fc7 is None:
                return fc6 * masks(repeats, fc6.shape[1:], ref.input_dropout, self.dtype)
            x = fc6 * masks(repeats, fc6.shape[1:], 0.5, self.dtype)
            x = torch.relu(ref.fc7(x.flatten(0, 1))).view(fc6.shape)
            return x * masks(repeats, fc6.shape[1:], 0.5, self.dtype)

    def head(self, x: torch.Tensor, repeats: list[Repeat] | None) -> torch.Tensor:
        """(R, B, 4096) -> log-probabilities (R, B, classes); dropout when repeats are given (training)."""
        if self.dtype == torch.float32:
            h = torch.baddbmm(self.b1, x, self.w1)
        else:  # MixedLinear's product, per repeat: bfloat16 operands, float32 weights and bias
            h = mixed_product(x, self.w1, self.dtype) + self.b1
        h = torch.relu(h)
        if repeats is not None:
            h = h * masks(repeats, h.shape[1:], self.dropout)
        return torch.log_softmax(torch.baddbmm(self.b2, h, self.w2), dim=-1)

    def export(self, r: int) -> dict[str, torch.Tensor]:
        """Repeat r's trainable weights under the single Head's names."""
        return {
            "head.0.weight": self.w1[r].detach().t().clone(),
            "head.0.bias": self.b1[r, 0].detach().clone(),
            "head.3.weight": self.w2[r].detach().t().clone(),
            "head.3.bias": self.b2[r, 0].detach().clone(),
        }


def validate(stacked: Stacked, h_val: torch.Tensor, y_val: torch.Tensor) -> list[tuple[float, float]]:
    """(loss, accuracy) of every repeat on the validation split (dropout off)."""
    with torch.inference_mode():
        out = stacked.head(h_val.expand(stacked.w1.shape[0], -1, -1), None)
        losses = nn.functional.nll_loss(out.transpose(1, 2), y_val.expand(out.shape[0], -1), reduction="none")
        accs = (out.argmax(-1) == y_val).float().mean(1)
    return [(float(loss.mean()), float(acc)) for loss, acc in zip(losses, accs, strict=True)]


def fit(repeats: list[Repeat], data: RunData, cfg: Train, label: str = "") -> list[tuple[Head, list[dict]]]:
    """Train every repeat for cfg.epochs together; per repeat, the head of its best validation epoch and its history."""
    keep_freed_memory()
    stacked = Stacked([r.model for r in repeats])
    optimiser = torch.optim.Adam(stacked.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=cfg.step_size, gamma=cfg.gamma)
    ref = repeats[0].model.eval()
    h_val = ref.frozen_features(data.x_val)  # deterministic in eval mode: once for every repeat and epoch
    x_views = ((data.x_views - ref.mean) / ref.std).to(ref.dtype)  # once: the same for every repeat and step
    best = [((-1.0, 0.0), stacked.export(r)) for r in range(len(repeats))]
    histories: list[list[dict]] = [[] for _ in repeats]
    n = len(data.y)
    desc = f"train {label} ({len(repeats)} repeats)"
    for epoch in tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch", disable=not label, leave=False):
        orders, views = epoch_draws(repeats, data.y, data.x_views.shape[1], cfg)
        totals = torch.zeros(len(repeats), dtype=torch.float64)
        for start in range(0, n, cfg.batch_size):
            idx, v = orders[:, start : start + cfg.batch_size], views[:, start : start + cfg.batch_size]
            out = stacked.head(stacked.frozen_train(x_views[idx, v], repeats), repeats)
            losses = nn.functional.nll_loss(out.transpose(1, 2), data.y[idx], reduction="none").mean(1)
            optimiser.zero_grad()
            losses.sum().backward()
            optimiser.step()
            totals += losses.detach().double() * idx.shape[1]
        schedule.step()
        for r, (val_loss, val_acc) in enumerate(validate(stacked, h_val, data.y_val)):
            histories[r].append(
                {"epoch": epoch, "train_loss": float(totals[r]) / n, "val_loss": val_loss, "val_acc": val_acc}
            )
            if epoch_rank(val_acc, val_loss) > best[r][0]:
                best[r] = (epoch_rank(val_acc, val_loss), stacked.export(r))
    results = []
    for rep, (_, weights), history in zip(repeats, best, histories, strict=True):
        rep.model.load_state_dict(weights, strict=False)
        results.append((rep.model.eval(), history))
    return results


def predict(model: Head, feats: FeatureStore, rows: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    model.eval()
    with torch.inference_mode():
        logp = model(feats.eval_features(list(rows["md5hash"])))
    out = rows[["md5hash", "role", "group", "fitzpatrick_scale", "label"]].rename(columns={"role": "split"}).copy()
    out["pred"] = [classes[i] for i in logp.argmax(1).tolist()]
    out["prob_pred"] = logp.max(1).values.exp().numpy().round(5)
    out["correct"] = out["pred"] == out["label"]
    probs = logp.exp().numpy().round(5)
    for i, label in enumerate(classes):  # every class's probability: AUCs rank images by it
        out[prob_column(label)] = probs[:, i]
    return out.reset_index(drop=True)


def train_repeats(
    data: RunData, cfg: Train, precision: str, seeds: list[int], label: str = ""
) -> list[tuple[Head, list[dict]]]:
    """One training per seed (initialisation, sampler, views, dropout all follow the seed), run together."""
    frozen = frozen_parts(data, cfg)
    return fit([new_repeat(data, cfg, precision, seed, frozen) for seed in seeds], data, cfg, label)


def train_once(data: RunData, cfg: Train, precision: str, seed: int) -> tuple[Head, list[dict]]:
    """One training of the head with training seed ``seed``."""
    return train_repeats(data, cfg, precision, [seed])[0]


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
