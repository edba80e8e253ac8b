"""Typed parameters, loaded once from params.yaml and validated on load.

Each dataclass mirrors one section of params.yaml, which is also the name of the stage and
the module that reads it. Unknown or missing keys fail loudly at start-up rather than
half-way through a long run.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from dermsynth import paths
from dermsynth.errors import DermsynthError
from dermsynth.study import ARMS, DIRECTIONS, fitzpatrick_labels, slug


class ConfigError(DermsynthError, ValueError):
    """params.yaml does not describe a valid study."""


@dataclass(frozen=True)
class Dataset:
    root: str
    missing_images: str = "error"


@dataclass(frozen=True)
class Embedded:
    seed: int
    size_factor: float
    image_size: int
    jpeg_quality: int


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
    seed_conditions: str = "augmented"  # augmented: generate.conditions only (the paper) | all: every condition


@dataclass(frozen=True)
class Validate:
    max_rows_in_report: int


@dataclass(frozen=True)
class OpenAIImages:
    """The `generate.openai` block: the paid backend (the key comes only from OPENAI_API_KEY)."""

    model: str = "gpt-image-2"
    size: str = "1024x1024"
    quality: str = "medium"
    max_usd: float = 5.0
    workers: int = 4
    timeout: float = 300.0
    base_url: str | None = None
    cache: str = ".cache/openai-images"


@dataclass(frozen=True)
class DiffusersInpaint:
    """The `generate.diffusers` block: a local inpainting pipeline folder (save_pretrained layout), no hub access."""

    model: str | None = None  # e.g. models/diffusers/stable-diffusion-2-inpainting
    size: int = 512
    steps: int = 30
    guidance: float = 7.5
    device: str = "cpu"
    precision: str = "float32"
    cache: str = ".cache/diffusers-images"


@dataclass(frozen=True)
class Generate:
    generator: str
    annotations: str
    seed: int
    candidates: int
    conditions: list[str]
    strength: list[float]
    crop: list[float]
    allow_partial: bool = False  # accept a run that stored fewer images than planned (curate and train report it)
    openai: OpenAIImages = field(default_factory=OpenAIImages)
    diffusers: DiffusersInpaint = field(default_factory=DiffusersInpaint)

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
    mode: str = "auto"
    decisions: str = "annotations/decisions.csv"
    near_duplicate_bits: int = 6


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
    repeats: int = 5  # trainings per configuration, with training seeds seed, seed+1, ...
    weight_decay: float = 0.0
    sampler: bool = True  # class-balanced WeightedRandomSampler (Groh et al.); off: plain shuffling


@dataclass(frozen=True)
class Tune:
    """The `tune` block: Optuna over the head's hyper-parameters, scored on validation data only."""

    storage: str = "sqlite:///optuna.db"  # relative sqlite paths resolve against the repository root
    study_name: str = "dermsynth-head"
    trials: int = 20
    seed: int = 0
    direction: str = "light_to_dark"
    condition: str = "psoriasis"
    arm: str = "synthetic_and_seed"
    lr: list[float] = field(default_factory=lambda: [1e-4, 1e-2])
    weight_decay: list[float] = field(default_factory=lambda: [1e-6, 1e-2])
    hidden: list[int] = field(default_factory=lambda: [128, 256, 512])
    dropout: list[float] = field(default_factory=lambda: [0.1, 0.6])
    epochs: list[int] = field(default_factory=lambda: [10, 30])
    sampler: list[bool] = field(default_factory=lambda: [True, False])
    best: str = "reports/tuning/best_params.yaml"


@dataclass(frozen=True)
class Dose:
    direction: str
    levels: list[int]


@dataclass(frozen=True)
class Evaluate:
    z: float


@dataclass(frozen=True)
class Report:
    pass


@dataclass(frozen=True)
class Gate:
    tolerance: float


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
    report: Report = field(default_factory=Report)
    gate: Gate = field(default_factory=lambda: Gate(tolerance=0.05))
    tune: Tune = field(default_factory=Tune)

    def check(self) -> Params:
        """Cross-field rules that a single section cannot see."""
        problems = []
        problems += [
            f"prepare.conditions: {c!r} is not a Fitzpatrick 17k label"
            for c in self.prepare.conditions
            if c not in fitzpatrick_labels()
        ]
        if self.prepare.selection not in ("explicit", "auto"):
            problems.append("prepare.selection must be explicit or auto")
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
        if self.dose.direction not in DIRECTIONS:
            problems.append(f"dose.direction: unknown {self.dose.direction!r}")
        max_dose = self.curate.keep * self.split.seeds_per_group
        problems += [
            f"dose.levels: {d} exceeds the {max_dose} curated images per seed set"
            for d in self.dose.levels
            if not 0 <= d <= max_dose
        ]
        if self.curate.mode not in ("auto", "human"):
            problems.append("curate.mode must be auto or human")
        if self.curate.keep > self.generate.candidates:
            problems.append("curate.keep exceeds generate.candidates")
        if not isinstance(self.generate.allow_partial, bool):
            problems.append(f"generate.allow_partial must be true or false, not {self.generate.allow_partial!r}")
        if self.train.repeats < 1:
            problems.append("train.repeats must be at least 1")
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
        if not 0 < self.split.val_fraction < 1:
            problems.append("split.val_fraction must be in (0, 1)")
        if self.dataset.missing_images not in ("error", "drop"):
            problems.append("dataset.missing_images must be error or drop")
        if self.features.precision not in ("float32", "bfloat16"):
            problems.append("features.precision must be float32 or bfloat16")
        if self.features.crop > self.features.resize:
            problems.append("features.crop exceeds features.resize")
        if problems:
            raise ConfigError("invalid params.yaml:\n  " + "\n  ".join(problems))
        return self


T = TypeVar("T")


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}.{f.name}: missing")
            continue
        hint = hints[f.name]
        value = data[f.name]
        kwargs[f.name] = _build(hint, value, f"{where}.{f.name}") if dataclasses.is_dataclass(hint) else value
    return cls(**kwargs)


def parse(data: dict[str, Any]) -> Params:
    """Build and check Params from a params.yaml mapping (also used by tests to shrink a config)."""
    return _build(Params, data, "params").check()


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
    return [f"-S {k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]


@functools.cache
def load(path: Path | None = None) -> Params:
    """The study parameters, read once per process."""
    return parse(read_yaml(path or paths.root() / "params.yaml"))
