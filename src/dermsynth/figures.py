"""Figures of the study report (reports/figures/), drawn from the tables `evaluate` wrote.

Each panel carries a chance line at 1 / number of classes, so that a reader sees at once when
an accuracy is no better than guessing (or, for a collapsed class, far above it for the wrong
reason: see the net-benefit table of the report).
"""

from __future__ import annotations

from types import ModuleType

import pandas as pd

from dermsynth import paths
from dermsynth.study import ARMS, DIRECTIONS


def pyplot() -> ModuleType:
    """matplotlib.pyplot with the file-only backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chance_line(ax: object, chance: float) -> None:
    """A dashed horizontal line at the accuracy of guessing among the classes."""
    ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label=f"chance (1/{round(1 / chance)})")  # type: ignore[attr-defined]


def arms_figure(arms: pd.DataFrame, chance: float) -> None:
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
        chance_line(ax, chance)
    axes[0][0].set_ylabel("pooled accuracy (95% Wilson CI)")
    fig.suptitle("Accuracy on the augmented condition, by arm and test FST group", fontsize=10)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    paths.FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(paths.FIGURES / "arms.png", dpi=110)
    plt.close(fig)


def dose_figure(dose: pd.DataFrame, chance: float) -> None:
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
        chance_line(ax, chance)
    axes[0][0].set_ylabel("pooled accuracy (95% Wilson CI)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths.FIGURES / "dose_response.png", dpi=110)
    plt.close(fig)
