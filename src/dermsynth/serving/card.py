"""The model card of a served model: what it is for, what it learnt from, how it does per skin type.

Built from the pipeline's files only (the served repeat's predictions, the training set, the
features' record), as JSON for machines and Markdown for readers; `register` writes both into
the packaged model and, for each direction's champion, under reports/model_cards/.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from dermsynth.analysis.fairness import fairness_metrics
from dermsynth.analysis.groups import by_group
from dermsynth.core.study import DIRECTIONS, slug

INTENDED_USE = (
    "Research on whether synthetic images of skin disease improve a classifier for skin types it rarely saw: "
    "comparing arms and doses of the study, and scoring external datasets per Fitzpatrick skin type."
)
OUT_OF_SCOPE = [
    "Not a diagnostic device: never use it to diagnose, triage or reassure a patient.",
    "Only the study's conditions exist for it: an image of any other condition still gets one of them.",
    "Skin types it was not trained on are the point of the study: read the held-out groups' rows below.",
]
OVER_PREDICTED = 0.10  # a class whose predicted share exceeds its true share by this much is listed as a collapse sign


def md5(path: Path) -> str:
    """A file's md5, the hash DVC records for it in dvc.lock."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def training_mix(train: pd.DataFrame, splits: pd.DataFrame, curated: pd.DataFrame) -> dict:
    """Images per FST group and condition of a training set; synthetic images count in their seed's group."""
    group = dict(zip(splits["md5hash"], splits["group"], strict=False))
    group |= dict(zip(curated["file"], curated["seed_group"], strict=False))
    synthetic = ~train["key"].isin(set(splits["md5hash"]))
    groups = train["key"].map(group)
    return {
        "n": len(train),
        "n_synthetic": int(synthetic.sum()),
        "synthetic_share": float(synthetic.mean()) if len(train) else 0.0,
        "by_group": {str(g): int(n) for g, n in groups.value_counts().sort_index().items()},
        "by_condition": {str(c): int(n) for c, n in train["label"].value_counts().sort_index().items()},
    }


def spillover(rows: pd.DataFrame, reference: pd.DataFrame, tolerance: float) -> list[dict]:
    """Test cells (group x condition) where the model falls more than ``tolerance`` below the reference arm."""
    found = []
    for (group, label), part in rows.groupby(["group", "label"], sort=True):
        ref = reference[(reference["group"] == group) & (reference["label"] == label)]
        acc, ref_acc = float(part["correct"].mean()), float(ref["correct"].mean())
        if acc < ref_acc - tolerance:
            found.append({"group": group, "condition": label, "acc": acc, "reference_acc": ref_acc, "n": len(part)})
    return found


def collapse_signs(rows: pd.DataFrame) -> list[dict]:
    """Per test group, classes predicted far more often than they occur (a model collapsing onto them)."""
    found = []
    for group, part in rows.groupby("group", sort=True):
        true = part["label"].value_counts(normalize=True)
        predicted = part["pred"].value_counts(normalize=True)
        for label, share in predicted.items():
            if share - true.get(label, 0.0) >= OVER_PREDICTED:
                found.append(
                    {
                        "group": group,
                        "class": label,
                        "predicted_share": float(share),
                        "true_share": float(true.get(label, 0.0)),
                    }
                )
    return found


def interval_text(z: float) -> str:
    from statistics import NormalDist

    coverage = 2 * NormalDist().cdf(z) - 1
    methods = "Wilson for accuracy, bootstrap over images for balanced accuracy and ECE"
    return f"{100 * coverage:.0f}% intervals (z = {z:.2f}): {methods}"


def build(facts: dict, predictions: pd.DataFrame, reference: pd.DataFrame, classes: list[str], z: float) -> dict:
    """The card's JSON; ``facts`` holds the model, training data, selection and version entries."""
    test = predictions[predictions["split"] == "test"]
    val = predictions[predictions["split"] == "val"]
    by_condition = {
        str(g): {slug(c): {"n": len(p), "acc": float(p["correct"].mean())} for c, p in part.groupby("label", sort=True)}
        for g, part in test.groupby("group", sort=True)
    }
    return {
        **facts,
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "performance": {
            "interval": interval_text(z),
            "validation": by_group(val, classes, z),
            "test": by_group(test, classes, z),
            "test_by_condition": by_condition,
        },
        "fairness": fairness_metrics(pd.concat([val, test]), "group"),
        "failure_modes": {
            "spillover": spillover(test, reference[reference["split"] == "test"], facts["selection"]["tolerance"]),
            "collapse": collapse_signs(test),
        },
    }


def fmt(value: float) -> str:
    return f"{value:.3f}"


def group_table(groups: dict[str, dict], split: str) -> list[str]:
    lines = []
    for group, s in groups.items():
        lines.append(
            f"| {split} | {group} | {s['n']} | {fmt(s['acc'])} [{fmt(s['acc_low'])}, {fmt(s['acc_high'])}] | "
            f"{fmt(s['bal_acc'])} [{fmt(s['bal_acc_low'])}, {fmt(s['bal_acc_high'])}] | "
            f"{fmt(s['ece'])} [{fmt(s['ece_low'])}, {fmt(s['ece_high'])}] | {fmt(s['confidence'])} |"
        )
    return lines


def markdown(card: dict) -> str:
    """The card for readers: the data caveat first, then use, training data, per-group results, failures, versions."""
    m, t, perf = card["model"], card["training_data"], card["performance"]
    direction = DIRECTIONS[m["direction"]]
    lines = [
        f"# Model card: {m['registered_name']} ({m['trained_as']}, repeat {m['served_repeat']})",
        "",
        f"> **Data: {card['data_kind']}.**",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "Out of scope:",
        *(f"- {line}" for line in card["out_of_scope"]),
        "",
        "## Training data",
        f"- Direction {m['direction']}: trained on FST {direction.train_group}, held out "
        f"{' and '.join(direction.test_groups)}; arm `{m['arm']}`"
        + (f", condition {m['condition']}" if m["condition"] else "")
        + (f", dose {m['dose']}" if m["dose"] is not None else ""),
        f"- {t['n']} images, of which {t['n_synthetic']} synthetic ({100 * t['synthetic_share']:.1f}%, "
        f"generator `{t['generator']}`, model `{t['generator_model']}`)",
        "- By FST group: " + ", ".join(f"{g} {n}" for g, n in t["by_group"].items()),
        "- By condition: " + ", ".join(f"{c} {n}" for c, n in t["by_condition"].items()),
        f"- Backbone: {card['backbone']}",
        "",
        "## Performance per FST group",
        perf["interval"] + ". Validation holds the training group only; the test groups were never used to "
        "choose anything.",
        "",
        "| split | FST | N | accuracy | balanced accuracy | ECE | mean confidence |",
        "|---|---|---|---|---|---|---|",
        *group_table(perf["validation"], "validation"),
        *group_table(perf["test"], "test"),
        "",
        "Fairness over the scored groups: "
        + ", ".join(f"{k} {fmt(card['fairness'][k])}" for k in ("worst_group_acc", "acc_gap", "pqd", "dpm", "eom")),
        "",
        "## Known failure modes",
        *failure_lines(card["failure_modes"], card["selection"]["tolerance"]),
        "",
        "## Selection",
        f"Worst validation stratum {fmt(card['selection']['worst_stratum'])}, "
        f"overall {fmt(card['selection']['overall'])}; "
        + ("champion of its direction" if card["selection"]["champion"] else "not the champion")
        + f" ({card['selection']['reason']}).",
        "",
        card["selection"]["rule"],
        "",
        "## Versions",
        "- code: the `git_commit` tag of this model's registered version in MLflow",
        *(f"- `{path}` md5 {digest}" for path, digest in card["versions"]["files"].items()),
        "",
    ]
    return "\n".join(lines)


def failure_lines(failures: dict, tolerance: float) -> list[str]:
    spill = failures["spillover"]
    lines = [
        f"- Spillover (test cells more than {tolerance} below the fitz_only reference): "
        + (
            "; ".join(
                f"{s['condition']} at {s['group']} {fmt(s['acc'])} vs {fmt(s['reference_acc'])} (N {s['n']})"
                for s in spill
            )
            or "none"
        )
    ]
    collapse = failures["collapse"]
    lines.append(
        f"- Collapse signs (a class predicted at least {OVER_PREDICTED:.2f} more often than it occurs): "
        + (
            "; ".join(
                f"{c['class']} at {c['group']}: {fmt(c['predicted_share'])} predicted vs {fmt(c['true_share'])} true"
                for c in collapse
            )
            or "none"
        )
    )
    return lines
