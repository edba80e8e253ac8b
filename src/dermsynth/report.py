"""Stage `report`: Markdown tables and figures that mirror the study, under reports/.

Reads only what earlier stages wrote (reports/metrics.json, reports/plots/*.csv, the prepared
table and the split table), so the report can be rebuilt in a second without training.
"""

from __future__ import annotations

from types import ModuleType

import pandas as pd

from dermsynth import io, paths
from dermsynth.config import Params
from dermsynth.prepare import load_conditions
from dermsynth.study import ARMS, DIRECTIONS, slug

FST_ORDER = ["1", "2", "3", "4", "5", "6"]


def fmt_cell(row: pd.Series) -> str:
    """Pooled accuracy over repeats with its Wilson interval and N (the compact form of wide tables)."""
    if pd.isna(row.get("acc")):
        return "n/a"
    return f"{row['acc']:.3f} ({row['wilson_low']:.3f}-{row['wilson_high']:.3f}) N={int(row['n'])}"


def fmt_p(p: float) -> str:
    if pd.isna(p):
        return "ref"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def counts_table(prepared: pd.DataFrame, summary: dict) -> str:
    table = pd.crosstab(prepared["label"], prepared["fitzpatrick_scale"].astype(str))
    table = table.reindex(columns=[c for c in FST_ORDER if c in table.columns], fill_value=0)
    table["FST -1 dropped"] = [summary["fst_unknown_dropped_by_label"].get(label, 0) for label in table.index]
    table["total kept"] = table[[c for c in FST_ORDER if c in table.columns]].sum(axis=1)
    return table.to_markdown()


def splits_table(splits: pd.DataFrame) -> str:
    sizes = splits.groupby(["direction", "role", "group"]).size().unstack("group", fill_value=0)
    return sizes.reset_index().to_markdown(index=False)


def arms_table(arms: pd.DataFrame) -> str:
    """Every cell: mean (SD) over repeats, pooled accuracy with Wilson and Wald intervals, N, paired p."""
    order = {a: i for i, a in enumerate(ARMS)}
    arms = arms.assign(order=arms["arm"].map(order)).sort_values(["direction", "condition", "group", "order"])
    table = pd.DataFrame(
        {
            "direction": arms["direction"],
            "condition": arms["condition"],
            "group": arms["group"],
            "arm": arms["arm"],
            "mean (SD) over repeats": [
                f"{m:.3f} ({s:.3f})" for m, s in zip(arms["acc_mean"], arms["acc_sd"], strict=True)
            ],
            "pooled": arms["acc"].map("{:.3f}".format),
            "Wilson 95%": [
                f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(arms["wilson_low"], arms["wilson_high"], strict=True)
            ],
            "Wald 95%": [f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(arms["wald_low"], arms["wald_high"], strict=True)],
            "N": arms["n"].astype(int),
            "p vs fitz_only": arms["p"].map(fmt_p),
            "Holm p": arms["p_holm"].map(fmt_p),
        }
    )
    return table.to_markdown(index=False)


def paired_table(tests: pd.DataFrame) -> str:
    if tests.empty:
        return "(no `fitz_only` arm in this grid: nothing to pair against)"
    shown = tests.assign(
        p=tests["p"].map(fmt_p), p_holm=tests["p_holm"].map(fmt_p), difference=tests["difference"].map("{:+.3f}".format)
    )
    return shown.round(3).to_markdown(index=False)


def trend_table(trends: pd.DataFrame) -> str:
    if trends.empty:
        return "(fewer than two doses in this grid)"
    shown = trends[
        ["direction", "condition", "group", "odds_ratio_per_doubling", "or_low", "or_high", "p", "n", "clusters"]
    ]
    return shown.assign(p=shown["p"].map(fmt_p)).round(3).to_markdown(index=False)


def fairness_tables(fairness: pd.DataFrame) -> list[str]:
    """One table per arm (rows: direction and condition), means over repeats."""
    lines = []
    metric_cols = [c for c in fairness.columns if c.startswith("acc ")]
    metric_cols += ["acc_gap", "acc_ratio", "worst_group_acc", "pqd", "dpm", "eom", "ece"]
    for arm, block in fairness.groupby("arm", sort=False):
        lines += [
            f"### {arm}",
            "",
            block[["direction", "condition", *metric_cols]].round(3).to_markdown(index=False),
            "",
        ]
    return lines


def dose_table(dose: pd.DataFrame) -> str:
    dose = dose.assign(cell=dose.apply(fmt_cell, axis=1))
    return dose.pivot_table(
        index=["direction", "condition", "group"], columns="dose", values="cell", aggfunc="first"
    ).to_markdown()


def spillover_table(spill: pd.DataFrame) -> str:
    """Accuracy of every condition in every run, with the change against the same direction's fitz_only run."""
    base = spill[spill["arm"] == "fitz_only"].set_index(["direction", "condition", "group", "label"])["acc"]
    rows = spill[spill["arm"] != "fitz_only"].copy()
    rows["delta"] = [
        a - base.get((d, c, g, lab), float("nan"))
        for a, d, c, g, lab in zip(
            rows["acc"], rows["direction"], rows["condition"], rows["group"], rows["label"], strict=True
        )
    ]
    rows["cell"] = [
        f"{a:.2f} ({d:+.2f})" if pd.notna(a) else "n/a" for a, d in zip(rows["acc"], rows["delta"], strict=True)
    ]
    wide = rows.pivot_table(
        index=["direction", "group", "condition", "arm"], columns="label", values="cell", aggfunc="first"
    )
    order = [slug(c) for c in load_conditions()]
    return wide.reindex(columns=[c for c in order if c in wide.columns]).reset_index().to_markdown(index=False)


def pyplot() -> ModuleType:
    """matplotlib.pyplot with the file-only backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def arms_figure(arms: pd.DataFrame) -> None:
    plt = pyplot()
    panels = [(d, g) for d in DIRECTIONS for g in DIRECTIONS[d].test_groups if d in set(arms["direction"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), sharey=True, squeeze=False)
    for ax, (direction, group) in zip(axes[0], panels, strict=True):
        block = arms[(arms["direction"] == direction) & (arms["group"] == group)]
        conditions = list(dict.fromkeys(block["condition"]))
        for i, arm in enumerate(ARMS):
            rows = block[block["arm"] == arm].set_index("condition").reindex(conditions)
            x = [j + (i - 1) * 0.27 for j in range(len(conditions))]
            err = [rows["acc"] - rows["wilson_low"], rows["wilson_high"] - rows["acc"]]
            ax.bar(x, rows["acc"], width=0.27, yerr=err, capsize=3, label=arm)
        ax.set_xticks(range(len(conditions)), [c.replace("_", "\n") for c in conditions], fontsize=7)
        ax.set_title(f"{direction}: test {group}", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("pooled accuracy (95% Wilson CI)")
    fig.suptitle("Accuracy on the augmented condition, by arm and test FST group", fontsize=10)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    paths.FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(paths.FIGURES / "arms.png", dpi=110)
    plt.close(fig)


def dose_figure(dose: pd.DataFrame) -> None:
    plt = pyplot()
    groups = list(dict.fromkeys(dose["group"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        levels = sorted(dose["dose"].unique())
        position = {level: i for i, level in enumerate(levels)}
        for i, (condition, rows) in enumerate(dose[dose["group"] == group].groupby("condition")):
            rows = rows.sort_values("dose")
            x = [position[d] for d in rows["dose"]]
            ax.plot(x, rows["acc"], marker="o", color=f"C{i}", label=condition)
            ax.fill_between(x, rows["wilson_low"], rows["wilson_high"], color=f"C{i}", alpha=0.15)
        ax.set_xticks(range(len(levels)), [str(d) for d in levels])
        ax.set_xlabel("synthetic images added (on top of the seeds)")
        ax.set_title(f"test {group}", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("pooled accuracy (95% Wilson CI)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths.FIGURES / "dose_response.png", dpi=110)
    plt.close(fig)


def missing_images_section(summary: dict) -> list[str]:
    """Rows left out for lack of an image file (real dataset), so that no loss goes unreported."""
    if "missing_images_dropped" not in summary:
        return []
    lines = [
        "## Images missing from the dataset folder",
        "",
        f"{summary['missing_images_dropped']} study rows have no image file and were left out before "
        "splitting. By condition and FST group:",
        "",
    ]
    lines += [f"- {key}: {n}" for key, n in sorted(summary["missing_images_by_group"].items())]
    return [*lines, ""]


def model_note(params: Params) -> str:
    model = params.generate.model_name()
    return f" (model `{model}`)" if model != "none" else ""


def read_table(name: str) -> pd.DataFrame:
    """A table written by `evaluate` (empty when the grid has nothing to put in it)."""
    try:
        return pd.read_csv(paths.TABLES / f"{name}.csv")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def render(params: Params) -> str:
    prepared = pd.read_csv(paths.PREPARED_TABLE, dtype=str, keep_default_na=False)
    selection = io.read_json(paths.PREPARED_CONDITIONS)
    prepared = prepared[prepared["label"].isin(selection["conditions"])]
    summary = io.read_json(paths.PREPARED_SUMMARY)
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    arms = pd.read_csv(paths.PLOTS / "arms.csv")
    dose = pd.read_csv(paths.PLOTS / "dose.csv")
    spill = pd.read_csv(paths.PLOTS / "spillover.csv")
    tests = read_table("paired_tests")
    trends = read_table("dose_trend")
    fairness = pd.read_csv(paths.TABLES / "fairness.csv")
    info = io.read_json(paths.FEATURES / "info.json")
    val = arms.drop_duplicates(["direction", "condition", "arm"]).groupby("direction")["val_acc"]
    arms_figure(arms)
    dose_figure(dose)
    lines = [
        "# dermsynth study report",
        "",
        f"Dataset: `{params.dataset.root}` ({summary['rows_kept']} rows kept, "
        f"{summary['fst_unknown_dropped']} study rows with FST -1 dropped). "
        f"Generator: `{params.generate.generator}`{model_note(params)}. "
        f"Backbone: `{info['backbone']}`, weights `{info['weights']}`"
        + (f" ({info['note']})." if info["note"] else "."),
        "",
        f"Every configuration is trained {params.train.repeats} times (training seeds {params.train.seed}"
        f"-{params.train.seed + params.train.repeats - 1}). Cells: accuracy on the test images of the given FST "
        "group, pooled over repeats, with its 95% Wilson interval (Wald, the original study's, beside it in the arms "
        "table) computed on the N distinct images (repeats score the same images, so R x N would be too narrow). "
        "Validation accuracy is in-distribution (the training group); chance is 1/7 = 0.143.",
        "",
        *missing_images_section(summary),
        "## Conditions",
        "",
        f"{', '.join(selection['conditions'])} ({selection['mode']}: {selection['reason']}).",
        "",
        "## Counts by condition and FST",
        "",
        counts_table(prepared, summary),
        "",
        "## Split sizes",
        "",
        splits_table(splits),
        "",
        "## In-distribution validation accuracy (all runs)",
        "",
        val.agg(["mean", "min", "max"]).round(3).to_markdown(),
        "",
        "## Arms: accuracy on the augmented condition",
        "",
        arms_table(arms),
        "",
        "![arms](figures/arms.png)",
        "",
        "## Paired tests against `fitz_only`",
        "",
        "Exact McNemar test on the images of the augmented condition in each test group, each image taken as "
        "correct when it is correct in more than half of the repeats; b = images only `fitz_only` gets right, "
        "c = images only the arm gets right, difference = (c - b) / N. Holm's correction runs over all "
        f"{len(tests)} tests.",
        "",
        paired_table(tests),
        "",
        "## Dose-response (trained on FST I-II; dose 0 = seeds only)",
        "",
        dose_table(dose),
        "",
        "![dose-response](figures/dose_response.png)",
        "",
        "Trend test: logistic regression of per-prediction correctness (every repeat) on log2(1 + dose) over "
        "dose 0 and every level, with standard errors clustered by image (each image is scored at every dose). "
        "Odds ratio per doubling of the dose, with its 95% interval:",
        "",
        trend_table(trends),
        "",
        "## Fairness across FST groups, per arm",
        "",
        "Per run, from per-image predictions on the validation group and both test groups (all conditions), "
        "mean over repeats: accuracy per group, gap (max - min), ratio (min / max, = PQD), worst-group "
        "accuracy, FairDisCo's DPM and EOM (1 = parity), and expected calibration error (10 bins). The "
        "validation group also chose the epoch, so its accuracy is slightly optimistic.",
        "",
        *fairness_tables(fairness),
        "## Spillover: every condition's accuracy, change against `fitz_only` in brackets",
        "",
        spillover_table(spill),
        "",
    ]
    return "\n".join(lines)


def main(params: Params) -> None:
    io.write_text(paths.REPORT, render(params))
    print(f"report: wrote {paths.REPORT} and {paths.FIGURES}/")
