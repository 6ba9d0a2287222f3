from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from rotaux.backbones import ResNet, ViT
from rotaux.data import (
    ImageFolder,
    RotationInput,
    SSLDataModule,
    Synthetic,
    UnlabeledFolder,
    ViewAugmentation,
)
from rotaux.errors import RotauxError
from rotaux.methods import BYOL

BATCH = 4


def _synthetic(
    rotation: RotationInput | None = None, size: int = 16, source_options=None, **kwargs
) -> SSLDataModule:
    """A set-up data module on synthetic images; without a trainer, ``rotation`` stands for the
    model's ``rotation_input()``."""
    dataset = Synthetic(size=size, **(source_options or {}))
    options = dict(batch_size=BATCH, num_workers=0)
    options.update(kwargs)
    data = SSLDataModule(dataset, **options)
    data.rotation = rotation
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


def _set_up_by_model(data: SSLDataModule, model) -> None:
    """``setup`` as a Trainer runs it: the stand-in only answers setup's questions (the model
    and the world size); the loaders then run without it."""
    data.trainer = SimpleNamespace(lightning_module=model, world_size=1)
    data.setup("fit")
    data.trainer = None


def _byol(**options) -> BYOL:
    return BYOL(
        backbone=options.pop("backbone", ResNet(width=8, cifar_stem=True)),
        proj_hidden_dim=8,
        pred_hidden_dim=8,
        rotation_hidden_dim=8,
        **options,
    )


def test_synthetic_train_batch_with_rotation_crops():
    data = _synthetic(RotationInput())
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
    data = _synthetic(RotationInput(crop_size=16, copies=1))
    raw, batch = _train_batches(data)
    assert raw["rotation_crop"].shape == (BATCH, 3, 16, 16)
    assert batch["rotation"].shape == (BATCH, 3, 16, 16)
    assert batch["rotation_labels"].shape == (BATCH,)
    crop = _normalised(data, raw["rotation_crop"])
    for index, k in enumerate(batch["rotation_labels"].tolist()):
        torch.testing.assert_close(batch["rotation"][index], torch.rot90(crop[index], k, (1, 2)))


def test_rotation_crop_scale_sets_the_crops_area_range():
    data = _synthetic(RotationInput(crop_scale=(0.05, 0.14)))
    views, rotation_crop = data._train.views, data._train.rotation_crop
    # the transforms' second step is the random resized crop
    assert views[0].transforms[1].scale == data.augmentations[0].crop_scale != (0.05, 0.14)
    assert rotation_crop.transforms[1].scale == (0.05, 0.14)


def test_rotation_source_view_rotates_the_first_view():
    data = _synthetic(RotationInput(source="view"))
    raw, batch = _train_batches(data)
    assert "rotation_crop" not in raw
    for k in range(4):
        expected = torch.rot90(batch["views"][0], k, dims=(2, 3))
        assert torch.equal(batch["rotation"][k * BATCH : (k + 1) * BATCH], expected)


def test_rotation_source_views_rotates_each_leading_view_once_view_after_view():
    # two large views and a small one: only the two large views are rotated
    augmentations = [ViewAugmentation(num_crops=2), ViewAugmentation(crop_size=16, num_crops=1)]
    rotation = RotationInput(source="views", copies=1, views=2)
    assert rotation.groups == 2
    data = _synthetic(rotation, augmentations=augmentations)
    raw, batch = _train_batches(data)
    assert "rotation_crop" not in raw
    assert batch["rotation"].shape == (2 * BATCH, 3, 32, 32)
    labels = batch["rotation_labels"]
    assert labels.shape == (2 * BATCH,) and labels.dtype == torch.long
    for group in range(2):
        # each rotated image is the normalised view turned by its own label
        view = _normalised(data, raw["views"][group])
        for index in range(BATCH):
            row = group * BATCH + index
            expected = torch.rot90(view[index], labels[row].item(), dims=(1, 2))
            torch.testing.assert_close(batch["rotation"][row], expected)


def test_rotation_source_views_with_four_copies_keeps_each_views_label_order():
    data = _synthetic(RotationInput(source="views", copies=4, views=2))
    _, batch = _train_batches(data)
    assert batch["rotation"].shape == (8 * BATCH, 3, 32, 32)
    per_view = [k for k in range(4) for _ in range(BATCH)]
    assert batch["rotation_labels"].tolist() == per_view * 2
    for group in range(2):
        for k in range(4):
            start = (4 * group + k) * BATCH
            expected = torch.rot90(batch["views"][group], k, dims=(2, 3))
            assert torch.equal(batch["rotation"][start : start + BATCH], expected)


def test_rotation_source_views_needs_leading_views_of_one_size():
    augmentations = [ViewAugmentation(num_crops=1), ViewAugmentation(crop_size=16, num_crops=2)]
    with pytest.raises(RotauxError, match="first 2 views"):
        _synthetic(RotationInput(source="views", views=2), augmentations=augmentations)


def test_no_rotation_keys_without_rotation_input():
    data = _synthetic(None)
    raw, batch = _train_batches(data)
    assert set(raw) == {"views", "label", "index"}
    assert set(batch) == {"views", "label", "index"}


@pytest.mark.parametrize(
    ("options", "rotated"),
    [
        ({"rotation_weight": 0.0}, None),
        ({"rotation_weight": 0.4}, 4 * BATCH),
        ({"rotation_weight": 0.4, "rotation_copies": 1}, BATCH),
        ({"rotation_weight": 0.4, "rotation_source": "view"}, 4 * BATCH),
        ({"rotation_weight": 0.1, "rotation_source": "views", "rotation_copies": 1}, 2 * BATCH),
    ],
)
def test_setup_follows_the_models_rotation_input(options, rotated):
    model = _byol(**options)
    data = SSLDataModule(Synthetic(size=16), batch_size=BATCH, num_workers=0)
    # a rotation input left by another model is replaced by this model's
    data.rotation = RotationInput(source="crop")
    _set_up_by_model(data, model)
    assert data.rotation == model.rotation_input()
    raw, batch = _train_batches(data)
    if rotated is None:
        assert data.rotation is None
        assert set(batch) == {"views", "label", "index"}
        return
    assert data.rotation.source == options.get("rotation_source", "crop")
    assert data.rotation.copies == options.get("rotation_copies", 4)
    assert ("rotation_crop" in raw) is (data.rotation.source == "crop")
    assert batch["rotation"].shape[0] == batch["rotation_labels"].shape[0] == rotated


def test_setup_refuses_crops_that_the_vits_patch_size_does_not_divide():
    model = _byol(backbone=ViT(size="tiny", patch_size=8, image_size=32), rotation_crop_size=20)
    data = SSLDataModule(Synthetic(size=16), batch_size=BATCH, num_workers=0)
    with pytest.raises(RotauxError, match="Crops of 20 px do not split into the ViT's 8-px"):
        _set_up_by_model(data, model)
    # the same model with crops of a multiple of 8 sets up
    model = _byol(backbone=ViT(size="tiny", patch_size=8, image_size=32), rotation_crop_size=16)
    _set_up_by_model(data, model)
    assert data.crop_sizes() == [32, 32, 16]


def test_setup_refuses_a_backbone_with_other_input_channels():
    model = _byol(backbone=ResNet(width=8, cifar_stem=True, channels=1))
    data = SSLDataModule(Synthetic(size=16), batch_size=BATCH, num_workers=0)
    with pytest.raises(RotauxError, match="takes 1-channel images but the data has 3 channels"):
        _set_up_by_model(data, model)


def test_multi_crop_views_are_listed_in_order():
    augmentations = [ViewAugmentation(num_crops=2), ViewAugmentation(crop_size=16, num_crops=3)]
    data = _synthetic(augmentations=augmentations)
    _, batch = _train_batches(data)
    assert [view.shape[-1] for view in batch["views"]] == [32, 32, 16, 16, 16]


def test_synthetic_val_batches_and_classes():
    data = _synthetic(source_options={"classes": 4, "val_fraction": 0.5})
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
    data = _synthetic(size=18)
    loader = data.train_dataloader()
    assert len(loader) == 4 and loader.drop_last
    assert len(data.val_dataloader()) == 3  # 10 val images (one per class) kept whole


def test_num_classes_and_loaders_need_setup():
    data = SSLDataModule(Synthetic(), batch_size=BATCH, num_workers=0)
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
        ImageFolder(str(root), val_fraction=0.25),
        image_size=32,
        batch_size=BATCH,
        num_workers=0,
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
        ImageFolder(str(root)),
        image_size=32,
        val_resize=36,
        batch_size=BATCH,
        num_workers=0,
    )
    data.setup("fit")
    assert len(data.train_dataloader().dataset) == 24
    val_set = data.val_dataloader().dataset
    assert len(val_set) == 6
    assert all("/val/" in path for path, _ in val_set.base.samples)
    sample = val_set[0]
    assert sample["image"].shape == (3, 32, 32) and sample["label"] == 0


def test_device_augmentation_makes_views_and_rotation_crop_on_the_device():
    data = SSLDataModule(Synthetic(size=32), batch_size=8, num_workers=0, augment_on="device")
    data.rotation = RotationInput(crop_size=16)
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


def _unlabeled_folder(root, count=6, side=36):
    for index in range(count):
        folder = root / f"part{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (side, side), (index, 0, 0)).save(folder / f"{index}.png")
    return UnlabeledFolder(str(root))


def test_eval_dataset_gives_the_classes_validation_split_and_evaluation_training_images(
    tmp_path,
):
    labelled = ImageFolder(str(_image_folder(tmp_path / "labelled", val=True)))
    data = SSLDataModule(
        _unlabeled_folder(tmp_path / "unlabeled"),
        eval_dataset=labelled,
        image_size=32,
        batch_size=BATCH,
        num_workers=0,
    )
    data.setup("fit")
    assert data.evaluation_data == "eval_dataset"
    assert data.classes == ["cat", "dog", "fox"]
    # pretraining still reads the unlabeled images
    assert len(data.train_dataloader().dataset) == 6
    assert all(label == -1 for _, label in data._train.base)
    # validation is the eval set's val/ folder, the kNN/probe training images its train/ folder
    assert all("/val/" in path for path, _ in data.val_dataloader().dataset.base.samples)
    bank = data.eval_train_dataset()
    assert len(bank) == 24 and sorted({sample["label"] for sample in bank}) == [0, 1, 2]


def test_a_model_that_trains_on_labels_trains_on_the_eval_dataset(tmp_path):
    from rotaux.eval import LinearEval

    assert LinearEval.trains_on_labels
    labelled = ImageFolder(str(_image_folder(tmp_path / "labelled", val=True)))
    unlabeled = _unlabeled_folder(tmp_path / "unlabeled")
    classifier = SimpleNamespace(trains_on_labels=True)
    data = SSLDataModule(
        unlabeled, eval_dataset=labelled, image_size=32, batch_size=BATCH, num_workers=0
    )
    _set_up_by_model(data, classifier)
    assert len(data._train) == 24
    assert {label for _, label in data._train.base} == {0, 1, 2}
    # the pretraining images are not even read
    absent = UnlabeledFolder(str(tmp_path / "nowhere"))
    data = SSLDataModule(
        absent, eval_dataset=labelled, image_size=32, batch_size=BATCH, num_workers=0
    )
    _set_up_by_model(data, classifier)
    assert len(data._train) == 24

    data = SSLDataModule(unlabeled, image_size=32, batch_size=BATCH, num_workers=0)
    with pytest.raises(RotauxError, match="have none. Give labelled images with --data.eval"):
        _set_up_by_model(data, classifier)


def test_eval_dataset_must_be_labelled_with_the_training_channels(tmp_path):
    unlabeled = _unlabeled_folder(tmp_path / "unlabeled")
    data = SSLDataModule(
        unlabeled, eval_dataset=unlabeled, image_size=32, batch_size=BATCH, num_workers=0
    )
    with pytest.raises(RotauxError, match="--data.eval_dataset UnlabeledFolder has no labels"):
        data.setup("fit")

    class OneBand(Synthetic):
        @property
        def channels(self) -> int:
            return 1

    data = SSLDataModule(
        Synthetic(size=16), eval_dataset=OneBand(size=16), batch_size=BATCH, num_workers=0
    )
    with pytest.raises(RotauxError, match="has 1-channel images but the training images have 3"):
        data.setup("fit")
    with pytest.raises(RotauxError, match="eval_dataset must be a data source"):
        SSLDataModule(Synthetic(), eval_dataset="cifar10")


def test_a_user_source_returning_channels_last_images_is_refused(tmp_path):
    class ChannelsLast(Synthetic):
        def load(self):
            splits = super().load()
            images = splits.train.images
            splits.train.images = images.permute(0, 2, 3, 1)
            return splits

    data = SSLDataModule(ChannelsLast(size=16), batch_size=BATCH, num_workers=0)
    with pytest.raises(RotauxError, match=r"has shape \(32, 32, 3\), but ChannelsLast declares 3"):
        data.setup("fit")
