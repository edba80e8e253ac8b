"""Stage `selection`: the paper's rule for its conditions, applied to every label (reports/selection/).

The paper kept the conditions that had both "the largest counts at the extremes of the FST
scale" and "non-zero accuracy when tested on skin types absent from training" in its
reproduction of Groh et al. (step one; the `groh` stage). As a rule over all 114 labels:

1. counts: at least `selection.min_per_extreme` images at FST I-II and at V-VI (a condition is
   seeded and tested at both extremes), ranked by the smaller of the two counts (ties: more
   V-VI images first, then the label);
2. accuracy: held-out accuracy above `selection.min_accuracy` in each FST holdout of
   `selection.schemes` (a12 and a56: trained at one extreme, tested on every other skin type).

ranked.csv lists every label with both counts, their ranks, each held-out accuracy with its N,
whether each criterion is met and the rank among the labels meeting both. selection.json holds
the top `prepare.auto_count`, which `prepare.selection: groh` takes into the study, and
selection.md sets them beside the paper's seven with the reason each differs.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from dermsynth.cohort.groh import extreme_counts
from dermsynth.cohort.selection import read_metadata
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.study import PAPER_CONDITIONS
from dermsynth.views.provenance import is_simulated


def ranked_table(frame: pd.DataFrame, per_label: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Every label with its counts, held-out accuracies, the two criteria and its rank (module docstring)."""
    cfg = params.selection
    table = extreme_counts(frame)
    table["min extremes"] = table[["I-II", "V-VI"]].min(axis=1)
    for scheme in cfg.schemes:
        mine = per_label[per_label["scheme"] == scheme].set_index("label")
        table[f"{scheme} accuracy"] = mine["accuracy"].reindex(table.index)
        table[f"{scheme} N"] = mine["n_test"].reindex(table.index).fillna(0).astype(int)
    table["counts met"] = table["min extremes"] >= cfg.min_per_extreme
    held_out = [table[f"{s} accuracy"] > cfg.min_accuracy for s in cfg.schemes]  # NaN (not in the scheme): not met
    table["accuracy met"] = np.logical_and.reduce(held_out) if held_out else True
    table["eligible"] = table["counts met"] & table["accuracy met"]
    order = ["eligible", "min extremes", "V-VI", "label"]
    table = table.reset_index().sort_values(order, ascending=[False, False, False, True], ignore_index=True)
    table["rank"] = np.where(table["eligible"], np.arange(1, len(table) + 1), np.nan)
    return table.drop(columns="eligible")


def why_not(row: pd.Series, params: Params) -> str:
    """Why a label is not among the rule's choices: the criterion it fails, or its rank."""
    cfg = params.selection
    if not row["counts met"]:
        return f"{int(row['min extremes'])} images at its rarer extreme, below {cfg.min_per_extreme}"
    if not row["accuracy met"]:
        failed = [f"{s} {row[f'{s} accuracy']:.3f} (N {row[f'{s} N']})" for s in cfg.schemes
                  if not row[f"{s} accuracy"] > cfg.min_accuracy]  # fmt: skip
        return f"held-out accuracy not above {cfg.min_accuracy}: " + ", ".join(failed)
    return f"meets both criteria but ranks {int(row['rank'])}, beyond the top {params.prepare.auto_count}"


def comparison(table: pd.DataFrame, chosen: list[str], params: Params) -> list[str]:
    """The rule's choice beside the paper's seven, one row per label in either, with the reason where they differ."""
    schemes = params.selection.schemes
    head = ["label", "paper", "rule", "I-II", "V-VI", *(f"{s} accuracy (N)" for s in schemes), "rank", "why not chosen"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_label = table.set_index("label")
    for label in list(PAPER_CONDITIONS) + [c for c in chosen if c not in PAPER_CONDITIONS]:
        row = by_label.loc[label]
        accuracies = [f"{row[f'{s} accuracy']:.3f} ({row[f'{s} N']})" if pd.notna(row[f"{s} accuracy"]) else "-"
                      for s in schemes]  # fmt: skip
        rank = "-" if pd.isna(row["rank"]) else str(int(row["rank"]))
        reason = "" if label in chosen else why_not(row, params)
        marks = f"{'yes' if label in PAPER_CONDITIONS else ''} | {'yes' if label in chosen else ''}"
        counts = f"{row['I-II']} | {row['V-VI']}"
        lines.append(f"| {label} | {marks} | {counts} | " + " | ".join(accuracies) + f" | {rank} | {reason} |")
    return lines


def markdown(table: pd.DataFrame, chosen: list[str], params: Params, info: dict) -> str:
    cfg = params.selection
    lines = ["# Step one: the rule that chooses the conditions", ""]
    simulated = is_simulated(params, info)
    if simulated:
        lines += [
            "> **Simulated results.** " + "; ".join(simulated) + ". The counts are the real dataset's; "
            "the held-out accuracies are the simulator's: the choice below is not the paper's evidence.",
            "",
        ]
    lines += [f"A label qualifies with at least {cfg.min_per_extreme} images at both FST I-II and V-VI and held-out "
              f"accuracy above {cfg.min_accuracy} in {', '.join(cfg.schemes)} (reports/groh/); qualifying labels rank "
              f"by their rarer extreme's count. {int(table['rank'].notna().sum())} of {len(table)} labels qualify; "
              f"the top {params.prepare.auto_count} are the rule's choice (`prepare.selection: groh` studies them).",
              ""]  # fmt: skip
    overlap = len(set(chosen) & set(PAPER_CONDITIONS))
    lines += [f"The rule and the paper share {overlap} of {len(PAPER_CONDITIONS)} conditions.", ""]
    lines += [*comparison(table, chosen, params), "", "Every label: reports/selection/ranked.csv.", ""]
    return "\n".join(lines)


def main(params: Params) -> None:
    source = paths.dataset_metadata(params.dataset.root)
    frame = read_metadata(source)
    per_label = pd.read_csv(paths.GROH_REPORTS / "per_label.csv")
    table = ranked_table(frame, per_label, params)
    chosen = list(table.loc[table["rank"].notna(), "label"].head(params.prepare.auto_count))
    info = files.read_json(paths.GROH / "features" / "info.json")
    files.write_csv(paths.SELECTION / "ranked.csv", table)
    files.write_json(paths.SELECTION / "selection.json", {
        "conditions": chosen, "paper": list(PAPER_CONDITIONS), "qualifying": int(table["rank"].notna().sum()),
        "metadata_md5": hashlib.md5(source.read_bytes()).hexdigest(),  # prepare checks the study reads the same data
    })  # fmt: skip
    files.write_text(paths.SELECTION / "selection.md", markdown(table, chosen, params, info))
    print(f"selection: {int(table['rank'].notna().sum())} of {len(table)} labels meet both criteria; the top "
          f"{len(chosen)}: {chosen}")  # fmt: skip
