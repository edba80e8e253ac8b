"""reports/groh/: the 114-label study's results as JSON and Markdown laid out like Groh et al.'s (stage `report`).

Groh et al. (2021) give one row per holdout scheme and one column per test skin type; so does
groh.md, once for top-1 and once for top-k accuracy, each cell with its interval over repeats
and images, and N, the test images behind it.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.analysis.groh_results import FSTS, scheme_results
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.views.figures import confidence
from dermsynth.views.provenance import is_simulated

SCHEME_TEXT = {
    "expert_select": "trained on unreviewed images, tested on those a dermatologist confirmed (qc 1 Diagnostic)",
    "random_holdout": "a random, per-label 20% test split",
    "a12": "trained on FST I-II, tested on III-VI",
    "a34": "trained on FST III-IV, tested on I-II and V-VI",
    "a56": "trained on FST V-VI, tested on I-IV",
    "dermaamin": "trained on Atlas Dermatologico, tested on DermaAmin",
    "br": "trained on DermaAmin, tested on Atlas Dermatologico",
}


def fmt(value: dict | None) -> str:
    """A cell: estimate (low-high), or a dash where no test image was there."""
    if not value:
        return "-"
    return f"{value['estimate']:.3f} ({value['low']:.3f}-{value['high']:.3f})"


def scheme_table(results: dict, measure: str) -> list[str]:
    """One row per scheme: test images, labels, the overall cell and one cell per test FST, N per FST below."""
    head = ["scheme", "test images", "labels", "all", *(f"FST {f}" for f in FSTS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scheme, entry in results.items():
        cells = [fmt((entry["by_fst"].get(str(f)) or {}).get(measure)) for f in FSTS]
        lines.append(f"| {scheme} | {entry['n_test']} | {entry['labels']} | {fmt(entry['overall'][measure])} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return lines


def counts_table(results: dict) -> list[str]:
    """The test images behind each FST cell (their own table keeps the accuracy rows readable)."""
    head = ["scheme", *(f"FST {f}" for f in FSTS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scheme, entry in results.items():
        counts = [str((entry["by_fst"].get(str(f)) or {}).get("n", 0)) for f in FSTS]
        lines.append(f"| {scheme} | " + " | ".join(counts) + " |")
    return lines


def source_table(results: dict) -> list[str]:
    """The source holdouts per atlas tested on."""
    lines = ["| scheme | tested on | N | accuracy | top-k |", "|---|---|---|---|---|"]
    for scheme in ("dermaamin", "br"):
        for source, value in results.get(scheme, {}).get("by_source", {}).items():
            lines.append(f"| {scheme} | {source} | {value['n']} | {fmt(value['accuracy'])} | {fmt(value['top_k'])} |")
    return lines


def markdown(results: dict, skipped: dict[str, str], params: Params, info: dict) -> str:
    """groh.md: what the data are, the schemes, then the top-1, top-k, count and source tables."""
    level, k = confidence(params.evaluate.z), params.groh.top_k
    simulated = is_simulated(params, info)
    lines = ["# Step one: Groh et al.'s 114-label study", ""]
    if simulated:
        lines += ["> **Simulated results.** " + "; ".join(simulated) + ". The counts per label, skin type, atlas "
                  "and `qc` are the real dataset's; the accuracies describe the simulator (docs/embedded.md, "
                  "\"All 114 labels\"), not dermatology.", ""]  # fmt: skip
    backbone = f"{info.get('backbone')} ({info.get('weights')} weights, {info.get('precision')})"
    lines += [f"Backbone {backbone}, the study's head protocol (`train`), {params.groh.repeats} repeats per scheme. "
              f"Each cell: mean over repeats and test images, {level} interval over both. FST -1 images are in no "
              "scheme (docs/groh.md).", ""]  # fmt: skip
    lines += [f"- `{s}`: {SCHEME_TEXT[s]}" for s in results]
    lines += [f"- `{s}`: **not formed on this dataset**: {why}" for s, why in skipped.items()] + [""]
    lines += ["## Top-1 accuracy", "", *scheme_table(results, "accuracy"), ""]
    lines += [f"## Top-{k} accuracy", "", *scheme_table(results, "top_k"), ""]
    lines += ["## Test images per skin type", "", *counts_table(results), ""]
    if any("by_source" in e for e in results.values()):
        lines += ["## Source holdouts", "", *source_table(results), ""]
    return "\n".join(lines)


def write(params: Params) -> dict:
    """reports/groh/results.json and groh.md from the `groh` stage's outputs (build/groh/); the results."""
    predictions = pd.read_csv(paths.GROH / "predictions.csv", dtype={"md5hash": str}, keep_default_na=False)
    predictions["source"] = predictions["source"].replace("", None)
    made = files.read_json(paths.GROH / "schemes.json")
    info = files.read_json(paths.GROH / "features" / "info.json")
    results = scheme_results(predictions, made["schemes"], params.evaluate.z)
    out = {"top_k": params.groh.top_k, "schemes": results, "skipped": made["skipped"]}
    files.write_json(paths.GROH_REPORTS / "results.json", out)
    files.write_text(paths.GROH_REPORTS / "groh.md", markdown(results, made["skipped"], params, info))
    return results
