"""Stage `register`: every trained model packaged for serving, each direction's champion picked, model cards written.

Each distinct training of the grid becomes one servable model (build/registry/<training>/):
its best-on-validation repeat, with the chain the study evaluated (serving/chain.py) and a
model card. The champion of each direction is chosen by the rule in serving/selection.py on
validation data only; reports/registry.json records every candidate's scores and why it won
or lost, and reports/model_cards/<direction>.{md,json} is the champion's card. The MLflow
registry (versions, `champion` and `challenger` aliases) is filled from these files by `track`.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from dermsynth.analysis.grid import first_configurations, planned_runs
from dermsynth.cohort.splits import of_draw
from dermsynth.core import files, paths
from dermsynth.core.config import BACKBONES, Params
from dermsynth.core.study import load_conditions
from dermsynth.model.trainset import training_set
from dermsynth.serving import card, pyfunc, selection


def registered_name(params: Params, direction: str) -> str:
    return f"{params.register.prefix}-{direction}"


def data_kind(params: Params, info: dict) -> str:
    """What the card's numbers are made of, said first: simulated images and random weights are not a real model."""
    data = (
        "the embedded dataset (simulated images made by the project, not photographs of patients)"
        if params.dataset.root == str(paths.EMBEDDED)
        else f"images from {params.dataset.root}"
    )
    name = BACKBONES.get(info["backbone"], info["backbone"])
    if info["weights"] == "none":
        weights = f"backbone {name} with seeded random weights (no pretrained weights offline)"
        return f"{data}; {weights}: not a usable classifier"
    return f"{data}; backbone {name} weights {info['weights']}"


def spec(params: Params, info: dict, classes: list[str]) -> dict:
    cfg = params.features
    return {
        "classes": classes,
        "resize": cfg.resize,
        "crop": cfg.crop,
        "precision": info["precision"],
        "backbone": info["backbone"],
        "weights": info["weights"],
        "seed": cfg.seed,
        "backbone_sha256": info["backbone_sha256"],
        "weights_sha256": info.get("weights_sha256", ""),
        "batch_size": cfg.batch_size,
    }


def facts(params: Params, run: dict, repeat: int, mix: dict, info: dict, choice: dict) -> dict:
    """The card's identity, training data, selection and version entries of one trained model."""
    name = run["trained"]
    folder = paths.run_dir(name)
    inputs = [folder / paths.head_name(0, repeat), folder / "predictions.csv", folder / paths.TRAINING_NAME]
    inputs += [
        paths.SPLITS_TABLE,
        paths.PREPARED_TABLE,
        paths.CURATED / paths.MANIFEST_NAME,
        paths.FEATURES / "info.json",
    ]
    return {
        "model": {
            "registered_name": registered_name(params, run["direction"]),
            "trained_as": name,
            "direction": run["direction"],
            "condition": "" if run["arm"] == "fitz_only" else run["condition"],
            "arm": run["arm"],
            "dose": run["dose"],
            "served_repeat": repeat,
            "train_seed": params.train.seed + repeat,
        },
        "data_kind": data_kind(params, info),
        "backbone": f"{info['backbone']} weights={info['weights']} precision={info['precision']} "
        f"sha256 {info['backbone_sha256'][:16]}"
        + (f", weights file sha256 {info['weights_sha256']}" if info.get("weights_sha256") else ""),
        "training_data": {
            **mix,
            "generator": params.generate.generator,
            "generator_model": params.generate.model_name(),
        },
        "selection": {**choice, "tolerance": params.gate.tolerance, "rule": selection.RULE},
        # No git commit here: this card is a DVC output, and a commit in it would change with every commit
        # (the next repro would rewrite it). The registered version carries the commit as a tag (track).
        "versions": {"files": {str(p): card.md5(p) for p in inputs}},
    }


def main(params: Params) -> int:
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # its pickling advice, once per model
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per artifact copied
    classes = load_conditions()
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str, keep_default_na=False)
    curated = pd.read_csv(paths.CURATED / paths.MANIFEST_NAME, dtype={"seed_md5hash": str})  # as training read it
    info = files.read_json(paths.FEATURES / "info.json")
    model_spec = spec(params, info, classes)
    registry = {}
    for direction in params.train.directions:
        runs = first_configurations(planned_runs(params), direction)
        predictions, repeats, scores = {}, {}, {}
        for name in runs:
            training = files.read_json(paths.run_dir(name) / paths.TRAINING_NAME)
            repeats[name] = selection.served_repeat(training["histories"])
            frame = pd.read_csv(paths.run_dir(name) / "predictions.csv", dtype={"md5hash": str})
            frame = frame[frame["draw"] == 0] if "draw" in frame else frame  # served: the first draw of the seeds
            predictions[name] = frame[frame["repeat"] == repeats[name]]
            scores[name] = selection.strata(predictions[name], repeats[name])
        reference = f"{direction}-fitz_only"
        champion, table = selection.choose(scores, reference, params.gate.tolerance)
        verdicts = {row["candidate"]: row for row in table}
        test = splits[(splits["direction"] == direction) & (splits["role"] == "test")]
        example = paths.image_file(paths.dataset_images(params.dataset.root), test["md5hash"].iloc[0])
        for name, run in runs.items():
            first_draw = of_draw(splits[splits["role"] != "test"], 0)  # the served models trained on draw 0
            train = training_set(
                first_draw, curated, direction, run["condition"], run["arm"], run["dose"], params.curate.keep
            )
            choice = {**verdicts[name], "strata": scores[name], "champion": name == champion}
            entry = facts(params, run, repeats[name], card.training_mix(train, splits, curated), info, choice)
            model_card = card.build(entry, predictions[name], predictions[reference], classes, params.evaluate.z)
            text = card.markdown(model_card)
            pyfunc.package(paths.REGISTRY / name, model_spec, paths.run_dir(name) / paths.head_name(0, repeats[name]),
                           model_card, text, example)  # fmt: skip
            if name == champion:
                files.write_json(paths.MODEL_CARDS / f"{direction}.json", model_card)
                files.write_text(paths.MODEL_CARDS / f"{direction}.md", text)
        registry[direction] = {
            "registered_name": registered_name(params, direction),
            "rule": selection.RULE,
            "reference": reference,
            "champion": champion,
            "served_repeats": repeats,
            "candidates": table,
        }
        print(f"register: {registered_name(params, direction)}: {len(runs)} models; champion {champion} "
              f"(worst validation stratum {verdicts[champion]['worst_stratum']:.3f})")  # fmt: skip
    files.write_json(paths.REGISTRY_DECISION, registry)
    return 0
