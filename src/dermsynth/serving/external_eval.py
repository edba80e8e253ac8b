"""`dermsynth score-external DATASET`: a registered model on an external dataset, per FST group, with N and intervals.

Reads the table `dermsynth data external` harmonised (build/external/<dataset>.csv), scores the
images whose label is one of the model's conditions and whose skin type is known, and writes
reports/external/<dataset>.{json,md}: per FST group the accuracy (Wilson interval), balanced
accuracy and expected calibration error (bootstrap intervals) and the mean confidence. Rows
out of scope or without a skin type are counted, never scored; unreadable images are named.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from dermsynth.analysis.groups import by_group, group_scores
from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.serving.card import interval_text
from dermsynth.serving.scoring import classes_of, load_model, scored


def load_table(dataset: str, folder: str | None) -> tuple[pd.DataFrame, Path]:
    table_path = paths.EXTERNAL / f"{dataset}.csv"
    if not table_path.exists():
        raise DermsynthError(f"{table_path} not found: run `dermsynth data external {dataset} FOLDER` first")
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    if folder is None:
        folder = files.read_json(table_path.with_suffix(".json"))["folder"]
    return table, Path(folder)


def score_rows(model: object, rows: pd.DataFrame, root: Path) -> tuple[pd.DataFrame, list[str]]:
    """The rows with pred, prob_pred and correct; and the errors of the images that could not be read."""
    preds, probs, errors = [], [], []
    for _, out in scored(model, [root / image for image in rows["image"]], "score-external"):
        errors.append(out["error"])
        preds.append(out["label"])
        probs.append(max((float(out[c]) for c in out.index if c.startswith("prob_")), default=float("nan")))
    frame = rows.assign(pred=preds, prob_pred=probs, error=errors, md5hash=rows["image"])
    frame = frame.assign(correct=frame["pred"] == frame["label"])
    return frame[frame["error"] == ""].drop(columns="error"), [e for e in errors if e]


def markdown(result: dict) -> str:
    lines = [
        f"# External evaluation: {result['model']} on {result['dataset']}",
        "",
        f"{result['n_images']} images; {result['n_scored']} scored (a study condition and a known FST group); "
        f"{result['out_of_scope']} out of the study's scope, {result['no_skin_type']} without a skin type, "
        f"{result['unreadable']} unreadable. {result['interval']}.",
        "",
        "| FST group | N | accuracy | balanced accuracy | ECE | mean confidence |",
        "|---|---|---|---|---|---|",
    ]
    for group, s in {**result["groups"], "all": result["overall"]}.items():
        lines.append(
            f"| {group} | {s['n']} | {s['acc']:.3f} [{s['acc_low']:.3f}, {s['acc_high']:.3f}] | "
            f"{s['bal_acc']:.3f} [{s['bal_acc_low']:.3f}, {s['bal_acc_high']:.3f}] | "
            f"{s['ece']:.3f} [{s['ece_low']:.3f}, {s['ece_high']:.3f}] | {s['confidence']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def score_external(params: Params, dataset: str, folder: str | None, model_spec: str) -> int:
    table, root = load_table(dataset, folder)
    model = load_model(model_spec)
    classes = classes_of(model)
    in_scope = table["label"].isin(classes)
    known = table["fst_group"] != ""
    rows, unread = score_rows(model, table[in_scope & known].reset_index(drop=True), root)
    for error in unread:
        print(f"dermsynth score-external: error: {error}", file=sys.stderr)
    if rows.empty:
        raise DermsynthError(f"{dataset}: no readable image of a study condition with a known skin type to score")
    z = params.evaluate.z
    result = {
        "dataset": dataset,
        "model": model_spec,
        "n_images": len(table),
        "n_scored": len(rows),
        "out_of_scope": int((~in_scope).sum()),
        "no_skin_type": int((in_scope & ~known).sum()),
        "unreadable": len(unread),
        "interval": interval_text(z),
        "groups": by_group(rows, classes, z, column="fst_group"),
        "overall": group_scores(rows, classes, z),
    }
    out = paths.EXTERNAL_REPORTS / dataset
    files.write_json(out.with_suffix(".json"), result)
    files.write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    print(f"score-external: wrote {out}.json and .md")
    return 1 if unread else 0
