"""Markdown tables of the study report: formatting only, from the frames `evaluate` wrote.

Kept apart from `report` (which decides what the report says, and in what order) so that each
table can be read, and tested, on its own.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.core.study import ARMS, load_conditions, slug

FST_ORDER = ["1", "2", "3", "4", "5", "6"]


def fmt_cell(row: pd.Series) -> str:
    """Pooled accuracy over repeats with its interval (trainings x images) and N (the compact form of wide tables)."""
    if pd.isna(row.get("acc")):
        return "n/a"
    return f"{row['acc']:.3f} ({row['ci_low']:.3f}-{row['ci_high']:.3f}) N={int(row['n'])}"


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


def arms_table(arms: pd.DataFrame, level: str) -> str:
    """Every cell: mean (SD) over repeats, pooled accuracy with its interval over repeats and images, the paper's
    Wilson and Wald intervals (images only), N, paired p."""
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
            f"{level} (trainings x images)": [
                f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(arms["ci_low"], arms["ci_high"], strict=True)
            ],
            f"Wilson {level} (images only)": [
                f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(arms["wilson_low"], arms["wilson_high"], strict=True)
            ],
            f"Wald {level}": [f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(arms["wald_low"], arms["wald_high"], strict=True)],
            "N": arms["n"].fillna(0).astype(int),  # 0: no test image of the condition in the group (tiny data)
            "p vs fitz_only": arms["p"].map(fmt_p),
            "Holm p": arms["p_holm"].map(fmt_p),
        }
    )
    return table.to_markdown(index=False)


def signed(value: float, digits: int = 3) -> str:
    return "" if pd.isna(value) else f" ({value:+.{digits}f})"


def with_interval(value: float, low: float, high: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.3f} [{low:.3f}-{high:.3f}]"


def net_benefit_table(arms: pd.DataFrame, chance: float, level: str) -> str:
    """Every cell's gain beside its cost: the group's overall and balanced accuracy, macro-F1, prediction share."""
    order = {a: i for i, a in enumerate(ARMS)}
    arms = arms.assign(order=arms["arm"].map(order).fillna(len(order))).sort_values(
        ["direction", "condition", "group", "order", "dose"]
    )
    table = pd.DataFrame(
        {
            "direction": arms["direction"],
            "condition": arms["condition"],
            "group": arms["group"],
            "arm": arms["arm"],
            "condition acc": [f"{a:.3f}{signed(d)}" for a, d in zip(arms["acc"], arms["d_acc"], strict=True)],
            "group acc": [f"{a:.3f}{signed(d)}" for a, d in zip(arms["group_acc"], arms["d_group_acc"], strict=True)],
            f"balanced acc [{level}]": [
                with_interval(a, lo, hi) + signed(d)
                for a, lo, hi, d in zip(
                    arms["bal_acc"], arms["bal_acc_low"], arms["bal_acc_high"], arms["d_bal_acc"], strict=True
                )
            ],
            "macro-F1": [f"{a:.3f}{signed(d)}" for a, d in zip(arms["macro_f1"], arms["d_macro_f1"], strict=True)],
            "share to condition": [f"{a:.3f}{signed(d)}" for a, d in zip(arms["share"], arms["d_share"], strict=True)],
            "flag": [flag_text(r) for r in arms.to_dict("records")],
        }
    )
    below = arms["acc"] < chance
    note = f"\n\n{int(below.sum())} of {len(arms)} cells have a condition accuracy below chance ({chance:.3f})."
    return table.to_markdown(index=False) + note


def flag_text(row: dict) -> str:
    """The flag column: which collapse rules a cell meets ("" for none)."""
    rules = [name for name, key in (("share", "collapse_share"), ("balanced", "collapse_bal")) if row.get(key)]
    return f"collapse ({', '.join(rules)})" if rules else ""


def flagged_cells(cells: pd.DataFrame, k: float) -> list[str]:
    """How many cells each collapse rule flags, then a sentence per flagged cell: none of them is a gain."""
    flagged = cells[cells["collapse"].astype(bool)]
    augmented = int((cells["arm"] != "fitz_only").sum())
    counts = (
        f"Collapse rules over {augmented} augmented cells: **{int(cells['collapse_share'].sum())}** flagged by"
        f" prediction share (more than {k:g} x the condition's prevalence of the group's predictions go to "
        f"it), **{int(cells['collapse_bal'].sum())}** by balanced accuracy (condition accuracy up, the group's "
        "balanced accuracy down against `fitz_only`)."
    )
    if flagged.empty:
        return [counts, "", "No cell is flagged: every change in condition accuracy stands beside its cost above.", ""]
    lines = [
        counts,
        "",
        f"**{len(flagged)} cells are flagged `collapse`: their change in condition accuracy is not a gain.** It is, "
        "at least in part, the model predicting that condition for images of the group that are not it.",
        "",
    ]
    lines += [
        f"- {r.direction} / {r.condition} / {r.group} / {r.arm}: condition {r.acc:.3f} ({r.d_acc:+.3f}), "
        f"balanced {r.bal_acc:.3f} ({r.d_bal_acc:+.3f}), share to the condition {r.share:.3f} ({r.d_share:+.3f}) "
        f"against a prevalence of {r.prevalence:.3f}; {flag_text(r._asdict())}"
        for r in flagged.itertuples()
    ]
    return [*lines, ""]


def _arrow(tests: pd.DataFrame, measure: str) -> list[str]:
    """`seed -> synthetic_and_seed` for one measure's reference and arm columns."""
    return [f"{a:.3f} -> {b:.3f}" for a, b in zip(tests[f"{measure}_reference"], tests[f"{measure}_arm"], strict=True)]


def _with_interval(tests: pd.DataFrame, value: str, bounds: str) -> list[str]:
    """`d [low, high]` from a difference column and its `<bounds>_low` / `<bounds>_high` columns."""
    columns = zip(tests[value], tests[f"{bounds}_low"], tests[f"{bounds}_high"], strict=True)
    return [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in columns]


def central_table(tests: pd.DataFrame, level: str) -> str:
    if tests.empty:
        return "(the grid lacks the `seed` or `synthetic_and_seed` arm: nothing to compare)"
    shown = pd.DataFrame(
        {
            "direction": tests["direction"],
            "condition": tests["condition"],
            "group": tests["group"],
            "N": tests["n"],
            "seed": tests["acc_seed"].map("{:.3f}".format),
            "synthetic_and_seed": tests["acc_synthetic_and_seed"].map("{:.3f}".format),
            "difference": tests["difference"].map("{:+.3f}".format),
            "b / c": [f"{b} / {c}" for b, c in zip(tests["b_only_seed"], tests["c_only_synthetic"], strict=True)],
            "McNemar p": tests["p"].map(fmt_p),
            "Holm p": tests["p_holm"].map(fmt_p),
            "N group": tests["n_group"],
            "balanced acc: seed -> synthetic": _arrow(tests, "bal_acc"),
            f"difference [{level}]": _with_interval(tests, "bal_acc_difference", "bal_acc_diff"),
            "p (t)": tests["bal_acc_p"].map(fmt_p),
            "Holm p (balanced)": tests["bal_acc_p_holm"].map(fmt_p),
            "condition AUC: seed -> synthetic": _arrow(tests, "auc"),
            f"AUC difference [{level}]": _with_interval(tests, "auc_difference", "auc_diff"),
            "Holm p (AUC)": tests["auc_p_holm"].map(fmt_p),
        }
    )
    return shown.to_markdown(index=False)


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
    wide = wide.reindex(columns=[c for c in order if c in wide.columns]).reset_index()
    sizes = spill.drop_duplicates(["direction", "group", "label"]).pivot_table(
        index=["direction", "group"], columns="label", values="n", aggfunc="first"
    )
    sizes = sizes.reindex(columns=[c for c in order if c in sizes.columns]).astype(int).reset_index()
    return "\n\n".join(
        [wide.to_markdown(index=False), "Test images per condition (N):", sizes.to_markdown(index=False)]
    )
