"""Which rows and conditions the study uses: reading the metadata, FST groups, condition selection, cleaning.

Shared by the `prepare` stage and the `metadata` feasibility report, so that the report's
counts are the ones the pipeline will use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth.core import paths
from dermsynth.core.config import Prepare
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import fitzpatrick_labels, group_of

REQUIRED = ["md5hash", "fitzpatrick_scale", "label"]


class MetadataError(DermsynthError, ValueError):
    """The metadata file is missing or lacks required columns."""


def read_metadata(path: Path) -> pd.DataFrame:
    """The metadata CSV as strings, with its source row number (1 = first data row) kept."""
    if not path.exists():
        raise MetadataError(f"{path}: metadata file not found (dataset.root in params.yaml?)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise MetadataError(f"{path}: missing required columns {missing}")
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame


def fst_groups(frame: pd.DataFrame) -> pd.Series:
    fst = pd.to_numeric(frame["fitzpatrick_scale"], errors="coerce")
    return fst.map(lambda v: group_of(int(v)) if pd.notna(v) else None)


def label_ranking(frame: pd.DataFrame) -> pd.DataFrame:
    """Every label ranked by the smaller of its counts at FST I-II and V-VI (ties: more V-VI first)."""
    table = pd.crosstab(frame["label"], fst_groups(frame)).reindex(columns=["I-II", "III-IV", "V-VI"], fill_value=0)
    table["min extremes"] = table[["I-II", "V-VI"]].min(axis=1)
    ranked = table.sort_values(["min extremes", "V-VI"], ascending=False)
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    return ranked


def select_conditions(usable: pd.DataFrame, cfg: Prepare, rule: dict | None = None) -> dict:
    """The study's conditions with the reason for them (what conditions.json holds).

    ``rule``: reports/selection/selection.json, the paper's rule over every label (`selection: groh`).
    """
    if cfg.selection == "groh":
        chosen = list((rule or {}).get("conditions", []))[: cfg.auto_count]
        if len(chosen) < 2:
            raise DermsynthError(f"prepare.selection groh: the rule chose {len(chosen)} labels (reports/selection/)")
        return {
            "mode": "groh",
            "conditions": chosen,
            "reason": f"the top {len(chosen)} labels of the paper's rule: counts at both FST extremes and non-zero "
            "held-out accuracy in Groh et al.'s FST holdouts (reports/selection/selection.md)",
            "paper": list((rule or {}).get("paper", [])),
        }
    if cfg.selection == "explicit":
        return {
            "mode": "explicit",
            "conditions": list(cfg.conditions),
            "reason": "listed in params.yaml (prepare.conditions), as chosen by the original study",
        }
    known = usable[usable["label"].isin(fitzpatrick_labels())]
    ranking = label_ranking(known)
    chosen = list(ranking[ranking["min extremes"] > 0].index[: cfg.auto_count])
    if len(chosen) < 2:
        raise DermsynthError(f"prepare.selection auto: only {len(chosen)} labels have images at both FST extremes")
    return {
        "mode": "auto",
        "conditions": chosen,
        "reason": f"top {len(chosen)} of {len(ranking)} labels by the smaller of their image counts at FST I-II "
        "and V-VI (the study's first criterion alone; `prepare.selection: groh` adds its second, non-zero "
        "held-out accuracy in Groh et al.'s FST holdouts)",
        "ranking": ranking.head(max(15, cfg.auto_count)).reset_index().to_dict(orient="records"),
    }


def clean(frame: pd.DataFrame, conditions: list[str]) -> tuple[pd.DataFrame, dict]:
    """Drop unknown-FST rows and out-of-scope labels; return the table and what was dropped."""
    fst = pd.to_numeric(frame["fitzpatrick_scale"], errors="coerce")
    unknown_fst = fst == -1
    out_of_scope = ~frame["label"].isin(conditions) & frame["label"].isin(fitzpatrick_labels())
    kept = frame[~unknown_fst & ~out_of_scope].copy()
    in_study = frame["label"].isin(conditions)
    summary = {
        "rows_in_metadata": len(frame),
        "rows_kept": len(kept),
        "fst_unknown_dropped": int((unknown_fst & in_study).sum()),
        "fst_unknown_dropped_by_label": {c: int((unknown_fst & (frame["label"] == c)).sum()) for c in conditions},
        "out_of_scope_rows": int((out_of_scope | (unknown_fst & ~in_study)).sum()),
    }
    return kept, summary


def image_names(images: Path) -> set[str]:
    return {p.stem for p in images.glob("*.jpg")} if images.exists() else set()


def drop_missing_images(kept: pd.DataFrame, present: set[str]) -> tuple[pd.DataFrame, dict]:
    """Rows whose image file is absent, dropped and counted by label and FST group.

    For the real dataset most URLs are dead, so the study runs on whatever subset is present;
    the counts land in the summary and the report so that nothing goes missing silently.
    Only a well-formed md5hash can be "missing": a malformed one (or one shaped like a path) is
    kept, like files that exist but do not decode, so that `validate` names it and stops.
    """
    well_formed = kept["md5hash"].astype(str).str.fullmatch(paths.MD5_PATTERN.strip("^$"))
    missing = ~kept["md5hash"].isin(present) & well_formed
    by_group = kept[missing].groupby([kept["label"], fst_groups(kept)]).size()
    counts = {f"{label} / {group}": int(n) for (label, group), n in by_group.items()}
    return kept[~missing].copy(), {"missing_images_dropped": int(missing.sum()), "missing_images_by_group": counts}
