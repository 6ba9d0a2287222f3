import math

import pytest
import torch

from rotaux.errors import RotauxError
from rotaux.losses.mae import mae_loss, patchify


def _naive_mae(images, predictions, mask, patch: int, norm_pix: bool) -> float:
    """Explicit loops in float64: patch (r, c) of image b is pixels [r*p:(r+1)*p, c*p:(c+1)*p],
    row by row with the channels of a pixel together."""
    batch, channels, height, width = images.shape
    cols = width // patch
    total, count = 0.0, 0
    for b in range(batch):
        for index in range(mask.shape[1]):
            if not mask[b, index]:
                continue
            r, c = divmod(index, cols)
            target = [
                float(images[b, ch, r * patch + i, c * patch + j])
                for i in range(patch)
                for j in range(patch)
                for ch in range(channels)
            ]
            if norm_pix:
                mean = sum(target) / len(target)
                variance = sum((x - mean) ** 2 for x in target) / (len(target) - 1)
                target = [(x - mean) / math.sqrt(variance + 1e-6) for x in target]
            prediction = predictions[b, index].tolist()
            total += sum((p - t) ** 2 for p, t in zip(prediction, target, strict=True)) / len(
                target
            )
            count += 1
    return total / count


def test_patchify_orders_patches_in_raster_order_and_pixels_with_their_channels_together():
    images = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).view(2, 2, 4, 4)
    patches = patchify(images, 2)
    assert patches.shape == (2, 4, 8)
    # image 1, patch (row 1, col 0): pixels (2, 0), (2, 1), (3, 0), (3, 1), channel 0 then 1
    expected = [images[1, ch, i, j].item() for i in (2, 3) for j in (0, 1) for ch in (0, 1)]
    assert patches[1, 2].tolist() == expected


def test_patchify_refuses_images_that_do_not_split_into_patches():
    with pytest.raises(RotauxError, match="multiples of 4"):
        patchify(torch.zeros(1, 3, 6, 6), 4)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_matches_naive_loop(norm_pix):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 8, 8, generator=generator)
    predictions = torch.randn(3, 4, 48, generator=generator)
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    loss = mae_loss(images, predictions, mask, 4, norm_pix)
    assert math.isclose(
        loss.item(), _naive_mae(images, predictions, mask, 4, norm_pix), rel_tol=1e-5
    )


def test_only_the_masked_patches_count():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 8, 8, generator=generator)
    predictions = torch.randn(2, 4, 48, generator=generator, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 1]], dtype=torch.bool)
    loss = mae_loss(images, predictions, mask, 4)
    loss.backward()
    assert (predictions.grad[~mask] == 0).all() and (predictions.grad[mask] != 0).all()
    changed = predictions.detach().clone()
    changed[~mask] += 100.0
    assert mae_loss(images, changed, mask, 4).item() == pytest.approx(loss.item())


def test_normalised_pixels_are_per_patch():
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(1, 3, 8, 8, generator=generator)
    predictions = torch.randn(1, 4, 48, generator=generator)
    mask = torch.ones(1, 4, dtype=torch.bool)
    # an affine change of one patch's pixels leaves its normalised target (and the loss) as it is
    shifted = images.clone()
    shifted[:, :, :4, 4:] = 3.0 * shifted[:, :, :4, 4:] + 7.0
    assert mae_loss(shifted, predictions, mask, 4).item() == pytest.approx(
        mae_loss(images, predictions, mask, 4).item(), rel=1e-4
    )
    assert mae_loss(shifted, predictions, mask, 4, norm_pix_loss=False).item() != pytest.approx(
        mae_loss(images, predictions, mask, 4, norm_pix_loss=False).item(), rel=1e-2
    )
