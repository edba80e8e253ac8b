"""The `dermsynth` command: one sub-command per pipeline stage, plus tools around the study.

Stage modules are imported only when their sub-command runs, so `dermsynth --help` stays
fast (torch, MLflow and Great Expectations each take seconds to import).
"""

from __future__ import annotations

import argparse
import importlib
import sys

STAGES = {
    "embedded": "generate the embedded (offline) dataset",
    "prepare": "load metadata, drop FST -1 rows, keep the study's conditions",
    "split": "FST-holdout splits, validation split and seeds",
    "validate": "Great Expectations suites over metadata, splits and image files",
    "generate": "offline synthetic candidates from the seeds",
    "curate": "select k candidates per seed; check lineage against the test sets",
    "features": "run the frozen backbone once per image and view; cache activations",
    "evaluate": "study tables (arms, dose-response, spillover) from every run",
    "report": "Markdown tables and figures under reports/",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dermsynth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in STAGES.items():
        sub.add_parser(name, help=text, description=f"Stage `{name}`: {text}.")
    train = sub.add_parser(
        "train",
        help="train one head (one arm or dose of the study)",
        description="Stage `train`/`dose`: train one classifier head on cached features.",
    )
    train.add_argument("--direction", required=True, help="light_to_dark or dark_to_light")
    train.add_argument("--condition", required=True, help="slug of the augmented condition")
    train.add_argument("--arm", required=True, help="fitz_only, seed or synthetic_and_seed")
    train.add_argument(
        "--dose",
        type=int,
        default=None,
        help="number of synthetic images (synthetic_and_seed only; default: all curated)",
    )
    gate = sub.add_parser(
        "gate",
        help="compare reports/metrics.json with the committed baseline",
        description="Exit 1 naming every accuracy cell that fell below the baseline by more than gate.tolerance.",
    )
    gate.add_argument("--baseline", default=None, help="baseline JSON (default: reports/baseline.json)")
    gate.add_argument("--metrics", default=None, help="fresh metrics JSON (default: reports/metrics.json)")
    gate.add_argument("--update", action="store_true", help="write the fresh metrics as the new baseline")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dermsynth import config
    from dermsynth.errors import DermsynthError

    try:
        params = config.load()
        module = importlib.import_module(f"dermsynth.{args.command}")
        if args.command == "train":
            return module.main(params, args.direction, args.condition, args.arm, args.dose) or 0
        if args.command == "gate":
            return module.main(params, args.baseline, args.metrics, args.update) or 0
        return module.main(params) or 0
    except DermsynthError as err:
        print(f"dermsynth {args.command}: error: {err}", file=sys.stderr)
        return 1
