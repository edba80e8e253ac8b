"""Figures of the study report (reports/figures/), drawn from the tables `evaluate` wrote.

Each panel carries a chance line at 1 / number of classes, so that a reader sees at once when
an accuracy is no better than guessing (or, for a collapsed class, far above it for the wrong
reason: see the net-benefit table of the report).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from dermsynth.core import paths
from dermsynth.core.study import ARMS, DIRECTIONS


def pyplot() -> ModuleType:
    """matplotlib.pyplot with the file-only backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chance_line(ax: object, chance: float) -> None:
    """A dashed horizontal line at the accuracy of guessing among the classes."""
    ax.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label=f"chance (1/{round(1 / chance)})")  # type: ignore[attr-defined]


ARMS_ROWS = (  # (value column, interval columns, y label): the gain on top, its cost over the whole group below
    ("acc", ("ci_low", "ci_high"), "condition accuracy\n({level} CI, trainings x images)"),
    ("bal_acc", ("bal_acc_low", "bal_acc_high"), "group balanced accuracy\n({level} CI, trainings x images)"),
)


def confidence(z: float) -> str:
    """The coverage of a two-sided interval at normal quantile ``z`` (evaluate.z) as a label: 1.959964 -> "95%"."""
    return f"{100 * math.erf(z / math.sqrt(2)):.0f}%"


def arms_figure(arms: pd.DataFrame, chance: float, level: str) -> None:
    """Per direction and test group: the arms' accuracy on the augmented condition; the group's balanced accuracy."""
    plt = pyplot()
    panels = [(d, g) for d in DIRECTIONS for g in DIRECTIONS[d].test_groups if d in set(arms["direction"])]
    present = [a for a in ARMS if a in set(arms["arm"])]
    width = 0.8 / len(present)
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.6), sharey=True, squeeze=False)
    for row, (value, (low, high), ylabel) in enumerate(ARMS_ROWS):
        for ax, (direction, group) in zip(axes[row], panels, strict=True):
            block = arms[(arms["direction"] == direction) & (arms["group"] == group)]
            conditions = list(dict.fromkeys(block["condition"]))
            for i, arm in enumerate(present):
                cells = block[block["arm"] == arm].set_index("condition").reindex(conditions)
                x = [j + (i - (len(present) - 1) / 2) * width for j in range(len(conditions))]
                ax.bar(x, cells[value], width=width, label=arm, color=f"C{ARMS.index(arm)}")
                # the interval as drawn from its own ends: a bootstrap percentile interval need not contain the point
                mid, half = (cells[low] + cells[high]) / 2, (cells[high] - cells[low]) / 2
                ax.errorbar(x, mid, yerr=half, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
            ax.set_xticks(range(len(conditions)), [c.replace("_", "\n") for c in conditions], fontsize=7)
            ax.set_title(f"{direction}: test {group}", fontsize=9)
            ax.set_ylim(0, 1)
            chance_line(ax, chance)
        axes[row][0].set_ylabel(ylabel.format(level=level), fontsize=8)
    fig.suptitle(
        "Gain and cost by arm: accuracy on the augmented condition (top), balanced accuracy of the whole "
        "test group (bottom)",
        fontsize=10,
    )
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    paths.FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(paths.FIGURES / "arms.png", dpi=110)
    plt.close(fig)


def dose_figure(dose: pd.DataFrame, chance: float, level: str) -> None:
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
            ax.fill_between(x, rows["ci_low"], rows["ci_high"], color=f"C{i}", alpha=0.15)
        ax.set_xticks(range(len(levels)), [str(d) for d in levels])
        ax.set_xlabel("synthetic images added (on top of the seeds)")
        ax.set_title(f"test {group}", fontsize=9)
        ax.set_ylim(0, 1)
        chance_line(ax, chance)
    axes[0][0].set_ylabel(f"pooled accuracy ({level} CI, trainings x images)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths.FIGURES / "dose_response.png", dpi=110)
    plt.close(fig)


def confusion_figure(predictions: pd.DataFrame, classes: list[str], path: Path) -> None:
    """The test confusion matrix of one repeat, with counts in the cells (an MLflow artifact per configuration)."""
    plt = pyplot()
    test = predictions[predictions["split"] == "test"]
    matrix = pd.crosstab(pd.Categorical(test["label"], classes), pd.Categorical(test["pred"], classes), dropna=False)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(matrix.values, cmap="Blues")
    short = [c[:14] for c in classes]
    ax.set_xticks(range(len(classes)), short, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), short, fontsize=7)
    for (i, j), v in np.ndenumerate(matrix.values):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix")
    fig.subplots_adjust(left=0.22, bottom=0.26, right=0.98, top=0.93)  # fixed: tight_layout draws the figure twice
    fig.savefig(path, dpi=110)
    plt.close(fig)
