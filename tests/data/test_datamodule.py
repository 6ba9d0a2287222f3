from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from rotaux.data import SSLDataModule, ViewAugmentation
from rotaux.methods import BYOL

BATCH = 4


def _synthetic(**kwargs) -> SSLDataModule:
    options = dict(dataset="synthetic", batch_size=BATCH, num_workers=0, synthetic_size=16)
    options.update(kwargs)
    data = SSLDataModule(**options)
    data.setup("fit")
    return data


def _train_batches(data: SSLDataModule) -> tuple[dict, dict]:
    raw = next(iter(data.train_dataloader()))
    copy = {key: list(value) if isinstance(value, list) else value for key, value in raw.items()}
    return raw, data.on_after_batch_transfer(copy, 0)


def _normalised(data: SSLDataModule, images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def test_synthetic_train_batch_with_rotation_crops():
    data = _synthetic(with_rotation=True)
    raw, batch = _train_batches(data)
    # the loader moves uint8 images, one un-rotated crop per sample
    assert [view.dtype for view in raw["views"]] == [torch.uint8, torch.uint8]
    assert raw["rotation_crop"].dtype == torch.uint8
    assert raw["rotation_crop"].shape == (BATCH, 3, 32, 32)

    assert len(batch["views"]) == 2
    for raw_view, view in zip(raw["views"], batch["views"], strict=True):
        assert view.dtype == torch.float32 and view.shape == (BATCH, 3, 32, 32)
        torch.testing.assert_close(view, _normalised(data, raw_view))
    assert batch["label"].shape == (BATCH,)
    assert "rotation_crop" not in batch
    assert batch["rotation"].shape == (4 * BATCH, 3, 32, 32)
    assert batch["rotation_labels"].tolist() == [k for k in range(4) for _ in range(BATCH)]
    crop = _normalised(data, raw["rotation_crop"])
    for k in range(4):
        expected = torch.rot90(crop, k, dims=(2, 3))
        torch.testing.assert_close(batch["rotation"][k * BATCH : (k + 1) * BATCH], expected)


def test_synthetic_normalisation_uses_the_preset():
    data = _synthetic()
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.25, 0.25, 0.25)
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    expected = torch.tensor([-2.0, (128 / 255 - 0.5) * 4, 2.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(data.normalize(images), expected)


def test_rotation_crop_size_and_single_copy():
    data = _synthetic(with_rotation=True, rotation_crop_size=16, rotation_copies=1)
    raw, batch = _train_batches(data)
    assert raw["rotation_crop"].shape == (BATCH, 3, 16, 16)
    assert batch["rotation"].shape == (BATCH, 3, 16, 16)
    assert batch["rotation_labels"].shape == (BATCH,)
    crop = _normalised(data, raw["rotation_crop"])
    for index, k in enumerate(batch["rotation_labels"].tolist()):
        torch.testing.assert_close(batch["rotation"][index], torch.rot90(crop[index], k, (1, 2)))


def test_rotation_source_view_rotates_the_first_view():
    data = _synthetic(with_rotation=True, rotation_source="view")
    raw, batch = _train_batches(data)
    assert "rotation_crop" not in raw
    for k in range(4):
        expected = torch.rot90(batch["views"][0], k, dims=(2, 3))
        assert torch.equal(batch["rotation"][k * BATCH : (k + 1) * BATCH], expected)


@pytest.mark.parametrize("with_rotation", [False, None])
def test_no_rotation_keys_without_rotation(with_rotation):
    data = _synthetic(with_rotation=with_rotation)
    raw, batch = _train_batches(data)
    assert set(raw) == {"views", "label"}
    assert set(batch) == {"views", "label"}


@pytest.mark.parametrize(("weight", "expected"), [(0.0, False), (0.4, True)])
def test_with_rotation_none_follows_the_models_weight(weight, expected):
    model = BYOL(
        backbone_width=8,
        proj_hidden_dim=8,
        pred_hidden_dim=8,
        rotation_weight=weight,
        rotation_hidden_dim=8,
    )
    data = SSLDataModule("synthetic", batch_size=BATCH, num_workers=0, synthetic_size=16)
    data.trainer = SimpleNamespace(lightning_module=model, world_size=1)
    data.setup("fit")
    data.trainer = None  # the stand-in only answers setup's questions; the loader runs alone
    assert data.rotation_enabled is expected
    _, batch = _train_batches(data)
    assert ("rotation" in batch) is expected


def test_multi_crop_views_are_listed_in_order():
    augmentations = [ViewAugmentation(num_crops=2), ViewAugmentation(crop_size=16, num_crops=3)]
    data = _synthetic(augmentations=augmentations)
    _, batch = _train_batches(data)
    assert [view.shape[-1] for view in batch["views"]] == [32, 32, 16, 16, 16]


def test_synthetic_val_batches_and_classes():
    data = _synthetic(synthetic_classes=4, val_fraction=0.5)
    assert data.num_classes == 4
    loader = data.val_dataloader()
    assert len(loader.dataset) == 8
    raw = next(iter(loader))
    assert set(raw) == {"image", "label"} and raw["image"].dtype == torch.uint8
    batch = data.on_after_batch_transfer({"image": raw["image"], "label": raw["label"]}, 0)
    assert batch["image"].shape == (BATCH, 3, 32, 32) and batch["image"].dtype == torch.float32
    torch.testing.assert_close(batch["image"], _normalised(data, raw["image"]))
    assert batch["label"].shape == (BATCH,)


def test_train_loader_shuffles_and_drops_the_last_partial_batch():
    data = _synthetic(synthetic_size=18)
    loader = data.train_dataloader()
    assert len(loader) == 4 and loader.drop_last
    assert len(data.val_dataloader()) == 3  # 10 val images (one per class) kept whole


def test_num_classes_and_loaders_need_setup():
    data = SSLDataModule("synthetic", batch_size=BATCH, num_workers=0)
    with pytest.raises(RuntimeError, match="setup"):
        _ = data.num_classes
    with pytest.raises(RuntimeError, match="setup"):
        data.train_dataloader()


def _image_folder(root, classes=("cat", "dog", "fox"), per_class=8, val=False, side=40):
    generator = torch.Generator().manual_seed(0)
    splits = ["train", "val"] if val else ["train"]
    for split in splits:
        for class_index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class if split == "train" else 2):
                pixels = torch.randint(0, 256, (side, side, 3), generator=generator)
                pixels[..., class_index] = 255
                image = Image.fromarray(pixels.to(torch.uint8).numpy())
                suffix = ".jpg" if index % 2 else ".png"
                image.save(folder / f"{index}{suffix}")
    return root


def test_image_folder_without_val_is_split_by_class(tmp_path):
    root = _image_folder(tmp_path)
    data = SSLDataModule(
        "imagefolder",
        root=str(root),
        image_size=32,
        batch_size=BATCH,
        num_workers=0,
        val_fraction=0.25,
        download=False,
    )
    data.setup("fit")
    assert data.classes == ["cat", "dog", "fox"]
    assert len(data.train_dataloader().dataset) == 18
    val_set = data.val_dataloader().dataset
    assert len(val_set) == 6
    assert sorted(label for _, label in val_set.base) == [0, 0, 1, 1, 2, 2]
    _, batch = _train_batches(data)
    assert [view.shape for view in batch["views"]] == [(BATCH, 3, 32, 32)] * 2
    assert batch["label"].dtype == torch.long
    raw = next(iter(data.val_dataloader()))
    assert raw["image"].shape == (BATCH, 3, 32, 32) and raw["label"].shape == (BATCH,)


def test_image_folder_with_val_folder_uses_it(tmp_path):
    root = _image_folder(tmp_path, val=True)
    data = SSLDataModule(
        "imagefolder",
        root=str(root),
        image_size=32,
        val_resize=36,
        batch_size=BATCH,
        num_workers=0,
        download=False,
    )
    data.setup("fit")
    assert len(data.train_dataloader().dataset) == 24
    val_set = data.val_dataloader().dataset
    assert len(val_set) == 6
    assert all("/val/" in path for path, _ in val_set.base.samples)
    sample = val_set[0]
    assert sample["image"].shape == (3, 32, 32) and sample["label"] == 0


def test_device_augmentation_makes_views_and_rotation_crop_on_the_device():
    data = SSLDataModule(
        dataset="synthetic", synthetic_size=32, batch_size=8, num_workers=0,
        with_rotation=True, augment_on="device", rotation_crop_size=16,
    )  # fmt: skip
    data.setup("fit")
    loaded = next(iter(data.train_dataloader()))
    # the loader serves one un-augmented uint8 source image per sample
    assert [view.dtype for view in loaded["views"]] == [torch.uint8]
    assert "rotation_crop" not in loaded
    source = loaded["views"][0].clone()
    batch = data.on_after_batch_transfer(loaded, 0)
    assert [tuple(view.shape) for view in batch["views"]] == [(8, 3, 32, 32)] * 2
    assert batch["rotation"].shape == (32, 3, 16, 16)
    assert not torch.equal(batch["views"][0], batch["views"][1])
    # the views are augmented, not the normalised source
    assert not torch.equal(batch["views"][0], data.normalize(source))
    # normalised like loader-made views: a float in [0, 1] maps as the uint8 image would
    torch.testing.assert_close(data.normalize(source.float() / 255), data.normalize(source))
