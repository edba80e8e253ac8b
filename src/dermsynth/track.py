"""Stage and command `track`: MLflow as a view of the pipeline's outputs, rebuilt from them alone.

Logging used to be a side effect of training, so a stage that DVC skipped or restored from its
run cache logged nothing and a re-run logged twice. `track` instead reads what the stages wrote
(each configuration's metrics, predictions and per-epoch histories; the study's tables) and
creates the MLflow runs that are missing, in three levels: one grid run, a run per configuration
under it, and a run per repeat under that. Each run carries a fingerprint: a hash of its output
files and of the whole resolved parameter set (and, for the grid, of its configurations and
tables). A run whose fingerprint is already in the store is left alone, so running `track` again
adds nothing, queued experiments with different parameters never share runs, and a deleted
store is rebuilt from the files (`dermsynth track`, e.g. after `dvc pull` or `dvc exp apply`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from dermsynth.analysis.grid import first_configurations, planned_runs, test_metrics
from dermsynth.analysis.metrics import fairness, run_metrics
from dermsynth.core import files, paths
from dermsynth.core.config import Params, read_yaml
from dermsynth.core.study import load_conditions, training_seed
from dermsynth.views import groh_tracking, tracking
from dermsynth.views.figures import confusion_figure

DONE = "complete"  # value of the `tracked` tag, set last: a run without it was cut short and is replaced
TABLE_FILES = {
    "arms": paths.PLOTS / "arms.csv",
    "dose": paths.PLOTS / "dose.csv",
    "spillover": paths.PLOTS / "spillover.csv",
    "paired_tests": paths.TABLES / "paired_tests.csv",
    "synthetic_vs_seed": paths.TABLES / "synthetic_vs_seed.csv",
    "dose_trend": paths.TABLES / "dose_trend.csv",
    "fairness": paths.TABLES / "fairness.csv",
}


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """params.yaml as dotted keys with string values (lists and nulls as JSON), the form MLflow params take."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def digest(*parts: bytes) -> str:
    """sha256 over length-prefixed parts (so that two different splits of the same bytes differ)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:32]


def md5(path: Path) -> str:
    """A file's md5, the hash DVC records for it in dvc.lock."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def configuration_files(run: dict) -> list[Path]:
    """A configuration's metrics, and the predictions and histories of the training it shares or owns."""
    return [
        paths.RUN_METRICS / f"{run['name']}.json",
        paths.run_dir(run["trained"]) / "predictions.csv",
        paths.run_dir(run["trained"]) / paths.TRAINING_NAME,
    ]


def fingerprints(runs: list[dict], flat: dict[str, str]) -> tuple[dict[str, str], str]:
    """A fingerprint per configuration (its files, the parameters) and the grid's (all of them and the tables)."""
    params = json.dumps(flat, sort_keys=True).encode()
    per_run = {}
    for run in runs:
        files = configuration_files(run)
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"track: {run['name']} has no {', '.join(missing)}: run `dvc repro` first")
        per_run[run["name"]] = digest(run["name"].encode(), params, *(f.read_bytes() for f in files))
    tables = [f.read_bytes() for f in TABLE_FILES.values() if f.exists()]
    grid = digest(b"grid", params, *(per_run[r["name"]].encode() for r in runs), *tables)
    return per_run, grid


def tracked_runs(client: object, experiment: str, wanted: set[str]) -> tuple[dict[str, dict], list[str]]:
    """Complete runs with a wanted fingerprint (fingerprint -> {run_id, parent}), and wanted runs cut short."""
    found = client.search_runs([experiment], "tags.fingerprint LIKE '%'", max_results=50000)  # type: ignore[attr-defined]
    found = [r for r in found if r.data.tags.get("fingerprint") in wanted]
    complete = {
        r.data.tags["fingerprint"]: {"run_id": r.info.run_id, "parent": r.data.tags.get("mlflow.parentRunId")}
        for r in found
        if r.data.tags.get("tracked") == DONE
    }
    partial = [r.info.run_id for r in found if r.data.tags.get("tracked") != DONE]
    return complete, partial


def datasets(params: Params) -> list[tuple[object, str]]:
    """The data a run was made from as MLflow datasets (the UI's Dataset column), the file's md5 as digest."""
    import mlflow.data

    sources = [
        ("metadata", paths.PREPARED_TABLE, "source"),
        ("splits", paths.SPLITS_TABLE, "splits"),
        (f"synthetic-{params.generate.generator}", paths.CURATED / paths.MANIFEST_NAME, "synthetic"),
    ]
    out = []
    for name, path, context in sources:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        with warnings.catch_warnings():  # MLflow registers two local-file source types that both claim a path
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted in multiple ways")
            dataset = mlflow.data.from_pandas(frame, source=str(path), name=name, digest=md5(path))
        out.append((dataset, context))
    return out


def stage_of(run: dict) -> str:
    """The dvc.yaml stage that trained a configuration's predictions."""
    if run["arm"] == "fitz_only":
        return "fitz_only"
    return "train" if run["dose"] is None or run["trained"] != run["name"] else "dose"


def configuration_tags(params: Params, run: dict, info: dict, training: dict) -> dict[str, str]:
    """Tags that make runs filterable; `dose` is the number of synthetic images trained on."""
    return {
        "direction": run["direction"],
        "condition": run["condition"],
        "arm": run["arm"],
        "dose": str(training["n_synthetic"]),
        "dataset": params.dataset.root,
        "generator": params.generate.generator,
        "model": params.generate.model_name(),
        "backbone": f"{info['backbone']}:{info['weights']}",
        "device": str(info.get("device", "unknown")),
        "precision": str(info.get("precision", "unknown")),  # as computed: features.precision auto resolves per device
        "git_commit": tracking.git_commit(),
        "stage": stage_of(run),
        "configuration": run["name"],
        "trained_as": run["trained"],  # models/<trained_as>: shared by configurations with the same training set
        "repeat": "all",
        "draw": "all",  # the configuration's run pools every draw of the seeds; its nested runs are one each
    }


def log_configuration(
    params: Params, experiment: str, run: dict, fingerprint: str, flat: dict, info: dict, inputs: list
) -> str:
    """One configuration run (pooled metrics, inputs, artifacts) with a nested run per training (draw of the seeds
    and repeat, tagged with both); inside an active run."""
    import mlflow

    name = run["name"]
    training = files.read_json(paths.run_dir(run["trained"]) / paths.TRAINING_NAME)
    predictions = pd.read_csv(paths.run_dir(run["trained"]) / "predictions.csv", dtype={"md5hash": str})
    tags = {**configuration_tags(params, run, info, training), "fingerprint": fingerprint}
    with mlflow.start_run(experiment_id=experiment, run_name=name, tags=tags, nested=True) as config_run:
        mlflow.log_params({**flat, "n_train": training["n_train"], "n_synthetic": training["n_synthetic"]})
        mlflow.log_metrics(files.read_json(paths.RUN_METRICS / f"{name}.json"))
        for dataset, context in inputs:
            mlflow.log_input(dataset, context=context)
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / "confusion_matrix.png"
            first = (predictions["repeat"] == 0) & (predictions.get("draw", 0) == 0)
            confusion_figure(predictions[first], load_conditions(), figure)
            mlflow.log_artifact(str(figure))
        mlflow.log_artifact(str(paths.run_dir(run["trained"]) / "predictions.csv"))
        draws = training.get("draws") or [{"draw": 0, "histories": training["histories"]}]
        for d, r, history in ((e["draw"], r, h) for e in draws for r, h in enumerate(e["histories"])):
            label = f"r{r}" if len(draws) == 1 else f"d{d}-r{r}"
            seed = training_seed(params.train.seed, params.train.repeats, d, r)
            child = {**tags, "draw": str(d), "repeat": str(r), "train_seed": str(seed)}
            child["fingerprint"] = f"{fingerprint}/{label}"
            with mlflow.start_run(experiment_id=experiment, run_name=f"{name}-{label}", tags=child, nested=True) as rep:
                rows = predictions[(predictions["repeat"] == r) & (predictions.get("draw", 0) == d)]
                summary = {**run_metrics(rows, params.evaluate.z), **fairness(rows)}
                mlflow.MlflowClient().log_batch(rep.info.run_id, metrics=repeat_metrics(history, summary))
                mlflow.set_tag("tracked", DONE)
        mlflow.set_tag("tracked", DONE)
    return config_run.info.run_id


def repeat_metrics(history: list[dict], summary: dict[str, float]) -> list:
    """A repeat's per-epoch curves (step = epoch) and its test metrics, for one `log_batch` call.

    One call per repeat instead of one per epoch: each MLflow call is a store transaction (or an
    HTTP request to a server), and the epochs made most of `track`'s time.
    """
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    curves = [Metric(f"epoch/{k}", v, now, h["epoch"]) for h in history for k, v in h.items() if k != "epoch"]
    return curves + [Metric(k, v, now, 0) for k, v in summary.items()]


def grid_tags(params: Params, fingerprint: str) -> dict[str, str]:
    return {
        "stage": "track",
        "grid": "study",
        "dataset": params.dataset.root,
        "generator": params.generate.generator,
        "model": params.generate.model_name(),
        "repeats": str(params.train.repeats),
        "git_commit": tracking.git_commit(),
        "fingerprint": fingerprint,
    }


def log_tables() -> dict[str, float]:
    """The report's tables on the active (grid) run, as MLflow tables and CSV; their tests as metrics."""
    import mlflow

    tables = {name: pd.read_csv(path) for name, path in TABLE_FILES.items() if path.exists() and path.stat().st_size}
    with tempfile.TemporaryDirectory() as tmp:
        for name, table in tables.items():
            mlflow.log_table(table, artifact_file=f"tables/{name}.json")
            table.to_csv(Path(tmp) / f"{name}.csv", index=False)
        mlflow.log_artifacts(tmp, artifact_path="tables")
    summary = files.read_json(paths.SUMMARY) if paths.SUMMARY.exists() else {}
    flat = metric_paths(summary, "summary")
    metrics = {**test_metrics(tables), **{k: v for k, v in flat.items() if v is not None}}
    mlflow.log_metrics(metrics)
    return metrics


def metric_paths(tree: dict, prefix: str) -> dict[str, float | None]:
    """A nested dict of numbers as MLflow metric names: {"signal": {"light_to_dark": {"gap": x}}} -> signal/.../gap."""
    out: dict[str, float | None] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}"
        out |= metric_paths(value, name) if isinstance(value, dict) else {name: value}
    return out


@contextmanager
def grid_run(params: Params, experiment: str, fingerprint: str, existing: str | None, flat: dict) -> Iterator[str]:
    """The grid's run, resumed when it exists (to add missing configurations), created and filled otherwise."""
    import mlflow

    if existing:
        with mlflow.start_run(run_id=existing, experiment_id=experiment):
            yield existing
        return
    with mlflow.start_run(experiment_id=experiment, run_name="grid", tags=grid_tags(params, fingerprint)) as run:
        mlflow.log_params(flat)
        log_tables()
        yield run.info.run_id


def registry_view(client: object, runs: list[dict], run_ids: dict[str, str]) -> list[str]:
    """Register each training's packaged model once (in its first configuration's run), then set the aliases."""
    from dermsynth.serving import registry

    first = first_configurations(runs)
    lines = []
    for direction, entry in registry.decision().items():
        name = entry["registered_name"]
        registry.ensure_registered(client, name, entry["rule"])
        verdicts = {row["candidate"]: row for row in entry["candidates"]}
        versions = {}
        for trained, run in first.items():
            if run["direction"] != direction:
                continue
            run_id = run_ids[run["name"]]
            tags = {
                "direction": direction,
                "arm": run["arm"],
                "condition": "" if run["arm"] == "fitz_only" else run["condition"],
                "dose": str(run["dose"] or ""),
                "served_repeat": str(entry["served_repeats"][trained]),
                "worst_val_stratum": f"{verdicts[trained]['worst_stratum']:.4f}",
                "eligible": str(verdicts[trained]["eligible"]).lower(),
                "git_commit": tracking.git_commit(),
            }
            versions[trained] = registry.version_of(client, name, run_id) or registry.add_version(
                client, name, run_id, trained, tags
            )
        aliases = registry.apply_aliases(client, name, versions[entry["champion"]])
        lines.append(
            f"{name}: {len(versions)} versions; challenger v{aliases['challenger']} ({entry['champion']}, the rule's "
            f"pick), champion v{aliases['champion']}"
            + ("" if aliases["champion"] == aliases["challenger"] else f": `dermsynth promote {name}` to compare")
        )
    return lines


def main(params: Params) -> int:
    import mlflow

    files.require("track", paths.PREPARED_TABLE, paths.SPLITS_TABLE, paths.CURATED / paths.MANIFEST_NAME,
                  paths.FEATURES / "info.json", paths.REGISTRY, paths.REGISTRY_DECISION,
                  *(paths.run_dir(r["trained"]) for r in planned_runs(params)),
                  hint="track logs the pipeline's outputs to MLflow; run `dvc repro` (or `make pull`)")  # fmt: skip
    experiment = tracking.setup()
    flat = flatten(read_yaml(paths.root() / "params.yaml"))
    runs = planned_runs(params)
    per_run, grid_fp = fingerprints(runs, flat)
    info = files.read_json(paths.FEATURES / "info.json")
    with tracking.store_lock(tracking.tracking_uri()):  # queued experiments track into one store one at a time
        client = mlflow.MlflowClient()
        complete, partial = tracked_runs(client, experiment, {grid_fp, *per_run.values()})
        for run_id in partial:  # cut short by a crash or a kill: replaced below
            client.delete_run(run_id)
        grid = complete.get(grid_fp, {}).get("run_id")
        # a grid owns its configuration runs: those of another grid (other tables or code) are not adopted
        missing = [r for r in runs if not grid or complete.get(per_run[r["name"]], {}).get("parent") != grid]
        inputs = datasets(params) if missing else []
        with grid_run(params, experiment, grid_fp, grid, flat) as grid_id:
            created = {
                run["name"]: log_configuration(params, experiment, run, per_run[run["name"]], flat, info, inputs)
                for run in missing
            }
            mlflow.set_tag("tracked", DONE)
        run_ids = {r["name"]: created.get(r["name"]) or complete[per_run[r["name"]]]["run_id"] for r in runs}
        registered = registry_view(client, runs, run_ids)
        step_one = groh_tracking.log(client, experiment, flat)
    files.write_json(paths.TRACKING, {"grid": grid_fp, "configurations": per_run})
    print(
        f"track: grid run {grid_id} in {tracking.tracking_uri()}: {len(missing)} configuration runs added, "
        f"{len(runs) - len(missing)} already there" + ("" if grid else "; new grid run")
    )
    for line in [*registered, step_one]:
        print(f"track: {line}")
    return 0
