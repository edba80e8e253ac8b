"""Skin-tone fairness metrics from one run's per-image predictions (one repeat at a time; pool with summarise_repeats).

Input: a table with columns ``label`` (true class), ``pred`` (predicted class), ``prob_pred`` (the model's
probability of its predicted class), ``correct`` (bool) and a group column (``group``: "I-II"/"III-IV"/"V-VI", or
``fitzpatrick_scale``). Rows whose group is missing are left out of the per-group metrics. Keys:

* ``acc`` overall accuracy; ``acc/<g>`` accuracy of group g; ``acc_gap`` = max_g acc_g - min_g acc_g;
  ``acc_ratio`` = min_g acc_g / max_g acc_g; ``worst_group_acc`` = min_g acc_g.
* FairDisCo metrics (Du, Hu, Liu & Li, 2022, "FairDisCo: Fairer AI in Dermatology via Disentanglement Contrastive
  Learning", ECCV Workshops). All are min/max ratios in [0, 1]; 1 = parity, higher = fairer.
  - ``pqd`` (predictive quality disparity) = min_g acc_g / max_g acc_g (equal to ``acc_ratio``).
  - ``dpm`` (demographic disparity metric) = mean over classes c of min_g P(pred=c | g) / max_g P(pred=c | g).
  - ``eom`` (equality of opportunity metric) = mean over classes c of
    min_g P(pred=c | label=c, g) / max_g P(pred=c | label=c, g), i.e. the per-class recall (TPR) ratio.
  Undefined terms are skipped rather than counted as parity or as 0: for DPM a class never predicted in any group
  (0/0); for EOM a class that is absent as a true label from some group (its recall there does not exist) or whose
  recall is 0 in every group (0/0). ``dpm_classes`` / ``eom_classes`` count the classes that entered the mean; the
  metric is nan when none did. ``pqd``/``acc_ratio`` are nan when every group's accuracy is 0.
* ``ece`` and ``ece/<g>``: expected calibration error (Guo, Pleiss, Sun & Weinberger, 2017, "On Calibration of
  Modern Neural Networks") with ``bins`` equal-width confidence bins ((m-1)/M, m/M] over ``prob_pred``:
  ECE = sum_b (n_b / n) |acc_b - conf_b|, empty bins contribute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np
import pandas as pd

REQUIRED = ("label", "pred", "prob_pred", "correct")


def _name(group: Hashable) -> str:
    """Key-friendly group name: 3.0 -> "3" (fitzpatrick_scale is often read as float)."""
    if isinstance(group, float | np.floating) and float(group).is_integer():
        return str(int(group))
    return str(group)


def _ratio(low: float, high: float) -> float:
    return low / high if high > 0 else math.nan


def _check(predictions: pd.DataFrame, group_col: str) -> pd.DataFrame:
    missing = [c for c in (*REQUIRED, group_col) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions table lacks columns {missing}")
    return predictions.assign(correct=predictions["correct"].astype(bool))


def group_accuracy(predictions: pd.DataFrame, group_col: str = "group") -> pd.Series:
    """Accuracy per group, indexed by group (sorted); groups with no rows are absent."""
    df = _check(predictions, group_col)
    return df.groupby(group_col, sort=True)["correct"].mean().astype(float)


def expected_calibration_error(prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins ((m-1)/M, m/M]; nan for no predictions."""
    prob = np.asarray(prob, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if prob.size == 0:
        return math.nan
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    idx = np.searchsorted(inner_edges, prob, side="left")
    ece = 0.0
    for b in np.unique(idx):
        in_bin = idx == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - prob[in_bin].mean())
    return float(ece)


def _ratio_mean(rates: pd.DataFrame) -> tuple[float, int]:
    """Mean over columns (classes) of min/max across rows (groups), skipping columns with a nan or a zero max."""
    usable = rates.loc[:, rates.notna().all() & (rates.max() > 0)]
    if usable.shape[1] == 0:
        return math.nan, 0
    return float((usable.min() / usable.max()).mean()), int(usable.shape[1])


def demographic_parity(df: pd.DataFrame, group_col: str) -> tuple[float, int]:
    """DPM and the number of classes it averages: P(pred=c | g) by group, min/max per class."""
    rates = pd.crosstab(df[group_col], df["pred"], normalize="index")
    return _ratio_mean(rates)


def equal_opportunity(df: pd.DataFrame, group_col: str) -> tuple[float, int]:
    """EOM and the number of classes it averages: recall P(pred=c | label=c, g) by group, min/max per class."""
    recall = df.assign(hit=df["pred"] == df["label"]).pivot_table(
        index=group_col, columns="label", values="hit", aggfunc="mean", observed=True
    )
    return _ratio_mean(recall.astype(float))


def fairness_metrics(predictions: pd.DataFrame, group_col: str = "group", bins: int = 10) -> dict[str, float]:
    """Flat dict of accuracy, FairDisCo (PQD/DPM/EOM) and calibration metrics; see the module docstring."""
    df = _check(predictions, group_col)
    grouped = df.dropna(subset=[group_col])
    acc = group_accuracy(grouped, group_col)
    out: dict[str, float] = {"acc": float(df["correct"].mean()) if len(df) else math.nan}
    out |= {f"acc/{_name(g)}": float(a) for g, a in acc.items()}
    low, high = (float(acc.min()), float(acc.max())) if len(acc) else (math.nan, math.nan)
    out |= {"acc_gap": high - low, "acc_ratio": _ratio(low, high), "worst_group_acc": low}
    dpm, dpm_n = demographic_parity(grouped, group_col)
    eom, eom_n = equal_opportunity(grouped, group_col)
    out |= {"pqd": out["acc_ratio"], "dpm": dpm, "dpm_classes": float(dpm_n), "eom": eom, "eom_classes": float(eom_n)}
    out["ece"] = expected_calibration_error(df["prob_pred"].to_numpy(), df["correct"].to_numpy(), bins)
    for g, part in grouped.groupby(group_col, sort=True):
        out[f"ece/{_name(g)}"] = expected_calibration_error(
            part["prob_pred"].to_numpy(), part["correct"].to_numpy(), bins
        )
    return out


def summarise_repeats(per_repeat: list[dict[str, float]]) -> dict[str, float]:
    """Mean (``<key>``) and sample SD (``<key>_sd``, ddof=1; 0 for one repeat) of each metric, ignoring nans."""
    keys = list(dict.fromkeys(k for run in per_repeat for k in run))
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([run.get(key, math.nan) for run in per_repeat], dtype=float)
        values = values[~np.isnan(values)]
        out[key] = float(values.mean()) if values.size else math.nan
        out[f"{key}_sd"] = float(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size else math.nan)
    return out
