"""Per-image augmentation pipelines. They end in uint8 tensors: normalisation happens batched on
the training device, so loader workers move a quarter of the bytes of float images."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torchvision.transforms import v2


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
        blur_prob: probability of Gaussian blur (kernel 10% of the crop, sigma in [0.1, 2]).
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
    solarization_prob: float = 0.0
    num_crops: int = 1


def byol_views(with_blur: bool) -> list[ViewAugmentation]:
    """BYOL's asymmetric pair: blur 1.0/0.1 and solarisation 0.0/0.2. Without blur (the CIFAR
    recipes of solo-learn, since blurring 32x32 images destroys them) only solarisation differs."""
    first = ViewAugmentation(blur_prob=1.0 if with_blur else 0.0, solarization_prob=0.0)
    second = replace(first, blur_prob=0.1 if with_blur else 0.0, solarization_prob=0.2)
    return [first, second]


def view_transform(augmentation: ViewAugmentation, crop_size: int) -> v2.Compose:
    """The per-image pipeline for ``augmentation``; input PIL image or uint8 tensor, output uint8
    ``(3, crop_size, crop_size)`` tensor."""
    aug = augmentation
    kernel = max(3, int(0.1 * crop_size) // 2 * 2 + 1)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(crop_size, scale=aug.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(aug.horizontal_flip_prob),
            v2.RandomApply(
                [v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue)],
                p=aug.color_jitter_prob,
            ),
            v2.RandomGrayscale(aug.grayscale_prob),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=aug.blur_prob),
            v2.RandomSolarize(threshold=128, p=aug.solarization_prob),
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
