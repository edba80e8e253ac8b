"""The report says when its numbers come from simulated images or a random backbone, and only then."""

from __future__ import annotations

import pytest

from dermsynth import report


@pytest.mark.parametrize(
    ("root", "weights", "simulated"),
    [
        ("build/embedded", "none", True),
        ("build/embedded", "vgg16_weights.pt", True),  # simulated images, whatever the weights
        ("data", "none", True),  # real images through a random backbone
        ("data", "vgg16_weights.pt", False),
        ("data", "imagenet", False),
    ],
)
def test_simulation_header(workdir, raw_params, root, weights, simulated):
    from dermsynth.core import config

    raw_params["dataset"]["root"] = root
    header = "\n".join(report.simulation_header(config.parse(raw_params), {"weights": weights}))
    assert ("Simulated results" in header) is simulated
    if simulated:
        assert "effect sizes do not transfer to real photographs" in header
        assert "docs/embedded.md" in header
