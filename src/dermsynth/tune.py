"""`dermsynth tune`: Optuna over the classifier head's hyper-parameters, scored on validation data only.

Why validation only: the test sets are what the study measures; hyper-parameters chosen on them
would make every reported test accuracy optimistic. Tuning reads data only through
`model.trainset.load_run_data`, which drops the test rows of the splits table first, so the test sets
stay untouched until `train` predicts them once, at the end. The result, `tune.best`, is a
proposal that a person copies into params.yaml.

Several processes (or machines, with a PostgreSQL URL) may share one study. The budget is the
study's total: before sampling, a trial counts the live trials numbered below it (numbers are
assigned atomically by the storage) and past the budget is pruned as surplus, stopping its
worker; MaxTrialsCallback alone checks only after a trial, so two workers finishing together
would each start one more. The sampler is seeded per trial number, not per process, so one
worker is reproducible and two never draw the same start-up points. The process whose
create_study succeeds makes the MLflow parent run and records its id in the study's user
attributes (first writer wins); the others wait for it. A worker stays until no trial of the study
is running, so that a killed worker's trial, failed by its stopped heartbeat, is run again by a
live one; then the worker of the highest-numbered complete trial writes the result (docs/team.md).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from dermsynth.core import files, paths
from dermsynth.core.config import Params, Tune
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import ARMS, DIRECTIONS, load_conditions, slug
from dermsynth.model.fitting import best_epoch, train_once
from dermsynth.model.trainset import FeatureStore, RunData, load_run_data
from dermsynth.views import tracking

PARENT_ATTR = "mlflow_parent_run_id"
LIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
PARENT_WAIT_S = 60.0
WORKER = f"{socket.gethostname()}:{os.getpid()}"
HEADER = (
    "# Proposed by `dermsynth tune` from validation accuracy only (no test row was read).\n"
    "# To adopt: copy the `train:` block into params.yaml's `train:` section, then `dvc repro`.\n"
)


def resolve_storage(url: str) -> str:
    """A relative sqlite path lands in the real repository (also under `dvc exp run --queue`)."""
    rest = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    if not rest or rest.startswith(("/", ":memory:")):
        return url
    path = paths.tracking_root() / rest
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def redact(url: str) -> str:
    """The URL without credentials: postgresql://user:pw@host/db -> postgresql://***@host/db."""
    return re.sub(r"^([A-Za-z][\w+.-]*://)[^/]*@", r"\1***@", url)


def check(cfg: Tune, trials: int) -> None:
    """Raise DermsynthError naming a missing input, a bad --trials or an unknown direction, arm or condition."""
    missing = [str(p) for p in (paths.PREPARED_CONDITIONS, paths.FEATURES / "info.json") if not p.exists()]
    if missing:
        raise DermsynthError(f"tune reads {', '.join(missing)}: run `dvc repro features` first")
    problems = []  # types and ranges of the block are checked when params.yaml is loaded (schema.py)
    if trials < 1:
        problems.append(f"tune.trials: expected at least 1, got {trials}")
    conditions = [slug(c) for c in load_conditions()]
    for key, allowed in (("direction", list(DIRECTIONS)), ("arm", list(ARMS)), ("condition", conditions)):
        if getattr(cfg, key) not in allowed:
            problems.append(f"tune.{key}: unknown {getattr(cfg, key)!r} (one of {allowed})")
    if problems:
        raise DermsynthError("invalid tune parameters:\n  " + "\n  ".join(problems))


class TrialSeededTPE(BaseSampler):
    """TPE whose random stream is seeded by (seed, trial number) instead of once per process."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._tpe = TPESampler(seed=seed, constant_liar=True)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seed = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
        self._tpe = TPESampler(seed=seed, constant_liar=True)  # constant liar: other workers' running trials
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any) -> Any:
        return self._tpe.sample_independent(study, trial, name, distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._tpe.after_trial(study, trial, state, values)


def _retry(make: Callable[[], Any]) -> Any:
    """Two processes creating the tables of a fresh database race ("table ... already exists"): retry."""
    for wait in (0.5, 1.0, 2.0, 4.0, None):
        try:
            return make()
        except SQLAlchemyError:
            if wait is None:
                raise
            time.sleep(wait)


@dataclasses.dataclass(frozen=True)
class Liveness:
    """How a dead worker is noticed: each running trial beats every `heartbeat` s, and a trial silent for
    `grace` s is marked FAIL by any live worker, which then runs that slot of the budget again."""

    heartbeat: int = 30
    grace: int = 120

    def __post_init__(self) -> None:
        if not 1 <= self.heartbeat < self.grace:
            raise DermsynthError(f"--heartbeat {self.heartbeat} and --grace {self.grace}: need 1 <= heartbeat < grace")


def open_study(url: str, name: str, seed: int, live: Liveness = Liveness()) -> tuple[optuna.Study, bool]:
    """The shared study and whether this process created it (create_study(load_if_exists=True), made explicit)."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    storage = _retry(lambda: optuna.storages.RDBStorage(url, engine, heartbeat_interval=live.heartbeat,
                                                        grace_period=live.grace))  # fmt: skip
    sampler = TrialSeededTPE(seed)
    try:
        return optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler), True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise DermsynthError(f"study {name!r} in {redact(url)} minimises; tuning needs a maximising study")
    return study, False


def parent_run(study: optuna.Study, created: bool, tags: dict[str, str]) -> tuple[str, str]:
    """(experiment id, parent run id): the study's creator makes the run, the others wait for its id."""
    from mlflow import MlflowClient

    deadline = time.monotonic() + (0 if created else PARENT_WAIT_S)
    while PARENT_ATTR not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.2)
    experiment = _retry(tracking.setup)  # after the wait: only one worker initialises a fresh MLflow store
    if PARENT_ATTR in study.user_attrs:
        return experiment, study.user_attrs[PARENT_ATTR]
    # the creator, or a study whose creator died before recording one: adopt a parent by tag, else make one
    query = f"tags.optuna_study = '{tags['optuna_study']}' and tags.optuna_storage = '{tags['optuna_storage']}'"
    found = [] if created else MlflowClient().search_runs([experiment], query, order_by=["attributes.start_time"])
    run_id = found[0].info.run_id if found else MlflowClient().create_run(experiment, tags=tags).info.run_id
    study.set_user_attr(PARENT_ATTR, run_id)
    return experiment, run_id


def suggest(trial: Trial, cfg: Tune) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", *cfg.lr, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *cfg.weight_decay, log=True),
        "hidden": trial.suggest_categorical("hidden", list(cfg.hidden)),
        "dropout": trial.suggest_float("dropout", *cfg.dropout),
        "epochs": trial.suggest_int("epochs", *cfg.epochs),
        "sampler": trial.suggest_categorical("sampler", list(cfg.sampler)),
    }


def log_trial(experiment: str, parent: str, tags: dict, trial: Trial, values: dict, history: list[dict]) -> None:
    import mlflow

    name, tags = f"trial-{trial.number}", {**tags, "optuna_trial": str(trial.number)}
    with mlflow.start_run(experiment_id=experiment, run_name=name, nested=True, parent_run_id=parent, tags=tags):
        mlflow.log_params(values)
        for h in history:
            mlflow.log_metrics({f"epoch/{k}": v for k, v in h.items() if k != "epoch"}, step=h["epoch"])
        best = best_epoch(history)
        mlflow.log_metrics({"val_acc": best["val_acc"], "val_loss": best["val_loss"], "best_epoch": best["epoch"]})


def objective(study: optuna.Study, data: RunData, params: Params, budget: int, log: Callable) -> Callable:
    def run(trial: Trial) -> float:
        ahead = [t for t in study.get_trials(deepcopy=False, states=LIVE) if t.number < trial.number]
        if len(ahead) >= budget:  # another worker took the last slot between our check and this trial
            trial.set_user_attr("surplus", True)
            study.stop()
            raise optuna.TrialPruned(f"surplus: the study's {budget} trials are taken")
        values = suggest(trial, params.tune)
        cfg = dataclasses.replace(params.train, **values)
        _, history = train_once(data, cfg, data.precision, params.tune.seed)
        best = best_epoch(history)
        trial.set_user_attr("val_loss", best["val_loss"])
        trial.set_user_attr("best_epoch", best["epoch"])
        trial.set_user_attr("worker", WORKER)
        log(trial, values, history)
        shown = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(
            f"tune {study.study_name} trial {trial.number}: val_acc {best['val_acc']:.4f} "
            f"val_loss {best['val_loss']:.4f} (epoch {best['epoch']}) | {shown}",
            flush=True,
        )
        return best["val_acc"]

    return run


def best_trial(study: optuna.Study) -> FrozenTrial:
    """Highest validation accuracy; ties go to the lower validation loss, then to the earlier trial."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise DermsynthError(f"study {study.study_name!r} has no complete trial")
    return max(done, key=lambda t: (t.value, -t.user_attrs.get("val_loss", np.inf), -t.number))


def write_best(path: Path, best: FrozenTrial, study: optuna.Study, storage: str, cfg: Tune) -> None:
    source = {"study": study.study_name, "storage": storage, "trial": best.number, "value": best.value}
    source |= {"metric": "val_acc", "val_loss": best.user_attrs.get("val_loss"), "epoch": best.user_attrs["best_epoch"]}
    source["complete_trials"] = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    source["tuned_on"] = {"direction": cfg.direction, "condition": cfg.condition, "arm": cfg.arm, "seed": cfg.seed}
    files.write_text(path, HEADER + yaml.safe_dump({"source": source, "train": dict(best.params)}, sort_keys=False))


def log_best(parent: str, best: FrozenTrial) -> None:
    """Copy the best trial onto the parent run; MLflow params are immutable, so a later, different best goes to tags."""
    from mlflow import MlflowClient

    client = MlflowClient()
    values = {f"best.{k}": str(v) for k, v in best.params.items()} | {"best.trial": str(best.number)}
    existing = client.get_run(parent).data.params
    changed = any(existing.get(k, v) != v for k, v in values.items())
    for k, v in values.items():
        (client.set_tag if changed else client.log_param)(parent, k, v)
    client.log_metric(parent, "best_val_acc", best.value)
    client.log_metric(parent, "best_val_loss", best.user_attrs.get("val_loss", float("nan")))
    client.set_terminated(parent)


def finish(study: optuna.Study, parent: str, cfg: Tune, url: str) -> None:
    """Write the best trial to `tune.best` and onto the parent run, then print the summary."""
    best = best_trial(study)
    write_best(Path(cfg.best), best, study, redact(url), cfg)
    log_best(parent, best)
    mine = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("worker") == WORKER]
    print(
        f"tune {study.study_name}: {len(study.get_trials(states=(TrialState.COMPLETE,)))} complete trials "
        f"({len(mine)} by this worker) in {redact(url)}; best trial {best.number}: val_acc {best.value:.4f} "
        f"val_loss {best.user_attrs['val_loss']:.4f}; wrote {cfg.best}; MLflow parent run {parent}",
        flush=True,
    )


def work(study: optuna.Study, budget: int, run: Callable, live: Liveness) -> None:
    """Take free slots of the budget until none is left and no other worker's trial is running.

    Waiting for the others is what lets a killed worker's trial be re-run: its heartbeat stops,
    and after `grace` seconds this worker marks it FAIL, which frees its slot.
    """
    while True:
        remaining = budget - len(study.get_trials(deepcopy=False, states=LIVE))
        if remaining > 0:
            stop = optuna.study.MaxTrialsCallback(budget, states=LIVE)
            study.optimize(run, n_trials=remaining, callbacks=[stop])
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            return
        time.sleep(live.heartbeat)
        optuna.storages.fail_stale_trials(study)


def writes_best(study: optuna.Study) -> bool:
    """One worker writes the result: the one that completed the highest-numbered trial (no clocks compared
    across machines), or one that ran none (a later `dermsynth tune` on a finished study, also the way to
    finish a study whose last worker died after its trial)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    mine = [t for t in done if t.user_attrs.get("worker") == WORKER]
    return not mine or max(done, key=lambda t: t.number).user_attrs.get("worker") == WORKER


def main(params: Params, trials: int | None = None, storage: str | None = None, study_name: str | None = None,
         live: Liveness = Liveness()) -> int:  # fmt: skip
    """Run this worker's share of the study's `trials` (default tune.trials); the last worker writes the best."""
    cfg = params.tune
    budget = cfg.trials if trials is None else trials
    url = resolve_storage(storage or os.environ.get("DERMSYNTH_OPTUNA_STORAGE") or cfg.storage)
    name = study_name or cfg.study_name
    check(cfg, budget)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
    data = load_run_data(params, cfg.direction, cfg.condition, cfg.arm, None, FeatureStore(paths.FEATURES))
    study, created = open_study(url, name, cfg.seed, live)
    tags = {"optuna_study": name, "optuna_storage": redact(url), "stage": "tune", "direction": cfg.direction}
    tags |= {"condition": cfg.condition, "arm": cfg.arm, "git_commit": tracking.git_commit()}
    experiment, parent = parent_run(study, created, {**tags, "mlflow.runName": f"tune-{name}"})
    optuna.storages.fail_stale_trials(study)
    log = functools.partial(log_trial, experiment, parent, tags)
    work(study, budget, objective(study, data, params, budget, log), live)
    if not writes_best(study):
        print(f"tune {name}: the study is complete; the worker of its last trial writes {cfg.best}", flush=True)
        return 0
    finish(study, parent, cfg, url)
    return 0
