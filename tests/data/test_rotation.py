import pytest
import torch

from rotaux.data.rotation import RotationInput, rotate_batch, rotate_views


def _asymmetric(batch: int = 1) -> torch.Tensor:
    # [[1, 2], [3, 4]] per channel, offset per image so copies can be told apart
    base = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    return torch.stack([(base + 10 * i).expand(3, 2, 2) for i in range(batch)])


def test_label_k_is_k_quarter_turns_counter_clockwise():
    rotated, labels = rotate_batch(_asymmetric(), copies=4)
    assert labels.tolist() == [0, 1, 2, 3]
    expected = [
        [[1.0, 2.0], [3.0, 4.0]],
        [[2.0, 4.0], [1.0, 3.0]],  # top-right pixel (2) moves to the top-left
        [[4.0, 3.0], [2.0, 1.0]],
        [[3.0, 1.0], [4.0, 2.0]],  # clockwise quarter turn: bottom-left (3) to the top-left
    ]
    for k in range(4):
        for channel in range(3):
            assert rotated[k, channel].tolist() == expected[k]


def test_four_copies_are_ordered_by_label_then_image():
    images = torch.randn(3, 3, 5, 5)
    rotated, labels = rotate_batch(images, copies=4)
    assert rotated.shape == (12, 3, 5, 5)
    assert labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert labels.dtype == torch.long
    for index in range(12):
        k, image = divmod(index, 3)
        assert torch.equal(rotated[index], torch.rot90(images[image], k, dims=(1, 2)))


def test_one_copy_rotates_each_image_by_its_own_label():
    torch.manual_seed(0)
    images = torch.randn(64, 3, 4, 4)
    rotated, labels = rotate_batch(images, copies=1)
    assert rotated.shape == images.shape and labels.shape == (64,)
    for image, out, k in zip(images, rotated, labels.tolist(), strict=True):
        assert torch.equal(out, torch.rot90(image, k, dims=(1, 2)))
    # uniform over the 4 rotations: all of them occur in 64 draws
    assert set(labels.tolist()) == {0, 1, 2, 3}


def test_non_square_images_and_other_copy_counts_are_rejected():
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="copies must be 1 or 4, got 3"):
        rotate_batch(torch.zeros(2, 3, 4, 4), copies=3)


def test_one_copy_keeps_the_channels_last_layout():
    images = torch.randn(4, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    rotated, labels = rotate_batch(images, copies=1)
    assert rotated.is_contiguous(memory_format=torch.channels_last)
    for image, out, k in zip(images, rotated, labels.tolist(), strict=True):
        assert torch.equal(out, torch.rot90(image, k, dims=(1, 2)))


@pytest.mark.parametrize("copies", [1, 4])
def test_rotate_views_concatenates_each_views_rotations_view_after_view(copies):
    torch.manual_seed(0)
    views = [torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)]
    rotated, labels = rotate_views(views, copies)
    per_view = 5 * copies
    assert rotated.shape == (2 * per_view, 3, 4, 4) and labels.shape == (2 * per_view,)
    for group, view in enumerate(views):
        for row in range(per_view):
            index = group * per_view + row
            image = view[row % 5]
            assert torch.equal(rotated[index], torch.rot90(image, labels[index].item(), (1, 2)))
    if copies == 4:
        assert labels.tolist() == [k for k in range(4) for _ in range(5)] * 2


def test_rotate_views_draws_each_views_rotations_separately():
    torch.manual_seed(0)
    view = torch.randn(64, 3, 2, 2)
    _, labels = rotate_views([view, view], copies=1)
    assert not torch.equal(labels[:64], labels[64:])


def test_rotation_input_groups():
    assert RotationInput(source="crop", views=2).groups == 1
    assert RotationInput(source="view", views=2).groups == 1
    assert RotationInput(source="views", views=2).groups == 2
    assert RotationInput(source="views", views=3).groups == 3


def _single_rotations(rank: int, world_size: int, images: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(5)  # every rank seeded alike, as Lightning seeds them
    _, labels = rotate_batch(images.chunk(world_size)[rank], copies=1)
    return labels


def test_one_random_rotation_per_image_under_ddp_equals_one_process_with_the_whole_batch():
    from ddp import run_distributed

    images = torch.randn(8, 3, 4, 4)
    ranks = run_distributed(_single_rotations, images)
    torch.manual_seed(5)
    _, whole = rotate_batch(images, copies=1)
    # each rank's images get their own draws, not a copy of rank 0's
    torch.testing.assert_close(torch.cat(ranks), whole)
    assert not torch.equal(ranks[0], ranks[1])
