"""Stage `evaluate`: per-run metrics from per-image predictions, and the study's tables.

`run_metrics` turns one run's predictions into the flat dict that goes, unchanged, to
MLflow and to reports/runs/<configuration>.json: point estimates with their intervals
(`evaluate.z`) and the fairness metrics. They are computed here, not in training, so that
changing `evaluate` re-runs only this stage and what reads it. Configurations that share a
training (every condition's fitz_only, the whole-set dose) get the same numbers under their own
names. The stage then gathers every run into
reports/metrics.json: the arms table, the dose-response table and the spillover table,
which the regression gate compares with the committed baseline. Every arms and dose cell
carries, beside the augmented condition's accuracy, the net-benefit metrics of its whole test
group (overall and balanced accuracy, macro-F1, the share of predictions that go to the
augmented condition) and each one's change against `fitz_only`. An augmented cell is flagged
as a collapse by either of two rules (`collapse_rules`): its group sends more than
`evaluate.collapse_share` times the condition's prevalence of its predictions to the condition
(`collapse_share`), or its condition accuracy rose while the group's balanced accuracy fell
(`collapse_bal`). The flags go to the tables, the summary, reports/runs/*.json and so MLflow.
"""

from __future__ import annotations

import math

import pandas as pd

from dermsynth.analysis import compare
from dermsynth.analysis.estimands import estimands
from dermsynth.analysis.grid import arm_of, dose_of, planned_runs
from dermsynth.analysis.metrics import fairness, run_metrics, signal
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.study import DIRECTIONS, load_conditions, slug

CELL_KEYS = (
    "acc", "n", "ci_low", "ci_high", "wald_low", "wald_high", "wilson_low", "wilson_high", "acc_mean", "acc_sd",
    "repeats",
)  # fmt: skip
# Net benefit over the whole test group: (column in the tables, key under test/<group>/ in the run's metrics).
GROUP_KEYS = {
    "group_acc": "acc",
    "group_acc_low": "ci_low",  # crossed over repeats and images, as every interval of the tables
    "group_acc_high": "ci_high",
    **{k: k for k in ("bal_acc", "bal_acc_low", "bal_acc_high", "macro_f1", "macro_f1_low", "macro_f1_high")},
}
CHANGED = ("acc", "group_acc", "bal_acc", "macro_f1", "share")  # each also as d_<key>, the change against fitz_only


def group_metrics(m: dict, group: str, condition: str) -> dict:
    """The test group's net-benefit metrics, the share of its predictions going to ``condition``, its prevalence."""
    out = {column: m.get(f"test/{group}/{key}") for column, key in GROUP_KEYS.items()}
    for suffix in ("", "_low", "_high"):
        out[f"share{suffix}"] = m.get(f"test/{group}/share/{condition}{suffix}")
    total, present = m.get(f"test/{group}/n"), m.get(f"test/{group}/{condition}/n")
    out["prevalence"] = present / total if total and present is not None else math.nan
    return out


def collapse_rules(row: dict, d_acc: float, d_bal_acc: float, k: float) -> dict[str, bool]:
    """The two collapse rules of an augmented cell (a fitz_only reference cell is never flagged).

    - ``collapse_share``: the group sends more than ``k`` times the condition's prevalence among its
      test images of its predictions to the condition: the model calls the condition for images
      that are not it, whatever the condition's own accuracy says;
    - ``collapse_bal``: the condition's accuracy rose while the group's balanced accuracy fell
      against fitz_only: the gain was paid for by the other conditions.
    """
    if row["arm"] == "fitz_only":
        return {"collapse_share": False, "collapse_bal": False, "collapse": False}
    share, prevalence = row.get("share"), row.get("prevalence")
    by_share = share is not None and not math.isnan(prevalence) and share > k * prevalence
    by_bal = d_acc > 0 and d_bal_acc < 0  # False when either is NaN
    return {"collapse_share": bool(by_share), "collapse_bal": bool(by_bal), "collapse": bool(by_share or by_bal)}


def with_changes(rows: list[dict], k: float) -> list[dict]:
    """Each cell with d_<metric> = value minus fitz_only's (same direction, condition, group), and collapse flags."""
    reference = {(r["direction"], r["condition"], r["group"]): r for r in rows if r["arm"] == "fitz_only"}
    out = []
    for row in rows:
        ref = reference.get((row["direction"], row["condition"], row["group"]))
        changes = {f"d_{k}": (row[k] - ref[k]) if ref and None not in (row[k], ref[k]) else math.nan for k in CHANGED}
        out.append({**row, **changes, **collapse_rules(row, changes["d_acc"], changes["d_bal_acc"], k)})
    return out


def study_rows(params: Params) -> dict[str, list[dict]]:
    """Rows of the arms, dose-response and spillover tables, read from every run's metrics file."""
    rows: dict[str, list[dict]] = {"arms": [], "dose": [], "spillover": []}
    labels = load_conditions()
    for run in planned_runs(params):
        m = files.read_json(paths.RUN_METRICS / f"{run['name']}.json")
        ident = {"direction": run["direction"], "condition": run["condition"], "arm": arm_of(run), "run": run["name"]}
        dose = dose_of(run)
        if dose != run["dose"]:
            print(
                f"evaluate: WARNING {run['name']} is {run['trained']}, trained on {dose} synthetic images, "
                f"not the {run['dose']} planned (a short curated set): its dose-response row says {dose}"
            )
        for group in DIRECTIONS[run["direction"]].test_groups:
            key = f"test/{group}/{run['condition']}"
            row = {
                **ident,
                "dose": dose,
                "group": group,
                "val_acc": m["val/acc"],
                **{k: m.get(f"{key}/{k}") for k in CELL_KEYS},
                **group_metrics(m, group, run["condition"]),
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
    fitz = [r for r in rows["arms"] if r["arm"] == "fitz_only"]
    k = params.evaluate.collapse_share
    rows["arms"] = with_changes(rows["arms"], k)
    rows["dose"] = [r for r in with_changes(fitz + rows["dose"], k) if r["arm"] != "fitz_only"]
    return rows


TABLE_KEYS = (
    "acc", "n", "ci_low", "ci_high", "wald_low", "wald_high", "wilson_low", "wilson_high", "acc_mean", "acc_sd",
    "val_acc",
    *GROUP_KEYS, "share", "share_low", "share_high", "prevalence", *(f"d_{k}" for k in CHANGED),
    "collapse", "collapse_share", "collapse_bal",
)  # fmt: skip


def _plain(value: object) -> object:
    """JSON-safe: NaN (no test: e.g. the fitz_only reference) becomes null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def keyed(rows: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """The tables as {table: {"direction/condition/arm/group[/label]": cell}}, the form the gate reads."""
    out: dict[str, dict[str, dict]] = {}
    for table, items in rows.items():
        out[table] = {}
        for r in items:
            key = "/".join(str(r[k]) for k in ("direction", "condition", "arm", "group", "label") if k in r)
            out[table][key] = {k: _plain(r[k]) for k in (*TABLE_KEYS, "p", "p_holm") if k in r}
    return out


def with_paired_tests(arms: list[dict], tests: pd.DataFrame) -> list[dict]:
    """Each arms-table cell with its McNemar p against fitz_only and the Holm-adjusted p (NaN for fitz_only)."""
    if tests.empty:
        return [{**row, "p": math.nan, "p_holm": math.nan} for row in arms]
    index = tests.set_index(["direction", "condition", "group", "arm"])[["p", "p_holm"]]
    out = []
    for row in arms:
        key = (row["direction"], row["condition"], row["group"], row["arm"])
        found = row["arm"] != "fitz_only" and key in index.index
        out.append(
            {
                **row,
                "p": index.loc[key, "p"] if found else math.nan,
                "p_holm": index.loc[key, "p_holm"] if found else math.nan,
            }
        )
    return out


def with_plot_labels(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The label column each DVC plot of the table draws by: `cell` (a bar) or `series` (a line), see dvc.yaml."""
    if table == "dose":
        return frame.assign(series=frame["condition"] + " " + frame["group"])
    parts = (
        ["direction", "condition", "group", "arm"] if table == "arms" else ["direction", "group", "condition", "arm"]
    )
    cell = frame[parts].astype(str).agg(" ".join, axis=1)
    return frame.assign(cell=cell if table == "arms" else cell + ": " + frame["label"])


def summary(rows: dict[str, list[dict]], central: pd.DataFrame, params: Params) -> dict[str, dict[str, float]]:
    """The study's headline numbers, the pipeline's DVC metric (`dvc exp show` stays readable).

    Per direction and condition, at the far test group (the skin tones that training lacked): each arm's
    change in condition accuracy and in the group's balanced accuracy against fitz_only, and the
    Holm-adjusted p of synthetic_and_seed against seed; with several draws of the seeds, how far each
    arm's change in accuracy spreads over them (`across_draws`); per direction the `signal` (fitz_only's balanced
    accuracy near and far, and the gap with its interval: is there a gap to close?); and the counts of
    cells flagged as collapse.
    """
    far = {d: DIRECTIONS[d].seed_group for d in params.train.directions}
    cells = {(r["direction"], r["condition"], r["arm"]): r for r in rows["arms"] if r["group"] == far[r["direction"]]}
    central_p = {
        (r["direction"], r["condition"]): r["p_holm"]
        for r in central.to_dict("records")
        if r["group"] == far[r["direction"]]
    }
    out: dict[str, dict[str, float]] = {}
    for (direction, condition, arm), cell in sorted(cells.items()):
        if arm == "fitz_only":
            continue
        block = out.setdefault(f"{direction}/{condition}", {})
        block[f"{arm}/d_acc"] = _plain(cell["d_acc"])
        block[f"{arm}/d_bal_acc"] = _plain(cell["d_bal_acc"])
    for direction, condition, arm in sorted(cells):
        if arm != "fitz_only" and params.split.seed_draws > 1:
            out[f"{direction}/{condition}"] |= across_draws(params, direction, condition, arm)
    for (direction, condition), p in sorted(central_p.items()):
        out.setdefault(f"{direction}/{condition}", {})["synthetic_vs_seed/p_holm"] = _plain(p)
    for (direction, condition, arm), cell in sorted(cells.items()):
        if arm != "fitz_only":  # a flagged cell's d_acc is not a gain: say so beside it
            out[f"{direction}/{condition}"][f"{arm}/collapse"] = float(cell["collapse"])
    flagged = rows["arms"] + rows["dose"]
    out["signal"] = {  # type: ignore[assignment]
        d: {k: round(v, 4) for k, v in signal(reference_predictions(params, d), DIRECTIONS[d].seed_group,
                                              params.evaluate.z).items()}
        for d in params.train.directions
    }  # fmt: skip
    out["study"] = {
        "seed_draws": float(params.split.seed_draws),
        "collapse_flags": float(sum(r["collapse"] for r in flagged)),
        "collapse_share_flags": float(sum(r["collapse_share"] for r in flagged)),
        "collapse_bal_flags": float(sum(r["collapse_bal"] for r in flagged)),
    }
    return out


def across_draws(params: Params, direction: str, condition: str, arm: str) -> dict[str, float | None]:
    """An arm's change in condition accuracy at the far group in each draw of the seeds: its SD, lowest and highest.

    The pooled change (`d_acc`) is their mean; how far the draws spread says how much the
    study's answer rests on which seeds were drawn (the paper drew once).
    """
    far, label = DIRECTIONS[direction].seed_group, compare.label_for(condition)
    mine = compare.outcomes(compare.predictions(paths.trained_as(params, direction, condition, arm, None)), far, label)
    base = compare.outcomes(reference_predictions(params, direction), far, label)
    keys = [f"{arm}/d_acc_draw_{k}" for k in ("sd", "min", "max")]
    if mine.size == 0:  # no test image of the condition in the far group (a small real dataset): nothing to say
        return dict.fromkeys(keys)
    per_draw = mine.to_numpy().mean(1) - base.to_numpy().mean()
    return {f"{arm}/d_acc_draw_sd": round(float(per_draw.std(ddof=1)), 4),
            f"{arm}/d_acc_draw_min": round(float(per_draw.min()), 4),
            f"{arm}/d_acc_draw_max": round(float(per_draw.max()), 4)}  # fmt: skip


def reference_predictions(params: Params, direction: str) -> pd.DataFrame:
    """The predictions of a direction's fitz_only training (every condition's fitz_only shares it)."""
    name = paths.trained_as(params, direction, params.train.conditions[0], "fitz_only", None)
    return compare.predictions(name)  # read once: the paired tests and the draws' summary read it too


def flag_runs(rows: dict[str, list[dict]]) -> None:
    """Write each cell's collapse flags into its configuration's reports/runs/<name>.json (what MLflow logs)."""
    by_run: dict[str, dict[str, float]] = {}
    for row in rows["arms"] + rows["dose"]:
        if row["arm"] in ("fitz_only", "dose0"):  # dose0 is the seed arm's run, flagged under its own name
            continue
        flags = by_run.setdefault(row["run"], {})
        for rule in ("collapse", "collapse_share", "collapse_bal"):
            flags[f"test/{row['group']}/{rule}"] = float(row[rule])
        flags[f"test/{row['group']}/prevalence"] = row["prevalence"]
    for name, flags in by_run.items():
        path = paths.RUN_METRICS / f"{name}.json"
        files.write_json(path, {**files.read_json(path), **flags})


def write_run_metrics(params: Params) -> None:
    """reports/runs/<configuration>.json for every configuration, from its training's predictions."""
    done: dict[str, dict] = {}
    for old in paths.RUN_METRICS.glob("*.json"):  # a configuration no longer planned leaves no stale file
        old.unlink()
    for run in planned_runs(params):
        if run["trained"] not in done:
            predictions = pd.read_csv(paths.run_dir(run["trained"]) / "predictions.csv", dtype={"md5hash": str})
            done[run["trained"]] = {**run_metrics(predictions, params.evaluate.z), **fairness(predictions)}
        files.write_json(paths.RUN_METRICS / f"{run['name']}.json", done[run["trained"]])


def main(params: Params) -> None:
    write_run_metrics(params)
    rows = study_rows(params)
    flag_runs(rows)
    tests = compare.paired_tests(params)
    rows["arms"] = with_paired_tests(rows["arms"], tests)
    trends = compare.dose_trends(params)
    runs = [{**run, "arm": arm_of(run)} for run in planned_runs(params)]
    fairness_by_run = compare.fairness_table(runs)
    files.write_json(paths.STUDY_METRICS, {**keyed(rows), "estimands": estimands(params)})
    for name, items in rows.items():
        files.write_csv(paths.PLOTS / f"{name}.csv", with_plot_labels(name, pd.DataFrame(items)))
    central = compare.synthetic_vs_seed(params)
    tables = {"paired_tests": tests, "synthetic_vs_seed": central, "dose_trend": trends, "fairness": fairness_by_run}
    for name, table in tables.items():
        files.write_csv(paths.TABLES / f"{name}.csv", table)
    files.write_json(paths.SUMMARY, summary(rows, central, params))
    print(
        f"evaluate: {len(rows['arms'])} arm cells, {len(rows['dose'])} dose cells, "
        f"{len(rows['spillover'])} spillover cells, {len(tests)} paired tests against fitz_only, "
        f"{len(central)} synthetic-vs-seed tests, {len(trends)} dose trends, "
        f"{sum(r['collapse'] for r in rows['arms'] + rows['dose'])} cells flagged as collapse "
        f"({sum(r['collapse_share'] for r in rows['arms'] + rows['dose'])} by prediction share, "
        f"{sum(r['collapse_bal'] for r in rows['arms'] + rows['dose'])} by balanced accuracy)"
    )
