"""Fixed facts of the study (docs/protocol.md): conditions, skin-type groups, directions, arms.

These are definitions, not tunable parameters: changing them changes the study, so they
live in code and tests pin them. Everything tunable lives in params.yaml.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from dermsynth.core import files, paths


def slug(label: str) -> str:
    """File- and stage-name form of a label: 'basal cell carcinoma' -> 'basal_cell_carcinoma'."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def prob_column(label: str) -> str:
    """predictions.csv's column of the model's probability for ``label`` (every class has one, for AUCs)."""
    return f"prob_{slug(label)}"


@cache
def fitzpatrick_labels() -> frozenset[str]:
    """The 114 labels of fitzpatrick17k.csv (resources/fitzpatrick_labels.txt)."""
    text = resources.files("dermsynth").joinpath("resources", "fitzpatrick_labels.txt").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


@cache
def real_metadata() -> tuple[dict[str, str], ...]:
    """The rows of the real fitzpatrick17k.csv as bundled (resources/), for what the simulator copies from it."""
    text = resources.files("dermsynth").joinpath("resources", "fitzpatrick17k.csv").read_text()
    return tuple(csv.DictReader(io.StringIO(text)))


@cache
def label_partitions() -> dict[str, tuple[str, str]]:
    """Every label's nine- and three-partition family, as the real CSV gives them."""
    return {r["label"]: (r["nine_partition_label"], r["three_partition_label"]) for r in real_metadata()}


@cache
def labels_of_family(family: str) -> tuple[str, ...]:
    """The labels of one nine-partition family, sorted."""
    return tuple(sorted(label for label, (nine, _) in label_partitions().items() if nine == family))


# Groh et al.'s seven holdout schemes (cohort/groh.py), in their order.
GROH_SCHEMES: tuple[str, ...] = ("expert_select", "random_holdout", "a12", "a34", "a56", "dermaamin", "br")

# The two atlases of Fitzpatrick 17k, by the host of an image's URL (Groh et al.'s source holdouts).
HOSTS: dict[str, str] = {"dermaamin": "dermaamin.com", "atlas": "atlasdermatologico.com.br"}


def source_of(url: str) -> str | None:
    """The atlas an image came from, by its URL's host: 'dermaamin', 'atlas', or None (unknown)."""
    host = re.sub(r"^https?://(www\.)?", "", str(url)).split("/", 1)[0].lower()
    for name, domain in HOSTS.items():
        if host == domain or host.endswith("." + domain):
            return name
    return None


# Rows per (label, fitzpatrick_scale) in the real fitzpatrick17k.csv (July 2022 revision),
# columns FST -1 (unknown), 1, 2, 3, 4, 5, 6. Computed once from ../shared/data; a test
# re-derives it from the CSV when the CSV is present.
REAL_COUNTS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "basal cell carcinoma": (8, 85, 156, 112, 76, 24, 7),
    "folliculitis": (25, 30, 97, 99, 51, 31, 9),
    "nematode infection": (6, 15, 56, 79, 60, 32, 12),
    "neutrophilic dermatoses": (11, 70, 115, 68, 51, 31, 15),
    "prurigo nodularis": (2, 7, 28, 39, 56, 29, 9),
    "psoriasis": (31, 113, 232, 101, 91, 64, 21),
    "squamous cell carcinoma": (45, 100, 180, 122, 71, 40, 23),
}
COUNT_COLUMNS: tuple[int, ...] = (-1, 1, 2, 3, 4, 5, 6)
PAPER_CONDITIONS: tuple[str, ...] = tuple(REAL_COUNTS)  # the seven the paper chose (docs/protocol.md)

# Coarser labels of the seven conditions, as in the CSV.
PARTITIONS: dict[str, tuple[str, str]] = {
    "basal cell carcinoma": ("malignant epidermal", "malignant"),
    "folliculitis": ("inflammatory", "non-neoplastic"),
    "nematode infection": ("inflammatory", "non-neoplastic"),
    "neutrophilic dermatoses": ("inflammatory", "non-neoplastic"),
    "prurigo nodularis": ("benign epidermal", "benign"),
    "psoriasis": ("inflammatory", "non-neoplastic"),
    "squamous cell carcinoma": ("malignant epidermal", "malignant"),
}

GROUPS: dict[str, tuple[int, ...]] = {"I-II": (1, 2), "III-IV": (3, 4), "V-VI": (5, 6)}


def group_of(fst: int) -> str | None:
    """The FST group name of a skin type, or None for anything outside 1..6."""
    for name, members in GROUPS.items():
        if fst in members:
            return name
    return None


@dataclass(frozen=True)
class Direction:
    """An FST-holdout direction: train on one group, test on the two others."""

    name: str
    train_group: str
    test_groups: tuple[str, ...]
    seed_group: str  # the group whose seeds (and synthetic images) are added to training


DIRECTIONS: dict[str, Direction] = {
    "light_to_dark": Direction("light_to_dark", "I-II", ("III-IV", "V-VI"), "V-VI"),
    "dark_to_light": Direction("dark_to_light", "V-VI", ("I-II", "III-IV"), "I-II"),
}

# tone_control: a control for collapse, not in the paper. It adds as many images as `seed` does, of the same
# skin-tone group, labelled as the augmented condition, but they are seeds of the *other* augmented conditions:
# whatever it gains on the condition, skin tone alone explains (docs/protocol.md).
ARMS: tuple[str, ...] = ("fitz_only", "seed", "synthetic_and_seed", "tone_control")

# Seed groups: seeds are drawn from the two extreme groups only (docs/protocol.md).
SEED_GROUPS: tuple[str, ...] = ("I-II", "V-VI")

SKIN_WORDS: dict[str, str] = {"I-II": "light-skinned", "III-IV": "medium-skinned", "V-VI": "dark-skinned"}


def load_conditions() -> list[str]:
    """The conditions chosen by `prepare` (every stage after it reads these, not params.yaml)."""
    return list(files.read_json(paths.PREPARED_CONDITIONS)["conditions"])


def training_seed(seed: int, repeats: int, draw: int, repeat: int) -> int:
    """Repeat ``repeat`` of draw ``draw`` trains with seed + draw x repeats + repeat: no two trainings share one.

    With the same training seeds in every draw, repeat r of each draw started from the same head
    and drew the same sampler and dropout streams; its training sets differ by a few seeds, so
    its repeats moved together across draws, and neither their spread nor the draws' measured
    it (the gate calibration's first null run failed on a pooled gain that moved 0.18 with
    `train.seed`). Draw 0 keeps the seeds of a single draw. `fitz_only`, which no draw changes,
    trains repeats x draws times in draw 0, so its training i has the seed of the seed arms'
    training i (draw i // repeats, repeat i % repeats): a gain pairs each training with the
    reference trained on the same stream.
    """
    return seed + draw * repeats + repeat
