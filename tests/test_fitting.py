"""The repeats of a configuration train together, each as if alone: own seed, sampler, views and dropout."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dermsynth.core import config
from dermsynth.model import backbone, fitting
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
        input_dropout=0.5,
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


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_training_is_deterministic_and_keeps_the_best_validation_epoch(data, cfg, precision):
    first = fitting.train_repeats(data, cfg, precision, [0, 1])
    again = fitting.train_repeats(data, cfg, precision, [0, 1])
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


def test_dropout_bits_are_the_low_32_bits_of_each_draw_in_order(data, cfg):
    """The byte-wise unpacking gives the bits the int64 reference gives: the streams did not change."""
    reps, again = repeats(data, cfg, [0, 1]), repeats(data, cfg, [0, 1])
    n = 1000
    bits = fitting.random_bits(reps, n)
    words = torch.stack([torch.empty((n + 31) // 32, dtype=torch.int64).random_(generator=r.noise) for r in again])
    reference = ((words.unsqueeze(-1) >> torch.arange(32)) & 1).flatten(1)[:, :n]
    assert torch.equal(bits.long(), reference)
    assert 0.45 < bits.float().mean().item() < 0.55


def test_the_mixed_precision_layer_rounds_only_its_operands():
    torch.manual_seed(0)
    exact = backbone.MixedLinear(64, 8)
    mixed = backbone.MixedLinear(64, 8, torch.bfloat16)
    mixed.load_state_dict(exact.state_dict())
    x = torch.randn(5, 64)
    assert torch.equal(exact(x), nn.functional.linear(x, exact.weight, exact.bias))  # float32: nn.Linear itself
    rounded = nn.functional.linear(x.bfloat16().float(), exact.weight.bfloat16().float(), exact.bias)
    assert torch.allclose(mixed(x), rounded, rtol=1e-2, atol=1e-2)
    assert not torch.equal(mixed(x), exact(x))
    mixed(x).sum().backward()
    assert mixed.weight.grad.dtype == torch.float32  # the optimiser keeps float32 weights


def test_bfloat16_training_stays_close_to_float32(data, cfg):
    """Mixed precision changes the bits, not what is learnt: the same seed ends near the same validation accuracy."""
    (exact, h32), *_ = fitting.train_repeats(data, cfg, "float32", [0])
    (mixed, h16), *_ = fitting.train_repeats(data, cfg, "bfloat16", [0])
    assert [h["train_loss"] for h in h16] == pytest.approx([h["train_loss"] for h in h32], rel=0.05)
    assert mixed.head[0].weight.dtype == torch.float32
    # Adam moves a weight by at most about lr per step, so after the same steps the two differ by at most
    # 2 lr x steps; most differ far less (a few updates of the opposite sign where a gradient is near 0)
    steps = cfg.epochs * -(-len(data.y) // cfg.batch_size)
    diff = (mixed.head[0].weight - exact.head[0].weight).abs()
    assert diff.max() <= 2 * cfg.lr * steps
    assert diff.mean() < 0.1 * cfg.lr * steps
