"""The repeats of a configuration train together, each as if alone: own seed, sampler, views and dropout."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dermsynth.core import config
from dermsynth.model import fitting
from dermsynth.model.backbone import FC6_DIM
from dermsynth.model.trainset import RunData

CLASSES = 4


@pytest.fixture
def data() -> RunData:
    """Random non-negative fc6 activations (what ReLU-ed features look like) for 48 training images, 2 views."""
    gen = torch.Generator().manual_seed(5)
    return RunData(
        classes=[f"c{i}" for i in range(CLASSES)],
        train=None,  # type: ignore[arg-type]
        val=None,  # type: ignore[arg-type]
        x_views=torch.rand(48, 2, FC6_DIM, generator=gen),
        y=torch.arange(48) % CLASSES,
        x_val=torch.rand(20, FC6_DIM, generator=gen),
        y_val=torch.arange(20) % CLASSES,
        fc7=nn.Linear(FC6_DIM, FC6_DIM).state_dict(),
    )


@pytest.fixture
def cfg(params: config.Params) -> config.Train:
    return dataclasses.replace(params.train, epochs=2, batch_size=16)


def repeats(data: RunData, cfg: config.Train, seeds: list[int]) -> list[fitting.Repeat]:
    frozen = fitting.frozen_parts(data, cfg)
    return [fitting.new_repeat(data, cfg, "float32", s, frozen) for s in seeds]


def test_a_repeats_streams_follow_its_seed_alone(data, cfg):
    alone = repeats(data, cfg, [7])
    together = repeats(data, cfg, [3, 7])
    order_alone, views_alone = fitting.epoch_draws(alone, data.y, 2, cfg)
    order_both, views_both = fitting.epoch_draws(together, data.y, 2, cfg)
    assert torch.equal(order_alone[0], order_both[1])
    assert torch.equal(views_alone[0], views_both[1])
    assert not torch.equal(order_both[0], order_both[1])
    for p in (0.5, 0.4):
        assert torch.equal(fitting.masks(alone, (16, 64), p)[0], fitting.masks(together, (16, 64), p)[1])
    head_alone, head_both = alone[0].model.head[0].weight, together[1].model.head[0].weight
    assert torch.equal(head_alone, head_both)  # the initialisation follows the seed too


@pytest.mark.parametrize("p", [0.5, 0.4])
def test_dropout_masks_keep_one_minus_p_and_rescale(data, cfg, p):
    mask = fitting.masks(repeats(data, cfg, [0, 1]), (64, FC6_DIM), p)
    kept = mask > 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)
    assert torch.allclose(mask[kept], torch.tensor(1 / (1 - p)))
    assert not torch.equal(mask[0], mask[1])


def test_training_is_deterministic_and_keeps_the_best_validation_epoch(data, cfg):
    first = fitting.train_repeats(data, cfg, "float32", [0, 1])
    again = fitting.train_repeats(data, cfg, "float32", [0, 1])
    for (model, history), (model2, history2) in zip(first, again, strict=True):
        assert history == history2
        for key, value in model.state_dict().items():
            assert torch.equal(value, model2.state_dict()[key]), key
        best = fitting.best_epoch(history)
        with torch.inference_mode():
            out = model(data.x_val)
        assert float((out.argmax(1) == data.y_val).float().mean()) == pytest.approx(best["val_acc"])
    assert first[0][1] != first[1][1]  # two seeds, two trainings


def test_only_the_trainable_head_learns(data, cfg):
    (model, _), *_ = fitting.train_repeats(data, cfg, "float32", [0])
    assert torch.equal(model.fc7.weight, data.fc7["weight"])
    untrained = repeats(data, cfg, [0])[0].model
    assert not torch.equal(model.head[0].weight, untrained.head[0].weight)
