"""One MLflow parent run per grid: the study's tables on it, every configuration run under it.

DVC runs each configuration as its own stage (and caches it), so no process sees the whole
grid until `evaluate`. That stage therefore opens the parent run, logs the tables the
report shows (as MLflow tables, viewable in the UI's artifact tab, and as CSV), the paired
p-values and dose trends as metrics, and then hangs the newest run of every configuration
under it (tag `mlflow.parentRunId`, which is what the UI nests by). A reader filtering on
arm/dose/condition/direction/generator/repeat tags sees the same numbers as in reports/.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pandas as pd

from dermsynth import tracking
from dermsynth.config import Params

PARENT_TAG = "mlflow.parentRunId"


def newest_configuration_runs(client: object, experiment: str, names: list[str]) -> dict[str, str]:
    """run id of the newest configuration run (tag repeat=all) for each planned run name."""
    found: dict[str, str] = {}
    runs = client.search_runs(  # type: ignore[attr-defined]
        [experiment], "tags.repeat = 'all'", order_by=["attributes.start_time DESC"], max_results=5000
    )
    for run in runs:
        name = run.data.tags.get("configuration")
        if name in names and name not in found:
            found[name] = run.info.run_id
    return found


def test_metrics(tables: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Paired p-values and dose trends as flat MLflow metrics (NaN left out)."""
    out: dict[str, float] = {}
    for r in tables["paired_tests"].to_dict("records"):
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
            }
        )
    for r in tables["arms"].to_dict("records") if "arms" in tables else []:
        key = f"{r['direction']}/{r['condition']}/{r['group']}/{r['arm']}"
        out.update({f"{d}/{key}": r[d] for d in ("d_acc", "d_bal_acc", "d_macro_f1", "d_share") if d in r})
    for r in tables["dose_trend"].to_dict("records"):
        key = f"{r['direction']}/{r['condition']}/{r['group']}"
        out.update({f"trend_p/{key}": r["p"], f"trend_or_per_doubling/{key}": r["odds_ratio_per_doubling"]})
    return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(float(v))}


def log(params: Params, tables: dict[str, pd.DataFrame], runs: list[dict]) -> str:
    """Create the grid's parent run, log the tables on it, re-parent the configuration runs; its id."""
    import mlflow

    experiment = tracking.setup()
    tags = {
        "stage": "evaluate",
        "grid": "study",
        "dataset": params.dataset.root,
        "generator": params.generate.generator,
        "model": params.generate.model_name(),
        "repeats": str(params.train.repeats),
        "git_commit": tracking.git_commit(),
    }
    with mlflow.start_run(experiment_id=experiment, run_name="grid", tags=tags) as parent:
        mlflow.log_params({"repeats": params.train.repeats, "dose.levels": str(params.dose.levels)})
        mlflow.log_metrics(test_metrics(tables))
        with tempfile.TemporaryDirectory() as tmp:
            for name, table in tables.items():
                mlflow.log_table(table, artifact_file=f"tables/{name}.json")
                table.to_csv(Path(tmp) / f"{name}.csv", index=False)
            mlflow.log_artifacts(tmp, artifact_path="tables")
        grid_id = parent.info.run_id
    client = mlflow.MlflowClient()
    children = newest_configuration_runs(client, experiment, [r["name"] for r in runs])
    for run_id in children.values():
        client.set_tag(run_id, PARENT_TAG, grid_id)
    missing = sorted({r["name"] for r in runs} - set(children))
    note = f"; {len(missing)} configurations have no run in this store (trained elsewhere)" if missing else ""
    print(f"evaluate: MLflow grid run {grid_id} with {len(children)} configuration runs under it{note}")
    return grid_id
