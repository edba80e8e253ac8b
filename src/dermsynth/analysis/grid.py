"""The study's grid: every configuration `dvc repro` trains, and the numbers of the grid as a whole.

`planned_runs` lists the configurations (arms per direction and condition, then the dose
levels) in one order that `evaluate`, `track` and the report share, each with the training
that holds its predictions (`trained_as`: identical training sets are trained once). `test_metrics` flattens the
paired tests, the synthetic-vs-seed tests, the changes against `fitz_only` and the dose trends
into the metric names the grid's MLflow run carries.
"""

from __future__ import annotations

import math

import pandas as pd

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.paths import full_dose, run_name, trained_as


def arms(params: Params) -> list[str]:
    """The arms of every condition's table: fitz_only, the reference every change is measured from, then train.arms."""
    return ["fitz_only", *params.train.arms]


def dose_levels(params: Params) -> list[int]:
    """The dose-response levels: dose.levels, then the whole set (the synthetic_and_seed arm, trained once)."""
    whole = "synthetic_and_seed" in params.train.arms and params.dose.direction in params.train.directions
    return [*params.dose.levels, *([full_dose(params)] if whole else [])]


def planned_runs(params: Params) -> list[dict]:
    """Every configuration as (name, trained, direction, condition, arm, dose); doses add synthetic images.

    ``name`` is the configuration as the tables and MLflow show it; ``trained`` the training it reads.
    """
    runs = [
        {"direction": d, "condition": c, "arm": a, "dose": None}
        for d in params.train.directions
        for c in params.train.conditions
        for a in arms(params)
    ]
    runs += [
        {"direction": params.dose.direction, "condition": c, "arm": "synthetic_and_seed", "dose": n}
        for c in params.train.conditions
        for n in dose_levels(params)
    ]
    for run in runs:
        ident = (run["direction"], run["condition"], run["arm"], run["dose"])
        run["name"] = run_name(*ident)
        run["trained"] = trained_as(params, *ident)
    return runs


def dose_of(run: dict) -> int | None:
    """The synthetic images a dose configuration trained on: its level, or, for the whole-set level
    (the synthetic_and_seed arm's training), the count that training had: fewer when curation or
    an accepted partial generation left the set short, and the tables must not claim the plan."""
    if run["dose"] is None or run["trained"] == run["name"]:
        return run["dose"]
    return int(files.read_json(paths.run_dir(run["trained"]) / paths.TRAINING_NAME)["n_synthetic"])


def trainings(params: Params) -> list[str]:
    """The distinct trainings of the grid (what `dvc repro` trains), in planned order."""
    return list(dict.fromkeys(run["trained"] for run in planned_runs(params)))


def first_configurations(runs: list[dict], direction: str | None = None) -> dict[str, dict]:
    """Each distinct training (of one direction, or all), with the first configuration that reads it.

    A training read by several configurations (`fitz_only` by each condition's table, the
    whole-set dose by the `synthetic_and_seed` arm) is packaged and registered once, from this one.
    """
    found: dict[str, dict] = {}
    for run in runs:
        if direction is None or run["direction"] == direction:
            found.setdefault(run["trained"], run)
    return found


def arm_of(run: dict) -> str:
    """The arm as the tables name it: the arm, or dose<N> for a dose level."""
    return run["arm"] if run["dose"] is None else f"dose{run['dose']}"


def test_metrics(tables: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Paired p-values, changes against fitz_only and dose trends as flat MLflow metrics (NaN left out)."""
    out: dict[str, float] = {}
    for r in tables.get("paired_tests", pd.DataFrame()).to_dict("records"):
        key = f"{r['direction']}/{r['condition']}/{r['group']}/{r['arm']}"
        out.update({f"mcnemar_p/{key}": r["p"], f"mcnemar_p_holm/{key}": r["p_holm"], f"diff/{key}": r["difference"]})
    for r in tables.get("synthetic_vs_seed", pd.DataFrame()).to_dict("records"):
        key = f"{r['direction']}/{r['condition']}/{r['group']}"
        out.update(
            {
                f"synthetic_vs_seed/mcnemar_p/{key}": r["p"],
                f"synthetic_vs_seed/mcnemar_p_holm/{key}": r["p_holm"],
                f"synthetic_vs_seed/diff/{key}": r["difference"],
                f"synthetic_vs_seed/bal_acc_diff/{key}": r["bal_acc_difference"],
                f"synthetic_vs_seed/bal_acc_p/{key}": r["bal_acc_p"],
                f"synthetic_vs_seed/bal_acc_p_holm/{key}": r["bal_acc_p_holm"],
                f"synthetic_vs_seed/auc_diff/{key}": r["auc_difference"],
                f"synthetic_vs_seed/auc_p_holm/{key}": r["auc_p_holm"],
            }
        )
    for r in tables.get("arms", pd.DataFrame()).to_dict("records"):
        key = f"{r['direction']}/{r['condition']}/{r['group']}/{r['arm']}"
        out.update({f"{d}/{key}": r[d] for d in ("d_acc", "d_bal_acc", "d_macro_f1", "d_share") if d in r})
    for r in tables.get("dose_trend", pd.DataFrame()).to_dict("records"):
        key = f"{r['direction']}/{r['condition']}/{r['group']}"
        out.update({f"trend_p/{key}": r["p"], f"trend_or_per_doubling/{key}": r["odds_ratio_per_doubling"]})
    return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(float(v))}
