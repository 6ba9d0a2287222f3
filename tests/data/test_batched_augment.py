import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torchvision import transforms as v1
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from rotaux.data.batched_augment import (
    BatchedViewAugmentation,
    ViewParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    blur_kernel_size,
    color_jitter,
    gaussian_blur,
    luma,
    resized_crop,
    sample_crop_boxes,
    solarize,
)
from rotaux.data.transforms import ViewAugmentation, view_transform

# float32 rounding of the same arithmetic done in another order
ATOL = 1e-5
TORCHVISION_JITTER = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
# every op on, with probabilities that tell the Bernoulli draws apart
ALL_OPS = ViewAugmentation(
    horizontal_flip_prob=0.5,
    color_jitter_prob=0.8,
    grayscale_prob=0.2,
    blur_prob=0.3,
    solarization_prob=0.1,
)


def _images(batch: int = 4, height: int = 40, width: int = 48, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator)


def _torchvision_view(
    image: torch.Tensor, params: ViewParams, i: int, size: int, blur_kernel: str = "sigma"
) -> torch.Tensor:
    """One sample through torchvision's functional ops with the sample's parameters."""
    top, left, height, width = params.boxes[i].tolist()
    out = TF.resized_crop(image, top, left, height, width, [size, size], antialias=True)
    if params.flip[i]:
        out = TF.horizontal_flip(out)
    if params.jitter[i]:
        for op in params.jitter_order[i].tolist():
            out = TORCHVISION_JITTER[op](out, params.jitter_factors[i, op].item())
    if params.grayscale[i]:
        out = TF.rgb_to_grayscale(out, num_output_channels=3)
    if params.blur[i]:
        kernel, sigma = blur_kernel_size(size, blur_kernel), params.blur_sigma[i].item()
        out = TF.gaussian_blur(out, [kernel, kernel], [sigma, sigma])
    if params.solarize[i]:
        out = TF.solarize(out, threshold=128 if out.dtype == torch.uint8 else 128 / 255)
    return out


@pytest.mark.parametrize(
    ("blur_kernel", "expected"),
    [
        # sized from sigma <= 2 whatever the crop (PIL's GaussianBlur(radius=sigma)); a 6 px crop
        # gets the widest kernel reflect padding allows
        ("sigma", {6: 11, 16: 13, 32: 13, 96: 13, 224: 13}),
        # 10% of the crop (BYOL Table 6)
        ("crop", {6: 3, 16: 3, 32: 3, 96: 9, 224: 23}),
    ],
)
def test_blur_kernel_size_is_the_one_of_view_transform(blur_kernel, expected):
    for crop_size, side in expected.items():
        pipeline = view_transform(ViewAugmentation(blur_kernel=blur_kernel), crop_size)
        [blur] = [
            t.transforms[0]
            for t in pipeline.transforms
            if isinstance(t, v2.RandomApply) and isinstance(t.transforms[0], v2.GaussianBlur)
        ]
        assert blur.kernel_size == (side, side) == (blur_kernel_size(crop_size, blur_kernel),) * 2
        batched = BatchedViewAugmentation(ViewAugmentation(blur_kernel=blur_kernel), crop_size)
        assert batched.blur_kernel_size == side


def _pixel_std_after_blur(images: torch.Tensor, kernel: int, sigma: float) -> float:
    blurred = gaussian_blur(images, kernel, torch.full((len(images),), sigma))
    # the loader path's op on one image is the same blur
    torch.testing.assert_close(
        blurred[0], TF.gaussian_blur(images[0], [kernel, kernel], [sigma, sigma]), atol=ATOL, rtol=0
    )
    return blurred.std().item()


def test_blur_of_32px_crops_is_as_strong_as_pil_gaussian_blur_of_the_solo_learn_recipes():
    # solo-learn's CIFAR recipes blur with PIL's ImageFilter.GaussianBlur(radius=sigma)
    image = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(0))
    image = image.to(torch.uint8)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).filter(ImageFilter.GaussianBlur(2.0))
    pil_std = float(np.asarray(pil, dtype=np.float32).std() / 255)
    noise = image.float().unsqueeze(0) / 255
    sigma_std = _pixel_std_after_blur(noise, blur_kernel_size(32, "sigma"), 2.0)
    crop_std = _pixel_std_after_blur(noise, blur_kernel_size(32, "crop"), 2.0)
    assert noise.std().item() == pytest.approx(0.287, abs=0.005)  # uniform noise: 1 / sqrt(12)
    assert pil_std == pytest.approx(0.041, abs=0.002)
    assert sigma_std == pytest.approx(pil_std, rel=0.05)
    # the 3-tap kernel of 10% of 32 px keeps more than twice the noise
    assert crop_std == pytest.approx(0.098, abs=0.003)
    # pixel by pixel away from the borders (PIL repeats edge pixels, torchvision reflects), PIL's
    # box-filter approximation of the Gaussian and its uint8 rounding stay within 5 levels
    ours = gaussian_blur(noise, 13, torch.tensor([2.0]))[0, :, 8:-8, 8:-8]
    theirs = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)
    assert (ours - theirs[:, 8:-8, 8:-8]).abs().max() < 5 / 255


@pytest.mark.parametrize("size", [16, 64])
def test_resized_crop_matches_torchvision_antialiased_resize(size):
    images = _images()
    # crops smaller and larger than the output: 16 downscales three of them (antialias matters)
    boxes = torch.tensor([[3, 5, 9, 11], [0, 0, 40, 48], [10, 2, 30, 17], [1, 7, 20, 33]])
    flip = torch.tensor([False, True, False, True])
    out = resized_crop(images, boxes, size, flip)
    assert out.shape == (4, 3, size, size) and out.dtype == torch.float32
    for i in range(4):
        expected = TF.resized_crop(images[i], *boxes[i].tolist(), [size, size], antialias=True)
        if flip[i]:
            expected = TF.horizontal_flip(expected)
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_resized_crop_of_uint8_is_within_one_level_of_torchvision_on_uint8():
    images = (_images(seed=1) * 255).round().to(torch.uint8)
    boxes = torch.tensor([[3, 5, 9, 11], [0, 0, 40, 48], [10, 2, 30, 17], [1, 7, 20, 33]])
    out = resized_crop(images, boxes, 24)
    expected = torch.stack(
        [TF.resized_crop(images[i], *boxes[i].tolist(), [24, 24], antialias=True) for i in range(4)]
    )
    # torchvision rounds to uint8 between its two passes and at the end; this stays float
    levels = (out * 255 - expected.float()).abs()
    assert levels.max() < 1.1
    assert levels.mean() < 0.35


def test_resized_crop_without_antialias_would_differ_when_downscaling():
    # the reason the crop does not use grid_sample: on noise, a 4x downscale without the
    # antialias filter is off by about 0.1 on average
    images = _images(batch=1, height=64, width=64)
    box = torch.tensor([[0, 0, 64, 64]])
    aliased = torch.nn.functional.interpolate(images, size=16, mode="bilinear", antialias=False)
    out = resized_crop(images, box, 16)
    torch.testing.assert_close(
        out[0], TF.resize(images[0], [16, 16], antialias=True), atol=ATOL, rtol=0
    )
    assert (out - aliased).abs().mean() > 0.05


@pytest.mark.parametrize(
    ("batched", "torchvision_op", "factors"),
    [
        (adjust_brightness, TF.adjust_brightness, [0.6, 1.0, 1.4, 0.0]),
        (adjust_contrast, TF.adjust_contrast, [0.6, 1.0, 1.4, 0.0]),
        (adjust_saturation, TF.adjust_saturation, [0.8, 1.0, 1.2, 0.0]),
        (adjust_hue, TF.adjust_hue, [-0.1, 0.05, 0.5, -0.5]),
    ],
)
def test_colour_op_with_per_sample_factor_matches_torchvision(batched, torchvision_op, factors):
    images = _images()
    # grey and saturated pixels: the HSV special cases (no hue, max shared by two channels)
    images[0, :, 0, :4] = 0.5
    images[1, :, 0, :4] = torch.tensor([1.0, 1.0, 0.2]).view(3, 1)
    out = batched(images, torch.tensor(factors))
    for i, factor in enumerate(factors):
        torch.testing.assert_close(out[i], torchvision_op(images[i], factor), atol=ATOL, rtol=0)


def test_grayscale_and_solarize_match_torchvision():
    images = _images()
    expected_gray = torch.stack([TF.rgb_to_grayscale(image) for image in images])
    torch.testing.assert_close(luma(images), expected_gray, atol=ATOL, rtol=0)
    torch.testing.assert_close(solarize(images), TF.solarize(images, 128 / 255), atol=0, rtol=0)
    # on the 256 uint8 levels: exactly RandomSolarize(threshold=128)
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, 3, 1, 256)
    solarized = (solarize(levels.float() / 255) * 255).round().to(torch.uint8)
    assert torch.equal(solarized, TF.solarize(levels, threshold=128))


def test_gaussian_blur_with_per_sample_sigma_matches_torchvision():
    images = _images()
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0])
    out = gaussian_blur(images, 5, sigma)
    for i in range(4):
        expected = TF.gaussian_blur(images[i], [5, 5], [sigma[i].item()] * 2)
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_colour_jitter_runs_each_samples_ops_in_its_own_order():
    orders = torch.tensor(list(itertools.permutations(range(4))))  # all 24 orders
    batch = len(orders)
    images = _images(batch=batch, height=8, width=8)
    factors = torch.tensor([1.5, 0.5, 1.8, 0.3]).repeat(batch, 1)
    apply = torch.arange(batch) % 5 != 0
    out = color_jitter(images, apply, orders, factors)
    for i in range(batch):
        expected = images[i]
        if apply[i]:
            for op in orders[i].tolist():
                expected = TORCHVISION_JITTER[op](expected, factors[i, op].item())
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)
    # the order matters with these factors, so a fixed order would fail above
    assert (out[1] - out[2]).abs().max() > 0.01


@pytest.mark.parametrize("blur_kernel", ["sigma", "crop"])
def test_apply_matches_torchvision_pipeline_with_the_same_params(blur_kernel):
    size, batch = 24, 8
    images = _images(batch=batch, height=32, width=36)
    augment = BatchedViewAugmentation(replace(ALL_OPS, blur_kernel=blur_kernel), size)
    generator = torch.Generator().manual_seed(3)
    params = augment.sample_params(batch, 32, 36, generator=generator)
    pattern = torch.tensor([True, False, True, True, False, True, False, True])
    params = replace(
        params,
        flip=pattern,
        jitter=pattern.roll(1),
        grayscale=torch.arange(batch) == 2,
        blur=pattern.roll(2),
        solarize=pattern.roll(3),
    )
    out = augment.apply(images, params)
    for i in range(batch):
        expected = _torchvision_view(images[i], params, i, size, blur_kernel)
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)
    # uint8 input is the same as float input divided by 255
    uint8 = (images * 255).round().to(torch.uint8)
    from_uint8 = augment.apply(uint8, params)
    torch.testing.assert_close(from_uint8, augment.apply(uint8.float() / 255, params))


def test_views_stay_within_a_few_uint8_steps_of_the_uint8_loader_pipeline():
    # the per-image pipeline runs on uint8 and truncates after each colour op, so it ends
    # about one step darker on average; this one stays in float32
    size, batch = 32, 32
    smooth = torch.rand(batch, 3, 10, 10, generator=torch.Generator().manual_seed(4))
    images = (TF.resize(smooth, [40, 40], antialias=False) * 255).round().to(torch.uint8)
    augment = BatchedViewAugmentation(replace(ALL_OPS, blur_prob=0.5, solarization_prob=0.2), size)
    params = augment.sample_params(batch, 40, 40, generator=torch.Generator().manual_seed(5))
    out = augment.apply(images, params) * 255
    expected = torch.stack([_torchvision_view(images[i], params, i, size) for i in range(batch)])
    steps = out - expected.float()
    assert params.jitter.any() and params.blur.any() and params.solarize.any()
    assert steps.abs().max() < 8
    assert steps.abs().mean() < 2
    assert 0 < steps.mean() < 2


def test_params_follow_the_configured_probabilities_and_ranges():
    draws = 20000
    augment = BatchedViewAugmentation(ALL_OPS, 32)
    params = augment.sample_params(draws, 32, 32, generator=torch.Generator().manual_seed(0))
    rates = {
        "flip": (params.flip, ALL_OPS.horizontal_flip_prob),
        "jitter": (params.jitter, ALL_OPS.color_jitter_prob),
        "grayscale": (params.grayscale, ALL_OPS.grayscale_prob),
        "blur": (params.blur, ALL_OPS.blur_prob),
        "solarize": (params.solarize, ALL_OPS.solarization_prob),
    }
    for name, (fired, p) in rates.items():
        tolerance = 5 * math.sqrt(p * (1 - p) / draws)  # 5 binomial standard errors
        assert abs(fired.float().mean().item() - p) < tolerance, name
    # each op at each of the 4 slots a quarter of the time: a uniform random order
    for op in range(4):
        slot_share = (params.jitter_order == op).float().mean(dim=0)
        assert (slot_share - 0.25).abs().max() < 5 * math.sqrt(0.25 * 0.75 / draws)
    ranges = [(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]  # BYOL's 0.4, 0.4, 0.2, 0.1
    for op, (low, high) in enumerate(ranges):
        factor = params.jitter_factors[:, op]
        assert low <= factor.min() < low + 0.001 and high - 0.001 < factor.max() <= high
        assert abs(factor.mean().item() - (low + high) / 2) < 0.01
    assert 0.1 <= params.blur_sigma.min() < 0.101 and 1.999 < params.blur_sigma.max() <= 2.0


@pytest.mark.parametrize(("height", "width"), [(32, 32), (8, 64)])
def test_crop_boxes_follow_torchvision_random_resized_crop(height, width):
    # 8x64 is wider than 4/3 so that about half the samples take the centre-crop fallback
    draws, scale = 20000, (0.08, 1.0)
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    reference = torch.tensor(
        [v1.RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3]) for _ in range(draws)]
    )
    boxes = sample_crop_boxes(
        draws, height, width, scale, generator=torch.Generator().manual_seed(0)
    )
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] >= 1).all()
    assert (boxes[:, 0] + boxes[:, 2] <= height).all() and (
        boxes[:, 1] + boxes[:, 3] <= width
    ).all()

    def statistics(b: torch.Tensor) -> dict[str, torch.Tensor]:
        top, left, crop_h, crop_w = b.double().unbind(1)
        return {
            "area": crop_h * crop_w / (height * width),
            "log_ratio": torch.log(crop_w / crop_h),
            "centre_y": (top + crop_h / 2) / height,
            "centre_x": (left + crop_w / 2) / width,
        }

    ours, theirs = statistics(boxes), statistics(reference)
    for name in ours:
        standard_error = math.sqrt((ours[name].var() + theirs[name].var()).item() / draws)
        assert abs((ours[name].mean() - theirs[name].mean()).item()) < 5 * standard_error, name
    fallback = (boxes == boxes.mode(dim=0).values).all(dim=1).float().mean()
    reference_fallback = (reference == reference.mode(dim=0).values).all(dim=1).float().mean()
    assert abs(fallback - reference_fallback) < 0.02
    if width == 64:
        assert 0.3 < reference_fallback < 0.7  # the fallback really is exercised


def test_seeded_generator_makes_views_reproducible():
    images = (_images(batch=6, height=32, width=32) * 255).to(torch.uint8)
    augment = BatchedViewAugmentation(ALL_OPS, 16)
    first = augment(images, torch.Generator().manual_seed(7))
    again = augment(images, torch.Generator().manual_seed(7))
    other = augment(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_output_shape_dtype_device_and_range():
    images = (_images(batch=5, height=40, width=30) * 255).to(torch.uint8)
    out = BatchedViewAugmentation(ALL_OPS, 24)(images)
    assert out.shape == (5, 3, 24, 24)
    assert out.dtype == torch.float32 and out.device == images.device
    assert out.min() >= 0 and out.max() <= 1


def test_identical_images_in_one_batch_get_their_own_parameters():
    image = (_images(batch=1, height=32, width=32) * 255).to(torch.uint8)
    out = BatchedViewAugmentation(ALL_OPS, 16)(image.expand(8, -1, -1, -1))
    for i, j in itertools.combinations(range(8), 2):
        assert not torch.allclose(out[i], out[j]), (i, j)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_forward_on_cuda_never_synchronises_with_the_host():
    images = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8, device="cuda")
    augment = BatchedViewAugmentation(ALL_OPS, 32)
    generator = torch.Generator("cuda").manual_seed(0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = augment(images, generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == (16, 3, 32, 32) and out.is_cuda
