"""Groh et al.'s 114-label study (2021), step one of the paper: its seven holdout schemes and their measures.

Groh et al. (github mattgroh/fitzpatrick17k, `train.py`) trained a classifier over all 114
labels under seven holdout schemes and reported top-1 and top-3 accuracy per test skin type.
The paper chose its seven conditions from that analysis and the counts (docs/protocol.md,
"Step one"). This module holds the parts that need no model: which rows train and test under
each scheme, the count ranks at the two FST extremes, and top-k accuracy. The stage that trains
the schemes and the rule that selects the conditions build on it.

Where we differ from Groh's code (docs/deviations.md, row 18):
- rows of unknown skin type (FST -1) are left out of every scheme, as the study leaves them out:
  Groh's `a12` test set kept them although they belong to no skin-type group;
- validation comes from the training side (Groh picked the epoch on the test split);
- a label must be on both sides in every scheme, not only in the FST and source holdouts: a
  test image of a label the model never trained on can only be wrong, and says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import GROH_SCHEMES, source_of

SCHEMES = GROH_SCHEMES
FST_HOLDOUTS: dict[str, tuple[int, int]] = {"a12": (1, 2), "a34": (3, 4), "a56": (5, 6)}
EXPERT_TEST = "1 Diagnostic"  # qc value of the images a dermatologist confirmed (Groh's expert_select test set)
RANDOM_STATE = 4242  # Groh's random_holdout: train_test_split(test_size=0.2, random_state=4242, stratify=label)


class SchemeError(DermsynthError, ValueError):
    """A scheme cannot be formed from the metadata (unknown name, no row on one side)."""


@dataclass(frozen=True)
class SchemeSplit:
    """The rows a scheme trains on and tests on, and the labels both sides share (the classes)."""

    scheme: str
    train: pd.DataFrame
    test: pd.DataFrame
    labels: tuple[str, ...]


def known_skin_type(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with FST 1-6, with `fst` as an integer column and `source` from the URL."""
    fst = pd.to_numeric(frame["fitzpatrick_scale"], errors="coerce")
    kept = frame[fst.between(1, 6)].copy()
    kept["fst"] = fst[fst.between(1, 6)].astype(int)
    kept["source"] = kept["url"].map(source_of) if "url" in kept else None
    return kept


def _shared(train: pd.DataFrame, test: pd.DataFrame, scheme: str) -> SchemeSplit:
    """Both sides restricted to the labels present on both: Groh's `combo`."""
    labels = tuple(sorted(set(train["label"]) & set(test["label"])))
    if not labels:
        raise SchemeError(f"scheme {scheme}: no label has images on both the training and the test side")
    keep = lambda side: side[side["label"].isin(labels)].reset_index(drop=True)  # noqa: E731
    return SchemeSplit(scheme, keep(train), keep(test), labels)


def _random_holdout(rows: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A test share of every label, drawn per label (stratified); a label with one image stays in training."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(rows), dtype=bool)
    for _, index in sorted(rows.groupby("label").indices.items()):
        n_test = round(len(index) * fraction) if len(index) > 1 else 0
        test[rng.choice(index, size=min(n_test, len(index) - 1), replace=False)] = True
    return rows[~test], rows[test]


def scheme_split(frame: pd.DataFrame, scheme: str, test_fraction: float = 0.2, seed: int = RANDOM_STATE) -> SchemeSplit:
    """The training and test rows of one of Groh's seven schemes (module docstring; SCHEMES)."""
    rows = known_skin_type(frame)
    if scheme == "expert_select":
        qc = rows["qc"].fillna("").astype(str).str.strip() if "qc" in rows else pd.Series("", index=rows.index)
        return _shared(rows[qc == ""], rows[qc == EXPERT_TEST], scheme)
    if scheme == "random_holdout":
        return _shared(*_random_holdout(rows, test_fraction, seed), scheme)
    if scheme in FST_HOLDOUTS:
        inside = rows["fst"].isin(FST_HOLDOUTS[scheme])
        return _shared(rows[inside], rows[~inside], scheme)
    if scheme in ("dermaamin", "br"):  # named after the source held out: dermaamin tests on dermaamin.com
        held = "dermaamin" if scheme == "dermaamin" else "atlas"
        other = "atlas" if held == "dermaamin" else "dermaamin"
        return _shared(rows[rows["source"] == other], rows[rows["source"] == held], scheme)
    raise SchemeError(f"unknown scheme {scheme!r}: one of {', '.join(SCHEMES)}")


def validation_mask(train: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Which training rows validate (early stopping), drawn per label from the training side only.

    A label with a single training image keeps it for fitting: a class the head never fits is a
    class it can never predict.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(train), dtype=bool)
    for _, index in sorted(train.groupby("label").indices.items()):
        n_val = min(round(len(index) * fraction), len(index) - 1)
        if n_val > 0:
            mask[rng.choice(index, size=n_val, replace=False)] = True
    return mask


def top_k_correct(probabilities: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's true class index is among its ``k`` most probable (ties broken by class order)."""
    probabilities = np.asarray(probabilities)
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return (top == np.asarray(truth)[:, None]).any(axis=1)


def extreme_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per label: images at FST I-II and V-VI and their ranks among all labels (1: most; ties share the mean rank).

    FST -1 rows are left out, as the study leaves them out; the ranks are the issue's and the
    paper's "largest counts at the extremes".
    """
    rows = known_skin_type(frame)
    group = np.where(rows["fst"] <= 2, "I-II", np.where(rows["fst"] >= 5, "V-VI", "III-IV"))
    table = pd.crosstab(rows["label"], group).reindex(columns=["I-II", "III-IV", "V-VI"], fill_value=0)
    table.columns.name = None
    for column in ("I-II", "V-VI"):
        table[f"rank {column}"] = table[column].rank(ascending=False, method="average")
    return table.rename_axis("label")
