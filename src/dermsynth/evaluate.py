"""Stage `evaluate`: per-run metrics from per-image predictions, and the study's tables.

`run_metrics` turns one run's predictions into the flat dict that goes, unchanged, to
MLflow and to reports/runs/<run>.json. The stage then gathers every run into
reports/metrics.json: the arms table, the dose-response table and the spillover table,
which the regression gate compares with the committed baseline.
"""

from __future__ import annotations

import pandas as pd

from dermsynth import io, paths
from dermsynth.config import Params
from dermsynth.prepare import load_conditions
from dermsynth.stats import wald, wilson
from dermsynth.study import DIRECTIONS, slug


def cell(correct: pd.Series, z: float) -> dict[str, float]:
    """accuracy, N, Wald and Wilson bounds of a boolean series."""
    n, k = len(correct), int(correct.sum())
    if n == 0:
        raise ValueError("no predictions in this cell")
    wl, wh = wald(k, n, z)
    sl, sh = wilson(k, n, z)
    return {"acc": k / n, "n": n, "wald_low": wl, "wald_high": wh, "wilson_low": sl, "wilson_high": sh}


def run_metrics(predictions: pd.DataFrame, z: float) -> dict[str, float]:
    """Flat metrics: val overall; per test group overall and per condition (spillover)."""
    metrics: dict[str, float] = {}
    val = predictions[predictions["split"] == "val"]
    metrics.update({f"val/{k}": v for k, v in cell(val["correct"], z).items()})
    test = predictions[predictions["split"] == "test"]
    for group, rows in test.groupby("group", sort=True):
        metrics.update({f"test/{group}/{k}": v for k, v in cell(rows["correct"], z).items()})
        for label, block in rows.groupby("label", sort=True):
            metrics.update({f"test/{group}/{slug(label)}/{k}": v for k, v in cell(block["correct"], z).items()})
    return metrics


def run_name(direction: str, condition: str, arm: str, dose: int | None) -> str:
    return f"{direction}-{condition}-{arm if dose is None else f'dose{dose}'}"


def planned_runs(params: Params) -> list[dict]:
    """Every run of the study as (name, direction, condition, arm, dose); doses add synthetic images."""
    runs = [
        {"direction": d, "condition": c, "arm": a, "dose": None}
        for d in params.train.directions
        for c in params.train.conditions
        for a in params.train.arms
    ]
    runs += [
        {"direction": params.dose.direction, "condition": c, "arm": "synthetic_and_seed", "dose": n}
        for c in params.train.conditions
        for n in params.dose.levels
    ]
    for run in runs:
        run["name"] = run_name(run["direction"], run["condition"], run["arm"], run["dose"])
    return runs


CELL_KEYS = ("acc", "n", "wald_low", "wald_high", "wilson_low", "wilson_high")


def arm_of(run: dict) -> str:
    return run["arm"] if run["dose"] is None else f"dose{run['dose']}"


def study_rows(params: Params) -> dict[str, list[dict]]:
    """Rows of the arms, dose-response and spillover tables, read from every run's metrics file."""
    rows: dict[str, list[dict]] = {"arms": [], "dose": [], "spillover": []}
    labels = load_conditions()
    for run in planned_runs(params):
        m = io.read_json(paths.RUN_METRICS / f"{run['name']}.json")
        ident = {"direction": run["direction"], "condition": run["condition"], "arm": arm_of(run)}
        for group in DIRECTIONS[run["direction"]].test_groups:
            key = f"test/{group}/{run['condition']}"
            row = {
                **ident,
                "dose": run["dose"],
                "group": group,
                "val_acc": m["val/acc"],
                **{k: m.get(f"{key}/{k}") for k in CELL_KEYS},
            }
            rows["arms" if run["dose"] is None else "dose"].append(row)
            if run["arm"] == "seed" and run["direction"] == params.dose.direction:
                # the dose-response curve starts at the seeds alone
                rows["dose"].append({**row, "arm": "dose0", "dose": 0})
            for label in labels:
                rows["spillover"].append(
                    {
                        **ident,
                        "group": group,
                        "label": slug(label),
                        "acc": m.get(f"test/{group}/{slug(label)}/acc"),
                        "n": m.get(f"test/{group}/{slug(label)}/n", 0),
                    }
                )
    rows["dose"].sort(key=lambda r: (r["condition"], r["group"], r["dose"]))
    return rows


def keyed(rows: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """The tables as {table: {"direction/condition/arm/group[/label]": cell}}, the form the gate reads."""
    out: dict[str, dict[str, dict]] = {}
    for table, items in rows.items():
        out[table] = {}
        for r in items:
            key = "/".join(str(r[k]) for k in ("direction", "condition", "arm", "group", "label") if k in r)
            out[table][key] = {
                k: r[k] for k in ("acc", "n", "wald_low", "wald_high", "wilson_low", "wilson_high", "val_acc") if k in r
            }
    return out


def main(params: Params) -> None:
    rows = study_rows(params)
    io.write_json(paths.STUDY_METRICS, keyed(rows))
    for name, items in rows.items():
        io.write_csv(paths.PLOTS / f"{name}.csv", pd.DataFrame(items))
    print(
        f"evaluate: {len(rows['arms'])} arm cells, {len(rows['dose'])} dose cells, "
        f"{len(rows['spillover'])} spillover cells"
    )
