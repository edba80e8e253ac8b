"""What the pipeline recovers when the answer is known: the control generators beside the real ones.

On the embedded data the truth is planted. The simulator draws every lesion's presentation
from its skin tone (imaging/lesions.Difficulty), so `fitz_only` loses accuracy across tone
(the `signal` block). The `oracle` generator's images are new draws from that same process at
the seed's skin type: what a perfect generator would give, so its gain is the most any
generator can recover here. The `null` generator's images carry no information about the label,
so its true gain is zero. A pipeline that finds the oracle's gain and no gain from the null
measures what it claims; the real generators (`tone_transfer`, `reinhard`, ...) sit between.

Per generator, direction and augmented condition, on the far group (the seeds' skin types,
the group the synthetic images are for): the gain of `synthetic_and_seed` over `seed` and over
`fitz_only` in the condition's accuracy (pooled over repeats, with intervals over both arms'
repeats and the shared images, as the paired tests), with what it did to the group's balanced
accuracy, the change in the condition's one-vs-rest AUC (which a shift of the prior toward the
condition cannot raise) and the collapse flag. `finding` says which of the three measures tell the controls apart.
"""

from __future__ import annotations

import math

import pandas as pd

from dermsynth.core.study import DIRECTIONS

ORDER = ("oracle", "tone_transfer", "reinhard", "null")  # positive control, real generators, negative control
COLUMNS = [
    "generator", "direction", "condition", "group", "n", "acc_seed", "acc", "gain_vs_seed", "gain_vs_seed_low",
    "gain_vs_seed_high", "gain_vs_fitz_only", "gain_vs_fitz_only_low", "gain_vs_fitz_only_high",
    "bal_acc_vs_seed", "bal_acc_vs_seed_low", "bal_acc_vs_seed_high", "auc_seed", "auc", "auc_vs_seed",
    "auc_vs_seed_low", "auc_vs_seed_high", "collapse", "verdict", "bal_acc_verdict", "auc_verdict",
]  # fmt: skip
MEASURES = {  # verdict column -> what it measures, in the order the summaries give them
    "verdict": "condition accuracy",
    "bal_acc_verdict": "balanced accuracy",
    "auc_verdict": "condition AUC",
}
CHANGES = {"verdict": "gain_vs_seed", "bal_acc_verdict": "bal_acc_vs_seed", "auc_verdict": "auc_vs_seed"}


def verdict(low: float, high: float) -> str:
    """Where an interval lies: above 0 (a gain), below 0 (a loss), or across it (none shown)."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return "gain" if low > 0 else "loss" if high < 0 else "none shown"


def rows_of(snapshot: dict) -> list[dict]:
    """The far-group rows of one generator's snapshot (`dermsynth compare-generators`)."""
    versus_fitz = {
        (t["direction"], t["condition"], t["group"]): t
        for t in snapshot.get("paired_tests", [])
        if t["arm"] == "synthetic_and_seed"
    }
    out = []
    for test in snapshot["synthetic_vs_seed"]:
        direction, condition, group = test["direction"], test["condition"], test["group"]
        if group != DIRECTIONS[direction].seed_group:
            continue
        fitz = versus_fitz.get((direction, condition, group), {})
        cell = snapshot["arms"].get(f"{direction}/{condition}/synthetic_and_seed/{group}", {})
        low, high = test.get("difference_low", math.nan), test.get("difference_high", math.nan)
        out.append(
            {
                "generator": snapshot["generator"], "direction": direction, "condition": condition, "group": group,
                "n": test["n"], "acc_seed": test["acc_seed"], "acc": test["acc_synthetic_and_seed"],
                "gain_vs_seed": test["difference"], "gain_vs_seed_low": low, "gain_vs_seed_high": high,
                "gain_vs_fitz_only": fitz.get("difference", math.nan),
                "gain_vs_fitz_only_low": fitz.get("difference_low", math.nan),
                "gain_vs_fitz_only_high": fitz.get("difference_high", math.nan),
                "bal_acc_vs_seed": test["bal_acc_difference"], "bal_acc_vs_seed_low": test["bal_acc_diff_low"],
                "bal_acc_vs_seed_high": test["bal_acc_diff_high"], "collapse": bool(cell.get("collapse", False)),
                "verdict": verdict(low, high),
                "bal_acc_verdict": verdict(test["bal_acc_diff_low"], test["bal_acc_diff_high"]),
                **_auc(test),
            }
        )  # fmt: skip
    return out


def _auc(test: dict) -> dict:
    """The AUC columns of one row; NaN (verdict n/a) for snapshots made before AUCs were recorded."""
    low, high = test.get("auc_diff_low", math.nan), test.get("auc_diff_high", math.nan)
    return {
        "auc_seed": test.get("auc_reference", math.nan),
        "auc": test.get("auc_arm", math.nan),
        "auc_vs_seed": test.get("auc_difference", math.nan),
        "auc_vs_seed_low": low,
        "auc_vs_seed_high": high,
        "auc_verdict": verdict(low, high),
    }


def table(snapshots: list[dict]) -> pd.DataFrame:
    """Every snapshot's far-group rows, the controls and known generators in ORDER, others after them."""
    rank = {g: i for i, g in enumerate(ORDER)}
    ordered = sorted(snapshots, key=lambda s: rank.get(s["generator"], len(ORDER)))
    return pd.DataFrame([row for s in ordered for row in rows_of(s)], columns=COLUMNS)


def counts(recovered: pd.DataFrame, column: str = "verdict") -> dict[str, dict[str, int]]:
    """Per generator: how many (direction, condition) pairs show a gain over `seed`, a loss, or neither."""
    return {
        str(g): {v: int((rows[column] == v).sum()) for v in ("gain", "none shown", "loss")}
        for g, rows in recovered.groupby("generator", sort=False)
    }


def separates(by: dict[str, dict[str, int]]) -> bool:
    """A measure tells the controls apart when the null (true gain 0) gains nowhere and the oracle gains somewhere."""
    return by["null"]["gain"] == 0 and by["oracle"]["gain"] > 0


def finding(recovered: pd.DataFrame) -> list[str]:
    """What the controls say about the measures themselves, from the counts (empty without both controls).

    The null's images carry nothing about the label, so any "gain" it shows is what a measure
    reports for nothing: here, the shift of the head's prior toward the augmented condition that
    any one-label augmentation at the far tone teaches. The oracle's gain is real. A measure is to
    be read for the real generators only where it finds the oracle's gain and not the null's.
    """
    if not {"oracle", "null"} <= set(recovered["generator"]):
        return []
    by = {column: counts(recovered, column) for column in MEASURES if recovered[column].ne("n/a").any()}
    pairs = sum(by["verdict"]["null"].values())
    lines = [
        "**Finding: which measures tell the controls apart.** Pairs (of "
        f"{pairs}) whose interval against `seed` lies above 0, for the null control (true gain 0) and the oracle "
        "(a perfect generator):",
        "",
    ]
    for column, c in by.items():
        verdict_text = "separates them" if separates(c) else "does not separate them"
        lines.append(f"- {MEASURES[column]}: null {c['null']['gain']}, oracle {c['oracle']['gain']}: {verdict_text}")
    lines.append("")
    if by["verdict"]["null"]["gain"]:
        lines.append(
            "The null's gains in the condition's accuracy are a shift of the prior: adding images of one condition "
            'at the far skin tone, whatever they show, teaches the head "this tone -> this condition", so the '
            "condition's accuracy rises with the share of the group's predictions that go to it (the collapse rules "
            "flag most of these cells), and the other conditions pay for it in balanced accuracy. The condition's "
            "AUC ranks the group's images by the condition's probability, which a uniform shift of the prior leaves "
            "unchanged."
        )
    good = [column for column, c in by.items() if separates(c)]
    if good:
        lines += [shortfall(recovered, column) for column in good if by[column]["oracle"]["gain"] < pairs]
        lines.append(
            f"Read the real generators on what separates the controls: {', '.join(MEASURES[c] for c in good)}."
        )
    else:
        lines.append(
            "No measure separates the controls at this dose, so the pipeline cannot show the oracle's benefit apart "
            "from the prior shift here. What limits it: every arm adds images of one label at one tone, and the "
            "far group's test images are few."
        )
    return lines


def shortfall(recovered: pd.DataFrame, column: str) -> str:
    """Where the oracle shows no gain on a measure, each pair beside the null's change there, and what limits it.

    A perfect generator that gains nothing in a pair says the pipeline cannot recover a real
    benefit there; where the oracle's change is close to the null's, what its images teach
    about the lesion is outweighed by what every one-label augmentation teaches about tone.
    """
    change = CHANGES[column]
    by_pair = {g: rows.set_index(["direction", "condition"]) for g, rows in recovered.groupby("generator")}
    oracle, null = by_pair["oracle"], by_pair["null"]
    missed = oracle[oracle[column] != "gain"]
    pairs = "; ".join(
        f"{direction} {condition.replace('_', ' ')} ({row[column]}: oracle {row[change]:+.3f}, "
        f"null {null[change].get((direction, condition), math.nan):+.3f})"
        for (direction, condition), row in missed.iterrows()
    )
    return (
        f"On {MEASURES[column]} the oracle shows no gain in {len(missed)} of {len(oracle)} pairs: {pairs}. What "
        "limits it: the arm adds images of one condition at one skin tone, so the shortcut the null shows on its own "
        "(this tone -> this condition) comes with the oracle's images too, and a head that is not linear does not "
        "shift every image's probability alike, so the shortcut can cost AUC; where the oracle's change is close to "
        "the null's, the information in its new lesions does not outweigh it. Augmenting every condition at the "
        "far tone would remove the shortcut."
    )


def _interval(value: float, low: float, high: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def planted(embedded: dict, signal: dict) -> str:
    """One paragraph: what the simulator planted, in its parameters and in fitz_only's measured gap."""
    gaps = "; ".join(
        f"{d}: near {s['near_bal_acc']:.3f}, far {s['far_bal_acc']:.3f}, gap {s['gap']:.3f} "
        f"[{s['gap_low']:.3f}, {s['gap_high']:.3f}]"
        for d, s in signal.items()
    )
    return (
        f"**Planted.** Lesion presentation changes with skin tone (`embedded.tone_shift` "
        f"{embedded['tone_shift']}; lesion strength drawn from {embedded['contrast']}, look-alike mimicry up to "
        f"{embedded['mimicry']}; docs/embedded.md). fitz_only's balanced accuracy near (validation) and far (test "
        f"group at the other extreme): {gaps}. The `oracle`'s images are new draws from the same process at each "
        "seed's skin type (a perfect generator); the `null`'s carry no information about the label (true gain 0)."
    )


def markdown(recovered: pd.DataFrame, planted_text: str, level: str) -> str:
    """The report's section: what was planted, the table, and what was recovered, per generator."""
    if recovered.empty:
        return ""
    lines = [
        planted_text,
        "",
        f"Far group (the seeds' skin types). Gains in the augmented condition's accuracy (pooled over repeats) with "
        f"{level} intervals over both arms' training repeats and the shared test images; the balanced accuracy "
        "change (all conditions) is the cost or benefit elsewhere; the condition's one-vs-rest AUC (images ranked "
        "by the repeats' mean probability for it, paired bootstrap over images) is unchanged by a mere shift toward "
        "calling the condition; `collapse` marks a cell the collapse rules flag.",
        "",
        "| generator | direction | condition | FST | N | acc. seed -> synthetic_and_seed | gain vs seed | gain vs "
        "fitz_only | bal. acc. vs seed | AUC seed -> synthetic_and_seed | AUC vs seed | collapse |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in recovered.itertuples():
        lines.append(
            f"| {r.generator} | {r.direction} | {r.condition} | {r.group} | {r.n} | {r.acc_seed:.3f} -> {r.acc:.3f} "
            f"| {_interval(r.gain_vs_seed, r.gain_vs_seed_low, r.gain_vs_seed_high)} | "
            f"{_interval(r.gain_vs_fitz_only, r.gain_vs_fitz_only_low, r.gain_vs_fitz_only_high)} | "
            f"{_interval(r.bal_acc_vs_seed, r.bal_acc_vs_seed_low, r.bal_acc_vs_seed_high)} | "
            f"{r.auc_seed:.3f} -> {r.auc:.3f} | {_interval(r.auc_vs_seed, r.auc_vs_seed_low, r.auc_vs_seed_high)} | "
            f"{'yes' if r.collapse else 'no'} |"
        )
    lines += [
        "",
        "**Recovered**: pairs whose interval against `seed` lies above 0 / across 0 / below 0, per measure:",
        "",
    ]
    by = {column: counts(recovered, column) for column in MEASURES}
    for generator in by["verdict"]:
        parts = [
            f"{MEASURES[column]} {c[generator]['gain']} / {c[generator]['none shown']} / {c[generator]['loss']}"
            for column, c in by.items()
        ]
        lines.append(f"- `{generator}` (of {sum(by['verdict'][generator].values())}): {'; '.join(parts)}")
    return "\n".join([*lines, "", *finding(recovered)]) + "\n"
