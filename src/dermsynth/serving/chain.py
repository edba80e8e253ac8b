"""The study's scoring chain for new images: decode, test transform, frozen backbone, trained head.

The `features` stage cached fc6 activations as float16 and every head was evaluated on those,
so the chain rounds fc6 to float16 too: a served model then gives, image for image, the
prediction that `predictions.csv` holds. The backbone is not shipped (528 MB); it is rebuilt
from the reference the features were computed with (a seeded initialisation, ImageNet, or a
state_dict file) and checked against the digest the `features` stage recorded.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dermsynth.core.errors import DermsynthError
from dermsynth.core.files import BadImageError
from dermsynth.model import embedding
from dermsynth.model.backbone import DTYPES, Head, build_backbone, file_digest, normalisation

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")


class BackboneMismatch(DermsynthError, RuntimeError):
    """The backbone rebuilt from the model's reference is not the one its head was trained on."""


@dataclass(frozen=True)
class Spec:
    """Everything besides the head's weights that scoring an image needs (model.json of a packaged model)."""

    classes: list[str]
    resize: int
    crop: int
    precision: str
    backbone: str
    weights: str  # none | imagenet | path of a state_dict file
    seed: int
    backbone_sha256: str
    weights_sha256: str
    batch_size: int

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Spec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def image_bytes(value: object, read_paths: bool) -> bytes:
    """The encoded image a model input cell holds: raw bytes, base64 text, or (when allowed) a local path."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str):
        raise BadImageError(f"expected image bytes, base64 text or a path, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value, validate=True)
        if raw.startswith(IMAGE_MAGIC):
            return raw
    except (binascii.Error, ValueError):
        pass
    if not read_paths:
        raise BadImageError(
            f"{value[:80]!r}: not base64 image bytes (file paths are read only with model_config "
            "{'read_paths': True}: a served model never reads its host's files)"
        )
    path = Path(value)
    if not path.is_file():
        raise BadImageError(f"{path}: file not found")
    return path.read_bytes()


def decode(data: bytes, name: str) -> Image.Image:
    """A fully decoded RGB image, or BadImageError naming the item."""
    if not data:
        raise BadImageError(f"{name}: empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except UnidentifiedImageError as err:
        raise BadImageError(f"{name}: not an image (no known image format)") from err
    except (OSError, SyntaxError) as err:
        raise BadImageError(f"{name}: cannot decode image ({err})") from err


class Chain:
    """Backbone to fc6 (in `precision`), float16 rounding as cached, then the head: probabilities per class."""

    def __init__(self, spec: Spec, head_state: dict[str, torch.Tensor], weights: str | None = None):
        from dermsynth.model.preprocess import eval_transform

        self.spec = spec
        frozen = build_backbone(spec.backbone, self.backbone_reference(weights), spec.seed, spec.crop)
        found = frozen.digest
        if found != spec.backbone_sha256:
            raise BackboneMismatch(
                f"the {spec.backbone} rebuilt from weights={spec.weights!r} seed={spec.seed} has digest "
                f"{found[:12]}, but the head was trained on {spec.backbone_sha256[:12]} (another torch version "
                "initialises differently, or the weights file changed)"
            )
        dtype = DTYPES[spec.precision]
        hidden = head_state["head.0.weight"].shape[0]
        head = Head(frozen.tail, hidden, len(spec.classes), 0.0, spec.precision, frozen.dim, frozen.input_dropout)
        head.load_state_dict(head_state, strict=False)
        self.head = head.eval()
        self.extractor = embedding.prepare(frozen.extractor, dtype)
        self.transform = eval_transform(spec.resize, spec.crop, normalisation(spec.backbone))

    def backbone_reference(self, override: str | None) -> str:
        """The weights to rebuild: the recorded reference, or a moved copy of its file (checked by hash)."""
        weights = override or self.spec.weights
        if weights in ("none", "imagenet"):  # the Lite models' imagenet file is checked against its sha256 on load
            return weights
        if not Path(weights).is_file():
            raise BackboneMismatch(
                f"backbone weights {weights} not found (sha256 {self.spec.weights_sha256[:12]}...): pass its new "
                "location as model_config {'weights': PATH}"
            )
        if file_digest(Path(weights)) != self.spec.weights_sha256:
            raise BackboneMismatch(f"{weights}: sha256 differs from the file the model was built with")
        return weights

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(n, classes) probabilities, in batches of the `features` stage's size, in this process."""
        dataset = embedding.Transformed(images, self.transform)
        out = []
        for fc6 in embedding.batches(self.extractor, dataset, self.spec.batch_size, workers=0):
            with torch.inference_mode():
                rounded = torch.from_numpy(fc6).half().float()  # the cache's float16
                out.append(self.head(rounded).exp().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.spec.classes)))
