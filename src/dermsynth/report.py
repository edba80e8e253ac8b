"""Stage `report`: Markdown tables and figures that mirror the study, under reports/.

Reads only what earlier stages wrote (reports/metrics.json, reports/plots/*.csv, the prepared
table and the split table, the quality scores) and the published reader-study answers
(`review.answers`), so the report can be rebuilt in a second without training.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.review import analysis
from dermsynth.views import groh_report
from dermsynth.views.figures import arms_figure, confidence, dose_figure
from dermsynth.views.provenance import is_simulated
from dermsynth.views.report_sections import (
    quality_section,
    reader_study_section,
    recovery_section,
    signal_section,
    step_one_section,
)
from dermsynth.views.report_tables import (
    arms_table,
    central_table,
    counts_table,
    dose_table,
    fairness_tables,
    flagged_cells,
    net_benefit_table,
    paired_table,
    spillover_table,
    splits_table,
    trend_table,
)


def simulation_header(params: Params, info: dict) -> list[str]:
    """The report's opening warning when its numbers come from simulated images or random weights."""
    reasons = is_simulated(params, info)
    if not reasons:
        return []
    return [
        "> **Simulated results.** In this run " + "; ".join(reasons) + ". The counts per condition and skin type "
        "are the real dataset's, but the accuracies, gains and p-values below describe the simulator, not "
        "dermatology: **effect sizes do not transfer to real photographs.** Gains on the augmented condition can "
        "be a collapse onto it (see the net-benefit table and its `collapse?` flags). What the simulator does "
        "and does not model: [docs/embedded.md](../docs/embedded.md).",
        "",
    ]


def arms_legend(present: set[str], seeds: int) -> list[str]:
    """What each arm adds to the real images of the training group (the last one is a control, not the paper's)."""
    lines = [
        f"`fitz_only`: the real images of the training group. `seed`: plus the {seeds} seed images of the augmented "
        "condition from the opposite skin-tone group. `synthetic_and_seed`: plus the synthetic images made from them."
    ]
    if "tone_control" in present:
        lines.append(
            "`tone_control` (a control for collapse, not in the paper): plus as many images as `seed` adds, from the "
            "same skin-tone group and labelled as the augmented condition, but showing the *other* augmented "
            "conditions. What it gains on the condition, skin tone alone explains: a `seed` gain no larger than "
            "`tone_control`'s is not evidence that the model learned the disease."
        )
    return [" ".join(lines), ""]


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


def draws_note(params: Params) -> str:
    """How the seeds were drawn: once (the paper), or K times with every seed arm trained per draw."""
    k = params.split.seed_draws
    if k == 1:
        return ", on one draw of the seeds"
    return (
        f" in each of {k} independent draws of the seeds (`split.seed_draws`; `fitz_only`, which sees no seed, "
        f"{k} x {params.train.repeats} times in one go, a reference for each training); "
        "every draw is scored on the same test images, which leave out the seeds of all draws, and where there are "
        "several draws the intervals' units are the draws (each the mean of its repeats), so they include what the "
        "choice of seeds does"
    )


def render(params: Params) -> str:
    prepared = pd.read_csv(paths.PREPARED_TABLE, dtype=str, keep_default_na=False)
    selection = files.read_json(paths.PREPARED_CONDITIONS)
    prepared = prepared[prepared["label"].isin(selection["conditions"])]
    summary = files.read_json(paths.PREPARED_SUMMARY)
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    arms = pd.read_csv(paths.PLOTS / "arms.csv")
    dose = pd.read_csv(paths.PLOTS / "dose.csv")
    spill = pd.read_csv(paths.PLOTS / "spillover.csv")
    tests = read_table("paired_tests")
    trends = read_table("dose_trend")
    fairness = pd.read_csv(paths.TABLES / "fairness.csv")
    central = read_table("synthetic_vs_seed")
    info = files.read_json(paths.FEATURES / "info.json")
    val = arms.drop_duplicates(["direction", "condition", "arm"]).groupby("direction")["val_acc"]
    chance = 1 / len(selection["conditions"])
    level = confidence(params.evaluate.z)
    last_seed = params.train.seed + params.train.repeats * params.split.seed_draws - 1  # core/study.training_seed
    data_note = analysis.data_note(params.dataset.root, params.generate.generator)
    arms_figure(arms, chance, level)
    dose_figure(dose, chance, level)
    lines = [
        "# dermsynth study report",
        "",
        *simulation_header(params, info),
        f"Dataset: `{params.dataset.root}` ({summary['rows_kept']} rows kept, "
        f"{summary['fst_unknown_dropped']} study rows with FST -1 dropped). "
        f"Generator: `{params.generate.generator}`{model_note(params)}. "
        f"Backbone: `{info['backbone']}`, weights `{info['weights']}`"
        + (f" ({info['note']})." if info["note"] else "."),
        "",
        f"Every configuration is trained {params.train.repeats} times{draws_note(params)}; each training has a "
        f"training seed of its own ({params.train.seed}-{last_seed}). Cells: accuracy on the test images of the given "
        "FST "
        f"group, pooled over repeats, with its {level} interval over both training repeats and test images (crossed "
        "random factors, Student's t with Satterthwaite's degrees of freedom; docs/statistics.md): it widens where "
        "the repeats disagree. The arms table also gives the paper's kind of interval, Wilson and Wald on the N "
        "distinct images alone, which leave the spread between trainings out. Validation accuracy is in-distribution "
        "(the training group); chance is "
        f"1/{len(selection['conditions'])} = {chance:.3f}.",
        "",
        *missing_images_section(summary),
        "## Conditions",
        "",
        f"{', '.join(selection['conditions'])} ({selection['mode']}: {selection['reason']}).",
        "",
        *step_one_section(),
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
        *signal_section(files.read_json(paths.SUMMARY).get("signal", {}), level),
        "## Arms: accuracy on the augmented condition",
        "",
        *arms_legend(set(arms["arm"]), params.split.seeds_per_group),
        arms_table(arms, level),
        "",
        "![arms](figures/arms.png)",
        "",
        "## Net benefit: every gain beside its cost",
        "",
        "Per arms cell, over **all** test images of the group (all conditions), pooled over repeats: the augmented "
        f"condition's accuracy, the group's overall accuracy, balanced accuracy (mean per-class recall, {level} "
        "interval over repeats and images), macro-F1 (bootstrap over images), and the share of the group's predictions "
        "that go to the augmented condition; in brackets the change against `fitz_only`. A model that simply "
        "predicts the augmented condition more often raises its accuracy and its share while balanced accuracy "
        "falls: `flag` names the collapse rules a cell meets (`evaluate.collapse_share`; see below).",
        "",
        net_benefit_table(arms, chance, level),
        "",
        *flagged_cells(pd.concat([arms, dose], ignore_index=True), params.evaluate.collapse_share),
        "## The central question: do synthetic images add anything over their seeds?",
        "",
        "`synthetic_and_seed` against `seed` (the same seeds, plus the synthetic images made from them). Left: exact "
        "McNemar on the augmented condition's test images (majority vote over repeats; b = only `seed` right, "
        f"c = only `synthetic_and_seed` right), Holm over these {len(central)} tests. Right: the group's balanced "
        f"accuracy over all conditions, its difference with a {level} interval and a two-sided p (the images "
        "paired, each arm's repeats adding the spread between its trainings; balanced accuracy is a mean of "
        "per-class recalls, which McNemar cannot test), Holm over its own family. The condition's `difference` is "
        "of accuracies pooled over repeats, with the same kind of interval. Last: the condition's one-vs-rest AUC "
        "in the group (images ranked by the repeats' mean probability for the condition), with a paired bootstrap "
        "over images. Calling the condition more often, which any images of "
        "it at this tone teach, raises its accuracy but not its AUC: a gain in AUC means its images were told apart "
        "better.",
        "",
        central_table(central, level),
        "",
        *recovery_section(paths.RECOVERY, params.dataset.root == str(paths.EMBEDDED)),
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
        f"Odds ratio per doubling of the dose, with its {level} interval:",
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
        "Seeds are drawn only for the augmented conditions (`split.seed_conditions`), so every other condition is "
        "tested on all of its images in the group.",
        "",
        spillover_table(spill),
        "",
        *quality_section(paths.QUALITY_REPORTS / "quality.json"),
        *reader_study_section(Path(params.review.answers), analysis.kept_candidates(), params.evaluate.z, data_note),
    ]
    return "\n".join(lines)


def main(params: Params) -> None:
    if (paths.GROH / "predictions.csv").exists():  # step one's tables, with this study's interval level
        groh_report.write(params)
    files.write_text(paths.REPORT, render(params))
    print(f"report: wrote {paths.REPORT} and {paths.FIGURES}/")
