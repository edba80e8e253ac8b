"""The external-dataset importers on stand-ins written in each dataset's published layout (docs/external.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dermsynth.acquisition import external

PAD_COLUMNS = [
    "patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age", "pesticide",
    "gender", "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system", "fitspatrick",
    "region", "diameter_1", "diameter_2", "diagnostic", "itch", "grew", "hurt", "changed", "bleed", "elevation",
    "img_id", "biopsed",
]  # fmt: skip
SCIN_LABEL_COLUMNS = [
    "case_id",
    *(f"dermatologist_gradable_for_skin_condition_{i}" for i in (1, 2, 3)),
    "dermatologist_skin_condition_on_label_name", "dermatologist_skin_condition_confidence",
    "weighted_skin_condition_label",
    *(f"dermatologist_gradable_for_fitzpatrick_skin_type_{i}" for i in (1, 2, 3)),
    *(f"dermatologist_fitzpatrick_skin_type_label_{i}" for i in (1, 2, 3)),
    "gradable_for_monk_skin_tone_india", "gradable_for_monk_skin_tone_us",
    "monk_skin_tone_label_india", "monk_skin_tone_label_us",
]  # fmt: skip
SCIN_CASE_COLUMNS = [  # the identifying, skin-type and image columns of scin_cases.csv (of its 57), in order
    "case_id", "source", "release", "year", "age_group", "sex_at_birth", "fitzpatrick_skin_type",
    "related_category", "condition_duration", "image_1_path", "image_2_path", "image_3_path",
    "image_1_shot_type", "image_2_shot_type", "image_3_shot_type",
]  # fmt: skip


def write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_ddi_maps_its_diseases_and_grouped_skin_tones(tmp_path: Path):
    write(
        tmp_path / "ddi_metadata.csv",
        ["", "DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"],  # the unnamed index some copies carry
        [
            [0, 1, "000001.png", 56, True, "melanoma-in-situ"],
            [1, 2, "000002.png", 12, True, "basal-cell-carcinoma-nodular"],
            [2, 3, "000003.png", 34, True, "squamous-cell-carcinoma-in-situ"],
            [3, 4, "000004.png", 56, False, "prurigo-nodularis"],
        ],
    )
    table = external.read_ddi(tmp_path)
    assert list(table.columns) == external.COLUMNS
    assert list(table["image"]) == [f"images/00000{i}.png" for i in (1, 2, 3, 4)]
    assert list(table["label"]) == ["", "basal cell carcinoma", "squamous cell carcinoma", "prurigo nodularis"]
    assert list(table["fst_group"]) == ["V-VI", "I-II", "III-IV", "V-VI"]
    assert table["fitzpatrick_scale"].isna().all()  # DDI gives the group only


def test_ddi_names_the_row_of_an_impossible_skin_tone(tmp_path: Path):
    write(tmp_path / "ddi_metadata.csv", ["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"],
          [[1, "000001.png", 12, False, "folliculitis"], [2, "000002.png", 45, False, "folliculitis"]])  # fmt: skip
    with pytest.raises(external.ExternalDataError, match=r"ddi_metadata.csv:3: skin_tone = '45'"):
        external.read_ddi(tmp_path)


def pad_row(patient: int, lesion: int, fst: str, diagnostic: str) -> list[object]:
    values = dict.fromkeys(PAD_COLUMNS, "")
    values.update(patient_id=f"PAT_{patient}", lesion_id=lesion, age=55, region="NECK", diagnostic=diagnostic,
                  fitspatrick=fst, img_id=f"PAT_{patient}_{lesion}_939.png", biopsed="True",
                  **dict.fromkeys(["itch", "grew", "hurt", "changed", "bleed", "elevation"], "UNK"))  # fmt: skip
    return [values[c] for c in PAD_COLUMNS]


def test_pad_ufes_maps_bcc_and_scc_and_keeps_missing_skin_types(tmp_path: Path):
    write(tmp_path / "metadata.csv", PAD_COLUMNS,
          [pad_row(46, 881, "3.0", "BCC"), pad_row(47, 882, "", "NEV"), pad_row(48, 883, "6.0", "SCC")])  # fmt: skip
    table = external.read_pad_ufes(tmp_path)
    assert list(table["image"]) == [
        "images/PAT_46_881_939.png",
        "images/PAT_47_882_939.png",
        "images/PAT_48_883_939.png",
    ]
    assert list(table["label"]) == ["basal cell carcinoma", "", "squamous cell carcinoma"]
    assert table["fitzpatrick_scale"].isna().tolist() == [False, True, False]
    assert table["fitzpatrick_scale"].dropna().tolist() == [3, 6]
    assert list(table["fst_group"]) == ["III-IV", "", "V-VI"]


def test_pad_ufes_names_a_skin_type_out_of_range(tmp_path: Path):
    write(tmp_path / "metadata.csv", PAD_COLUMNS, [pad_row(46, 881, "7.0", "BCC")])
    with pytest.raises(external.ExternalDataError, match=r"metadata.csv:2: fitspatrick = '7.0'"):
        external.read_pad_ufes(tmp_path)


def scin_files(tmp_path: Path, derm_fst: str = "FST5") -> None:
    case = dict.fromkeys(SCIN_CASE_COLUMNS, "")
    cases = [
        {**case, "case_id": "-5156441036700827606", "source": "SCIN", "release": "1.0.0", "year": 2023,
         "fitzpatrick_skin_type": "FST2", "image_1_path": "dataset/images/-5669089898008966381.png",
         "image_2_path": "dataset/images/-1.png"},
        {**case, "case_id": "7", "fitzpatrick_skin_type": "FST2", "image_1_path": "dataset/images/7.png"},
        {**case, "case_id": "8", "fitzpatrick_skin_type": "NONE_IDENTIFIED", "image_1_path": "dataset/images/8.png"},
    ]  # fmt: skip
    label = dict.fromkeys(SCIN_LABEL_COLUMNS, "")
    labels = [
        {**label, "case_id": "-5156441036700827606",
         "weighted_skin_condition_label": "{'Psoriasis': 0.69, 'Eczema': 0.31}",
         "dermatologist_fitzpatrick_skin_type_label_1": derm_fst, "monk_skin_tone_label_us": "4.0"},
        {**label, "case_id": "7", "weighted_skin_condition_label": "{'Eczema': 1.0}"},
        {**label, "case_id": "8", "weighted_skin_condition_label": "{}"},
    ]  # fmt: skip
    write(tmp_path / "scin_cases.csv", SCIN_CASE_COLUMNS, [[c[k] for k in SCIN_CASE_COLUMNS] for c in cases])
    write(tmp_path / "scin_labels.csv", SCIN_LABEL_COLUMNS, [[r[k] for k in SCIN_LABEL_COLUMNS] for r in labels])


def test_scin_takes_the_dermatologists_skin_type_before_the_self_reported_one(tmp_path: Path):
    scin_files(tmp_path)
    table = external.read_scin(tmp_path)
    assert len(table) == 4  # two images for the first case
    first = table.iloc[0]
    assert first["image"] == "dataset/images/-5669089898008966381.png"
    assert (first["label"], first["fitzpatrick_scale"], first["fst_source"]) == (
        "psoriasis", 5, "SCIN dermatologist label 1",
    )  # fmt: skip
    assert first["monk"] == 4
    second_case = table.iloc[2]
    assert (second_case["label"], second_case["source_label"], second_case["fst_group"]) == ("", "Eczema", "I-II")
    assert second_case["fst_source"] == "SCIN self-reported"
    unlabelled = table.iloc[3]
    assert (unlabelled["source_label"], unlabelled["fst_group"]) == ("", "")


def test_scin_names_a_skin_type_it_cannot_read(tmp_path: Path):
    scin_files(tmp_path, derm_fst="type V")
    with pytest.raises(external.ExternalDataError, match="dermatologist_fitzpatrick_skin_type_label_1 = 'type V'"):
        external.read_scin(tmp_path)


def test_a_missing_file_or_column_says_what_was_expected(tmp_path: Path):
    with pytest.raises(external.ExternalDataError, match=r"ddi_metadata\.csv not found"):
        external.read_ddi(tmp_path)
    write(tmp_path / "metadata.csv", ["patient_id", "img_id"], [["PAT_1", "PAT_1_1_1.png"]])
    with pytest.raises(external.ExternalDataError, match="no column lesion_id, fitspatrick, diagnostic"):
        external.read_pad_ufes(tmp_path)


def test_the_summary_counts_images_per_condition_and_group(tmp_path: Path):
    scin_files(tmp_path)
    counts = external.summary(external.read_scin(tmp_path))
    assert counts.loc["psoriasis", "V-VI"] == 2
    assert counts.loc["(out of scope)", "I-II"] == 1
    assert counts.loc["(out of scope)", "unknown"] == 1


def test_the_command_writes_the_table_and_names_a_missing_folder(workdir: Path, capsys: pytest.CaptureFixture):
    from dermsynth import cli

    folder = workdir / "downloads" / "scin"
    scin_files(folder)
    assert cli.main(["data", "external", "scin", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "data: external scin: 4 images, 2 of a study condition; wrote build/external/scin.csv" in out
    assert (workdir / "build/external/scin.csv").read_text().startswith(",".join(external.COLUMNS))
    assert cli.main(["data", "external", "ddi", str(folder)]) == 1
    assert "ddi_metadata.csv not found" in capsys.readouterr().err
