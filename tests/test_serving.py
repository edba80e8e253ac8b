"""The served model's parts on small data: input decoding, the champion rule, per-group scores, card checks.

The whole chain (package, registry, predict, serve, promote, external scoring) runs on the
shrunk study in tests/test_registry.py.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.analysis.fairness import expected_calibration_error
from dermsynth.analysis.groups import by_group, ece_draws, group_scores
from dermsynth.analysis.stats import wilson
from dermsynth.core.files import BadImageError
from dermsynth.serving import card, selection
from dermsynth.serving.chain import decode, image_bytes
from dermsynth.serving.registry import model_uri

Z = 1.959964


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 90)).save(buf, format="JPEG")
    return buf.getvalue()


def test_an_image_arrives_as_bytes_or_base64_and_a_path_only_when_allowed(tmp_path: Path):
    data = jpeg()
    assert image_bytes(data, read_paths=False) == data
    assert image_bytes(base64.b64encode(data).decode(), read_paths=False) == data
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    with pytest.raises(BadImageError, match="read_paths"):
        image_bytes(str(path), read_paths=False)  # a served model never reads its host's files
    assert image_bytes(str(path), read_paths=True) == data
    with pytest.raises(BadImageError, match="file not found"):
        image_bytes(str(tmp_path / "missing.jpg"), read_paths=True)
    assert decode(data, "x").size == (8, 8)
    with pytest.raises(BadImageError, match=r"^x: not an image"):
        decode(b"not an image at all", "x")
    with pytest.raises(BadImageError, match=r"^x: empty"):
        decode(b"", "x")
    with pytest.raises(BadImageError, match=r"^x: cannot decode"):
        decode(data[: len(data) // 2], "x")  # a truncated JPEG


def test_model_references_become_mlflow_uris(tmp_path: Path):
    assert model_uri("dermsynth-light_to_dark@champion") == "models:/dermsynth-light_to_dark@champion"
    assert model_uri("dermsynth-light_to_dark/3") == "models:/dermsynth-light_to_dark/3"
    assert model_uri("runs:/abc/model") == "runs:/abc/model"
    assert model_uri(str(tmp_path)) == str(tmp_path)  # a packaged folder


def history(*val_accs: float, loss: float = 1.0) -> list[dict]:
    return [{"epoch": i + 1, "val_acc": a, "val_loss": loss, "train_loss": 1.0} for i, a in enumerate(val_accs)]


def test_the_served_repeat_is_the_best_on_validation_and_the_first_on_ties():
    assert selection.served_repeat([history(0.2, 0.5), history(0.6, 0.1), history(0.3)]) == 1
    assert selection.served_repeat([history(0.5), history(0.5)]) == 0
    tie_on_acc = [history(0.5, loss=0.9), history(0.5, loss=0.4)]
    assert selection.served_repeat(tie_on_acc) == 1  # lower validation loss, as `fit` keeps epochs


def predictions(correct_by_label: dict[str, list[bool]], repeat: int = 0, split: str = "val") -> pd.DataFrame:
    rows = [
        {"split": split, "repeat": repeat, "label": label, "group": "I-II", "correct": c}
        for label, flags in correct_by_label.items()
        for c in flags
    ]
    return pd.DataFrame(rows)


def test_strata_are_per_condition_and_group_on_validation_only():
    frame = pd.concat(
        [
            predictions({"psoriasis": [True, False], "folliculitis": [True, True, True, False]}),
            predictions({"psoriasis": [False] * 5}, split="test"),  # never read
            predictions({"psoriasis": [True] * 5}, repeat=1),  # another repeat
        ]
    )
    scores = selection.strata(frame, repeat=0)
    assert scores == {"overall": 4 / 6, "condition/psoriasis": 0.5, "condition/folliculitis": 0.75, "group/I-II": 4 / 6}
    assert selection.worst(scores) == 0.5


def test_the_champion_rule_needs_no_stratum_below_the_reference():
    reference = {"overall": 0.60, "condition/a": 0.50, "condition/b": 0.70, "group/I-II": 0.60}
    better_worst_but_loses_b = {"overall": 0.62, "condition/a": 0.65, "condition/b": 0.60, "group/I-II": 0.62}
    better_everywhere = {"overall": 0.64, "condition/a": 0.56, "condition/b": 0.72, "group/I-II": 0.64}
    candidates = {"ref": reference, "lossy": better_worst_but_loses_b, "steady": better_everywhere}
    champion, table = selection.choose(candidates, "ref", tolerance=0.05)
    assert champion == "steady"
    verdicts = {row["candidate"]: row for row in table}
    assert not verdicts["lossy"]["eligible"]
    assert "condition/b 0.600 < 0.700" in verdicts["lossy"]["reason"]
    assert [row["candidate"] for row in table] == ["steady", "ref", "lossy"]  # eligible first, best first
    # within the tolerance a stratum may fall: lossy becomes eligible and has the best worst stratum
    assert selection.choose(candidates, "ref", tolerance=0.15)[0] == "lossy"
    # nobody beats the reference: it stays champion
    assert selection.choose({"ref": reference, "lossy": better_worst_but_loses_b}, "ref", 0.05)[0] == "ref"


def test_weighted_ece_equals_the_fairness_module_and_bootstrap_intervals_bracket_it():
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.1, 1.0, 200)
    correct = rng.uniform(size=200) < prob * 0.8
    assert ece_draws(prob, correct, np.ones((1, 200)))[0] == pytest.approx(expected_calibration_error(prob, correct))
    twice = np.zeros((1, 200))
    twice[0, :100] = 2.0  # the first half counted twice, the second not at all
    assert ece_draws(prob, correct, twice)[0] == pytest.approx(expected_calibration_error(prob[:100], correct[:100]))


def scored_rows(spec: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """Rows of (group, label, pred, prob_pred), one image each."""
    frame = pd.DataFrame(spec, columns=["group", "label", "pred", "prob_pred"])
    return frame.assign(md5hash=[f"{i:032x}" for i in range(len(frame))], correct=frame["label"] == frame["pred"])


def test_group_scores_count_n_and_use_wilson_and_balanced_accuracy():
    rows = scored_rows(
        [("V-VI", "a", "a", 0.9)] * 6 + [("V-VI", "a", "b", 0.8)] * 2 + [("V-VI", "b", "b", 0.7)] * 1
        + [("V-VI", "b", "a", 0.6)] * 3 + [("I-II", "a", "a", 0.99)] * 4
    )  # fmt: skip
    scores = by_group(rows, ["a", "b"], Z)
    assert list(scores) == ["I-II", "V-VI"]
    dark = scores["V-VI"]
    assert dark["n"] == 12
    assert dark["acc"] == pytest.approx(7 / 12)
    assert (dark["acc_low"], dark["acc_high"]) == pytest.approx(wilson(7, 12, Z))
    assert dark["bal_acc"] == pytest.approx((6 / 8 + 1 / 4) / 2)  # recall of a, recall of b
    assert dark["bal_acc_low"] <= dark["bal_acc"] <= dark["bal_acc_high"]
    conf = np.array([0.9] * 6 + [0.8] * 2 + [0.7] + [0.6] * 3)
    hit = np.array([1] * 6 + [0] * 2 + [1] + [0] * 3, dtype=bool)
    assert dark["ece"] == pytest.approx(expected_calibration_error(conf, hit))
    assert dark["ece_low"] <= dark["ece"] <= dark["ece_high"]
    assert scores["I-II"]["acc"] == 1.0
    assert scores["I-II"]["confidence"] == pytest.approx(0.99)
    assert group_scores(rows, ["a", "b"], Z)["n"] == 16


def test_the_card_names_spillover_and_collapse():
    model = scored_rows([("V-VI", "a", "a", 0.9)] * 5 + [("V-VI", "b", "a", 0.9)] * 5)
    reference = scored_rows([("V-VI", "a", "a", 0.9)] * 5 + [("V-VI", "b", "b", 0.9)] * 5)
    spill = card.spillover(model, reference, tolerance=0.05)
    assert spill == [{"group": "V-VI", "condition": "b", "acc": 0.0, "reference_acc": 1.0, "n": 5}]
    assert card.spillover(reference, reference, 0.05) == []
    collapse = card.collapse_signs(model)
    assert collapse == [{"group": "V-VI", "class": "a", "predicted_share": 1.0, "true_share": 0.5}]
    assert card.collapse_signs(reference) == []
    assert math.isclose(card.interval_text(Z).count("95%"), 1)


def test_a_packaged_models_mlmodel_is_a_function_of_its_content(tmp_path: Path):
    """No save time and no random uuid in build/registry: a re-run writes the same bytes, and dvc.lock stays."""
    import shutil

    from mlflow.models import Model

    from dermsynth.serving.pyfunc import stable_mlmodel

    first = tmp_path / "a"
    first.mkdir()
    Model(artifact_path=None, flavors={"python_function": {"loader_module": "x"}}).save(first / "MLmodel")
    (first / "head.pt").write_bytes(b"weights")
    second = tmp_path / "b"
    shutil.copytree(first, second)
    text = (second / "MLmodel").read_text().replace("utc_time_created: '", "utc_time_created: '1999")
    (second / "MLmodel").write_text(text.replace("model_uuid: ", "model_uuid: 0"))
    stable_mlmodel(first)
    stable_mlmodel(second)
    assert (first / "MLmodel").read_bytes() == (second / "MLmodel").read_bytes()
    assert "utc_time_created" not in (first / "MLmodel").read_text()
    loaded = Model.load(first / "MLmodel")  # MLflow still reads it
    (second / "head.pt").write_bytes(b"other weights")
    stable_mlmodel(second)
    assert Model.load(second / "MLmodel").model_uuid != loaded.model_uuid  # another model, another id
