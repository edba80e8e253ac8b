"""`dermsynth review ...`: a blinded reader study of the synthetic images' realism (docs/review.md).

    dermsynth review plan              draw the study's images (real and synthetic, per FST group and condition)
    dermsynth review reader NAME       add a reader; prints their personal link
    dermsynth review readers           list the readers and their links
    dermsynth review serve             the web app on review.host:review.port (127.0.0.1 by default)
    dermsynth review report            the analysis: reports/review/report.{json,md}, and an MLflow run
    dermsynth review publish           the answers -> review.answers (versioned), read by the `report` stage
    dermsynth review export            reader-based curation decisions -> curate.decisions (for curate.mode: human)

Reads the pipeline's outputs (splits, generated candidates, curated manifest) but is not a
stage: answers arrive over days, from people.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dermsynth.core import files, paths
from dermsynth.core.config import Params
from dermsynth.core.errors import DermsynthError
from dermsynth.core.study import load_conditions
from dermsynth.review import analysis, plan, store


def link(params: Params, token: str) -> str:
    return f"http://{params.review.host}:{params.review.port}/r/{token}"


def plan_study(params: Params) -> int:
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    generated = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype=str, keep_default_na=False)
    seeded = splits[splits["group"].isin(set(generated["seed_group"]))]
    items = plan.draw(seeded, generated, params.dataset.root, params.review.images, params.review.seed)
    count = store.add_items(Path(params.review.db), items)
    summary = items.groupby(["fst_group", "label", "kind"]).size().unstack(fill_value=0)
    print(f"review: planned {count} images in {params.review.db}\n{summary.to_string()}")
    return 0


def report(params: Params) -> int:
    answers = store.answers(Path(params.review.db))
    if answers.empty:
        raise DermsynthError(f"{params.review.db} holds no answers yet")
    result = analysis.analyse(answers, analysis.kept_candidates(), params.evaluate.z)
    result["data"] = analysis.data_note(params.dataset.root, params.generate.generator)
    out = paths.REPORTS / "review"
    files.write_json(out / "report.json", result)
    files.write_text(out / "report.md", analysis.markdown(result))
    files.write_csv(out / "answers.csv", answers.drop(columns=["note"]))
    log_to_mlflow(result, out)
    print(analysis.markdown(result))
    return 0


def log_to_mlflow(result: dict, folder: Path) -> None:
    """One MLflow run (tag stage=review) with the headline numbers and the report as artifacts."""
    import mlflow

    from dermsynth.views import tracking

    experiment = tracking.setup()
    metrics = {
        "review/accuracy": result["realism"]["all"]["rate"],
        "review/sensitivity": result["sensitivity"]["rate"],
        "review/specificity": result["specificity"]["rate"],
        "review/fleiss_kappa": result["agreement"]["fleiss_kappa"],
        "review/diagnosis_real": result["diagnosis"]["real"]["rate"],
        "review/diagnosis_synthetic": result["diagnosis"]["synthetic"]["rate"],
        **{f"review/accuracy/{g}": c["rate"] for g, c in result["realism"]["by_group"].items()},
    }
    tags = {"stage": "review", "readers": str(result["readers"]), "git_commit": tracking.git_commit()}
    with mlflow.start_run(experiment_id=experiment, run_name="reader-study", tags=tags):
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # NaN (e.g. kappa of one reader) left out
        mlflow.log_artifacts(str(folder), artifact_path="review")


def publish(params: Params) -> int:
    """The answers, without notes (free text) or tokens, to the versioned CSV the study report reads."""
    answers = store.answers(Path(params.review.db))
    if answers.empty:
        raise DermsynthError(f"{params.review.db} holds no answers yet")
    target = Path(params.review.answers)
    files.write_csv(target, answers[list(analysis.PUBLISHED)])
    print(f"review: {len(answers)} answers of {answers['reader'].nunique()} readers -> {target} "
          "(commit it; `dvc repro report` adds the reader study to reports/report.md)")  # fmt: skip
    return 0


def export(params: Params) -> int:
    """Reader-based decisions for every candidate with enough answers, merged into curate.decisions."""
    answers = store.answers(Path(params.review.db))
    synth = answers[answers["kind"] == "synthetic"].assign(diagnosed=lambda a: a["condition"] == a["label"])
    per = synth.groupby("key").agg(n=("reader", "size"), real=("judged_real", "mean"), dx=("diagnosed", "mean"))
    per = per[per["n"] >= params.review.min_answers]
    keep = (per["real"] >= params.review.min_judged_real) & (per["dx"] >= 0.5)
    rows = pd.DataFrame(
        {
            "file": per.index,
            "decision": keep.map({True: "accept", False: "reject"}).to_numpy(),
            "note": [
                f"reader study: {r:.0%} of {int(n)} judged real, {d:.0%} diagnosed"
                for n, r, d in per[["n", "real", "dx"]].itertuples(index=False)
            ],
        }
    )
    target = Path(params.curate.decisions)
    old = pd.read_csv(target, dtype=str, keep_default_na=False) if target.exists() else rows.iloc[:0]
    merged = pd.concat([old[~old["file"].isin(rows["file"])], rows], ignore_index=True).sort_values("file")
    files.write_csv(target, merged)
    print(f"review: {int(keep.sum())} accepted, {int((~keep).sum())} rejected of {len(per)} candidates with "
          f">= {params.review.min_answers} answers; wrote {target} (set curate.mode: human to use it)")  # fmt: skip
    return 0


def serve(params: Params) -> int:
    from dermsynth.review.app import create_app

    cfg = params.review
    db = Path(cfg.db)
    if not store.readers(db):
        raise DermsynthError("no reader yet: add one with `dermsynth review reader NAME`")
    app = create_app(db, load_conditions(), cfg.size, cfg.jpeg_quality)
    for name, token in store.readers(db):
        print(f"review: {name}: {link(params, token)}")
    app.run(host=cfg.host, port=cfg.port, threaded=True)
    return 0


def main(params: Params, args: argparse.Namespace) -> int:
    if args.verb == "plan":
        return plan_study(params)
    if args.verb == "reader":
        if not args.name:
            raise DermsynthError("review reader: give the reader's NAME")
        token = store.add_reader(Path(params.review.db), args.name, params.review.seed)
        print(f"review: {args.name}: {link(params, token)}")
        return 0
    if args.verb == "readers":
        for name, token in store.readers(Path(params.review.db)):
            print(f"{name}\t{link(params, token)}")
        return 0
    return {"serve": serve, "report": report, "publish": publish, "export": export}[args.verb](params)
