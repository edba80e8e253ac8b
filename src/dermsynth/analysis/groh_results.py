"""Groh-style results of the 114-label study: accuracy and top-k per scheme, test skin type, source and label.

Every figure is a mean over the scheme's repeats and test images, with the study's interval
over both (stats.crossed_interval: training repeats and test images as crossed random
factors), so a cell scored by repeats that disagree, or by few images, says so. The per-label
table is what the paper's selection rule reads (the `selection` stage): each label's accuracy
when tested on skin types absent from training, in the two extreme FST holdouts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermsynth.analysis.stats import crossed_interval

FSTS = (1, 2, 3, 4, 5, 6)
OPPOSITE = {"a12": (5, 6), "a56": (1, 2)}  # the far extreme of each extreme holdout's test side


def outcome_matrix(rows: pd.DataFrame, column: str) -> np.ndarray:
    """(repeats, images) of one outcome column (correct, top_k) as 0/1."""
    table = rows.pivot_table(index="repeat", columns="md5hash", values=column, aggfunc="first")
    return table.to_numpy(dtype=float)


def cell(rows: pd.DataFrame, z: float) -> dict:
    """Top-1 and top-k accuracy of a set of test images with their intervals, and how many images."""
    out: dict = {"n": int(rows["md5hash"].nunique())}
    for column, name in (("correct", "accuracy"), ("top_k", "top_k")):
        if out["n"] == 0:
            out[name] = None
            continue
        interval = crossed_interval(outcome_matrix(rows, column), z)
        out[name] = {key: round(float(interval[key]), 4) for key in ("estimate", "low", "high")}
    return out


def scheme_results(predictions: pd.DataFrame, records: list[dict], z: float) -> dict:
    """Per scheme: its sizes, the overall cell, one cell per test FST and, for the source holdouts, per source."""
    out = {}
    for record in records:
        rows = predictions[predictions["scheme"] == record["scheme"]]
        entry = dict(record) | {"overall": cell(rows, z)}
        entry["by_fst"] = {str(f): cell(rows[rows["fst"] == f], z) for f in FSTS if (rows["fst"] == f).any()}
        if record["scheme"] in ("dermaamin", "br"):
            sources = sorted(rows["source"].dropna().unique())
            entry["by_source"] = {s: cell(rows[rows["source"] == s], z) for s in sources}
        out[record["scheme"]] = entry
    return out


def per_label(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per scheme and label: test images, mean top-1 and top-k accuracy over repeats; at the far extreme for a12/a56."""
    rows = []
    for (scheme, label), group in predictions.groupby(["scheme", "label"], sort=True):
        entry = {"scheme": scheme, "label": label, "n_test": group["md5hash"].nunique(),
                 "accuracy": group["correct"].mean(), "top_k": group["top_k"].mean()}  # fmt: skip
        far = group[group["fst"].isin(OPPOSITE.get(scheme, ()))]
        entry["n_far"] = far["md5hash"].nunique() if scheme in OPPOSITE else np.nan
        entry["accuracy_far"] = far["correct"].mean() if len(far) else np.nan
        rows.append(entry)
    return pd.DataFrame(rows).round(4)
