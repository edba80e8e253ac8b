"""MLflow view of step one: a `groh` run with a nested run per holdout scheme, and the selection rule's tables.

Like the study's runs (track.py), these are rebuilt from the stages' outputs alone and carry a
fingerprint of them: `track` adds them when missing and leaves them alone otherwise. The parent
holds the Groh-style tables (reports/groh/groh.md) and the rule's choice (reports/selection/);
each scheme's run holds its sizes as params and its accuracies (overall, per test FST, per
source) as metrics, so the schemes line up as rows in MLflow's runs table.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dermsynth.core import files, paths

DONE = "complete"
OUTPUTS = tuple(paths.GROH_REPORTS / name for name in ("results.json", "per_label.csv", "groh.md")) + tuple(
    paths.SELECTION / name for name in ("ranked.csv", "selection.json", "selection.md")
)


def fingerprint(flat: dict[str, str]) -> str:
    """A hash of step one's outputs and of the parameters that made them."""
    h = hashlib.sha256(b"groh")
    for key in sorted(k for k in flat if k.split(".")[0] in ("groh", "selection", "features", "train", "dataset")):
        h.update(f"{key}={flat[key]}".encode())
    for path in OUTPUTS:
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()[:16]


def scheme_metrics(entry: dict) -> dict[str, float]:
    """One scheme's accuracies as flat MLflow metrics: overall, per test FST and per source (with interval ends)."""
    cells = {"": entry["overall"], **{f"_fst{k}": v for k, v in entry["by_fst"].items()}}
    cells |= {f"_{source}": v for source, v in entry.get("by_source", {}).items()}
    out = {}
    for suffix, cell in cells.items():
        for measure in ("accuracy", "top_k"):
            if cell.get(measure):
                out[f"{measure}{suffix}"] = cell[measure]["estimate"]
                out[f"{measure}{suffix}_low"] = cell[measure]["low"]
                out[f"{measure}{suffix}_high"] = cell[measure]["high"]
        out[f"n{suffix}"] = float(cell["n"])
    return out


def already_tracked(client: object, experiment: str, mark: str) -> bool:
    runs = client.search_runs([experiment], f"tags.groh_hash = '{mark}'")  # type: ignore[attr-defined]
    complete = [r for r in runs if r.data.tags.get("tracked") == DONE]
    for run in runs:  # cut short by a crash or a kill: replaced
        if run.data.tags.get("tracked") != DONE:
            client.delete_run(run.info.run_id)  # type: ignore[attr-defined]
    return bool(complete)


def log(client: object, experiment: str, flat: dict[str, str]) -> str:
    """Add step one's runs when they are missing; what was done, as a line for track's output."""
    import mlflow

    results_file = paths.GROH_REPORTS / "results.json"
    if not results_file.exists():
        return "no step-one outputs (reports/groh/): nothing to add"
    mark = fingerprint(flat)
    if already_tracked(client, experiment, mark):
        return "step one (groh) already there"
    results = files.read_json(results_file)
    # `fingerprint` as every tracked run has one (never one the study's configurations look for)
    tags = {"stage": "groh", "groh_hash": mark, "fingerprint": f"groh-{mark}", "top_k": str(results["top_k"])}
    with mlflow.start_run(experiment_id=experiment, run_name="groh", tags=tags):
        mlflow.log_params({k: v for k, v in flat.items() if k.startswith(("groh.", "selection."))})
        choice = paths.SELECTION / "selection.json"
        chosen = files.read_json(choice) if choice.exists() else {}
        mlflow.set_tag("selection", ", ".join(chosen.get("conditions", [])))
        for path in OUTPUTS:
            if Path(path).exists():
                mlflow.log_artifact(str(path), artifact_path=path.parent.name)
        for scheme, entry in results["schemes"].items():
            child = {"stage": "groh", "scheme": scheme, "groh_hash": mark, "fingerprint": f"groh-{mark}-{scheme}"}
            with mlflow.start_run(experiment_id=experiment, run_name=f"groh-{scheme}", tags=child, nested=True):
                mlflow.log_params({k: entry[k] for k in ("scheme", "labels", "n_fit", "n_val", "n_test")})
                mlflow.log_metrics(scheme_metrics(entry))
                mlflow.set_tag("tracked", DONE)
        mlflow.set_tag("tracked", DONE)
    return f"step one (groh): 1 run and {len(results['schemes'])} scheme runs added"
