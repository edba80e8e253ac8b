"""The `dermsynth` command: one sub-command per pipeline stage, plus tools around the study.

Stage modules are imported only when their sub-command runs, so `dermsynth --help` stays
fast (torch, MLflow and Great Expectations each take seconds to import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dermsynth.core.paths import SERVICES  # paths only: no heavy import before a sub-command runs

STAGES = {
    "embedded": "generate the embedded (offline) dataset",
    "groh": "step one: Groh et al.'s 114-label study under their seven holdout schemes (reports/groh/)",
    "selection": "step one: the paper's rule for its conditions over every label (reports/selection/)",
    "prepare": "load metadata, drop FST -1 rows, keep the study's conditions",
    "split": "FST-holdout splits, validation split and seeds",
    "validate": "Great Expectations suites over metadata, splits and image files",
    "generate": "offline synthetic candidates from the seeds",
    "quality": "KID, tone fidelity, diversity and copying of the candidates per generator, condition and FST group",
    "curate": "select k candidates per seed; check lineage against the test sets",
    "metadata": "feasibility report from the metadata CSV alone (no image needed)",
    "evaluate": "study tables (arms, dose-response, spillover) from every run",
    "register": "package each trained model for serving, pick each direction's champion on validation, model cards",
    "report": "Markdown tables and figures under reports/",
    "track": "MLflow runs (grid, configurations, repeats) from the outputs; adds only what is missing",
}


MODULES = {
    "data": "data_cli",
    "seeds": "generators.annotations",
    "cache": "cache_cli",
    "predict": "serve_cli",
    "promote": "serve_cli",
    "score-external": "serve_cli",
    "review": "review_cli",
    "compare-generators": "compare_cli",
    "services": "services_cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dermsynth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in STAGES.items():
        sub.add_parser(name, help=text, description=f"Stage `{name}`: {text}.")
    features = sub.add_parser(
        "features",
        help="run the frozen backbone once per image and view; cache activations",
        description="Stage `features`: run the frozen backbone once per image and view.",
    )
    features.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    sub.choices["metadata"].add_argument(
        "--csv", default=None, help="metadata CSV (default: <dataset.root>/fitzpatrick17k.csv)"
    )
    sub.choices["generate"].add_argument(
        "--dry-run", action="store_true", help="print every prompt, the calls and the estimated cost; call nothing"
    )
    add_data_commands(sub)
    add_model_commands(sub)
    review = sub.add_parser(
        "review",
        help="a blinded reader study of realism in the browser (plan, reader, serve, report, export)",
        description="A blinded reader study: real and synthetic images, one at a time, in a local web app "
        "(docs/review.md). Not a pipeline stage: answers come from people, over days.",
    )
    review.add_argument(
        "verb",
        choices=["plan", "reader", "readers", "serve", "report", "publish", "export"],
        help="plan: draw the images; reader NAME: add a reader (prints their link); readers: list the links; "
        "serve: the web app; report: the analysis; publish: the answers to review.answers, for the study report; "
        "export: reader-based curation decisions",
    )
    review.add_argument("name", nargs="?", default=None, help="the reader's name (verb reader)")
    compare = sub.add_parser(
        "compare-generators",
        help="run the study for several generators through `dvc exp run` and write one comparison table",
        description="Per generator: `dvc exp run -S generate.generator=GEN`, a snapshot of its tables, quality "
        "and cost (reports/generators/GEN.json); then reports/generators/comparison.{csv,md}. The workspace's "
        "params.yaml and dvc.lock are restored at the end.",
    )
    compare.add_argument(
        "generators", nargs="+", choices=["tone_transfer", "reinhard", "oracle", "null", "diffusers", "openai"],
        metavar="GENERATOR",
        help="tone_transfer, reinhard, oracle and null (controls: docs/embedded.md), diffusers (needs "
        "--diffusers-model), openai (cached images only)",
    )  # fmt: skip
    compare.add_argument("--diffusers-model", default=None, help="a diffusers inpainting pipeline folder")
    compare.add_argument("--allow-paid", action="store_true", help="let openai pay for images not in its cache")
    compare.add_argument(
        "--tables-only", action="store_true",
        help="no experiment: rebuild comparison and recovery tables from the snapshots an earlier run stored",
    )  # fmt: skip
    services = sub.add_parser(
        "services",
        help="a team's PostgreSQL and MLflow server on this host (start, stop, status, env: docs/team.md)",
        description="PostgreSQL (databases optuna and mlflow) and an MLflow server on it, proxying artifacts, "
        "all in one folder. start is idempotent and keeps its ports; env prints what a client exports.",
    )
    services.add_argument("verb", choices=["start", "stop", "status", "env"], help="what to do")
    services.add_argument("--dir", default=str(SERVICES), help=f"the services' folder (default {SERVICES})")
    seeds = sub.add_parser(
        "seeds",
        help="seed annotations (crop, mask, body part, noun) for the prompts",
        description="Seed annotations, versioned in git, that generation reads.",
    )
    seeds.add_argument("verb", choices=["init"], help="init: add default rows for seeds not yet annotated")
    cache = sub.add_parser(
        "cache",
        help="the generators' content caches (import: refill them from a pulled build/generated)",
        description="After `dvc pull`, file every image and refusal of build/generated under its request key in "
        "the generator's content cache, so a later change that re-runs `generate` pays for nothing already made.",
    )
    cache.add_argument(
        "verb",
        choices=["import", "forget-refusals"],
        help="import: refill the cache from build/generated; forget-refusals: let the next run ask again "
        "for the requests a moderation or safety check refused (they are never retried otherwise)",
    )
    train = sub.add_parser(
        "train",
        help="train one head (one arm or dose of the study)",
        description="Stage `fitz_only`/`train`/`dose`: train one classifier head on cached features.",
    )
    train.add_argument("--direction", required=True, help="light_to_dark or dark_to_light")
    train.add_argument("--condition", default=None, help="slug of the augmented condition (all arms but fitz_only)")
    train.add_argument("--arm", required=True, help="fitz_only, seed, synthetic_and_seed or tone_control")
    train.add_argument(
        "--dose",
        type=int,
        default=None,
        help="number of synthetic images, below the whole set (synthetic_and_seed only; default: all curated)",
    )
    tune = sub.add_parser(
        "tune",
        help="tune the head with Optuna on the validation split only (not part of `dvc repro`)",
        description="Optuna study over the head's hyper-parameters (params.yaml `tune`); validation data only. "
        "Start it in several shells or machines with one shared --storage to tune in parallel.",
    )
    tune.add_argument("--trials", type=int, default=None, help="total trials in the study (default: tune.trials)")
    tune.add_argument(
        "--storage", default=None,
        help="Optuna storage URL (default: $DERMSYNTH_OPTUNA_STORAGE, else tune.storage, SQLite); put no password "
        "in it: libpq reads PGPASSWORD or a pgpass file",
    )  # fmt: skip
    tune.add_argument("--study-name", default=None, help="study name (default: tune.study_name)")
    tune.add_argument("--heartbeat", type=int, default=30, help="seconds between a running trial's heartbeats (30)")
    tune.add_argument(
        "--grace", type=int, default=120,
        help="seconds without a heartbeat after which another worker fails a trial and re-runs its slot (120)",
    )  # fmt: skip
    gate = sub.add_parser(
        "gate",
        help="compare reports/metrics.json with the committed baseline",
        description="Exit 1 naming every estimand (balanced accuracy near and far, worst-group accuracy, gains) "
        "whose drop below the baseline is significant (one-sided Welch over repeats and images, Holm at gate.alpha) "
        "and larger than gate.min_effect.",
    )
    gate.add_argument("--baseline", default=None, help="baseline JSON, used as given (default: reports/baseline.json)")
    gate.add_argument("--metrics", default=None, help="fresh metrics JSON (default: reports/metrics.json)")
    gate.add_argument("--update", action="store_true", help="write the fresh estimands as the new baseline")
    overrides = sub.add_parser(
        "overrides",
        help="print a configuration file's settings as `dvc exp run -S` arguments",
        description="Check a file of dotted params keys (e.g. configs/real-data.yaml) against params.yaml and print "
        "it as `-S key=value` arguments: dvc exp run $(dermsynth overrides configs/real-data.yaml).",
    )
    overrides.add_argument("file", help="YAML mapping of dotted keys, e.g. configs/real-data.yaml")
    return parser


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    model_help = "NAME@ALIAS, NAME/VERSION, a models:/ or runs:/ URI, or a packaged folder (default: %s)"
    default = "<register.prefix>-<first of train.directions>@champion"
    predict = sub.add_parser(
        "predict",
        help="label and probabilities per image from a registered model (CSV)",
        description="Score images with a registered model (the chain the study evaluated); folders are read whole. "
        "An unreadable image gets a one-line error naming it; the others are still scored (exit 1 if any failed).",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    predict.add_argument("--model", default=None, help=model_help % default)
    predict.add_argument("--out", default=None, help="write the CSV here (default: standard output)")
    promote = sub.add_parser(
        "promote",
        help="move a registered model's champion alias to its challenger, checked per FST group",
        description="Score champion and challenger on the direction's test images; refuse when the challenger falls "
        "more than gate.tolerance below the champion on any FST group (docs/registry.md).",
    )
    promote.add_argument("name", help="registered model, e.g. dermsynth-light_to_dark")
    promote.add_argument("--dry-run", action="store_true", help="compare and report; change no alias")
    external = sub.add_parser(
        "score-external",
        help="score a registered model on an external dataset per FST group (reports/external/)",
        description="Score the images of build/external/DATASET.csv (from `dermsynth data external`) that have a "
        "study condition and a known skin type; per FST group accuracy, balanced accuracy and calibration with "
        "intervals and N.",
    )
    external.add_argument("dataset", choices=["ddi", "pad_ufes_20", "scin"], help="the harmonised dataset")
    external.add_argument("--folder", default=None, help="the dataset's folder (default: as `data external` read it)")
    external.add_argument("--model", default=None, help=model_help % default)


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data",
        help="get the real Fitzpatrick 17k into data/ (metadata, download, import); external datasets",
        description="Acquire the real dataset into data/ (tracked by data.dvc).",
    )
    verbs = data.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("metadata", help="copy the shipped, sha256-pinned metadata CSV to data/fitzpatrick17k.csv")
    download = verbs.add_parser("download", help="fetch images from the CSV's URLs (resumable)")
    download.add_argument("--workers", type=int, default=8, help="concurrent downloads (default 8)")
    download.add_argument("--timeout", type=float, default=20.0, help="seconds per request (default 20)")
    download.add_argument("--retries", type=int, default=3, help="retries on timeouts, 429 and 5xx (default 3)")
    download.add_argument("--all-labels", action="store_true", help="all 114 labels, not only the study's")
    download.add_argument("--limit", type=int, default=None, help="at most this many rows (a trial run)")
    outside = verbs.add_parser(
        "external",
        help="harmonise an external dataset's metadata (DDI, PAD-UFES-20, SCIN) for evaluation (docs/external.md)",
        description="Read an external dataset's own metadata files from FOLDER and write build/external/<dataset>.csv: "
        "image path, the dataset's label, the study condition it maps onto (empty: out of scope) and the skin type.",
    )
    outside.add_argument("dataset", choices=["ddi", "pad_ufes_20", "scin"], help="which dataset's layout to read")
    outside.add_argument("folder", help="the dataset's folder as downloaded (see docs/external.md)")
    importer = verbs.add_parser("import", help="import a folder or zip of <md5hash>.jpg files")
    importer.add_argument("source", help="folder or .zip")
    for verb in (download, importer):
        verb.add_argument(
            "--verify-md5",
            action="store_true",
            help="reject files whose md5 differs from md5hash (off: recorded in the report only)",
        )
        verb.add_argument("--dvc-add", action="store_true", help="run `dvc add data` afterwards")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dermsynth.core import config
    from dermsynth.core.errors import DermsynthError

    try:
        if args.command == "overrides":
            print(" ".join(config.set_arguments(config.read_overrides(Path(args.file)))))
            return 0
        params = config.load()
        module = importlib.import_module(f"dermsynth.{MODULES.get(args.command, args.command)}")
        if args.command == "train":
            return module.main(params, args.direction, args.condition, args.arm, args.dose) or 0
        if args.command == "tune":
            live = module.Liveness(args.heartbeat, args.grace)
            return module.main(params, args.trials, args.storage, args.study_name, live) or 0
        if args.command == "compare-generators":
            return module.main(params, args.generators, args.diffusers_model, args.allow_paid, args.tables_only)
        if args.command == "gate":
            return module.main(params, args.baseline, args.metrics, args.update) or 0
        if args.command == "features":
            return module.main(params, args.device) or 0
        if args.command == "metadata":
            return module.main(params, args.csv) or 0
        if args.command in ("data", "predict", "promote", "score-external", "review", "services"):
            return module.main(params, args)
        if args.command == "generate":
            return module.main(params, args.dry_run) or 0
        if args.command in ("seeds", "cache"):
            return module.main(params, args.verb) or 0
        return module.main(params) or 0
    except DermsynthError as err:
        print(f"dermsynth {args.command}: error: {err}", file=sys.stderr)
        return 1
