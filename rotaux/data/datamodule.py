"""The one data module every method trains with."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import replace
from typing import Any, Literal

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, IterableDataset

from rotaux.data.batched_augment import BatchedViewAugmentation
from rotaux.data.device_decode import EncodedSamples, collate_encoded, decode_to_squares
from rotaux.data.rotation import RotationInput, rotate_views
from rotaux.data.sampler import EpochSampler, ResumableLoader, SeededSamples, mix_seed
from rotaux.data.sources import CIFAR10, DATA_SOURCES, DataSource, SplitDatasets
from rotaux.data.transforms import ViewAugmentation, byol_views, eval_transform, view_transform
from rotaux.errors import RotauxError


class MultiViewDataset(Dataset):
    """Wraps an ``(image, label)`` dataset into training samples: augmented ``views``, the
    ``label``, the sample's ``index`` in the dataset (DeepCluster-v2's memory bank is kept by
    sample) and, when a rotation transform is given, an un-rotated ``rotation_crop``."""

    def __init__(self, base: Dataset, views: list, rotation_crop: Any | None = None) -> None:
        self.base = base
        self.views = views
        self.rotation_crop = rotation_crop

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.base[index]
        sample = {
            "views": [transform(image) for transform in self.views],
            "label": label,
            "index": index,
        }
        if self.rotation_crop is not None:
            sample["rotation_crop"] = self.rotation_crop(image)
        return sample


class EvalDataset(Dataset):
    """Wraps an ``(image, label)`` dataset into ``{"image", "label"}`` samples."""

    def __init__(self, base: Dataset, transform: Any) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.base[index]
        return {"image": self.transform(image), "label": label}


class SSLDataModule(LightningDataModule):
    """Augmented views, rotation input and evaluation images for self-supervised pretraining.

    Loader workers only decode, augment and emit uint8 tensors; on the training device,
    ``on_after_batch_transfer`` normalises them and makes the rotated copies of the rotation
    task (``rotation`` with ``rotation_labels`` 0..3 for 0/90/180/270 degrees), so the loader
    moves one image per sample, not four. What is rotated follows the model's rotation options
    (:meth:`RotationAuxMixin.rotation_input <rotaux.methods.RotationAuxMixin.rotation_input>`),
    read in ``setup``; with ``rotation_weight`` 0 there is no rotation input at all.

    Evaluation (the online probe, the kNN monitor, ``LinearEval``) uses the labelled images of
    ``eval_dataset`` when one is given, else those of ``dataset``; with neither labelled
    (:attr:`evaluation_data` ``"none"``) the callbacks switch off with a warning. A model whose
    ``trains_on_labels`` is true (``LinearEval``) trains on ``eval_dataset``'s training split
    when one is given.

    Args:
        dataset: where the images come from (:mod:`rotaux.data.sources`): ``CIFAR10``,
            ``CIFAR100``, ``STL10`` (torchvision downloads them), ``ImageFolder``,
            ``UnlabeledFolder``, ``FileList``, ``ArrayFolder`` (multi-channel arrays),
            ``Shards`` (written by ``rotaux shards``, local or in object storage) or
            ``Synthetic`` (generated in memory, for tests and smoke runs), or a class of your
            own; each takes its own options (``--data.dataset.root``).
        batch_size: images per device per step (the global batch is this x devices x nodes).
        num_workers: loader processes per device.
        image_size: training crop and evaluation side; ``None`` takes the dataset's (32 for
            CIFAR, 96 for STL-10, 224 for image folders).
        mean: per-channel normalisation mean, one value per image channel (in ``[0, 1]`` units
            for 8-bit images, in the data's own units for float arrays); ``None`` takes the
            dataset's.
        std: per-channel normalisation standard deviation; ``None`` takes the dataset's.
        val_resize: shorter side that evaluation images are resized to before the centre crop;
            ``None`` resizes to ``image_size`` (use 256 with 224 crops for ImageNet-style data).
        augmentations: one entry per kind of view, each repeated ``num_crops`` times, in order
            (``batch["views"]`` lists them so; put the large crops first); ``None`` is BYOL's
            asymmetric pair, with blur only when ``image_size`` is at least 96, and without the
            RGB-only ops (saturation, hue, grayscale, solarisation) for images that are not RGB.
        augment_on: where the random augmentations run. ``loader``: per image in the loader
            workers (torchvision). ``device``: the loader only decodes, resizes and centre-crops
            each image to a fixed square (the dataset's own size, else ``val_resize``) and the
            views and the rotation crop are cut and augmented batched on the training device
            (:mod:`rotaux.data.batched_augment`, each sample with its own parameters), which
            frees the CPU on GPU machines. Crops are then drawn from that square.
        seed: seed of the training order and augmentations (each epoch's shuffle and each
            sample's views derive from it, the epoch and the sample index, see
            :mod:`rotaux.data.sampler`); ``None`` takes the run's ``seed_everything`` seed (0
            without one). Checkpoints record it, and a resumed run continues with theirs.
        eval_dataset: labelled images for evaluation, with the same channels as ``dataset``
            (``--data.eval_dataset FileList --data.eval_dataset.path labels.csv``): its training
            split trains the online probe's classifier and fills the kNN bank, its validation
            split is the validation set. Needed to evaluate while pretraining on unlabeled
            images; ``None`` evaluates on ``dataset``'s own labels.
        decode_on: where the training images are decoded. ``loader``: in the loader workers.
            ``device`` (with ``augment_on`` device, for JPEG files: ``ImageFolder``,
            ``FileList``, ``UnlabeledFolder``, ``Shards``): the workers only read the files'
            bytes, and each batch is decoded on the training device (nvJPEG on CUDA) and resized
            there to the fixed square (:mod:`rotaux.data.device_decode`).
    """

    def __init__(
        self,
        dataset: DataSource = CIFAR10(),
        batch_size: int = 256,
        num_workers: int = 4,
        image_size: int | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        val_resize: int | None = None,
        augmentations: list[ViewAugmentation] | None = None,
        augment_on: Literal["loader", "device"] = "loader",
        seed: int | None = None,
        eval_dataset: DataSource | None = None,
        decode_on: Literal["loader", "device"] = "loader",
    ) -> None:
        super().__init__()
        for name, source in (("dataset", dataset), ("eval_dataset", eval_dataset)):
            if not isinstance(source, DataSource) and (name == "dataset" or source is not None):
                raise RotauxError(
                    f"{name} must be a data source ("
                    f"{', '.join(s.__name__ for s in DATA_SOURCES)} or a DataSource subclass of "
                    f"your own), got {source!r}."
                )
        if batch_size < 1:
            raise RotauxError(f"batch_size must be at least 1 image per device, got {batch_size}.")
        if num_workers < 0:
            raise RotauxError(f"num_workers must be >= 0, got {num_workers}.")
        self.dataset = dataset
        self.eval_dataset = eval_dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size or dataset.image_size
        self.mean = tuple(mean or dataset.mean)
        self.std = tuple(std or dataset.std)
        if len(self.mean) != len(self.std):
            raise RotauxError(
                f"mean has {len(self.mean)} channels but std has {len(self.std)}; give one value "
                "per image channel to both."
            )
        self.val_resize = val_resize or self.image_size
        self.augmentations = augmentations or byol_views(
            with_blur=self.image_size >= 96, rgb=dataset.is_rgb
        )
        if sum(aug.num_crops for aug in self.augmentations) < 1:
            raise RotauxError("augmentations must describe at least one view.")
        self.augment_on = augment_on
        if decode_on == "device" and augment_on != "device":
            raise RotauxError(
                "--data.decode_on device decodes batches on the training device, where the "
                "augmentations then have to run: add --data.augment_on device (or decode in the "
                "loader with --data.decode_on loader)."
            )
        self.decode_on = decode_on
        self._decode_side = 0
        self.rotation: RotationInput | None = None
        self._device_views: list[BatchedViewAugmentation] = []
        self._device_rotation_crop: BatchedViewAugmentation | None = None
        self._statistics: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.seed = seed
        self.classes: list[str] = []
        self.evaluation_data: Literal["train", "eval_dataset", "none"] | None = None
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._eval_train: Dataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes of the evaluation labels (known after ``setup``; 0 without
        labels)."""
        if self._train is None:
            raise RuntimeError("num_classes is known after SSLDataModule.setup().")
        return len(self.classes)

    @property
    def channels(self) -> int:
        """Channels of the images, as many as normalisation statistics."""
        return len(self.mean)

    def _rotation_crop_size(self) -> int:
        return (self.rotation.crop_size if self.rotation else None) or self.image_size

    def crop_sizes(self) -> list[int]:
        sizes = [aug.crop_size or self.image_size for aug in self.augmentations]
        if self.rotation is not None and self.rotation.source == "crop":
            sizes.append(self._rotation_crop_size())
        return sizes

    def prepare_data(self) -> None:
        self.dataset.prepare()

    def setup(self, stage: str | None = None) -> None:
        model = self.trainer.lightning_module if self.trainer is not None else None
        if model is not None:
            rotation_input = getattr(model, "rotation_input", None)
            self.rotation = rotation_input() if callable(rotation_input) else None
        self._check_model(model)
        trains_on_labels = bool(getattr(model, "trains_on_labels", False))
        evaluation = None if self.eval_dataset is None else self._load_eval_dataset()
        if evaluation is not None and trains_on_labels:
            # a classifier trains on the labelled set: the pretraining images are not read
            splits, train_source = evaluation, self.eval_dataset
        else:
            splits, train_source = self.dataset.load(), self.dataset
            self._check_images(self.dataset, splits.train)
        if evaluation is not None:
            self.evaluation_data = "eval_dataset"
            self.classes, eval_train = evaluation.classes, evaluation.train
            splits = SplitDatasets(splits.train, evaluation.val, evaluation.classes)
        else:
            self.evaluation_data = "train" if splits.classes else "none"
            self.classes, eval_train = splits.classes, splits.train
        if self.evaluation_data == "none" and trains_on_labels:
            raise RotauxError(
                f"{type(model).__name__} trains a classifier on labels, and the "
                f"{type(self.dataset).__name__} images have none. Give labelled images with "
                "--data.eval_dataset (for example --data.eval_dataset FileList "
                "--data.eval_dataset.path labels.csv --data.eval_dataset.label_column label) or "
                "a labelled --data.dataset."
            )
        self._check_crop_sizes(train_source, splits.train)
        rgb = train_source.is_rgb
        kinds = [aug for aug in self.augmentations for _ in range(aug.num_crops)]
        self._check_rotated_views(kinds)
        rotation_kind = None
        if self.rotation is not None and self.rotation.source == "crop":
            rotation_kind = replace(
                self.augmentations[0],
                crop_scale=self.rotation.crop_scale or self.augmentations[0].crop_scale,
            )
        if self.augment_on == "device":
            self._device_views = [
                BatchedViewAugmentation(aug, aug.crop_size or self.image_size, rgb) for aug in kinds
            ]
            self._device_rotation_crop = (
                None
                if rotation_kind is None
                else BatchedViewAugmentation(rotation_kind, self._rotation_crop_size(), rgb)
            )
            side = train_source.native_size or self.val_resize
            self._decode_side = side
            self._train = (
                EncodedSamples(splits.train, side, type(train_source).__name__)
                if self.decode_on == "device"
                else MultiViewDataset(splits.train, [eval_transform(side, side)])
            )
        else:
            views = [view_transform(aug, aug.crop_size or self.image_size, rgb) for aug in kinds]
            rotation_crop = (
                None
                if rotation_kind is None
                else view_transform(rotation_kind, self._rotation_crop_size(), rgb)
            )
            self._train = MultiViewDataset(splits.train, views, rotation_crop)
        self._val = EvalDataset(splits.val, eval_transform(self.image_size, self.val_resize))
        self._eval_train = eval_train
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if len(self._train) < self.batch_size * world_size:
            raise RotauxError(
                f"The training set has {len(self._train)} images, fewer than one global batch "
                f"({self.batch_size} per device x {world_size} devices). Lower --data.batch_size "
                "or use more data."
            )

    def _check_model(self, model: Any) -> None:
        """Refuse, before any data is read, fewer views than the model trains on
        (``num_global_views``; MAE takes one), crops the backbone cannot take and images whose
        channel count differs from the backbone's input."""
        needed = getattr(model, "num_global_views", 2) if model is not None else 1
        views = sum(aug.num_crops for aug in self.augmentations)
        if views < needed:
            raise RotauxError(
                f"{type(model).__name__} needs at least {needed} views per image but "
                f"--data.augmentations describes {views}; add entries or raise num_crops."
            )
        backbone = getattr(model, "backbone_config", None)
        if backbone is None:
            return
        if backbone.in_channels != self.channels:
            fields = (
                {field.name for field in dataclasses.fields(backbone)}
                if dataclasses.is_dataclass(backbone)
                else set()
            )
            option = (
                f"--model.backbone.channels {self.channels}"
                if "channels" in fields
                else f"--model.backbone.options '{{\"in_chans\": {self.channels}}}'"
                if "options" in fields
                else f"a backbone that takes {self.channels}-channel input"
            )
            raise RotauxError(
                f"The backbone {type(backbone).__name__} takes {backbone.in_channels}-channel "
                f"images but the data has {self.channels} channels (one per --data.mean/"
                f"--data.std value). Use {option}, or give --data.mean and --data.std one "
                f"value per channel of your images if {self.channels} is not their count."
            )
        for size in sorted(set(self.crop_sizes())):
            backbone.check_input_size(size)

    def _check_images(self, source: DataSource, train: Dataset) -> None:
        """Refuse a source whose channel count differs from the statistics', and a first
        training image that is not ``(C, H, W)`` with that many channels."""
        name = type(source).__name__
        if source.channels != self.channels:
            raise RotauxError(
                f"The {name} images have {source.channels} channels but --data.mean/--data.std "
                f"give {self.channels} values. Give one mean and one std per channel (and "
                f"--model.backbone.channels {source.channels})."
            )
        if isinstance(train, IterableDataset) or len(train) == 0:
            return
        image = train[0][0]
        if isinstance(image, torch.Tensor):
            described = f"shape {tuple(image.shape)}"
            fits = image.dim() == 3 and image.shape[0] == source.channels
        else:
            described = f"mode {image.mode}"
            fits = len(image.getbands()) == source.channels
        if not fits:
            raise RotauxError(
                f"The first training image of {name} has {described}, but {name} declares "
                f"{source.channels} channels: images must be PIL images or (C, H, W) tensors "
                "with that many channels (see the DataSource docstring)."
            )

    def _load_eval_dataset(self) -> SplitDatasets:
        try:
            evaluation = self.eval_dataset.load()
        except RotauxError as error:
            # the sources name their options as --data.dataset.*; this one is the eval set
            message = str(error).replace("--data.dataset.", "--data.eval_dataset.")
            raise type(error)(f"In --data.eval_dataset: {message}") from error
        name = type(self.eval_dataset).__name__
        if not evaluation.classes:
            raise RotauxError(
                f"--data.eval_dataset {name} has no labels; the evaluation set must be labelled "
                "(ImageFolder, FileList with a label_column, ArrayFolder with class_folders, ...)."
            )
        if self.eval_dataset.channels != self.channels:
            raise RotauxError(
                f"--data.eval_dataset {name} has {self.eval_dataset.channels}-channel images but "
                f"the training images have {self.channels}; the backbone takes one kind."
            )
        self._check_images(self.eval_dataset, evaluation.train)
        return evaluation

    def _check_crop_sizes(self, source: DataSource, train: Dataset) -> None:
        native = source.native_size
        if native is None:
            sides = source.image_sides(train)
            native = max(sides) if sides else None
        too_large = [size for size in self.crop_sizes() if native is not None and size > native]
        if too_large:
            raise RotauxError(
                f"Crop size {max(too_large)} is larger than the {type(source).__name__} "
                f"images (side {native}). Lower --data.image_size / the augmentations' crop_size "
                "/ --model.rotation_crop_size, or use larger images."
            )

    def _check_rotated_views(self, kinds: list[ViewAugmentation]) -> None:
        if self.rotation is None or self.rotation.source != "views":
            return
        sizes = {aug.crop_size or self.image_size for aug in kinds[: self.rotation.views]}
        if len(kinds) < self.rotation.views or len(sizes) > 1:
            raise RotauxError(
                f"rotation_source views rotates the first {self.rotation.views} views, which "
                f"must exist and have one size; the augmentations give {len(kinds)} views of "
                f"sizes {[aug.crop_size or self.image_size for aug in kinds]}."
            )

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("Call SSLDataModule.setup() before asking for data loaders.")
        if self.seed is None:
            self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        settings = {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": self.num_workers > 0,
            # workers' seeds come from here, not from the global generator that the model's random
            # draws use, so fetching data never shifts those
            "generator": torch.Generator().manual_seed(self.seed),
        }
        if not train:
            return DataLoader(dataset, **settings)
        if isinstance(dataset, EncodedSamples):
            settings["collate_fn"] = collate_encoded
        trainer = self.trainer
        sampler = EpochSampler(
            dataset,
            self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        return ResumableLoader(
            SeededSamples(dataset, self.seed),
            sampler=sampler,
            drop_last=True,
            batches_done=self._batches_done,
            **settings,
        )

    def _batches_done(self) -> int:
        """Batches of the current epoch the fit loop has trained on (more than 0 only when it
        resumes mid-epoch)."""
        if self.trainer is None or not self.trainer.training:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def state_dict(self) -> dict[str, Any]:
        return {} if self.seed is None else {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seed = state_dict.get("seed", self.seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._train, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._val, train=False)

    def eval_train_dataset(self) -> Dataset:
        """The labelled training images of evaluation (``eval_dataset``'s training split when
        one is given, else the training set) with the evaluation transform (no augmentation) as
        ``{"image", "label"}`` samples: for kNN banks and cached linear-evaluation features."""
        if self._eval_train is None or self._val is None:
            raise RuntimeError("Call SSLDataModule.setup() before asking for datasets.")
        return EvalDataset(self._eval_train, self._val.transform)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (0..255) or float (0..1) ``(B, C, H, W)`` -> normalised float32, on the images'
        device."""
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        if images.device not in self._statistics:
            # made once per device: building them from Python lists blocks the host on CUDA
            shape = (1, self.channels, 1, 1)
            self._statistics[images.device] = (
                torch.tensor(self.mean, device=images.device).view(shape),
                torch.tensor(self.std, device=images.device).view(shape),
            )
        mean, std = self._statistics[images.device]
        return (images.float() - mean * scale) / (std * scale)

    def _device_generator(self, device: torch.device) -> torch.Generator:
        """The generator of the on-device augmentations: seeded by (seed, rank, batches fetched
        so far), so every rank and batch draws its own parameters and a resume repeats them."""
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        fetched = (
            trainer.fit_loop.epoch_loop.batch_progress.total.ready if trainer is not None else 0
        )
        generator = torch.Generator(device=device)
        generator.manual_seed(mix_seed(self.seed or 0, rank, fetched))
        return generator

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        if "encoded" in batch:
            # decode_jpeg takes the bytes on the CPU and decodes on the device it is given
            trainer = self.trainer
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            batch["views"] = [decode_to_squares(batch.pop("encoded"), self._decode_side, device)]
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        if "image" in batch:
            batch["image"] = self.normalize(batch["image"])
            return batch
        if self.augment_on == "device":
            source = batch["views"][0]
            generator = self._device_generator(source.device)
            batch["views"] = [augment(source, generator) for augment in self._device_views]
            if self._device_rotation_crop is not None:
                batch["rotation_crop"] = self._device_rotation_crop(source, generator)
        batch["views"] = [self.normalize(view) for view in batch["views"]]
        rotation = self.rotation
        if rotation is not None:
            if rotation.source == "crop":
                sources = [self.normalize(batch.pop("rotation_crop"))]
            else:
                sources = batch["views"][: rotation.groups]
            batch["rotation"], batch["rotation_labels"] = rotate_views(sources, rotation.copies)
        return batch
