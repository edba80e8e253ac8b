"""The shrunk study's registered models: registry, card, predict, a served endpoint, promotion, external scoring."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from .conftest import run_ok, store_env

pytestmark = pytest.mark.slow
NAME = "dermsynth-light_to_dark"


def client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", registry_uri=f"sqlite:///{root / 'mlflow.db'}")


def champion_predictions(study: Path) -> pd.DataFrame:
    """The test rows of the champion's served repeat in its training's predictions.csv."""
    entry = json.loads((study / "reports/registry.json").read_text())["light_to_dark"]
    champion = entry["champion"]
    frame = pd.read_csv(study / "models" / champion / "predictions.csv", dtype={"md5hash": str})
    served = (frame["repeat"] == entry["served_repeats"][champion]) & (frame["draw"] == 0)  # draw 0 is served
    chosen = frame[(frame["split"] == "test") & served]
    return chosen.assign(path=[str(study / "build/embedded/images" / f"{h}.jpg") for h in chosen["md5hash"]])


def dermsynth(study: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dermsynth", *args], cwd=study, env=env or store_env(study), capture_output=True,
        text=True, check=False,
    )  # fmt: skip


def test_the_champion_is_registered_by_the_rule_with_its_card(study: Path):
    entry = json.loads((study / "reports/registry.json").read_text())["light_to_dark"]
    mlflow = client(study)
    versions = mlflow.search_model_versions(f"name = '{NAME}'")
    # a version per training (other tests' re-tracked grids add theirs: a new grid's runs are new versions)
    assert {v.tags["trained_as"] for v in versions} == set(entry["served_repeats"])
    champion = mlflow.get_model_version_by_alias(NAME, "champion")
    assert champion.tags["trained_as"] == entry["champion"]  # set by the rule on the first track
    challenger = mlflow.get_model_version_by_alias(NAME, "challenger")
    assert challenger.tags["trained_as"] == entry["champion"]  # the rule's pick of the newest grid
    best = max((c for c in entry["candidates"] if c["eligible"]), key=lambda c: (c["worst_stratum"], c["overall"]))
    assert (
        best["worst_stratum"]
        == next(c for c in entry["candidates"] if c["candidate"] == entry["champion"])["worst_stratum"]
    )
    card = json.loads((study / "reports/model_cards/light_to_dark.json").read_text())
    assert card["model"]["trained_as"] == entry["champion"]
    assert set(card["performance"]["test"]) == {"III-IV", "V-VI"}
    for scores in card["performance"]["test"].values():
        assert scores["acc_low"] <= scores["acc"] <= scores["acc_high"]
        assert scores["n"] > 0
    assert "not photographs of patients" in card["data_kind"]
    text = (study / "reports/model_cards/light_to_dark.md").read_text()
    assert champion.description == text  # the card is the version's description in the UI
    # the commit is the version's tag, never in the card (a DVC output the next commit would otherwise stale)
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", champion.tags["git_commit"])
    assert "git_commit" not in card["versions"]
    assert champion.tags["git_commit"] not in text
    # and an artifact logged with the model (read from the version's source: the test process may hold a
    # tracking store opened before test_pipeline rebuilt the database, which knows none of the new runs)
    from mlflow.artifacts import download_artifacts

    local = download_artifacts(artifact_uri=f"{champion.source}/artifacts/model_card.md", dst_path=str(study / ".card"))
    assert Path(local).read_text() == text
    shutil.rmtree(study / ".card")


def test_the_pyfunc_model_reproduces_the_studys_predictions(study: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{study / 'mlflow.db'}")
    expected = champion_predictions(study)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    out = model.predict(pd.DataFrame({"image": [Path(p).read_bytes() for p in expected["path"]]}))
    assert (out["error"] == "").all()
    assert list(out["label"]) == list(expected["pred"])
    top = out[[c for c in out.columns if c.startswith("prob_")]].max(axis=1)
    assert top.to_numpy() == pytest.approx(expected["prob_pred"].to_numpy(), abs=2e-5)  # 5 decimals in the CSV


def test_predict_prints_the_studys_labels_and_names_an_unreadable_file(study: Path, tmp_path: Path):
    expected = champion_predictions(study).head(5)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(Path(expected["path"].iloc[0]).read_bytes()[:200])  # a truncated JPEG
    done = dermsynth(study, "predict", *expected["path"][:2], str(broken), *expected["path"][2:])
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, done.stderr  # one line, naming the file
    assert errors[0].startswith(f"dermsynth predict: error: {broken}: cannot decode image")
    table = pd.read_csv(io.StringIO(done.stdout), keep_default_na=False)
    scored = table[table["error"] == ""]
    assert list(scored["image"]) == list(expected["path"])
    assert list(scored["label"]) == list(expected["pred"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def test_mlflow_models_serve_answers_like_predict(study: Path):
    images = list(champion_predictions(study)["path"][:2])
    port = free_port()
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=study, env=store_env(study), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                time.sleep(0.5)
        payload = [[base64.b64encode(Path(p).read_bytes()).decode()] for p in images]
        answer = post(
            f"http://127.0.0.1:{port}/invocations", {"dataframe_split": {"columns": ["image"], "data": payload}}
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    served = pd.DataFrame(answer["predictions"])
    local = pd.read_csv(io.StringIO(dermsynth(study, "predict", *images).stdout))
    assert list(served["label"]) == list(local["label"])
    probs = [c for c in local.columns if c.startswith("prob_")]
    assert served[probs].to_numpy() == pytest.approx(local[probs].to_numpy(), abs=1e-5)


def weakened_version(study: Path, store: Path) -> str:
    """The champion's package with a head that always predicts the rarest test condition, registered as a version."""
    mlflow = client(store)
    champion = mlflow.get_model_version_by_alias(NAME, "champion")
    package = Path(mlflow.download_artifacts(champion.run_id, "model", str(store / "weak")))
    head = torch.load(package / "artifacts/head.pt", weights_only=True)
    classes = json.loads((package / "artifacts/model.json").read_text())["classes"]
    rarest = champion_predictions(study)["label"].value_counts().reindex(classes, fill_value=0).idxmin()
    head["head.0.weight"].zero_()
    head["head.3.bias"].zero_()
    head["head.3.bias"][classes.index(rarest)] = 10.0
    torch.save(head, package / "artifacts/head.pt")
    run = mlflow.create_run(mlflow.get_experiment_by_name("dermsynth").experiment_id, run_name="weakened head")
    mlflow.log_artifacts(run.info.run_id, str(package), "model")
    version = mlflow.create_model_version(NAME, f"{run.info.artifact_uri}/model", run.info.run_id,
                                          tags={"direction": "light_to_dark"})  # fmt: skip
    return str(version.version)


def alias(mlflow: object, name: str) -> str:
    return str(mlflow.get_model_version_by_alias(NAME, name).version)  # type: ignore[attr-defined]


def test_promotion_refuses_a_weaker_challenger_and_accepts_a_better_one(study: Path, tmp_path: Path):
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(study / "mlflow.db", store / "mlflow.db")  # aliases change here, never in the shared study
    env = store_env(store)
    mlflow = client(store)
    original = str(mlflow.get_model_version_by_alias(NAME, "champion").version)
    weak = weakened_version(study, store)
    mlflow.set_registered_model_alias(NAME, "challenger", weak)
    refused = dermsynth(study, "promote", NAME, env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused" in refused.stderr
    assert "III-IV" in refused.stderr
    assert alias(mlflow, "champion") == original

    mlflow.set_registered_model_alias(NAME, "champion", weak)  # now the original is the better challenger
    mlflow.set_registered_model_alias(NAME, "challenger", original)
    dry = dermsynth(study, "promote", NAME, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would become the champion" in dry.stdout
    assert alias(mlflow, "champion") == weak
    done = dermsynth(study, "promote", NAME, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert alias(mlflow, "champion") == original
    assert alias(mlflow, "previous_champion") == weak


DDI_DISEASES = {
    "basal cell carcinoma": "basal-cell-carcinoma-nodular",
    "squamous cell carcinoma": "squamous-cell-carcinoma",
    "folliculitis": "folliculitis",
    "prurigo nodularis": "prurigo-nodularis",
}
TONES = {"I-II": 12, "III-IV": 34, "V-VI": 56}


def ddi_stand_in(study: Path, folder: Path) -> pd.DataFrame:
    """DDI's layout around study images of conditions DDI has, one out-of-scope row and one corrupt image."""
    rows = champion_predictions(study)
    rows = rows[rows["label"].isin(DDI_DISEASES)].groupby("group").head(4).reset_index(drop=True)
    (folder / "images").mkdir(parents=True)
    meta = []
    for i, row in rows.iterrows():
        Image.open(row["path"]).save(folder / "images" / f"{i + 1:06d}.png")
        meta.append([i + 1, f"{i + 1:06d}.png", TONES[row["group"]], False, DDI_DISEASES[row["label"]]])
    n = len(meta)
    meta.append([n + 1, f"{n + 1:06d}.png", 56, True, "melanoma"])  # out of scope: never scored
    meta.append([n + 2, f"{n + 2:06d}.png", 12, False, "folliculitis"])
    (folder / "images" / f"{n + 1:06d}.png").write_bytes(b"")
    (folder / "images" / f"{n + 2:06d}.png").write_bytes(b"\x89PNG not really")
    pd.DataFrame(meta, columns=["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"]).to_csv(
        folder / "ddi_metadata.csv", index=False
    )
    return rows


def test_external_scoring_reports_each_group_with_n_and_intervals(study: Path, tmp_path: Path):
    rows = ddi_stand_in(study, tmp_path / "ddi")
    run_ok(
        [sys.executable, "-m", "dermsynth", "data", "external", "ddi", str(tmp_path / "ddi")], study, store_env(study)
    )
    done = dermsynth(study, "score-external", "ddi")
    assert done.returncode == 1, done.stdout + done.stderr  # one unreadable image, named
    assert f"{tmp_path / 'ddi' / 'images'}/{len(rows) + 2:06d}.png: not an image" in done.stderr
    result = json.loads((study / "reports/external/ddi.json").read_text())
    assert result["n_images"] == len(rows) + 2
    assert result["out_of_scope"] == 1
    assert result["unreadable"] == 1
    assert result["n_scored"] == len(rows)
    for group, part in rows.groupby("group"):
        scores = result["groups"][group]
        assert scores["n"] == len(part)
        assert scores["acc"] == pytest.approx((part["pred"] == part["label"]).mean())  # the study's own predictions
        assert scores["acc_low"] <= scores["acc"] <= scores["acc_high"]
        assert scores["ece_low"] <= scores["ece"] <= scores["ece_high"]
    assert "| FST group | N |" in (study / "reports/external/ddi.md").read_text()
