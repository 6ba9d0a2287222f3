import torch

from rotaux.data import SyntheticImages


def test_images_are_uint8_rgb_with_balanced_labels():
    data = SyntheticImages(num_samples=40, num_classes=4, image_size=16, seed=0)
    assert len(data) == 40
    image, label = data[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
    assert isinstance(label, int)
    assert torch.bincount(data.targets, minlength=4).tolist() == [10] * 4
    assert data.classes == ["class_0", "class_1", "class_2", "class_3"]


def test_same_seed_same_images_other_seed_other_images():
    first = SyntheticImages(16, 4, 16, seed=3)
    again = SyntheticImages(16, 4, 16, seed=3)
    other = SyntheticImages(16, 4, 16, seed=4)
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.targets, again.targets)
    assert not torch.equal(first.images, other.images)


def test_images_are_light_at_the_top_so_up_is_defined():
    data = SyntheticImages(64, 4, 32, seed=0)
    images = data.images.float()
    top, bottom = images[:, :, :4].mean(dim=(1, 2, 3)), images[:, :, -4:].mean(dim=(1, 2, 3))
    # every image's top rows are brighter than its bottom rows; a rotated copy would differ
    assert (top > bottom).all()


def test_classes_are_linearly_separable_on_held_out_images():
    train, test = SyntheticImages(400, 4, 16, seed=0), SyntheticImages(200, 4, 16, seed=1)
    mean = train.images.float().flatten(1).mean(dim=0)
    x_train = (train.images.float().flatten(1) - mean) / 255
    x_test = (test.images.float().flatten(1) - mean) / 255
    # ridge regression on one-hot labels: a linear classifier that generalises to a new seed
    onehot = torch.nn.functional.one_hot(train.targets, 4).float()
    weights = torch.linalg.solve(
        x_train.T @ x_train + 10 * torch.eye(x_train.shape[1]), x_train.T @ onehot
    )
    accuracy = ((x_test @ weights).argmax(dim=1) == test.targets).float().mean()
    assert accuracy > 0.9
