"""JPEG decoding on the training device (``--data.decode_on device``).

The loader workers only read each training image's file bytes (from disk or from shards) and
ship them as variable-length uint8 1-D tensors, kept as a list by :func:`collate_encoded`.
Before the batch moves to the device, :func:`decode_to_squares` decodes the whole list with
``torchvision.io.decode_jpeg`` on that device (nvJPEG on CUDA, libjpeg-turbo on CPU), then
resizes the shorter side and centre-crops each image to the fixed square that the loader
would have made (``eval_transform(side, side)``), batched over the images that share a size.
The device-side augmentations (:mod:`rotaux.data.batched_augment`) take it from there.

On CPU the result equals decoding in the loader exactly (libjpeg-turbo in torchvision and in
Pillow decode alike, and the resize is the same function); nvJPEG's IDCT and chroma upsampling
differ from libjpeg-turbo's by a few intensity levels. Files that are not 3- or 1-component
JPEGs (a PNG among JPEGs, a CMYK JPEG) are decoded in the loader instead, by the source's own
reader, and shipped as the decoded square. A source whose checked images (up to 16, spread
over the training set) are mostly not JPEGs is refused before training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from rotaux.data.sources.listed_files import listed_files
from rotaux.data.transforms import eval_transform
from rotaux.errors import RotauxError

JPEG_START = b"\xff\xd8\xff"
"""Start-of-image marker and the first byte of the next marker: every JPEG file begins so."""

DEVICE_COMPONENTS = (1, 3)
"""Colour components of the JPEGs decoded on the device (grayscale and YCbCr); others (CMYK)
are decoded in the loader."""

_CHECKED_SAMPLES = 16
"""Samples whose format is checked before training."""


def jpeg_components(data: bytes | memoryview) -> int | None:
    """Colour components of a JPEG's frame header, ``None`` when ``data`` is no JPEG."""
    if bytes(data[: len(JPEG_START)]) != JPEG_START:
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            position += 2
            continue
        # start-of-frame markers; C4 (Huffman tables), C8 (reserved) and CC (arithmetic coding
        # conditioning) share the range: length, precision, height, width, then components
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[position + 9] if position + 9 < len(data) else None
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


class EncodedSamples(Dataset):
    """Training samples that carry the image file's bytes instead of the image:
    ``{"encoded", "label", "index"}``, ``encoded`` a uint8 1-D tensor of JPEG bytes or, for a
    file the device does not decode, the decoded ``(3, side, side)`` uint8 square.

    Args:
        base: the source's ``(image, label)`` training dataset: image files (``ImageFolder``,
            ``FileList``, ``UnlabeledFolder``, a ``Subset`` of one) or a dataset with an
            ``encoded(index) -> (bytes tensor, label, name)`` method (``Shards``).
        side: side of the square images before the device-side augmentations.
        source_name: the data source's name, for error messages.
    """

    def __init__(self, base: Dataset, side: int, source_name: str) -> None:
        self.base = base
        self.side = side
        self.files = None if hasattr(base, "encoded") else listed_files(base)
        self._in_loader = eval_transform(side, side)
        if self.files is None and not hasattr(base, "encoded"):
            raise RotauxError(
                f"--data.decode_on device decodes JPEG files, and {source_name} gives decoded "
                "images, not files. Use --data.decode_on loader, or a source of JPEG files "
                "(ImageFolder, FileList, UnlabeledFolder, Shards)."
            )
        step = max(1, len(self) // _CHECKED_SAMPLES)
        checked = range(0, len(self), step)[:_CHECKED_SAMPLES]
        others = []
        for index in checked:
            data, _, name = self.encoded(index)
            if jpeg_components(memoryview(data.numpy())) is None:
                others.append(name)
        # a few other files among JPEGs are decoded in the loader; mostly others is a mistake
        if 2 * len(others) > len(checked):
            raise RotauxError(
                f"--data.decode_on device decodes JPEG images, and {len(others)} of "
                f"{len(checked)} {source_name} images checked are no JPEG ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}). Use --data.decode_on loader for these "
                "images, or convert them to JPEG."
            )

    def __len__(self) -> int:
        return len(self.base)

    def encoded(self, index: int) -> tuple[Tensor, int, str]:
        """The sample's file bytes as a uint8 1-D tensor, its label and its file name."""
        if self.files is None:
            return self.base.encoded(index)
        path, label = self.files[index]
        with open(path, "rb") as file:
            data = bytearray(file.read())
        return torch.frombuffer(data, dtype=torch.uint8), label, path

    def __getitem__(self, index: int) -> dict[str, Any]:
        data, label, _ = self.encoded(index)
        if jpeg_components(memoryview(data.numpy())) not in DEVICE_COMPONENTS:
            image, label = self.base[index]
            data = self._in_loader(image)
        return {"encoded": data, "label": label, "index": index}


def collate_encoded(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`EncodedSamples`' samples: ``encoded`` stays a list (the files' lengths
    differ), the rest is collated as usual."""
    rest = default_collate([{k: v for k, v in s.items() if k != "encoded"} for s in samples])
    return {"encoded": [sample["encoded"] for sample in samples], **rest}


def decode_to_squares(encoded: list[Tensor], side: int, device: torch.device) -> Tensor:
    """``(B, 3, side, side)`` uint8 on ``device``: the JPEG entries of ``encoded`` (1-D, on the
    CPU) decoded there and resized and centre-cropped as ``eval_transform(side, side)``, the
    decoded entries (3-D) moved there."""
    jpegs = [position for position, data in enumerate(encoded) if data.dim() == 1]
    squares = torch.empty((len(encoded), 3, side, side), dtype=torch.uint8, device=device)
    decoded = (
        decode_jpeg([encoded[p] for p in jpegs], mode=ImageReadMode.RGB, device=device)
        if jpegs
        else []
    )
    by_size: dict[tuple[int, ...], list[int]] = {}
    for number, image in enumerate(decoded):
        by_size.setdefault(tuple(image.shape), []).append(number)
    for numbers in by_size.values():
        images = torch.stack([decoded[number] for number in numbers])
        resized = F.center_crop(F.resize(images, side, antialias=True), [side, side])
        squares[torch.tensor([jpegs[number] for number in numbers], device=device)] = resized
    for position, data in enumerate(encoded):
        if data.dim() == 3:
            squares[position] = data.to(device)
    return squares
