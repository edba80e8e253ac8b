"""The study with `generate.generator: openai`, end to end against a fake OpenAI server on 127.0.0.1.

Checks what a paid run must guarantee: the generator and model are named in the manifest, the
report and MLflow; every prompt is stored; and the API key appears in no file the pipeline
writes (dvc.lock, params, manifests, cache records, MLflow store, reports) nor in its output.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from .fake_openai import CANARY

pytestmark = pytest.mark.slow


@pytest.fixture
def openai_study(openai_repo: dict):
    """The session's OpenAI study (conftest.py): its root, the fake server and `dvc repro`'s output."""
    return openai_repo["root"], openai_repo["server"], openai_repo["output"]


def test_generated_images_come_from_the_api_with_their_prompts(openai_study):
    root, server, _ = openai_study
    manifest = pd.read_csv(root / "build/generated/manifest.csv")
    seeds = pd.read_csv(root / "build/splits/seeds.csv", dtype=str)
    # 3 candidates per seed image, psoriasis only: a seed drawn by several draws of the seeds is made (and paid) once
    expected = seeds["md5hash"].nunique() * 3
    assert seeds["md5hash"].nunique() < len(seeds)  # the shrunk study's 3 draws share seeds: dedup is exercised
    assert len(manifest) == expected
    assert len([c for c in server.calls if c.status == 200]) == expected
    assert set(manifest["generator"]) == {"openai"}
    assert set(manifest["model"]) == {"gpt-image-2"}
    assert set(manifest["prompt"]) == {
        "An image of psoriasis on the skin of a light-skinned person.",
        "An image of psoriasis on the skin of a dark-skinned person.",
    }
    requests = pd.read_csv(root / "build/generated/requests.csv")
    assert set(requests["status"]) == {"ok"}
    assert requests["request_id"].notna().all()
    curated = pd.read_csv(root / "build/curated/manifest.csv")
    assert len(curated) == seeds["md5hash"].nunique() * 2  # keep 2 of 3 per seed image
    scores = pd.read_csv(root / "build/curated/scores.csv")
    # the fake server inverts every pixel; paste-back restores everything outside the mask
    assert (scores["change_outside_mask"] < 0.01).all()
    assert (scores["change_in_mask"] > 0.1).all()


def test_generator_and_model_are_named_in_the_report_and_mlflow(openai_study):
    root, _, _ = openai_study
    assert "Generator: `openai` (model `gpt-image-2`)" in (root / "reports/report.md").read_text()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("dermsynth").experiment_id],
        filter_string="tags.generator = 'openai' and tags.model = 'gpt-image-2'",
    )
    kinds = sorted(r.data.tags.get("repeat", "grid") for r in runs)
    # 3 arms + 2 doses (dose2 and the whole set), the grid; a nested run per training: repeats 0-1 in each of
    # 3 draws of the seeds, fitz_only's 6 trainings in one go (repeats 0-5)
    nested = [str(r) for r in range(6)] + ["0", "1"] * 3 * 4
    assert kinds == sorted(nested + ["all"] * 5 + ["grid"])


def test_the_api_key_is_written_nowhere(openai_study):
    root, _, output = openai_study
    assert CANARY not in output
    leaks = [str(p) for p in root.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaks == []
    assert json.loads((root / "build/features/info.json").read_text())  # the walk above did read the outputs
