"""params.yaml checked on load: every key's type against the dataclasses in config.py, and its range.

The dataclasses' annotations are the schema. A value of the wrong type fails here, naming the
key, the value and what was expected, instead of deep inside a stage (a YAML 1.1 trap: `1e-4`
without a dot is a string, and used to reach the optimiser as one). params.yaml is the single
source of values: no key has a default in code, so a missing key is an error too.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from dermsynth.core.errors import DermsynthError


class ConfigError(DermsynthError, ValueError):
    """params.yaml does not describe a valid study."""


T = TypeVar("T")
_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", type(None): "null"}


def _expected(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in get_args(hint))
    if origin is list:
        return f"a list of {_expected(get_args(hint)[0]).removeprefix('a ')}s"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _mismatch(value: Any, hint: Any, where: str) -> str:
    text = f"{where}: expected {_expected(hint)}, got {value!r}"
    if isinstance(value, str) and hint in (float, int):
        text += " (text: YAML reads 1e-4 as a string, write 1.0e-4; and no quotes around numbers)"
    return text


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it is of type ``hint`` (an int is accepted, and converted, where a float is expected)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in get_args(hint):
            try:
                return check_value(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(_mismatch(value, hint, where))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(_mismatch(value, hint, where))
        return [check_value(v, get_args(hint)[0], f"{where}[{i}]") for i, v in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        type(None): value is None,
    }
    if hint not in ok:
        raise TypeError(f"{where}: schema type {hint!r} is not supported")  # a bug in config.py, not in the input
    if not ok[hint]:
        raise ConfigError(_mismatch(value, hint, where))
    return float(value) if hint is float else value


def build(cls: type[T], data: Any, where: str) -> T:
    """An instance of the dataclass ``cls`` from a mapping, every key present, known and of its type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    unknown = set(data) - {f.name for f in fields}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    missing = [f.name for f in fields if f.name not in data]
    if missing:
        raise ConfigError("; ".join(f"{where}.{name}: missing" for name in missing))
    kwargs = {}
    for f in fields:
        hint, inner = hints[f.name], f"{where}.{f.name}"
        kwargs[f.name] = build(hint, data[f.name], inner) if dataclasses.is_dataclass(hint) else None
        if kwargs[f.name] is None:
            kwargs[f.name] = check_value(data[f.name], hint, inner)
    return cls(**kwargs)


def lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _interval(lo_min: float | None = None, hi_max: float | None = None) -> Callable[[Any], bool]:
    """A rule for a [low, high] pair: two values, low <= high, within bounds."""

    def rule(pair: Any) -> bool:
        if len(pair) != 2 or pair[0] > pair[1]:
            return False
        return (lo_min is None or pair[0] >= lo_min) and (hi_max is None or pair[1] <= hi_max)

    return rule


RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("embedded.size_factor", lambda v: v > 0, "> 0"),
    ("embedded.image_size", lambda v: v >= 8, ">= 8"),
    ("embedded.jpeg_quality", lambda v: 1 <= v <= 100, "in 1..100"),
    ("embedded.contrast", _interval(0.0, 2.0), "[low, high] within [0, 2]"),
    ("embedded.mimicry", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("embedded.tone_shift", lambda v: 0 <= v <= 1.4, "in [0, 1.4]"),
    ("prepare.auto_count", lambda v: v >= 1, ">= 1"),
    ("split.seeds_per_group", lambda v: v >= 1, ">= 1"),
    ("validate.max_rows_in_report", lambda v: v >= 1, ">= 1"),
    ("generate.candidates", lambda v: v >= 1, ">= 1"),
    ("generate.strength", _interval(0.0, 1.0), "[low, high] within [0, 1]"),
    ("generate.crop", _interval(0.05, 1.0), "[low, high] within [0.05, 1]"),
    ("generate.jpeg_quality", lambda v: 1 <= v <= 100, "in 1..100"),
    ("generate.openai.max_usd", lambda v: v >= 0, ">= 0"),
    ("generate.openai.workers", lambda v: v >= 1, ">= 1"),
    ("generate.openai.timeout", lambda v: v > 0, "> 0 seconds"),
    ("generate.diffusers.size", lambda v: v >= 8, ">= 8"),
    ("generate.diffusers.steps", lambda v: v >= 1, ">= 1"),
    ("curate.keep", lambda v: v >= 1, ">= 1"),
    ("curate.near_duplicate_bits", lambda v: 0 <= v <= 64, "in 0..64"),
    ("features.views", lambda v: v >= 1, ">= 1"),
    ("features.batch_size", lambda v: v >= 1, ">= 1"),
    ("features.crop", lambda v: v >= 8, ">= 8"),
    ("train.epochs", lambda v: v >= 1, ">= 1"),
    ("train.batch_size", lambda v: v >= 1, ">= 1"),
    ("train.lr", lambda v: v > 0, "> 0"),
    ("train.step_size", lambda v: v >= 1, ">= 1"),
    ("train.gamma", lambda v: v > 0, "> 0"),
    ("train.hidden", lambda v: v >= 1, ">= 1"),
    ("train.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.weight_decay", lambda v: v >= 0, ">= 0"),
    ("train.repeats", lambda v: v >= 1, "at least 1"),
    ("evaluate.z", lambda v: v > 0, "> 0"),
    ("groh.repeats", lambda v: v >= 1, "at least 1"),
    ("groh.views", lambda v: v >= 1, ">= 1"),
    ("groh.test_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("groh.val_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("groh.top_k", lambda v: v >= 1, ">= 1"),
    ("groh.batch_size", lambda v: v >= 1, ">= 1"),
    ("selection.min_accuracy", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("selection.min_per_extreme", lambda v: v >= 1, ">= 1"),
    ("evaluate.collapse_share", lambda v: v > 1, "> 1"),
    ("gate.tolerance", lambda v: v >= 0, ">= 0"),
    ("gate.alpha", lambda v: 0 < v < 1, "in (0, 1)"),
    ("gate.min_effect", lambda v: v >= 0, ">= 0"),
    ("tune.trials", lambda v: v >= 1, "at least 1"),
    ("tune.lr", _interval(1e-12), "[low, high] with 0 < low <= high (log scale)"),
    ("tune.weight_decay", _interval(1e-12), "[low, high] with 0 < low <= high (log scale)"),
    ("tune.dropout", lambda v: _interval(0.0)(v) and v[1] < 1, "[low, high] within [0, 1)"),
    ("tune.epochs", _interval(1), "[low, high] whole numbers >= 1"),
    ("tune.hidden", lambda v: len(v) > 0 and min(v) >= 1, "a non-empty list of whole numbers >= 1"),
    ("tune.sampler", lambda v: len(v) > 0, "a non-empty list of true/false"),
]


def range_problems(params: Any) -> list[str]:
    """One line per value outside its range (types are already checked by `build`)."""
    return [
        f"{key} must be {text}, got {lookup(params, key)!r}"
        for key, rule, text in RANGES
        if not rule(lookup(params, key))
    ]
