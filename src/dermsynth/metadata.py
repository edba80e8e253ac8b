"""Stage and command `metadata`: is the study feasible? A report from the metadata CSV alone, no image.

Someone deciding whether to run the study on the real Fitzpatrick 17k reads this first: the
count table by condition x FST (and the FST -1 rows dropped), the size of every split the
study uses (train group, validation, each test group after removing seeds) for each
direction and augmented condition, label coverage with the labels ranked by their counts at
the FST extremes (the first criterion of the study's condition selection), and how many rows
lack a URL. It runs the real `prepare` and `split` logic on the CSV, so the sizes are the
ones the pipeline will use when every image is present.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from dermsynth.cohort import selection, splits
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import DIRECTIONS, REAL_COUNTS, fitzpatrick_labels

SHIPPED_SHA256 = "851dfaabf1791c2a8b1c2957619f3e0673cf0002f4ce924a5c02d185c7d4a1cd"


def shipped_csv() -> Path:
    """The Fitzpatrick 17k metadata shipped with the package (CC BY-NC-SA 3.0, see its licence file)."""
    return Path(str(resources.files("dermsynth").joinpath("resources", "fitzpatrick17k.csv")))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_metadata(dest: Path) -> Path:
    """Copy the shipped CSV to ``dest`` (e.g. data/fitzpatrick17k.csv) after checking its pinned sha256."""
    source = shipped_csv()
    digest = sha256(source)
    if digest != SHIPPED_SHA256:
        raise DermsynthError(f"{source}: sha256 {digest} differs from the pinned {SHIPPED_SHA256}")
    files.write_bytes(dest, source.read_bytes())
    return dest


FST_COLUMNS = ["1", "2", "3", "4", "5", "6"]

# The one place where the shipped CSV (July 2022 revision) and the paper's tables disagree.
PAPER_DIFFERENCE = (
    "These counts equal the paper's Table 1 in all 42 cells (7 conditions x FST 1-6), and the test-set sizes "
    "below equal its Table 2 in every cell but one: neutrophilic dermatoses tested at FST V-VI (light_to_dark) "
    "differs by one image. Here it is {n} (46 rows at FST V-VI minus {seeds} seeds; 38 with the paper's 8); "
    "the paper's figure is one off, most likely a row whose label or skin type changed between the CSV "
    "revision the paper used and the July 2022 revision shipped here (docs/deviations.md)."
)


def count_table(raw: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Rows per condition and FST 1..6 kept by the study, `total` of those, FST -1 (dropped) beside; a total row."""
    study = raw[raw["label"].isin(conditions)]
    table = pd.crosstab(study["label"], study["fitzpatrick_scale"].astype(str))
    table = table.reindex(index=conditions, columns=["-1", *FST_COLUMNS], fill_value=0)
    counts = table[FST_COLUMNS].copy()
    counts["total"] = counts.sum(axis=1)
    counts["FST -1 dropped"] = table["-1"]
    counts.loc["total"] = counts.sum(axis=0)
    return counts


def split_sizes(splits: pd.DataFrame, conditions: list[str], augmented: list[str]) -> pd.DataFrame:
    """Per direction and condition (all conditions, then each one; augmented ones marked *): every split's size."""
    rows = []
    for direction in DIRECTIONS.values():
        block = splits[splits["direction"] == direction.name]
        for condition in ["all", *conditions]:
            part = block if condition == "all" else block[block["label"] == condition]
            row = {
                "direction": direction.name,
                "condition": f"{condition} *" if condition in augmented else condition,
                "train group": direction.train_group,
                "train": int((part["role"] == "train").sum()),
                "val": int((part["role"] == "val").sum()),
                "seeds added": int((part["role"] == "seed").sum()),
            }
            for group in ("I-II", "III-IV", "V-VI"):
                tested = (part["role"] == "test") & (part["group"] == group)
                row[f"test {group}"] = int(tested.sum()) if group in direction.test_groups else ""
            rows.append(row)
    return pd.DataFrame(rows)


def seed_scope(params: Params) -> str:
    if params.split.seed_conditions == "all":
        return "condition (`split.seed_conditions: all`)"
    return "augmented condition (marked *, `generate.conditions`)"


def paper_note(counts: pd.DataFrame, sizes: pd.DataFrame) -> list[str]:
    """The known one-image difference from the paper, said only when the table is the real CSV's."""
    label = "neutrophilic dermatoses"
    if label not in counts.index or counts.loc[label, "5"] + counts.loc[label, "6"] != 46:
        return []
    real = {k: v for k, v in REAL_COUNTS.items() if k in counts.index}
    if any(tuple(counts.loc[k, FST_COLUMNS]) != v[1:] for k, v in real.items()):
        return []
    tested = sizes[(sizes["direction"] == "light_to_dark") & sizes["condition"].str.startswith(label)]
    return [
        PAPER_DIFFERENCE.format(n=int(tested["test V-VI"].iloc[0]), seeds=46 - int(tested["test V-VI"].iloc[0])),
        "",
    ]


def url_summary(raw: pd.DataFrame, conditions: list[str]) -> dict:
    url = raw.get("url", pd.Series("", index=raw.index)).fillna("")
    hosts = url[url != ""].map(lambda u: urlparse(u).netloc or "(no host)").value_counts()
    return {
        "rows_without_url": int((url == "").sum()),
        "study_rows_without_url": int(((url == "") & raw["label"].isin(conditions)).sum()),
        "hosts": {h: int(n) for h, n in hosts.items()},
    }


def feasibility(raw: pd.DataFrame, params: Params) -> tuple[dict, str]:
    """The report's numbers (JSON) and its Markdown text."""
    chosen = selection.select_conditions(
        raw[pd.to_numeric(raw["fitzpatrick_scale"], errors="coerce") > 0], params.prepare
    )
    conditions = chosen["conditions"]
    kept, summary = selection.clean(raw, conditions)
    rows = splits.study_rows(kept, conditions)
    rng = np.random.default_rng(params.split.seed)
    seeds = splits.draw_seeds(rows, splits.seeded_conditions(conditions, params), params.split, rng)
    sizes = split_sizes(splits.make_splits(rows, seeds, params.split, rng), conditions, params.generate.conditions)
    counts = count_table(raw, conditions)
    ranking = selection.label_ranking(raw).head(15)
    urls = url_summary(raw, conditions)
    in_study = sorted(set(raw["label"]) & set(conditions))
    numbers = {
        "counts": counts.to_dict(orient="index"),
        "fst_unknown_dropped": summary["fst_unknown_dropped"],
        "split_sizes": sizes.to_dict(orient="records"),
        "labels_in_metadata": int(raw["label"].nunique()),
        "study_labels_present": in_study,
        "urls": urls,
    }
    text = "\n".join(
        [
            "# Metadata report (no image needed)",
            "",
            f"{len(raw)} rows, {raw['label'].nunique()} labels; {len(in_study)} of the {len(conditions)} study "
            f"conditions present; {summary['fst_unknown_dropped']} study rows with FST -1 are dropped.",
            "",
            "## Rows by condition and FST",
            "",
            "`total` counts the rows the study keeps (FST 1-6); rows with FST -1 (unknown) are dropped and "
            "counted beside it.",
            "",
            counts.reset_index().rename(columns={"index": "label"}).to_markdown(index=False),
            "",
            *paper_note(counts, sizes),
            "## Split sizes if every image is present",
            "",
            f"Seeds: {params.split.seeds_per_group} per extreme group (I-II, V-VI) of each "
            f"{seed_scope(params)}, removed from the test sets; the other conditions keep every test image. "
            f"Validation: {params.split.val_fraction:.0%} of the training group.",
            "",
            sizes.to_markdown(index=False),
            "",
            "## Labels ranked by their counts at the FST extremes (condition selection, first criterion)",
            "",
            ranking.reset_index().rename(columns={"label": "label"}).to_markdown(index=False),
            "",
            "## URLs",
            "",
            f"{urls['rows_without_url']} rows have no URL ({urls['study_rows_without_url']} of them in the study's "
            "conditions). Hosts: " + ", ".join(f"{h} ({n})" for h, n in urls["hosts"].items()) + ".",
            "",
        ]
    )
    return numbers, text


def main(params: Params, csv: str | None = None) -> None:
    source = Path(csv) if csv else paths.dataset_metadata(params.dataset.root)
    raw = selection.read_metadata(source)
    unknown = sorted(set(raw["label"]) - fitzpatrick_labels())
    if unknown:
        print(f"metadata: {len(unknown)} labels are not Fitzpatrick 17k labels: {unknown[:5]}")
    numbers, text = feasibility(raw, params)
    numbers["source"] = str(source)
    files.write_json(paths.METADATA_REPORTS / "summary.json", numbers)
    files.write_text(paths.METADATA_REPORTS / "report.md", text)
    print(f"metadata: wrote {paths.METADATA_REPORTS / 'report.md'} from {source}")
