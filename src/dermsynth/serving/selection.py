"""Which trained model a direction serves: the champion rule, on validation data only (docs/registry.md).

Every trained configuration of a direction is a candidate. Of its R repeats, the one with the
best validation epoch is served (the same rank `fit` uses to keep an epoch). Candidates are
scored on the validation split by stratum: each condition and each FST group present there.
In this study the validation split holds only the training group's skin types, so the rule
cannot see the held-out groups; it guards against the worst condition instead, and the model
card reports the held-out groups on test, which no rule reads.

The rule: the reference arm (`fitz_only`) is always eligible; another candidate is eligible
when none of its strata falls more than `gate.tolerance` below the reference's. The champion
is the eligible candidate with the highest worst-stratum accuracy, then the highest overall
validation accuracy, then the first name in sort order.
"""

from __future__ import annotations

import pandas as pd

from dermsynth.core.study import slug
from dermsynth.model.fitting import best_epoch, epoch_rank

RULE = (
    "champion = the eligible candidate with the highest worst-stratum validation accuracy (strata: each "
    "condition and each FST group in the validation split), then the highest overall validation accuracy, "
    "then name order; eligible = the reference arm fitz_only, or a candidate with no stratum more than "
    "gate.tolerance below fitz_only's. Test data are never read."
)


def served_repeat(histories: list[list[dict]]) -> int:
    """The repeat whose kept epoch ranks best on validation (the first on ties)."""
    ranks = [epoch_rank(best_epoch(h)["val_acc"], best_epoch(h)["val_loss"]) for h in histories]
    return max(range(len(ranks)), key=lambda r: (ranks[r], -r))


def strata(predictions: pd.DataFrame, repeat: int) -> dict[str, float]:
    """Validation accuracy of one repeat: overall, per condition (its recall) and per FST group."""
    val = predictions[(predictions["split"] == "val") & (predictions["repeat"] == repeat)]
    out = {"overall": float(val["correct"].mean())}
    out |= {f"condition/{slug(label)}": float(rows["correct"].mean()) for label, rows in val.groupby("label")}
    out |= {f"group/{group}": float(rows["correct"].mean()) for group, rows in val.groupby("group")}
    return out


def worst(scores: dict[str, float]) -> float:
    return min(v for k, v in scores.items() if k != "overall")


def regressions(scores: dict[str, float], reference: dict[str, float], tolerance: float) -> list[str]:
    """Strata where a candidate falls more than ``tolerance`` below the reference."""
    return sorted(
        f"{k} {scores[k]:.3f} < {reference[k]:.3f} - {tolerance}"
        for k in reference
        if k in scores and scores[k] < reference[k] - tolerance
    )


def choose(candidates: dict[str, dict[str, float]], reference: str, tolerance: float) -> tuple[str, list[dict]]:
    """The champion's name and, per candidate, its score, eligibility and why (best first)."""
    rows = []
    for name, scores in candidates.items():
        lost = [] if name == reference else regressions(scores, candidates[reference], tolerance)
        rows.append(
            {
                "candidate": name,
                "worst_stratum": worst(scores),
                "overall": scores["overall"],
                "eligible": not lost,
                "reason": "reference" if name == reference else ("; ".join(lost) or "no stratum below the reference"),
            }
        )
    rows.sort(key=lambda r: (not r["eligible"], -r["worst_stratum"], -r["overall"], r["candidate"]))
    return rows[0]["candidate"], rows
