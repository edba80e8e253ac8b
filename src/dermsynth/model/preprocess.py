"""The image transforms of the study (Groh et al.), shared by the `features` stage and the served model.

The served model must see an image exactly as `features` did when the head was evaluated, so
both build their test transform here; the train transform is Groh et al.'s augmentation,
scaled by resize/crop (256/224 at full size).
"""

from __future__ import annotations

from torchvision import transforms as T

from dermsynth.model.backbone import IMAGENET_MEAN, IMAGENET_STD

Stats = tuple[tuple[float, ...], tuple[float, ...]]
IMAGENET: Stats = (IMAGENET_MEAN, IMAGENET_STD)


def eval_transform(resize: int, crop: int, stats: Stats = IMAGENET) -> T.Compose:
    """Resize (shorter side), CenterCrop, the backbone's normalisation (``stats``): the view every scored image gets."""
    return T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(*stats)])


def train_transform(resize: int, crop: int, stats: Stats = IMAGENET) -> T.Compose:
    """Groh et al.'s train transform, scaled by resize/crop, with the backbone's normalisation (``stats``)."""
    return T.Compose(
        [
            T.RandomResizedCrop(resize, scale=(0.8, 1.0)),
            T.RandomRotation(15),
            T.ColorJitter(),
            T.RandomHorizontalFlip(),
            T.CenterCrop(crop),
            T.ToTensor(),
            T.Normalize(*stats),
        ]
    )
