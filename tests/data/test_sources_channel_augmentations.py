"""Augmenting images that are not RGB (any channel count, float arrays): the RGB-only settings
are refused and colour jitter acts per channel, on the loader and on the device path alike."""

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from rotaux.data import ArrayFolder, SSLDataModule, ViewAugmentation, byol_views
from rotaux.data.batched_augment import (
    BRIGHTNESS,
    CONTRAST,
    BatchedViewAugmentation,
    resized_crop,
)
from rotaux.data.batched_augment import channel_jitter as batched_channel_jitter
from rotaux.data.transforms import ChannelJitter, rgb_only_settings, view_transform
from rotaux.errors import RotauxError

PLAIN = ViewAugmentation(
    saturation=0.0, hue=0.0, grayscale_prob=0.0, blur_prob=0.0, solarization_prob=0.0
)


@pytest.mark.parametrize(
    ("augmentation", "named"),
    [
        (ViewAugmentation(), ["saturation 0.2", "hue 0.1", "grayscale_prob 0.2"]),
        (byol_views(with_blur=False)[1], ["saturation", "grayscale", "solarization_prob 0.2"]),
        (ViewAugmentation(saturation=0.0, hue=0.0, grayscale_prob=0.0, solarization_prob=0.5),
         ["solarization_prob 0.5"]),
    ],
)  # fmt: skip
def test_rgb_only_settings_are_refused_on_both_paths(augmentation, named):
    for build in (
        lambda: view_transform(augmentation, 32, rgb=False),
        lambda: BatchedViewAugmentation(augmentation, 32, rgb=False),
    ):
        with pytest.raises(RotauxError, match="defined only for RGB images") as error:
            build()
        assert all(name in str(error.value) for name in named)
    # RGB images keep them
    view_transform(augmentation, 32, rgb=True)
    BatchedViewAugmentation(augmentation, 32, rgb=True)


def test_settings_that_cannot_fire_are_not_refused():
    # saturation and hue without colour jitter never act
    quiet = ViewAugmentation(color_jitter_prob=0.0, grayscale_prob=0.0, solarization_prob=0.0)
    assert rgb_only_settings(quiet) == []
    view_transform(quiet, 32, rgb=False)
    BatchedViewAugmentation(quiet, 32, rgb=False)


def test_default_views_for_other_images_drop_the_rgb_only_ops():
    for view in byol_views(with_blur=True, rgb=False):
        assert rgb_only_settings(view) == []
        assert (view.brightness, view.contrast, view.color_jitter_prob) == (0.4, 0.4, 0.8)
    assert [view.blur_prob for view in byol_views(with_blur=True, rgb=False)] == [1.0, 0.1]


def _array_folder(root, channels=4):
    rng = np.random.default_rng(0)
    root.mkdir()
    for index in range(4):
        np.save(root / f"{index}.npy", rng.integers(0, 255, (channels, 32, 32)).astype(np.uint8))
    return ArrayFolder(str(root))


@pytest.mark.parametrize("augment_on", ["loader", "device"])
def test_the_data_module_refuses_rgb_augmentations_for_array_images(tmp_path, augment_on):
    options = dict(
        batch_size=2, num_workers=0, image_size=32, mean=(0.5,) * 4, std=(0.25,) * 4,
        augment_on=augment_on,
    )  # fmt: skip
    source = _array_folder(tmp_path / "a")
    data = SSLDataModule(source, augmentations=[ViewAugmentation(), PLAIN], **options)
    with pytest.raises(RotauxError, match="saturation 0.2, hue 0.1, grayscale_prob 0.2"):
        data.setup("fit")
    # without --data.augmentations the default views have no RGB-only ops and set up
    data = SSLDataModule(source, **options)
    data.setup("fit")
    assert all(rgb_only_settings(view) == [] for view in data.augmentations)


def test_channel_jitter_by_hand_on_uint8():
    image = torch.tensor(
        [[[10, 200], [30, 40]], [[0, 0], [100, 255]], [[7, 7], [7, 7]]], dtype=torch.uint8
    )
    torch.manual_seed(3)
    brightness = torch.empty(1).uniform_(0.6, 1.4).item()
    contrast = torch.empty(1).uniform_(0.5, 1.5).item()
    torch.manual_seed(3)
    out = ChannelJitter(brightness=0.4, contrast=0.5)(image)
    assert out.dtype == torch.uint8
    for channel in range(3):
        values = [float(v) for v in image[channel].flatten()]
        mean = sum(values) / 4
        for position, value in enumerate(values):
            jittered = contrast * brightness * value + (1 - contrast) * brightness * mean
            expected = int(min(max(jittered, 0.0), 255.0))  # clamped, then truncated
            assert out[channel].flatten()[position].item() == expected


def test_channel_jitter_on_one_channel_is_torchvisions_brightness_then_contrast():
    image = 0.3 + 0.3 * torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    brightness = torch.empty(1).uniform_(0.6, 1.4).item()
    contrast = torch.empty(1).uniform_(0.6, 1.4).item()
    torch.manual_seed(1)
    out = ChannelJitter(0.4, 0.4)(image)
    expected = TF.adjust_contrast(TF.adjust_brightness(image, brightness), contrast)
    torch.testing.assert_close(out, expected)


def test_channel_jitter_does_not_clamp_float_arrays():
    image = torch.tensor([[[1000.0, 3000.0]], [[-5.0, 5.0]]])
    torch.manual_seed(0)
    out = ChannelJitter(0.0, 0.0)(image)  # factors 1: identity, values outside [0, 1] kept
    torch.testing.assert_close(out, image)


def test_batched_channel_jitter_by_hand():
    images = torch.rand(3, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    apply = torch.tensor([True, False, True])
    brightness = torch.tensor([1.2, 0.5, 0.8])
    contrast = torch.tensor([0.7, 1.3, 1.1])
    out = batched_channel_jitter(images, apply, brightness, contrast, clamp=False)
    for sample in range(3):
        b, c = (brightness[sample], contrast[sample]) if apply[sample] else (1.0, 1.0)
        scaled = images[sample] * b
        mean = scaled.mean(dim=(1, 2), keepdim=True)
        torch.testing.assert_close(out[sample], c * scaled + (1 - c) * mean)
    # samples without jitter are returned exactly
    assert torch.equal(out[1], images[1])
    clamped = batched_channel_jitter(images * 3, apply, brightness, contrast, clamp=True)
    assert clamped.max() <= 1 and clamped.min() >= 0


def test_batched_view_uses_the_channel_jitter_and_keeps_float_units():
    augmentation = ViewAugmentation(
        color_jitter_prob=1.0, saturation=0.0, hue=0.0, grayscale_prob=0.0, blur_prob=0.0
    )
    view = BatchedViewAugmentation(augmentation, 8, rgb=False)
    images = 1000 * torch.rand(2, 13, 12, 12, generator=torch.Generator().manual_seed(0))
    params = view.sample_params(2, 12, 12, generator=torch.Generator().manual_seed(1))
    out = view.apply(images, params)
    cropped = resized_crop(images, params.boxes, 8, params.flip)
    factors = params.jitter_factors
    expected = batched_channel_jitter(
        cropped, params.jitter, factors[:, BRIGHTNESS], factors[:, CONTRAST], clamp=False
    )
    torch.testing.assert_close(out, expected)
    assert out.shape == (2, 13, 8, 8) and out.max() > 100
