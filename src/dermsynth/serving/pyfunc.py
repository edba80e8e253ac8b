"""The study's classifier as an MLflow pyfunc model: images in, a probability per condition and a label out.

A packaged model is a folder written by `mlflow.pyfunc.save_model`: the head's weights
(`head.pt`), the chain's specification (`model.json`: classes, transform sizes, precision,
backbone reference and digest) and the model card. The input is a DataFrame with one column
`image` holding encoded image bytes (base64 text in JSON, the form `mlflow models serve`
accepts); with model_config {"read_paths": True} a cell may be a local file path instead.
An image that cannot be decoded gets an `error` text and no label, and the batch goes on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from dermsynth.core import files
from dermsynth.core.files import BadImageError
from dermsynth.core.study import slug
from dermsynth.serving.layout import CARD_JSON, CARD_MD, HEAD_FILE, SPEC_FILE

INPUT = "image"
PIP_REQUIREMENTS = ["dermsynth", "torch", "torchvision", "pillow", "pandas", "numpy"]


def prob_column(label: str) -> str:
    return f"prob_{slug(label)}"


class Classifier(mlflow.pyfunc.PythonModel):
    """Loads the chain once per process; `predict` scores a DataFrame of images."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import torch

        from dermsynth.serving.chain import Chain, Spec

        config = context.model_config or {}
        spec = Spec.from_json(files.read_json(Path(context.artifacts["spec"])))
        head = torch.load(context.artifacts["head"], map_location="cpu", weights_only=True)
        self.chain = Chain(spec, head, config.get("weights"))
        self.read_paths = bool(config.get("read_paths", False))

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return score(self.chain, list(model_input[INPUT]), self.read_paths)


def score(chain: object, values: list[object], read_paths: bool) -> pd.DataFrame:
    """One row per input: `label`, `error` (empty when scored) and a probability column per class."""
    from dermsynth.serving.chain import decode, image_bytes

    images, errors = {}, {}
    for i, value in enumerate(values):
        try:
            images[i] = decode(image_bytes(value, read_paths), f"image {i}")
        except BadImageError as err:
            errors[i] = str(err)
    classes = chain.spec.classes  # type: ignore[attr-defined]
    probs = chain.probabilities(list(images.values()))  # type: ignore[attr-defined]
    rows = []
    scored = dict(zip(images, probs, strict=True))
    for i in range(len(values)):
        if i in scored:
            p = scored[i]
            rows.append(
                {
                    "label": classes[int(p.argmax())],
                    "error": "",
                    **dict(zip(map(prob_column, classes), p, strict=False)),
                }
            )
        else:
            rows.append({"label": "", "error": errors[i], **{prob_column(c): float("nan") for c in classes}})
    return pd.DataFrame(rows, columns=["label", "error", *map(prob_column, classes)])


def signature(classes: list[str]) -> mlflow.models.ModelSignature:
    from mlflow.types import ColSpec, Schema

    outputs = [ColSpec("string", "label"), ColSpec("string", "error")]
    outputs += [ColSpec("double", prob_column(c)) for c in classes]
    return mlflow.models.ModelSignature(inputs=Schema([ColSpec("binary", INPUT)]), outputs=Schema(outputs))


def stable_mlmodel(folder: Path) -> None:
    """Make the MLmodel file a function of the package's content, so that a re-run writes the same bytes.

    `save_model` writes the time of saving (`utc_time_created`) and a random `model_uuid`; both
    would change build/registry's hash, and dvc.lock, on every cold repro. The time is dropped
    (MLflow records when a version is registered), and the uuid is derived from the files the
    model is made of (uuid5 over their sha256), so an identical model keeps its id.
    """
    import hashlib
    import uuid

    import yaml

    mlmodel = folder / "MLmodel"
    meta = yaml.safe_load(mlmodel.read_text())
    meta.pop("utc_time_created", None)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != mlmodel):
        digest.update(f"{path.relative_to(folder)}:".encode() + hashlib.sha256(path.read_bytes()).digest())
    meta["model_uuid"] = uuid.uuid5(uuid.NAMESPACE_URL, f"dermsynth:{digest.hexdigest()}").hex
    files.write_text(mlmodel, yaml.safe_dump(meta, sort_keys=True))


def package(out: Path, spec: dict, head: Path, card: dict, card_md: str, example: Path) -> None:
    """Write a packaged model to ``out`` (replacing it): artifacts, signature, an input example, the model card."""
    with files.atomic_dir(out) as tmp:
        staging = out.parent / f".{out.name}.staging"  # a fixed name: MLmodel records where artifacts came from
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            files.write_json(staging / SPEC_FILE, spec)
            shutil.copyfile(head, staging / HEAD_FILE)
            files.write_json(staging / CARD_JSON, card)
            files.write_text(staging / CARD_MD, card_md)
            mlflow.pyfunc.save_model(
                str(tmp),
                python_model=Classifier(),
                artifacts={
                    "spec": str(staging / SPEC_FILE),
                    "head": str(staging / HEAD_FILE),
                    "card": str(staging / CARD_JSON),
                    "card_md": str(staging / CARD_MD),
                },
                signature=signature(spec["classes"]),
                input_example=pd.DataFrame({INPUT: [example.read_bytes()]}),
                pip_requirements=PIP_REQUIREMENTS,
            )
            stable_mlmodel(tmp)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
