"""Importers for external dermatology datasets with skin-type annotations: DDI, PAD-UFES-20, SCIN.

A model tuned on Fitzpatrick 17k is only trusted per skin type once it is scored on data it
never saw. None of these sets can be downloaded here (each needs a licence or a sign-up), so
each importer reads the dataset's own files, in its published layout, from a folder the user
points at, and writes one harmonised table: an image path, the dataset's own label, the study
condition it maps onto (or none: out of scope), and the skin type as the dataset gives it.
docs/external.md lists the layouts, the label mappings and their sources.

- DDI (Daneshjou et al. 2022): `ddi_metadata.csv` (DDI_ID, DDI_file, skin_tone, malignant,
  disease), images in `images/`. skin_tone is already grouped: 12, 34, 56 = FST I-II, III-IV, V-VI.
- PAD-UFES-20 (Pacheco et al. 2020): `metadata.csv` (26 columns; `fitspatrick` 1.0-6.0 or
  empty, `diagnostic` ACK/BCC/MEL/NEV/SCC/SEK, `img_id`), images in `images/`.
- SCIN (Google, 2024): `scin_cases.csv` + `scin_labels.csv` joined on `case_id` (read as text),
  up to three images per case; FST from the first dermatologist label, else self-reported;
  Monk skin tone (US annotators) kept beside it; the condition is the case's top weighted label.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dermsynth.core.errors import DermsynthError

COLUMNS = ["dataset", "image", "source_label", "label", "fitzpatrick_scale", "fst_group", "fst_source", "monk"]
GROUPS = {1: "I-II", 2: "I-II", 3: "III-IV", 4: "III-IV", 5: "V-VI", 6: "V-VI"}

# Source label -> study condition (Fitzpatrick 17k's names); anything else is out of scope.
DDI_LABELS = {
    "basal-cell-carcinoma": "basal cell carcinoma",
    "basal-cell-carcinoma-superficial": "basal cell carcinoma",
    "basal-cell-carcinoma-nodular": "basal cell carcinoma",
    "squamous-cell-carcinoma": "squamous cell carcinoma",
    "squamous-cell-carcinoma-in-situ": "squamous cell carcinoma",
    "squamous-cell-carcinoma-keratoacanthoma": "squamous cell carcinoma",
    "folliculitis": "folliculitis",
    "prurigo-nodularis": "prurigo nodularis",
}
DDI_SKIN_TONES = {12: "I-II", 34: "III-IV", 56: "V-VI"}
PAD_UFES_LABELS = {"BCC": "basal cell carcinoma", "SCC": "squamous cell carcinoma"}  # SCC includes Bowen's disease
SCIN_LABELS = {  # matched case-insensitively
    "basal cell carcinoma": "basal cell carcinoma",
    "scc/sccis": "squamous cell carcinoma",
    "psoriasis": "psoriasis",
    "folliculitis": "folliculitis",
    "prurigo nodularis": "prurigo nodularis",
    "sweet syndrome": "neutrophilic dermatoses",
    "pyoderma gangrenosum": "neutrophilic dermatoses",
    "cutaneous larva migrans": "nematode infection",
}


class ExternalDataError(DermsynthError, ValueError):
    """An external dataset's files are missing, or a row holds a value its layout does not allow."""


def read_table(path: Path, required: list[str], **kwargs: object) -> pd.DataFrame:
    """A CSV of the dataset, with the columns its layout must have (unnamed index columns dropped)."""
    if not path.exists():
        raise ExternalDataError(f"{path} not found: point the importer at the folder that holds it")
    frame = pd.read_csv(path, keep_default_na=False, **kwargs)
    frame = frame.loc[:, [c for c in frame.columns if not str(c).startswith("Unnamed")]]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ExternalDataError(f"{path}: no column {', '.join(missing)} (is this the dataset's own file?)")
    return frame


def bad_value(path: Path, row: int, column: str, value: object, allowed: str) -> ExternalDataError:
    """The error for one cell: file, line (header = line 1), column, value and what is allowed."""
    return ExternalDataError(f"{path}:{row + 2}: {column} = {value!r}; expected {allowed}")


def read_ddi(folder: Path) -> pd.DataFrame:
    path = folder / "ddi_metadata.csv"
    raw = read_table(path, ["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"], dtype=str)
    groups = []
    for i, tone in enumerate(raw["skin_tone"]):
        if not tone.strip().isdigit() or int(tone) not in DDI_SKIN_TONES:
            raise bad_value(path, i, "skin_tone", tone, "12, 34 or 56 (FST I-II, III-IV, V-VI)")
        groups.append(DDI_SKIN_TONES[int(tone)])
    return harmonised(
        "ddi",
        images=[f"images/{name}" for name in raw["DDI_file"]],
        source=list(raw["disease"]),
        mapping=DDI_LABELS.get,
        fst=[None] * len(raw),
        groups=groups,
        fst_source="DDI skin_tone (grouped by the dataset)",
    )


def read_pad_ufes(folder: Path) -> pd.DataFrame:
    path = folder / "metadata.csv"
    raw = read_table(path, ["patient_id", "lesion_id", "fitspatrick", "diagnostic", "img_id"], dtype=str)
    fst = []
    for i, value in enumerate(raw["fitspatrick"]):
        number = parse_number(value)
        if number is not None and (number != int(number) or not 1 <= number <= 6):
            raise bad_value(path, i, "fitspatrick", value, "1.0 to 6.0, or empty")
        fst.append(None if number is None else int(number))
    return harmonised(
        "pad_ufes_20",
        images=[f"images/{name}" for name in raw["img_id"]],
        source=list(raw["diagnostic"]),
        mapping=PAD_UFES_LABELS.get,
        fst=fst,
        groups=[GROUPS.get(f, "") for f in fst],
        fst_source="PAD-UFES-20 fitspatrick",
    )


def parse_number(value: str) -> float | None:
    """A float from a cell, None when empty; a non-number stays an error for the caller to name."""
    if value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return math.nan
    return None if math.isnan(number) else number


def scin_fst(value: str) -> int | None:
    """'FST3' -> 3; empty or NONE_IDENTIFIED/NONE_SELECTED -> None; anything else is an error (ValueError)."""
    value = value.strip()
    if value in ("", "NONE_IDENTIFIED", "NONE_SELECTED"):
        return None
    if value.startswith("FST") and value[3:].isdigit() and 1 <= int(value[3:]) <= 6:
        return int(value[3:])
    raise ValueError(value)


def top_label(cell: str) -> str:
    """The highest-weighted condition of SCIN's `weighted_skin_condition_label` ('{}' -> '')."""
    weights = ast.literal_eval(cell) if cell.strip() else {}
    if not isinstance(weights, dict):
        raise ValueError(cell)
    return max(weights, key=weights.get) if weights else ""


def read_scin(folder: Path) -> pd.DataFrame:
    cases_path, labels_path = folder / "scin_cases.csv", folder / "scin_labels.csv"
    image_columns = ["image_1_path", "image_2_path", "image_3_path"]
    cases = read_table(cases_path, ["case_id", "fitzpatrick_skin_type", *image_columns], dtype=str)
    labels = read_table(
        labels_path,
        ["case_id", "weighted_skin_condition_label", "dermatologist_fitzpatrick_skin_type_label_1",
         "monk_skin_tone_label_us"],
        dtype=str,
    )  # fmt: skip
    merged = cases.merge(labels, on="case_id", how="left", validate="one_to_one", indicator=True)
    rows = {"images": [], "source": [], "fst": [], "sources": [], "monk": []}
    for i, case in merged.iterrows():
        if case["_merge"] != "both":
            raise ExternalDataError(f"{labels_path}: no row for case_id {case['case_id']} of {cases_path}")
        try:
            label = top_label(case["weighted_skin_condition_label"])
        except (ValueError, SyntaxError) as err:
            raise bad_value(labels_path, i, "weighted_skin_condition_label", err.args[0], "a dict literal") from err
        fst, source = case_fst(case, cases_path, labels_path, i)
        monk = parse_number(case["monk_skin_tone_label_us"])
        for column in image_columns:
            if case[column].strip():
                rows["images"].append(case[column].strip())
                rows["source"].append(label)
                rows["fst"].append(fst)
                rows["sources"].append(source)
                rows["monk"].append(None if monk is None or math.isnan(monk) else int(monk))
    table = harmonised(
        "scin",
        images=rows["images"],
        source=rows["source"],
        mapping=lambda name: SCIN_LABELS.get(name.lower()),
        fst=rows["fst"],
        groups=[GROUPS.get(f, "") for f in rows["fst"]],
        fst_source=rows["sources"],
    )
    table["monk"] = pd.array(rows["monk"], dtype="Int64")
    return table


def case_fst(case: pd.Series, cases_path: Path, labels_path: Path, i: int) -> tuple[int | None, str]:
    """A SCIN case's FST: the first dermatologist's label where given, else the self-reported one."""
    try:
        fst = scin_fst(case["dermatologist_fitzpatrick_skin_type_label_1"])
    except ValueError as err:
        raise bad_value(
            labels_path, i, "dermatologist_fitzpatrick_skin_type_label_1", err.args[0], "FST1-FST6"
        ) from err
    if fst is not None:
        return fst, "SCIN dermatologist label 1"
    try:
        fst = scin_fst(case["fitzpatrick_skin_type"])
    except ValueError as err:
        raise bad_value(cases_path, i, "fitzpatrick_skin_type", err.args[0], "FST1-FST6 or NONE_IDENTIFIED") from err
    return fst, "SCIN self-reported" if fst is not None else ""


def harmonised(
    dataset: str,
    images: list[str],
    source: list[str],
    mapping: Callable[[str], str | None],
    fst: list[int | None],
    groups: list[str],
    fst_source: str | list[str],
) -> pd.DataFrame:
    """The common table: one row per image, `label` empty where the source label is out of the study's scope."""
    table = pd.DataFrame({"dataset": dataset, "image": images, "source_label": source})
    table["label"] = [mapping(s) or "" for s in source]
    table["fitzpatrick_scale"] = pd.array(fst, dtype="Int64")
    table["fst_group"] = groups
    table["fst_source"] = fst_source
    table["monk"] = pd.array([None] * len(table), dtype="Int64")
    return table[COLUMNS]


IMPORTERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "ddi": read_ddi,
    "pad_ufes_20": read_pad_ufes,
    "scin": read_scin,
}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Images per study condition (or out of scope) and FST group: what an external evaluation can score."""
    scope = table.assign(
        label=table["label"].replace("", "(out of scope)"), fst_group=table["fst_group"].replace("", "unknown")
    )
    return scope.groupby(["label", "fst_group"]).size().unstack(fill_value=0)
