"""``rotaux shards``: pack an image folder or a file list into the shards that
:class:`~rotaux.data.sources.Shards` reads.

The input is read by the data source that trains on it directly (``ImageFolder`` for a folder
with ``train/``, ``FileList`` for a CSV/TSV or text list), so the splits, labels, class names
and the check of every image (``--verify``) are the same as when training from the files; the
shards then store each file's bytes unchanged, in that order, in litdata's chunk format.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rotaux.data.sources.base import DataSource
from rotaux.data.sources.file_list import FileList
from rotaux.data.sources.image_folder import ImageFolder
from rotaux.data.sources.listed_files import listed_files
from rotaux.data.sources.shards import INDEX_FILE, METADATA_KEY, SHARD_FORMAT
from rotaux.errors import RotauxError

DEFAULT_SHARD_SIZE = "64MB"
"""Bytes per chunk file: litdata's default, large enough for efficient reads from object
storage, small enough that a chunk file is quick to copy again."""

_READ_BLOCK = 1024
"""Files read ahead at a time: bounds the memory the conversion holds."""


@dataclass(frozen=True)
class SplitFiles:
    """The files of one split, in the order they are written."""

    name: str
    files: list[tuple[str, int]]


def input_source(
    input_path: str,
    val_fraction: float | None = None,
    split_seed: int = 0,
    verify: str = "full",
    skip_corrupt: bool = False,
    root: str | None = None,
    path_column: str = "path",
    label_column: str | None = None,
    split_column: str | None = None,
) -> DataSource:
    """The data source that reads ``input_path``: ``ImageFolder`` for a folder (``train/`` with
    one sub-folder per class, optionally ``val/``), ``FileList`` for a list file."""
    on_corrupt = "skip" if skip_corrupt else "error"
    if os.path.isdir(input_path):
        return ImageFolder(
            input_path,
            val_fraction=0.1 if val_fraction is None else val_fraction,
            split_seed=split_seed,
            verify_images=verify,
            on_corrupt_image=on_corrupt,
        )
    if os.path.isfile(input_path):
        return FileList(
            input_path,
            base_dir=root,
            path_column=path_column,
            label_column=label_column,
            split_column=split_column,
            val_fraction=0.0 if val_fraction is None else val_fraction,
            split_seed=split_seed,
            verify_images=verify,
            on_corrupt_image=on_corrupt,
        )
    raise RotauxError(
        f"Input {input_path!r} does not exist. Give a folder holding train/<class>/<image> (and "
        "optionally val/<class>/<image>) or a CSV/TSV/text file listing image paths."
    )


def split_files(source: DataSource) -> tuple[list[SplitFiles], list[str]]:
    """The train and (when not empty) val files of ``source``, checked, and its classes."""
    splits = source.load()
    result = []
    for name, dataset in (("train", splits.train), ("val", splits.val)):
        files = listed_files(dataset)
        if files is None:
            raise RotauxError(
                f"{type(source).__name__} does not read image files; `rotaux shards` converts "
                "an image folder or a file list."
            )
        if files:
            result.append(SplitFiles(name, files))
    if not result or result[0].name != "train":
        raise RotauxError(
            "The input has no training images after the checks. Add images, or check the "
            "validation split options (--val-fraction, the split column)."
        )
    return result, list(splits.classes)


def _file_bytes(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _read_ahead(paths: list[str], threads: int) -> Iterator[bytes]:
    """The bytes of ``paths`` in order, read by ``threads`` threads a block at a time."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), _READ_BLOCK):
            yield from pool.map(_file_bytes, paths[start : start + _READ_BLOCK])


def write_split(
    split: SplitFiles,
    folder: Path,
    names_from: str,
    classes: list[str],
    has_val: bool,
    shard_size: str | int = DEFAULT_SHARD_SIZE,
    threads: int = 8,
    progress: bool = True,
) -> int:
    """Write one split's files into ``folder`` as litdata chunks with rotaux's description in
    ``index.json``. Sample ``i`` is ``split.files[i]``. Returns the number of chunk files."""
    from litdata.streaming.writer import BinaryWriter

    folder.mkdir(parents=True)
    writer = BinaryWriter(str(folder), chunk_bytes=shard_size)
    paths = [path for path, _ in split.files]
    bar = tqdm(total=len(paths), desc=f"{split.name}", unit="img", disable=not progress)
    with warnings.catch_warnings():
        # litdata notes every item that overshoots a chunk's size; the chunk simply ends there
        warnings.filterwarnings("ignore", message="An item was larger than the target chunk")
        for index, data in enumerate(_read_ahead(paths, threads)):
            path, label = split.files[index]
            name = os.path.relpath(path, names_from)
            writer.add_item(index, {"image": data, "label": label, "name": name})
            bar.update()
        writer.done()
        writer.merge()
    bar.close()
    index_path = folder / INDEX_FILE
    index = json.loads(index_path.read_text())
    index[METADATA_KEY] = {
        "format": SHARD_FORMAT,
        "split": split.name,
        "samples": len(split.files),
        "classes": classes,
        "has_val": has_val,
    }
    temporary = index_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(index, sort_keys=True))
    os.replace(temporary, index_path)
    return len(index["chunks"])


def convert(
    source: DataSource,
    out: str,
    names_from: str,
    shard_size: str | int = DEFAULT_SHARD_SIZE,
    threads: int = 8,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Write ``source``'s splits as shards under ``out`` (``out/train``, ``out/val``); file names
    are stored relative to ``names_from``. Returns the samples per split."""
    out_dir = Path(out)
    existing = [out_dir / name for name in ("train", "val") if (out_dir / name).exists()]
    if existing and not overwrite:
        raise RotauxError(
            f"{out} already holds shards ({', '.join(str(path) for path in existing)}). Choose "
            "another --out or pass --overwrite to replace them."
        )
    splits, classes = split_files(source)
    for path in existing:
        shutil.rmtree(path)
    has_val = len(splits) == 2
    counts = {}
    for split in splits:
        write_split(
            split, out_dir / split.name, names_from, classes, has_val, shard_size, threads, progress
        )
        counts[split.name] = len(split.files)
    return counts


def main(argv: list[str] | None = None) -> int:
    """``rotaux shards --input IN --out OUT``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="rotaux shards",
        description=(
            "Pack an image folder (train/<class>/<image>, optionally val/<class>/<image>) or a "
            "file list (CSV/TSV with a header, or one path per line) into shards for "
            "--data.dataset Shards: litdata chunk files of about --shard-size each, holding "
            "every image file's bytes unchanged with its label. Every image is checked first "
            "(--verify). Copy OUT anywhere, object storage included (aws s3 sync OUT "
            "s3://bucket/prefix), and train with --data.dataset.path pointing there."
        ),
    )
    parser.add_argument("--input", required=True, help="image folder or file list")
    parser.add_argument("--out", required=True, help="folder to write train/ and val/ into")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="share of every class held out for val/ when the input has no validation split "
        "(default: 0.1 for a folder without val/, 0 for a file list)",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of that hold-out")
    parser.add_argument("--root", default=None, help="file list: folder of relative paths")
    parser.add_argument("--path-column", default="path", help="file list: column of the paths")
    parser.add_argument("--label-column", default=None, help="file list: column of the labels")
    parser.add_argument("--split-column", default=None, help="file list: train/val column")
    parser.add_argument(
        "--verify",
        choices=("full", "header", "none"),
        default="full",
        help="check every image before writing: decode it (full), parse its header, or not",
    )
    parser.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="leave unreadable images out (listed in a warning) instead of stopping",
    )
    parser.add_argument(
        "--shard-size", default=DEFAULT_SHARD_SIZE, help="bytes per chunk file, e.g. 64MB"
    )
    parser.add_argument("--threads", type=int, default=8, help="threads reading the files")
    parser.add_argument("--overwrite", action="store_true", help="replace existing shards")
    args = parser.parse_args(argv)
    try:
        source = input_source(
            args.input,
            args.val_fraction,
            args.split_seed,
            args.verify,
            args.skip_corrupt,
            args.root,
            args.path_column,
            args.label_column,
            args.split_column,
        )
        names_from = (
            args.input
            if os.path.isdir(args.input)
            else (args.root or os.path.dirname(os.path.abspath(args.input)))
        )
        counts = convert(
            source, args.out, names_from, args.shard_size, args.threads, args.overwrite
        )
    except RotauxError as error:
        print(f"rotaux: error: {error}", file=sys.stderr)
        return 2
    written = ", ".join(f"{count} {name}" for name, count in counts.items())
    print(
        f"Wrote shards of {written} images to {args.out}. Train on them with --data.dataset "
        f"Shards --data.dataset.path {args.out}"
    )
    return 0
