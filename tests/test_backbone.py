"""Weight loading through the real code path, and the frozen/trainable split of Groh et al.'s network."""

import pytest
import torch
from torch import nn
from torchvision import models

from dermsynth.model import backbone


@pytest.fixture(scope="module")
def vgg() -> models.VGG:
    return backbone.load_vgg16("none", seed=3)


def test_random_init_is_seeded(vgg):
    again = backbone.load_vgg16("none", seed=3)
    assert torch.equal(vgg.features[0].weight, again.features[0].weight)
    assert not torch.equal(vgg.features[0].weight, backbone.load_vgg16("none", seed=4).features[0].weight)


def test_weights_from_a_local_state_dict(vgg, tmp_path):
    """A state_dict saved from a random model loads through the same path as real weights would."""
    path = tmp_path / "vgg16.pt"
    torch.save(vgg.state_dict(), path)
    loaded = backbone.load_vgg16(str(path), seed=0)
    for name, tensor in vgg.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_missing_or_wrong_weights_say_what_to_do(tmp_path):
    with pytest.raises(backbone.WeightsError, match="not found"):
        backbone.load_vgg16(str(tmp_path / "nope.pt"), seed=0)
    wrong = tmp_path / "resnet.pt"
    torch.save(models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(backbone.WeightsError, match="not a VGG16 state_dict"):
        backbone.load_vgg16(str(wrong), seed=0)


def test_imagenet_offline_names_the_cache(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("name resolution failed")

    monkeypatch.setattr(models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(backbone.WeightsError) as err:
        backbone.load_vgg16("imagenet", seed=0)
    assert str(tmp_path / "checkpoints") in str(err.value)
    assert "vgg16-397923af.pth" in str(err.value)


def test_cached_fc6_plus_head_equals_the_full_network(vgg):
    """Cutting after fc6+ReLU loses nothing: eval-mode outputs match VGG16 with the head in classifier[6]."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    head = backbone.Head(nn.Linear(4096, 4096), hidden=8, n_classes=7, dropout=0.4)
    head.fc7.load_state_dict(vgg.classifier[3].state_dict())
    full = models.vgg16(weights=None)
    full.load_state_dict(vgg.state_dict())
    full.classifier[6] = head.head
    full.eval()
    head.eval()
    with torch.no_grad():
        expected = full(x)
        got = head(backbone.Fc6Extractor(vgg).eval()(x))
    assert torch.allclose(expected, got, atol=1e-5)


def test_frozen_dropout_is_active_in_training_and_fc7_does_not_train():
    torch.manual_seed(0)
    head = backbone.Head(nn.Linear(4096, 4096), hidden=8, n_classes=7, dropout=0.4)
    x = torch.rand(4, 4096)
    head.train()
    h1, h2 = head.frozen_features(x), head.frozen_features(x)
    assert not torch.equal(h1, h2)
    assert (h1 == 0).float().mean() > 0.5  # ReLU zeros plus dropout(0.5)
    head.eval()
    assert torch.equal(head.frozen_features(x), head.frozen_features(x))
    assert not any(p.requires_grad for p in head.fc7.parameters())
    assert all(p.requires_grad for p in head.head.parameters())


def test_standardisation_is_fitted_on_training_activations():
    head = backbone.Head(nn.Linear(4096, 4096), hidden=8, n_classes=7, dropout=0.4)
    x = torch.rand(50, 4096) * 0.1 + 0.3
    head.standardize(x)
    z = (x - head.mean) / head.std
    assert torch.allclose(z.mean(0), torch.zeros(4096), atol=1e-5)
    assert torch.allclose(z.std(0), torch.ones(4096), atol=1e-4)
