"""Images packed into shards by ``rotaux shards``, read from a local folder or object storage.

The shards are litdata's optimised format (https://github.com/Lightning-AI/litdata): each split
folder holds ``chunk-*.bin`` files and an ``index.json`` with every sample's byte offset, so any
sample can be read on its own, from a local file or, for an ``s3://`` (or ``gs://``,
``azure://``) URI, with one ranged read of just that sample's bytes. That random access is what
rotaux needs: the shards are a map-style dataset, so the training order, the split of every
epoch across DDP ranks, the per-sample augmentation seeds and the exact mid-epoch resume are
those of every other source (:mod:`rotaux.data.sampler`), and no node holds more than the
samples it reads.

Each sample stores the image file's bytes unchanged (decoded in the loader workers, or on the
training device with ``--data.decode_on device``), its label and its file name; ``index.json``
also records rotaux's description of the split (format version, class names, sample count).
"""

from __future__ import annotations

import io
import json
import os
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from rotaux.data.sources.base import DataSource, SplitDatasets
from rotaux.data.sources.image_files import CorruptImageError
from rotaux.errors import RotauxError

SHARD_FORMAT = 1
"""Version of rotaux's shard layout, recorded in every split's ``index.json``."""

METADATA_KEY = "rotaux"
"""Key of rotaux's description of a split in litdata's ``index.json``."""

INDEX_FILE = "index.json"

SAMPLE_FIELDS = ("image", "label", "name")
"""Fields of every sample: the encoded image file, its class index (-1: unlabeled) and the
file's name relative to the converted input (for error messages and checks)."""

SHARDS_FIX = (
    "Write the shards again with `rotaux shards --input <image folder or file list> --out "
    "<folder>` (and upload the whole folder again if it lives in object storage)"
)


def is_remote(location: str) -> bool:
    """Whether ``location`` is an object-storage URI (``s3://...``) rather than a local path;
    litdata's ``local:/path`` reads a local folder as it reads object storage."""
    return "://" in location or location.startswith("local:")


def split_location(root: str, split: str) -> str:
    """The folder or URI of ``split`` under a shards ``root``."""
    return f"{root.rstrip('/')}/{split}" if is_remote(root) else os.path.join(root, split)


@dataclass(frozen=True)
class Shards(DataSource):
    """Shards written by ``rotaux shards``: ``path/train/`` and, when the conversion made one,
    ``path/val/``, each litdata's ``index.json`` with ``chunk-*.bin`` files. ``path`` is a local
    folder or an object-storage URI (``s3://bucket/imagenet``, read with the usual
    ``AWS_*`` environment variables; ``gs://`` and ``azure://`` likewise), passed through to
    litdata. Images are decoded to RGB in the loader workers (or on the training device with
    ``--data.decode_on device``). Local shards are checked before
    training (every chunk file present with the size the index records); remote ones when a
    sample is first read.

    Args:
        path: the folder or URI that ``rotaux shards --out`` wrote.
        cache_dir: where litdata keeps the downloaded ``index.json`` of remote shards; ``None``
            takes litdata's default (``~/.lightning/chunks``, or ``$LITDATA_CACHE_DIR``).
    """

    path: str = "./shards"
    cache_dir: str | None = None

    def load(self) -> SplitDatasets:
        if not is_remote(self.path) and not os.path.isdir(self.path):
            raise RotauxError(
                f"Shards folder {self.path!r} does not exist. Set --data.dataset.path to the "
                "folder that `rotaux shards --out` wrote (or an s3:// URI of its upload)."
            )
        train = ShardDataset(split_location(self.path, "train"), self.cache_dir)
        if not train.metadata.get("has_val", False):
            return SplitDatasets(train, _NoSamples(), train.classes)
        val = ShardDataset(split_location(self.path, "val"), self.cache_dir)
        if val.classes != train.classes:
            raise RotauxError(
                f"The shards' splits disagree: {val.location} has classes {val.classes[:5]}... "
                f"but {train.location} has {train.classes[:5]}... (they come from different "
                f"conversions). {SHARDS_FIX}."
            )
        return SplitDatasets(train, val, train.classes)

    def image_sides(self, train: Dataset) -> list[int]:
        return train.shorter_sides() if isinstance(train, ShardDataset) else []


class _NoSamples(Dataset):
    """The validation split of shards converted without one."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> Any:
        raise IndexError(index)


class ShardDataset(Dataset):
    """``(image, label)`` samples of one split of rotaux shards, by index, as RGB PIL images.

    litdata's reader is opened lazily in every process that reads (loader workers included), so
    the dataset pickles without open files or threads.

    Args:
        location: the split's folder or URI (holding ``index.json``).
        cache_dir: litdata's cache folder for remote shards.
    """

    def __init__(self, location: str, cache_dir: str | None = None) -> None:
        self.location = location
        self.cache_dir = cache_dir
        self._reader: Any = None
        self._reader_pid: int | None = None
        index = self._read_index()
        self.metadata: dict[str, Any] = index[METADATA_KEY]
        self.classes: list[str] = list(self.metadata["classes"])
        self.chunk_files = [chunk["filename"] for chunk in index["chunks"]]
        self._chunk_starts = [0]
        for chunk in index["chunks"]:
            self._chunk_starts.append(self._chunk_starts[-1] + chunk["chunk_size"])
        self._check(index)

    def __len__(self) -> int:
        return self._chunk_starts[-1]

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        data, label, name = self._sample(index)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB"), label
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise CorruptImageError(
                f"Cannot decode image {name!r} (sample {index} of {self.chunk_file(index)}): "
                f"{error}. Replace the file in the input and write the shards again."
            ) from error

    def encoded(self, index: int) -> tuple[torch.Tensor, int, str]:
        """The sample's stored file bytes as a uint8 1-D tensor, its label and its name."""
        data, label, name = self._sample(index)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, name

    def chunk_file(self, index: int) -> str:
        """The chunk file holding sample ``index``."""
        chunk = bisect_right(self._chunk_starts, index) - 1
        return split_location(self.location, self.chunk_files[chunk])

    def shorter_sides(self, count: int = 16) -> list[int]:
        """Shorter side of up to ``count`` samples spread over the split, from image headers."""
        step = max(1, len(self) // count)
        sides = []
        for index in range(0, len(self), step)[:count]:
            data, _, _ = self._sample(index)
            with Image.open(io.BytesIO(data)) as image:
                sides.append(min(image.size))
        return sides

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = state["_reader_pid"] = None
        return state

    def _streaming(self) -> Any:
        if self._reader is None or self._reader_pid != os.getpid():
            # imported on first read: litdata (with boto3) takes seconds to import
            from litdata import StreamingDataset

            self._reader = StreamingDataset(self.location, cache_dir=self.cache_dir)
            self._reader_pid = os.getpid()
        return self._reader

    def _sample(self, index: int) -> tuple[bytes, int, str]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of a split of {len(self)} samples")
        try:
            item = self._streaming()[index]
        except Exception as error:
            raise RotauxError(
                f"Cannot read sample {index} from shard {self.chunk_file(index)}: "
                f"{type(error).__name__}: {error}. The file is missing, truncated or "
                f"unreachable; {SHARDS_FIX}."
            ) from error
        return bytes(item["image"]), int(item["label"]), str(item["name"])

    def _read_index(self) -> dict[str, Any]:
        if is_remote(self.location):
            # litdata fetches the index into its cache; the reader made here is reused
            try:
                reader = self._streaming()
            except Exception as error:
                raise RotauxError(
                    f"Cannot read the shards index {self.location}/{INDEX_FILE}: "
                    f"{type(error).__name__}: {error}. Check the URI and the storage "
                    "credentials (for s3:// the AWS_* environment variables)."
                ) from error
            index_path = os.path.join(reader.input_dir.path, INDEX_FILE)
        else:
            index_path = os.path.join(self.location, INDEX_FILE)
            if not os.path.isfile(index_path):
                raise RotauxError(
                    f"{self.location} holds no {INDEX_FILE}, so it is no split of rotaux "
                    f"shards. {SHARDS_FIX}."
                )
        try:
            with open(index_path, encoding="utf-8") as file:
                index = json.load(file)
        except (OSError, ValueError) as error:
            raise RotauxError(f"Cannot read {index_path}: {error}. {SHARDS_FIX}.") from error
        metadata = index.get(METADATA_KEY) if isinstance(index, dict) else None
        if not isinstance(metadata, dict) or "chunks" not in index:
            raise RotauxError(
                f"{index_path} is not the index of rotaux shards (it has no {METADATA_KEY!r} "
                f"entry; litdata datasets written otherwise are not read). {SHARDS_FIX}."
            )
        if metadata.get("format") != SHARD_FORMAT:
            raise RotauxError(
                f"{index_path} is in shard format {metadata.get('format')}, this rotaux reads "
                f"format {SHARD_FORMAT}. {SHARDS_FIX}."
            )
        return index

    def _check(self, index: dict[str, Any]) -> None:
        """Refuse an index whose sample count or chunk files do not match it."""
        if self.metadata.get("samples") != len(self):
            raise RotauxError(
                f"The index of {self.location} lists {len(self)} samples in its chunks but "
                f"recorded {self.metadata.get('samples')} at conversion: the index does not "
                f"match the shards. {SHARDS_FIX}."
            )
        if is_remote(self.location):
            return
        problems = []
        for chunk in index["chunks"]:
            path = os.path.join(self.location, chunk["filename"])
            if not os.path.isfile(path):
                problems.append(f"{path}: missing")
            elif os.path.getsize(path) != chunk["chunk_bytes"]:
                problems.append(
                    f"{path}: {os.path.getsize(path)} bytes, the index says {chunk['chunk_bytes']}"
                )
        if problems:
            listed = "\n  ".join(problems[:10])
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise RotauxError(
                f"{len(problems)} shard files of {self.location} do not match its "
                f"{INDEX_FILE} (missing, truncated or from another conversion):\n  {listed}"
                f"{more}\nCopy them again from where the shards were written, or {SHARDS_FIX}."
            )
