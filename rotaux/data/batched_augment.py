"""BYOL view augmentation of a whole batch on the training device, each sample with its own
random parameters.

:class:`BatchedViewAugmentation` is the batched counterpart of
:func:`rotaux.data.transforms.view_transform` (BYOL, Grill et al. 2020, Table 6): random resized
crop, horizontal flip, colour jitter in a random order, grayscale, Gaussian blur (as wide as
``ViewAugmentation.blur_kernel`` says) and solarisation, drawn per sample as torchvision draws
them per image. Every op follows the
arithmetic of ``torchvision.transforms.v2.functional`` on float images in ``[0, 1]``: the crop
uses the antialiased bilinear filter of ``interpolate(antialias=True)`` (PIL's), the hue shift
goes through HSV like ``adjust_hue``. The per-image pipeline works on uint8 and rounds (resize,
blur) or truncates (colour ops) to uint8 after every op; this one stays in float32, so its outputs
differ from that pipeline's by a few 1/255 steps at most, the uint8 quantisation. No op
synchronises with the host: per-sample choices are ``torch.where`` selections, never
data-dependent indexing or ``.item()``.

Images that are not RGB (``rgb=False``: any channel count, float arrays in their own units) get
the counterpart of :class:`rotaux.data.transforms.ChannelJitter` (:func:`channel_jitter`, per
channel brightness and contrast) and the RGB-only settings are refused, as on the loader path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rotaux.data.transforms import (
    BLUR_SIGMA,
    ViewAugmentation,
    blur_kernel_size,
    check_channel_agnostic,
)

CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
"""Aspect-ratio range of the crop: torchvision's ``RandomResizedCrop`` default."""

CROP_ATTEMPTS = 10
"""Crop draws before the centre-crop fallback, as torchvision."""

SOLARIZE_THRESHOLD = 128 / 255
"""``RandomSolarize(threshold=128)`` on uint8, in ``[0, 1]`` units."""

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
"""Colour-jitter op ids, torchvision's ``ColorJitter`` ``fn_idx`` numbering."""


@dataclass(frozen=True)
class ViewParams:
    """Random parameters of one batch of views, one row per sample, all on the images' device.

    Attributes:
        boxes: ``(B, 4)`` int64 crop ``top, left, height, width`` in input pixels.
        flip: ``(B,)`` bool, flip horizontally.
        jitter: ``(B,)`` bool, apply colour jitter.
        jitter_order: ``(B, 4)`` int64 permutation of the op ids ``BRIGHTNESS, CONTRAST,
            SATURATION, HUE``: the order the ops run in.
        jitter_factors: ``(B, 4)`` float32 brightness, contrast and saturation factors and hue
            shift, indexed by op id.
        grayscale: ``(B,)`` bool, convert to grayscale.
        blur: ``(B,)`` bool, blur.
        blur_sigma: ``(B,)`` float32 standard deviation of the blur.
        solarize: ``(B,)`` bool, solarise.
    """

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    jitter_order: Tensor
    jitter_factors: Tensor
    grayscale: Tensor
    blur: Tensor
    blur_sigma: Tensor
    solarize: Tensor


def _uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> Tensor:
    return torch.rand(shape, device=device, generator=generator) * (high - low) + low


def sample_crop_boxes(
    batch_size: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = CROP_RATIO,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(B, 4)`` int64 ``top, left, height, width`` crop boxes, drawn per sample with
    torchvision's ``RandomResizedCrop`` algorithm: up to 10 draws of an area fraction
    ``U(scale)`` and a log aspect ratio ``U(log ratio)``, the first that fits is placed uniformly,
    else the centre crop of the largest box with a ratio inside ``ratio``. All 10 draws are made
    at once for every sample (same distribution, another random stream). Sides are rounded half
    to even as Python's ``round``; the arithmetic is float32 where torchvision's is float64, which
    moves a side by one pixel only when it lands within float32 precision of a half."""
    device = torch.device(device)
    shape = (batch_size, CROP_ATTEMPTS)
    area = height * width * _uniform(shape, scale[0], scale[1], device, generator)
    log_ratio = _uniform(shape, math.log(ratio[0]), math.log(ratio[1]), device, generator)
    aspect = torch.exp(log_ratio)
    crop_w = torch.round(torch.sqrt(area * aspect))
    crop_h = torch.round(torch.sqrt(area / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    # argmax returns the first maximal index: the first attempt that fits
    first = fits.int().argmax(dim=1, keepdim=True)
    crop_w = crop_w.gather(1, first).squeeze(1)
    crop_h = crop_h.gather(1, first).squeeze(1)
    any_fits = fits.any(dim=1)

    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    crop_w = torch.where(any_fits, crop_w, float(fallback_w))
    crop_h = torch.where(any_fits, crop_h, float(fallback_h))

    # floor(U * n) is uniform on 0..n-1; the clamp only guards float32 rounding of U * n up to n
    free_h = height - crop_h + 1
    free_w = width - crop_w + 1
    top = torch.floor(torch.rand(batch_size, device=device, generator=generator) * free_h)
    left = torch.floor(torch.rand(batch_size, device=device, generator=generator) * free_w)
    top = torch.where(any_fits, torch.minimum(top, free_h - 1), (height - crop_h) // 2)
    left = torch.where(any_fits, torch.minimum(left, free_w - 1), (width - crop_w) // 2)
    return torch.stack([top, left, crop_h, crop_w], dim=1).long()


def _resample_matrix(starts: Tensor, lengths: Tensor, in_size: int, out_size: int) -> Tensor:
    """``(B, out_size, in_size)`` matrices that resize the span ``[start, start + length)`` of an
    axis to ``out_size`` samples with the antialiased bilinear filter of
    ``torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False)``
    (PIL's): a triangle stretched by the scale when downscaling, plain bilinear when upscaling,
    cut to the span and renormalised, which is the edge clamping of the crop."""
    scale = (lengths.float() / out_size)[:, None, None]
    downscale = scale >= 1
    support = torch.where(downscale, scale, 1.0)
    outputs = torch.arange(out_size, device=starts.device, dtype=torch.float32)[:, None]
    center = scale * (outputs + 0.5)
    inputs = torch.arange(in_size, device=starts.device, dtype=torch.float32)
    offset = inputs - starts.float()[:, None, None]
    weights = torch.clamp_min(1 - ((offset - center + 0.5) / support).abs(), 0)
    inside = (offset >= 0) & (offset < lengths.float()[:, None, None])
    weights = torch.where(inside, weights, 0.0)
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def resized_crop(images: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Crop ``boxes`` (``(B, 4)`` ``top, left, height, width``) out of ``images`` (``(B, C, H,
    W)``, uint8 or float) and resize each to ``size x size``, as torchvision's
    ``resized_crop(..., antialias=True)`` on float images; ``flip`` (``(B,)`` bool) mirrors the
    chosen samples, free since it only reverses their output columns. Returns float32, in
    ``[0, 1]`` for uint8 input (else in the input's units).

    Each sample is ``rows @ image @ columns^T`` with dense per-sample resampling matrices: two
    batched matrix products, exact in float32, with no per-sample crop sizes to index. Under
    ``torch.set_float32_matmul_precision("high")`` CUDA runs them in TF32, which moves the output
    by about 1e-3 relative (a quarter of a uint8 step)."""
    _, _, height, width = images.shape
    rows = _resample_matrix(boxes[:, 0], boxes[:, 2], height, size)
    cols = _resample_matrix(boxes[:, 1], boxes[:, 3], width, size)
    if flip is not None:
        cols = torch.where(flip[:, None, None], cols.flip(1), cols)
    if images.dtype == torch.uint8:
        rows = rows / 255
    return rows[:, None] @ images.float() @ cols[:, None].transpose(-1, -2)


def _per_sample(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(images: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    ratio = _per_sample(ratio)
    return (images * ratio + other * (1 - ratio)).clamp(0, 1)


def luma(images: Tensor) -> Tensor:
    """``(B, 1, H, W)`` ITU-R 601-2 luma, as torchvision's ``rgb_to_grayscale``."""
    red, green, blue = images.unbind(dim=-3)
    return (red * 0.2989 + green * 0.587 + blue * 0.114).unsqueeze(-3)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Scale each sample by its ``factor`` (``(B,)``), clamped to ``[0, 1]``."""
    return (images * _per_sample(factor)).clamp(0, 1)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each sample with the mean of its luma by ``factor`` (``(B,)``)."""
    return _blend(images, luma(images).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each sample with its luma by ``factor`` (``(B,)``)."""
    return _blend(images, luma(images), factor)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate each sample's hue by ``shift`` (``(B,)``, in turns) through HSV, as torchvision's
    ``adjust_hue`` (Pillow's RGB->HSV, then HSV->RGB)."""
    red, green, _ = images.unbind(dim=-3)
    max_c, min_c = torch.aminmax(images, dim=-3)
    chroma = max_c - min_c
    # grey pixels have no hue: any finite divisor gives the same output, 1 avoids 0 / 0
    divisor = torch.where(chroma == 0, 1.0, chroma)
    red_c, green_c, blue_c = ((max_c.unsqueeze(-3) - images) / divisor.unsqueeze(-3)).unbind(-3)
    hue = torch.where(
        max_c == red,
        blue_c - green_c,
        torch.where(max_c == green, 2.0 + red_c - blue_c, 4.0 + green_c - red_c),
    )
    hue = torch.remainder((hue / 6.0 + 1.0).fmod(1.0) + shift.view(-1, 1, 1), 1.0)
    # HSV->RGB in closed form: channel n is V - V*S*clamp(min(k, 4 - k), 0, 1) with
    # k = (n + 6H) mod 6 and n = 5, 3, 1 for R, G, B; V*S is the chroma
    sector = (5.0 - 2.0 * torch.arange(3, device=images.device)).view(1, 3, 1, 1)
    k = torch.remainder(sector + 6.0 * hue.unsqueeze(-3), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0, 1)
    return (max_c.unsqueeze(-3) - chroma.unsqueeze(-3) * ramp).clamp(0, 1)


def color_jitter(images: Tensor, apply: Tensor, order: Tensor, factors: Tensor) -> Tensor:
    """torchvision's ``ColorJitter`` per sample: the samples with ``apply`` (``(B,)`` bool) run
    brightness, contrast, saturation and hue with their ``factors`` (``(B, 4)`` by op id) in
    their own ``order`` (``(B, 4)`` permutation of op ids); the others are returned unchanged.

    Brightness, contrast and saturation are all a blend ``clamp(f * x + (1 - f) * ref)`` with
    reference 0, the luma mean or the luma, so each step runs one blend whose reference and
    factor are picked per sample (factor 1, an exact identity, for samples that skip the step).
    The blends before each sample's hue shift run first, then one hue shift for all, then the
    blends after it: 6 blends and 1 HSV round trip instead of evaluating every op at every slot.
    """
    slots = torch.arange(4, device=images.device).expand_as(order)
    hue_slot = (order == HUE).int().argmax(dim=1)
    # the three blend ops of each sample in their order, hue taken out
    blend_ops = order.gather(1, torch.where(order == HUE, 4, slots).argsort(dim=1)[:, :3])
    for before_hue in (True, False):
        for step in range(3):
            op = blend_ops[:, step]
            active = apply & ((step < hue_slot) == before_hue)
            ratio = torch.where(active, factors.gather(1, op[:, None]).squeeze(1), 1.0)
            gray = luma(images)
            reference = torch.where(
                _per_sample(op == CONTRAST), gray.mean(dim=(-3, -2, -1), keepdim=True), gray
            )
            reference = reference * _per_sample(op != BRIGHTNESS)
            images = _blend(images, reference, ratio)
        if before_hue:
            images = torch.where(_per_sample(apply), adjust_hue(images, factors[:, HUE]), images)
    return images


def channel_jitter(
    images: Tensor, apply: Tensor, brightness: Tensor, contrast: Tensor, clamp: bool
) -> Tensor:
    """:class:`~rotaux.data.transforms.ChannelJitter` per sample: the samples with ``apply``
    (``(B,)`` bool) are scaled by their ``brightness`` factor and each of their channels blended
    with its own mean by their ``contrast`` factor (``(B,)`` each); the others get factor 1, an
    exact identity. ``clamp`` keeps 8-bit images in ``[0, 1]``; float arrays in their own units
    are not clamped."""
    brightness = _per_sample(torch.where(apply, brightness, 1.0))
    contrast = _per_sample(torch.where(apply, contrast, 1.0))
    scaled = images * brightness
    out = contrast * scaled + (1 - contrast) * scaled.mean(dim=(-2, -1), keepdim=True)
    return out.clamp(0, 1) if clamp else out


def gaussian_blur(images: Tensor, kernel_size: int, sigma: Tensor) -> Tensor:
    """Blur each sample with its own ``sigma`` (``(B,)``): torchvision's ``gaussian_blur``
    kernel (``softmax(-(x / sigma)^2)`` over ``kernel_size`` points) and reflect padding, applied
    separably as two grouped convolutions with one group per sample and channel."""
    batch, channels, height, width = images.shape
    half = kernel_size // 2
    limit = (kernel_size - 1) / (2 * math.sqrt(2))
    x = torch.linspace(-limit, limit, kernel_size, device=images.device)
    kernel = torch.softmax(-(x / sigma[:, None]).pow(2), dim=1).repeat_interleave(channels, 0)
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (0, 0, half, half), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=batch * channels)
    flat = F.pad(flat, (half, half, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=batch * channels)
    return flat.view(batch, channels, height, width)


def solarize(images: Tensor) -> Tensor:
    """Invert the values at or above 128/255, as ``RandomSolarize(threshold=128)`` on uint8."""
    return torch.where(images >= SOLARIZE_THRESHOLD, 1 - images, images)


class BatchedViewAugmentation(nn.Module):
    """One kind of view of a whole batch on its device, each sample with its own parameters: the
    batched equivalent of ``view_transform(augmentation, crop_size)``.

    Input ``(B, C, H, W)`` uint8 (0..255) or float (0..1) images, all of one size; output
    ``(B, C, crop_size, crop_size)`` float32 in ``[0, 1]``, not normalised. Crop boxes are drawn
    relative to the ``H x W`` input, as the per-image pipeline draws them relative to the image it
    gets. Ops whose probability is 0 in ``augmentation`` are not computed at all. With ``rgb``
    false the input may have any channel count (float input then stays in its own units), the
    RGB-only settings are refused and colour jitter is :func:`channel_jitter`.

    Args:
        augmentation: the view's random augmentation.
        crop_size: output side in pixels.
        rgb: whether the images are RGB colour images.
    """

    def __init__(self, augmentation: ViewAugmentation, crop_size: int, rgb: bool = True) -> None:
        super().__init__()
        if not rgb:
            check_channel_agnostic(augmentation)
        self.augmentation = augmentation
        self.crop_size = crop_size
        self.rgb = rgb
        self.blur_kernel_size = blur_kernel_size(crop_size, augmentation.blur_kernel)

    def sample_params(
        self,
        batch_size: int,
        height: int,
        width: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> ViewParams:
        """Per-sample parameters, drawn as torchvision draws them per image: each op fires with
        its own Bernoulli(p); jitter factors ``U(max(0, 1 - s), 1 + s)`` for brightness,
        contrast and saturation strength ``s`` and hue shift ``U(-h, h)``; a uniformly random
        order of the four jitter ops; blur sigma ``U(0.1, 2.0)``. ``generator`` must live on
        ``device``."""
        aug = self.augmentation
        device = torch.device(device)
        shape = (batch_size,)

        def fires(probability: float) -> Tensor:
            return torch.rand(shape, device=device, generator=generator) < probability

        def factor(strength: float) -> Tensor:
            return _uniform(shape, max(0.0, 1 - strength), 1 + strength, device, generator)

        boxes = sample_crop_boxes(
            batch_size, height, width, aug.crop_scale, device=device, generator=generator
        )
        flip = fires(aug.horizontal_flip_prob)
        jitter = fires(aug.color_jitter_prob)
        order = torch.rand((batch_size, 4), device=device, generator=generator).argsort(dim=1)
        factors = torch.stack(
            [
                factor(aug.brightness),
                factor(aug.contrast),
                factor(aug.saturation),
                _uniform(shape, -aug.hue, aug.hue, device, generator),
            ],
            dim=1,
        )
        grayscale = fires(aug.grayscale_prob)
        blur = fires(aug.blur_prob)
        sigma = _uniform(shape, BLUR_SIGMA[0], BLUR_SIGMA[1], device, generator)
        solar = fires(aug.solarization_prob)
        return ViewParams(boxes, flip, jitter, order, factors, grayscale, blur, sigma, solar)

    def apply(self, images: Tensor, params: ViewParams) -> Tensor:
        """Augment ``images`` with fixed ``params``; see the class docstring for the formats.
        Ops whose probability is 0 in the augmentation are skipped whatever ``params`` say."""
        aug = self.augmentation
        eight_bit = images.dtype == torch.uint8
        out = resized_crop(images, params.boxes, self.crop_size, params.flip)
        if aug.color_jitter_prob > 0 and self.rgb:
            out = color_jitter(out, params.jitter, params.jitter_order, params.jitter_factors)
        elif aug.color_jitter_prob > 0:
            factors = params.jitter_factors
            out = channel_jitter(
                out, params.jitter, factors[:, BRIGHTNESS], factors[:, CONTRAST], eight_bit
            )
        if aug.grayscale_prob > 0:
            out = torch.where(_per_sample(params.grayscale), luma(out).expand_as(out), out)
        if aug.blur_prob > 0:
            blurred = gaussian_blur(out, self.blur_kernel_size, params.blur_sigma)
            out = torch.where(_per_sample(params.blur), blurred, out)
        if aug.solarization_prob > 0:
            out = torch.where(_per_sample(params.solarize), solarize(out), out)
        return out

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw parameters for ``images`` (with ``generator``, on the images' device, if given)
        and apply them."""
        batch, _, height, width = images.shape
        params = self.sample_params(batch, height, width, images.device, generator)
        return self.apply(images, params)
