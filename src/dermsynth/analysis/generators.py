"""One table comparing generators: per generator, direction, condition and test group.

Each generator's study is summarised in a snapshot (`dermsynth compare-generators`): its arms
cells (reports/metrics.json), its synthetic-vs-seed paired tests (reports/tables/
synthetic_vs_seed.csv), its quality cells (reports/quality/quality.json) and its cost. The table
joins them: the synthetic_and_seed arm's accuracy (Wilson) and the group's balanced accuracy
(bootstrap), the same-images paired test against `seed` (McNemar, Holm-adjusted) for this
generator, the quality of the synthetic images that arm added (the seed group's cell), and what
making them cost.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.core.study import DIRECTIONS, slug

COLUMNS = [
    "generator", "direction", "condition", "group", "n", "acc", "acc_low", "acc_high", "bal_acc", "bal_acc_low",
    "bal_acc_high", "acc_seed", "difference", "p_holm", "bal_acc_difference", "bal_acc_p_holm", "kid", "kid_se",
    "in_band", "seed_diversity", "distance_to_seed", "usd", "generate_s", "generate_cached",
]  # fmt: skip


def rows_of(snapshot: dict) -> list[dict]:
    """The table's rows for one generator's snapshot."""
    quality = {(slug(c["condition"]), c["group"]): c for c in snapshot["quality"]["cells"]}
    arms = snapshot["arms"]
    out = []
    for test in snapshot["synthetic_vs_seed"]:
        direction, condition, group = test["direction"], test["condition"], test["group"]
        cell = arms.get(f"{direction}/{condition}/synthetic_and_seed/{group}", {})
        made = quality.get((condition, DIRECTIONS[direction].seed_group), {})
        out.append(
            {
                "generator": snapshot["generator"], "direction": direction, "condition": condition, "group": group,
                "n": cell.get("n"), "acc": cell.get("acc"), "acc_low": cell.get("ci_low", cell.get("wilson_low")),
                "acc_high": cell.get("ci_high", cell.get("wilson_high")), "bal_acc": cell.get("bal_acc"),
                "bal_acc_low": cell.get("bal_acc_low"), "bal_acc_high": cell.get("bal_acc_high"),
                "acc_seed": test["acc_seed"], "difference": test["difference"], "p_holm": test["p_holm"],
                "bal_acc_difference": test["bal_acc_difference"], "bal_acc_p_holm": test["bal_acc_p_holm"],
                "kid": made.get("kid"), "kid_se": made.get("kid_se"), "in_band": made.get("in_band"),
                "seed_diversity": made.get("seed_diversity"), "distance_to_seed": made.get("distance_to_seed"),
                "usd": snapshot["usd"], "generate_s": snapshot["generate_s"], "generate_cached": snapshot["cached"],
            }
        )  # fmt: skip
    return out


def comparison(snapshots: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for s in snapshots for row in rows_of(s)], columns=COLUMNS)


def markdown(table: pd.DataFrame, data: str) -> str:
    lines = [
        "# Generators head to head",
        "",
        f"> **Data: {data}.**",
        "",
        "Accuracy of the synthetic_and_seed arm on the augmented condition (Wilson interval) and the test group's "
        "balanced accuracy (bootstrap), the paired McNemar test against the seed arm on the same images "
        "(Holm-adjusted within each generator's study), the quality of the images the arm added (KID against real "
        "images of the seed group, share in the requested ITA band, diversity, distance to the seed), and cost.",
        "",
        "| generator | direction | condition | FST | N | accuracy | vs seed (p Holm) | bal. acc. | KID (SE) | in band "
        "| diversity | to seed | USD | generate s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.generator} | {r.direction} | {r.condition} | {r.group} | {r.n} | {r.acc:.3f} [{r.acc_low:.3f}, "
            f"{r.acc_high:.3f}] | {r.difference:+.3f} ({r.p_holm:.3g}) | {r.bal_acc:.3f} | {r.kid:.3g} "
            f"({r.kid_se:.2g}) | {r.in_band:.2f} | {r.seed_diversity:.3f} | {r.distance_to_seed:.3f} | {r.usd:.2f} | "
            f"{r.generate_s:.1f}{' (cached)' if r.generate_cached else ''} |"
        )
    return "\n".join(lines) + "\n"
