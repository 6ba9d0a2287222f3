"""Per-image augmentation pipelines. They end in uint8 tensors (float tensors for float arrays):
normalisation happens batched on the training device, so loader workers move a quarter of the
bytes of float images.

Colour jitter's saturation and hue, grayscale and solarisation at 128 are defined for 8-bit RGB
images only. On other images (a source whose ``is_rgb`` is false: one band, four bands, 13
Sentinel-2 bands, float arrays) they are refused with a :class:`~rotaux.errors.RotauxError`
(:func:`check_channel_agnostic`), and colour jitter keeps its per-channel part:
:class:`ChannelJitter`'s brightness and contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torchvision.transforms import v2

from rotaux.errors import RotauxError

BLUR_SIGMA = (0.1, 2.0)
"""Range of the blur's standard deviation (SimCLR, BYOL Table 6, and PIL's ``radius`` in the
code of solo-learn, SwAV, DINO and EffSSL)."""

BlurKernel = Literal["sigma", "crop"]


@dataclass(frozen=True)
class ViewAugmentation:
    """Random augmentation of one view. Defaults are BYOL's first view (Grill et al. 2020,
    Table 6); :func:`byol_views` gives the asymmetric pair.

    Args:
        crop_size: output side in pixels; ``None`` uses the data module's ``image_size``.
        crop_scale: area range of the random resized crop.
        horizontal_flip_prob: probability of a horizontal flip.
        color_jitter_prob: probability of applying colour jitter.
        brightness: colour-jitter brightness strength.
        contrast: colour-jitter contrast strength.
        saturation: colour-jitter saturation strength.
        hue: colour-jitter hue strength.
        grayscale_prob: probability of converting to grayscale.
        blur_prob: probability of Gaussian blur, with sigma drawn from [0.1, 2].
        blur_kernel: how wide the blur kernel is. ``sigma`` (default): 13 px whatever the crop,
            the Gaussian truncated at 3 of the largest sigma, which is what PIL's
            ``GaussianBlur(radius=sigma)`` applies in solo-learn, SwAV, DINO and EffSSL (also on
            32 px CIFAR crops); smaller crops get the widest kernel that reflect padding allows,
            ``2 * crop_size - 1``. ``crop``: 10% of the crop side rounded down to odd, at least
            3 (BYOL, Table 6: 23 px at 224 px, the same blur there): at 32 px that is a 3-tap
            filter that blurs far less (uniform noise of pixel std 0.29 keeps 0.098 at sigma 2,
            against 0.041 with ``sigma`` and with PIL).
        solarization_prob: probability of solarising at 128.
        num_crops: how many independent crops of this kind each sample gets (multi-crop,
            Caron et al. 2020: for example 2 large crops then 6 small ones of size 32/96).
    """

    crop_size: int | None = None
    crop_scale: tuple[float, float] = (0.08, 1.0)
    horizontal_flip_prob: float = 0.5
    color_jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 1.0
    blur_kernel: BlurKernel = "sigma"
    solarization_prob: float = 0.0
    num_crops: int = 1


def blur_kernel_size(crop_size: int, kernel: BlurKernel = "sigma") -> int:
    """Side of the blur kernel for ``crop_size`` px crops (see ``ViewAugmentation.blur_kernel``):
    13 for ``sigma`` (at most ``2 * crop_size - 1``), 10% of the crop rounded down to odd and at
    least 3 for ``crop``."""
    if kernel == "crop":
        return max(3, int(0.1 * crop_size) // 2 * 2 + 1)
    return min(2 * math.ceil(3 * BLUR_SIGMA[1]) + 1, 2 * crop_size - 1)


def byol_views(with_blur: bool, rgb: bool = True) -> list[ViewAugmentation]:
    """BYOL's asymmetric pair: blur 1.0/0.1 and solarisation 0.0/0.2. Without blur (the CIFAR
    recipes of solo-learn, since blurring 32x32 images destroys them) only solarisation differs.
    For images that are not RGB (``rgb`` false) the RGB-only ops are left out: colour jitter
    keeps brightness and contrast (per channel), there is no grayscale and no solarisation."""
    first = ViewAugmentation(blur_prob=1.0 if with_blur else 0.0, solarization_prob=0.0)
    second = replace(first, blur_prob=0.1 if with_blur else 0.0, solarization_prob=0.2)
    if not rgb:
        first, second = (
            replace(view, saturation=0.0, hue=0.0, grayscale_prob=0.0, solarization_prob=0.0)
            for view in (first, second)
        )
    return [first, second]


def rgb_only_settings(augmentation: ViewAugmentation) -> list[str]:
    """The settings of ``augmentation`` that act only on RGB images and would fire: saturation
    and hue while colour jitter can apply, grayscale and solarisation probabilities."""
    aug = augmentation
    jitter = aug.color_jitter_prob > 0
    settings = {
        "saturation": aug.saturation if jitter else 0.0,
        "hue": aug.hue if jitter else 0.0,
        "grayscale_prob": aug.grayscale_prob,
        "solarization_prob": aug.solarization_prob,
    }
    return [f"{name} {value}" for name, value in settings.items() if value > 0]


def check_channel_agnostic(augmentation: ViewAugmentation) -> None:
    """Refuse, with a :class:`~rotaux.errors.RotauxError` naming them, the settings of
    ``augmentation`` that are defined only for RGB images."""
    settings = rgb_only_settings(augmentation)
    if settings:
        raise RotauxError(
            f"The augmentation {augmentation} sets {', '.join(settings)}, which are defined "
            "only for RGB images (saturation and hue mix the three colours, grayscale weighs "
            "them, solarisation inverts 8-bit values at 128), and these images are not RGB. "
            "Set them to 0 in --data.augmentations (or leave --data.augmentations unset for "
            "BYOL's views without them); brightness and contrast act per channel on such images."
        )


class ChannelJitter(nn.Module):
    """Brightness and contrast jitter for images with any number of channels, the per-channel
    counterpart of torchvision's ``ColorJitter(brightness, contrast)``: every channel is scaled
    by one brightness factor ``b ~ U(max(0, 1 - brightness), 1 + brightness)``, then blended
    with its own mean by one contrast factor ``c ~ U(max(0, 1 - contrast), 1 + contrast)``:
    ``y_k = c * b * x_k + (1 - c) * b * mean(x_k)``. On one channel this is ``ColorJitter``'s
    brightness and contrast exactly (before rounding). uint8 images are clamped to 0..255 and
    truncated to uint8 once at the end (so the order of the two ops does not matter, where
    ``ColorJitter`` clamps after each op in a random order); float images are in their own units
    and are not clamped.

    Args:
        brightness: brightness strength.
        contrast: contrast strength.
    """

    def __init__(self, brightness: float, contrast: float) -> None:
        super().__init__()
        self.brightness = brightness
        self.contrast = contrast

    @staticmethod
    def _factor(strength: float) -> torch.Tensor:
        return torch.empty(1).uniform_(max(0.0, 1 - strength), 1 + strength)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        brightness = self._factor(self.brightness)
        contrast = self._factor(self.contrast)
        values = image.as_subclass(torch.Tensor).float() * brightness
        mean = values.mean(dim=(-2, -1), keepdim=True)
        values = contrast * values + (1 - contrast) * mean
        if image.dtype == torch.uint8:
            return values.clamp(0, 255).to(torch.uint8)
        return values


def view_transform(augmentation: ViewAugmentation, crop_size: int, rgb: bool = True) -> v2.Compose:
    """The per-image pipeline for ``augmentation``; input PIL image or uint8 (or float) tensor,
    output uint8 (float) ``(C, crop_size, crop_size)`` tensor. With ``rgb`` false the RGB-only
    settings are refused (:func:`check_channel_agnostic`) and colour jitter is
    :class:`ChannelJitter`."""
    aug = augmentation
    kernel = blur_kernel_size(crop_size, aug.blur_kernel)
    if rgb:
        colour = [
            v2.RandomApply(
                [v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue)],
                p=aug.color_jitter_prob,
            ),
            v2.RandomGrayscale(aug.grayscale_prob),
        ]
    else:
        check_channel_agnostic(aug)
        colour = [
            v2.RandomApply([ChannelJitter(aug.brightness, aug.contrast)], p=aug.color_jitter_prob)
        ]
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(crop_size, scale=aug.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(aug.horizontal_flip_prob),
            *colour,
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=BLUR_SIGMA)], p=aug.blur_prob),
            *([v2.RandomSolarize(threshold=128, p=aug.solarization_prob)] if rgb else []),
            v2.ToPureTensor(),
        ]
    )


def eval_transform(image_size: int, resize: int) -> v2.Compose:
    """Resize the shorter side to ``resize`` and centre-crop ``image_size``; uint8 output."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToPureTensor(),
        ]
    )
