"""The MLflow model registry as a view of `register`'s outputs: versions, the `challenger` and `champion` aliases.

One registered model per direction (<register.prefix>-<direction>). `track` logs each packaged
model into the MLflow run of the first configuration that reads its training and registers
it as a version, with the model card as the version's description. Aliases follow
reports/registry.json: `challenger` marks the newest rule pick; `champion` is set by the rule
only while a registered model has none. Moving an existing champion is a decision, taken with
`dermsynth promote` (serving/promote.py), which checks the challenger per skin type first.
"""

from __future__ import annotations

from pathlib import Path

from dermsynth.core import files, paths
from dermsynth.serving.layout import ARTIFACTS, CARD_MD

CHAMPION, CHALLENGER = "champion", "challenger"


def model_uri(spec: str) -> str:
    """A model reference as MLflow takes it: NAME@ALIAS and NAME/VERSION become models:/ URIs; others pass."""
    if "://" in spec or ":/" in spec or Path(spec).exists():
        return spec
    return f"models:/{spec}"


def ensure_registered(client: object, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)  # type: ignore[attr-defined]
    except MlflowException:
        client.create_registered_model(name, description=description)  # type: ignore[attr-defined]


def add_version(client: object, name: str, run_id: str, trained: str, tags: dict[str, str]) -> str:
    """Log build/registry/<trained> as the run's `model` artifact and register it; the card is its description."""
    package = paths.REGISTRY / trained
    client.log_artifacts(run_id, str(package), "model")  # type: ignore[attr-defined]
    source = f"{client.get_run(run_id).info.artifact_uri}/model"  # type: ignore[attr-defined]
    text = (package / ARTIFACTS / CARD_MD).read_text()
    version = client.create_model_version(  # type: ignore[attr-defined]
        name, source, run_id=run_id, tags={"trained_as": trained, **tags}, description=text
    )
    return str(version.version)


def version_of(client: object, name: str, run_id: str) -> str | None:
    """The version registered from a run, if any (the newest when several)."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")  # type: ignore[attr-defined]
    return str(max(int(v.version) for v in found)) if found else None


def alias_version(client: object, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)  # type: ignore[attr-defined]
    except MlflowException:
        return None


def apply_aliases(client: object, name: str, pick: str) -> dict[str, str | None]:
    """`challenger` -> the rule's pick; `champion` -> the pick too when the model has no champion yet."""
    client.set_registered_model_alias(name, CHALLENGER, pick)  # type: ignore[attr-defined]
    if alias_version(client, name, CHAMPION) is None:
        client.set_registered_model_alias(name, CHAMPION, pick)  # type: ignore[attr-defined]
    return {CHAMPION: alias_version(client, name, CHAMPION), CHALLENGER: pick}


def decision() -> dict:
    return files.read_json(paths.REGISTRY_DECISION)
