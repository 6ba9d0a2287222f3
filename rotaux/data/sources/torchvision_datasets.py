"""CIFAR-10, CIFAR-100 and STL-10 through torchvision, which downloads them."""

from __future__ import annotations

from dataclasses import dataclass

from torchvision import datasets

from rotaux.data.sources.base import DataSource, SplitDatasets
from rotaux.errors import RotauxError

_NO_DATA = (
    "Either let torchvision download it there (download true, needs network access), copy "
    "torchvision's {name} files into that folder, or train on an image folder: "
    "--data.dataset ImageFolder --data.dataset.root <dir with train/<class>/<image>>."
)


class _TorchvisionSource(DataSource):
    """Shared loading with a clear error when the files are missing and cannot be downloaded."""

    root: str
    download: bool

    def _splits(self, download: bool) -> SplitDatasets:
        raise NotImplementedError

    def prepare(self) -> None:
        if self.download:
            self._load(download=True)

    def load(self) -> SplitDatasets:
        return self._load(download=False)

    def _load(self, download: bool) -> SplitDatasets:
        try:
            return self._splits(download)
        except (RuntimeError, OSError) as error:
            name = type(self).__name__
            raise RotauxError(
                f"Could not load {name} from --data.dataset.root {self.root!r} ({error}). "
                + _NO_DATA.format(name=name)
            ) from error


@dataclass(frozen=True)
class CIFAR10(_TorchvisionSource):
    """CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test images of 32x32 in 10
    classes; the test split is the validation split.

    Args:
        root: folder holding (or receiving) torchvision's ``cifar-10-batches-py``.
        download: let torchvision download it into ``root`` when missing.
    """

    root: str = "./data"
    download: bool = True

    @property
    def image_size(self) -> int:
        return 32

    @property
    def native_size(self) -> int:
        return 32

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.4914, 0.4822, 0.4465)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.2470, 0.2435, 0.2616)

    def _splits(self, download: bool) -> SplitDatasets:
        train = datasets.CIFAR10(self.root, train=True, download=download)
        val = datasets.CIFAR10(self.root, train=False, download=download)
        return SplitDatasets(train, val, list(train.classes))


@dataclass(frozen=True)
class CIFAR100(_TorchvisionSource):
    """CIFAR-100: 50,000 training and 10,000 test images of 32x32 in 100 classes.

    Args:
        root: folder holding (or receiving) torchvision's ``cifar-100-python``.
        download: let torchvision download it into ``root`` when missing.
    """

    root: str = "./data"
    download: bool = True

    @property
    def image_size(self) -> int:
        return 32

    @property
    def native_size(self) -> int:
        return 32

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.5071, 0.4865, 0.4409)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.2673, 0.2564, 0.2762)

    def _splits(self, download: bool) -> SplitDatasets:
        train = datasets.CIFAR100(self.root, train=True, download=download)
        val = datasets.CIFAR100(self.root, train=False, download=download)
        return SplitDatasets(train, val, list(train.classes))


@dataclass(frozen=True)
class STL10(_TorchvisionSource):
    """STL-10 (Coates et al. 2011): 96x96 images; pretraining uses the 5,000 labelled training
    images and the 100,000 unlabeled ones (label -1, which the evaluation callbacks skip), and
    the 8,000 test images are the validation split.

    Args:
        root: folder holding (or receiving) torchvision's ``stl10_binary``.
        download: let torchvision download it into ``root`` when missing.
    """

    root: str = "./data"
    download: bool = True

    @property
    def image_size(self) -> int:
        return 96

    @property
    def native_size(self) -> int:
        return 96

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.4467, 0.4398, 0.4066)

    @property
    def std(self) -> tuple[float, ...]:
        return (0.2603, 0.2566, 0.2713)

    def _splits(self, download: bool) -> SplitDatasets:
        train = datasets.STL10(self.root, split="train+unlabeled", download=download)
        val = datasets.STL10(self.root, split="test", download=download)
        return SplitDatasets(train, val, list(train.classes))
