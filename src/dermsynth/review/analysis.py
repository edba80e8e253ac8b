"""What a reader study found: can readers tell synthetic from real, do they agree, can they diagnose.

Per answer, "correct" means the reader's real/synthetic verdict matches the truth. Accuracy near
0.5 means readers cannot tell the two apart. Intervals are Wilson intervals over answers (each
reader-image pair one trial; readers are not independent of their images, so they are a little
narrow when a few images dominate). Agreement is Fleiss' kappa over the images every reader
answered (Cohen's kappa for each pair of readers too). Against curation, each candidate's
"judged real" rate is compared between the candidates curation kept and those it did not.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from dermsynth.analysis.stats import wilson
from dermsynth.core import paths


def cell(hits: pd.Series, z: float) -> dict[str, float]:
    n = len(hits)
    k = float(hits.sum())
    low, high = wilson(k, n, z) if n else (float("nan"), float("nan"))
    return {"n": n, "rate": k / n if n else float("nan"), "low": low, "high": high}


def fleiss_kappa(ratings: np.ndarray) -> float:
    """Fleiss' kappa from an (items, categories) table of how many raters chose each category."""
    n = ratings.sum(axis=1)
    if len(ratings) == 0 or not (n == n[0]).all() or n[0] < 2:
        return float("nan")
    raters = n[0]
    agreement = ((ratings**2).sum(axis=1) - raters) / (raters * (raters - 1))
    shares = ratings.sum(axis=0) / ratings.sum()
    expected = float((shares**2).sum())
    return float((agreement.mean() - expected) / (1 - expected)) if expected < 1 else float("nan")


def cohen_kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's kappa of two raters' labels for the same items (aligned series)."""
    observed = float((a.to_numpy() == b.to_numpy()).mean())
    categories = set(a) | set(b)
    expected = sum(float((a == c).mean()) * float((b == c).mean()) for c in categories)
    return (observed - expected) / (1 - expected) if expected < 1 else float("nan")


def agreement(answers: pd.DataFrame) -> dict:
    """Fleiss' kappa over the images every reader answered, and Cohen's kappa per pair of readers."""
    verdicts = answers.pivot_table(index="item", columns="reader", values="judged_real", aggfunc="first")
    complete = verdicts.dropna()
    table = np.stack([(complete == 1).sum(axis=1), (complete == 0).sum(axis=1)], axis=1)
    pairs = {
        f"{a}|{b}": cohen_kappa(verdicts[[a, b]].dropna()[a], verdicts[[a, b]].dropna()[b])
        for a, b in itertools.combinations(sorted(verdicts.columns), 2)
    }
    return {"fleiss_kappa": fleiss_kappa(table), "items_all_readers": len(complete), "cohen_kappa": pairs}


def curation_link(answers: pd.DataFrame, kept: set[str]) -> dict:
    """Mean "judged real" rate of synthetic candidates that curation kept vs did not keep."""
    synth = answers[answers["kind"] == "synthetic"]
    rates = synth.groupby("key")["judged_real"].mean()
    inside, outside = rates[rates.index.isin(kept)], rates[~rates.index.isin(kept)]
    mean = lambda s: float(s.mean()) if len(s) else float("nan")  # noqa: E731
    return {
        "kept": {"candidates": len(inside), "judged_real": mean(inside)},
        "not_kept": {"candidates": len(outside), "judged_real": mean(outside)},
        "difference": mean(inside) - mean(outside),
    }


PUBLISHED = ("reader", "item", "key", "kind", "label", "fst_group", "judged_real", "confidence", "condition",
             "answered_at")  # fmt: skip  # the columns of review.answers: all but the readers' free-text notes


def analyse(answers: pd.DataFrame, kept: set[str] | None, z: float) -> dict:
    """The study's numbers from its answers (review/store.answers)."""
    answers = answers.assign(
        correct=(answers["judged_real"] == 1) == (answers["kind"] == "real"),
        diagnosed=answers["condition"] == answers["label"],
    )
    real, synth = answers[answers["kind"] == "real"], answers[answers["kind"] == "synthetic"]
    return {
        "readers": int(answers["reader"].nunique()),
        "answers": len(answers),
        "images": int(answers["item"].nunique()),
        "realism": {
            "all": cell(answers["correct"], z),
            "by_group": {g: cell(p["correct"], z) for g, p in answers.groupby("fst_group", sort=True)},
            "by_condition": {c: cell(p["correct"], z) for c, p in answers.groupby("label", sort=True)},
            "by_reader": {r: cell(p["correct"], z) for r, p in answers.groupby("reader", sort=True)},
        },
        "sensitivity": cell(synth["judged_real"] == 0, z),  # synthetic images called synthetic
        "specificity": cell(real["judged_real"] == 1, z),  # real images called real
        "agreement": agreement(answers),
        "diagnosis": {"real": cell(real["diagnosed"], z), "synthetic": cell(synth["diagnosed"], z)},
        "curation": curation_link(answers, kept) if kept is not None else None,
    }


def kept_candidates() -> set[str] | None:
    """The candidates curation kept (build/curated/manifest.csv), when curation has run."""
    manifest = paths.CURATED / paths.MANIFEST_NAME
    return set(pd.read_csv(manifest, dtype=str)["file"]) if manifest.exists() else None


def data_note(dataset_root: str, generator: str) -> str:
    """What the readers looked at, for the report's first line."""
    if dataset_root == str(paths.EMBEDDED):
        return "the embedded dataset's simulated images stand for the real ones: these are not photographs of patients"
    return f"real images from {dataset_root}; synthetic candidates from {generator}"


def fmt(c: dict) -> str:
    return f"{c['rate']:.3f} [{c['low']:.3f}, {c['high']:.3f}] (N {c['n']})"


def markdown(result: dict) -> str:
    r = result["realism"]
    lines = [
        "# Reader study: real or synthetic?",
        "",
        *([f"> **Data: {result['data']}.**", ""] if result.get("data") else []),
        f"{result['readers']} readers, {result['images']} images, {result['answers']} answers. Accuracy at telling "
        "synthetic from real (0.5: indistinguishable), Wilson intervals over answers.",
        "",
        "| stratum | accuracy |",
        "|---|---|",
        f"| all | {fmt(r['all'])} |",
        *(f"| FST {g} | {fmt(c)} |" for g, c in r["by_group"].items()),
        *(f"| {k} | {fmt(c)} |" for k, c in r["by_condition"].items()),
        *(f"| reader {k} | {fmt(c)} |" for k, c in r["by_reader"].items()),
        "",
        f"- Sensitivity (synthetic called synthetic): {fmt(result['sensitivity'])}",
        f"- Specificity (real called real): {fmt(result['specificity'])}",
        f"- Agreement: Fleiss' kappa {result['agreement']['fleiss_kappa']:.3f} over "
        f"{result['agreement']['items_all_readers']} images every reader answered; Cohen's kappa "
        + ", ".join(f"{pair} {k:.3f}" for pair, k in result["agreement"]["cohen_kappa"].items()),
        f"- Diagnosis accuracy: real {fmt(result['diagnosis']['real'])}, "
        f"synthetic {fmt(result['diagnosis']['synthetic'])}",
    ]
    if result["curation"]:
        c = result["curation"]
        lines.append(
            f"- Judged-real rate of candidates curation kept {c['kept']['judged_real']:.3f} "
            f"({c['kept']['candidates']}) vs not kept {c['not_kept']['judged_real']:.3f} "
            f"({c['not_kept']['candidates']})"
        )
    return "\n".join(lines) + "\n"
