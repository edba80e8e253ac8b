"""Every path the project reads or writes, in one place (dvc.yaml mirrors these names).

Stage outputs live under build/, models/ and reports/, never under data/: data/ is tracked
as a whole by data.dvc, and DVC refuses stage outputs inside a tracked directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dermsynth.core.config import Params


def root() -> Path:
    """The repository root: the nearest folder upwards from the working directory with a dvc.yaml."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


def tracking_root() -> Path:
    """Where the MLflow store lives: the real repository, also inside `dvc exp run --queue`.

    Queued experiments run in a temporary copy under .dvc/tmp/exps and DVC sets DVC_ROOT to
    the real repository; a store inside the copy would be thrown away with it.
    """
    return Path(os.environ["DVC_ROOT"]).resolve() if os.environ.get("DVC_ROOT") else root()


BUILD = Path("build")
EMBEDDED = BUILD / "embedded"
METADATA_NAME = "fitzpatrick17k.csv"
IMAGES_NAME = "images"

PREPARED = BUILD / "prepared"
PREPARED_TABLE = PREPARED / "metadata.csv"
PREPARED_SUMMARY = PREPARED / "summary.json"
PREPARED_CONDITIONS = PREPARED / "conditions.json"

SPLITS = BUILD / "splits"
SPLITS_TABLE = SPLITS / "splits.csv"
SEEDS_TABLE = SPLITS / "seeds.csv"

GENERATED = BUILD / "generated"
CURATED = BUILD / "curated"
MANIFEST_NAME = "manifest.csv"
REQUESTS_NAME = "requests.csv"  # one row per planned image of a generation run: status and cause

QUALITY = BUILD / "quality"  # per-candidate quality scores (stage `quality`), read by `curate`
QUALITY_REPORTS = Path("reports") / "quality"  # per generator x condition x FST group
FEATURES = BUILD / "features"
GROH = BUILD / "groh"  # Groh et al.'s 114-label study (stage `groh`): features/ and predictions.csv
GROH_REPORTS = Path("reports") / "groh"  # its tables (results.json, per_label.csv, groh.md)
SELECTION = Path("reports") / "selection"  # the paper's rule over every label (stage `selection`)

MODELS = Path("models")
REPORTS = Path("reports")
VALIDATION_REPORTS = REPORTS / "validation"
METADATA_REPORTS = REPORTS / "metadata"
DATA_REPORTS = REPORTS / "data"
CURATION_REPORTS = REPORTS / "curation"
RUN_METRICS = REPORTS / "runs"
EPOCHS = REPORTS / "epochs"  # mean learning curve per configuration (a DVC plot)
TRAINING_NAME = "training.json"  # in models/<run>/: training-set sizes and every repeat's per-epoch history
SUMMARY = REPORTS / "summary.json"  # the study's headline numbers: the pipeline's DVC metric
TRACKING = REPORTS / "tracking.json"  # what `track` put in MLflow: a fingerprint per run
STUDY_METRICS = REPORTS / "metrics.json"
TABLES = REPORTS / "tables"
# `dermsynth compare-generators`: what the pipeline recovers with the control generators (the report's section)
RECOVERY = REPORTS / "generators" / "recovery.md"
RECOVERY_TABLE = REPORTS / "generators" / "recovery.csv"
FIGURES = REPORTS / "figures"
PLOTS = REPORTS / "plots"
REPORT = REPORTS / "report.md"
BASELINE = REPORTS / "baseline.json"
REGISTRY = BUILD / "registry"  # one packaged MLflow pyfunc model per training (stage `register`)
REGISTRY_DECISION = REPORTS / "registry.json"  # each direction's candidates, their validation scores, the champion
MODEL_CARDS = REPORTS / "model_cards"  # <direction>.md / .json: the champion's model card
EXTERNAL = BUILD / "external"  # harmonised external datasets (`dermsynth data external`): <dataset>.csv / .json
EXTERNAL_REPORTS = REPORTS / "external"  # a model scored on them (`dermsynth score-external`)
SERVICES = Path(".services")  # a team's PostgreSQL and MLflow server (docs/team.md); not build/: make clean keeps it


def dataset_metadata(dataset_root: str) -> Path:
    return Path(dataset_root) / METADATA_NAME


def dataset_images(dataset_root: str) -> Path:
    return Path(dataset_root) / IMAGES_NAME


MD5_PATTERN = r"^[0-9a-f]{32}$"  # an image's identifier; anything else (e.g. "../x") is never used as a path


def image_file(images: Path, md5hash: str) -> Path:
    return images / f"{md5hash}.jpg"


def run_name(direction: str, condition: str, arm: str, dose: int | None) -> str:
    return f"{direction}-{condition}-{arm if dose is None else f'dose{dose}'}"


def full_dose(params: Params) -> int:
    """The whole planned synthetic set of a condition: curate.keep images from each of the seeds."""
    return params.curate.keep * params.split.seeds_per_group


def trained_as(params: Params, direction: str, condition: str, arm: str, dose: int | None) -> str:
    """The training (models/<name>/) whose predictions a configuration reports.

    Configurations with the same training set share one training instead of repeating it:
    fitz_only adds nothing per condition, so it is trained once per direction; the dose that
    adds the whole curated set is the synthetic_and_seed arm.
    """
    if arm == "fitz_only":
        return f"{direction}-fitz_only"
    if dose is not None and dose == full_dose(params):
        return run_name(direction, condition, "synthetic_and_seed", None)
    return run_name(direction, condition, arm, dose)


def run_dir(run: str) -> Path:
    return MODELS / run


def head_name(draw: int, repeat: int) -> str:
    """A trained head's file in models/<run>/: draw 0 keeps the single-draw name, which registry and serving read."""
    return f"head_r{repeat}.pt" if draw == 0 else f"head_d{draw}_r{repeat}.pt"
