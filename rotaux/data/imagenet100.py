"""``rotaux imagenet100``: build ImageNet-100 (the 100-class subset of CMC, Tian et al.,
"Contrastive Multiview Coding", ECCV 2020, which solo-learn's ImageNet-100 results use) from an
ImageNet-1k folder, as symbolic links, copies or shards."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Literal

from rotaux.data.shards_convert import DEFAULT_SHARD_SIZE, convert, input_source
from rotaux.errors import RotauxError

SPLITS = ("train", "val")
BuildMode = Literal["symlink", "copy", "shards"]


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids, in CMC's order (``rotaux/data/imagenet100_classes.txt``)."""
    text = resources.files("rotaux.data").joinpath("imagenet100_classes.txt").read_text()
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def check_imagenet(imagenet: Path, classes: list[str]) -> None:
    """Refuse an ImageNet folder without ``train/`` and ``val/`` class folders for every one of
    ``classes``, naming what is missing."""
    if not imagenet.is_dir():
        raise RotauxError(
            f"ImageNet folder {str(imagenet)!r} does not exist. Give --imagenet the folder "
            "holding ImageNet-1k's train/ and val/ (one sub-folder per class in each)."
        )
    missing = []
    for split in SPLITS:
        folder = imagenet / split
        if not folder.is_dir():
            raise RotauxError(
                f"{imagenet} has no {split}/ folder. Give --imagenet the folder holding "
                "ImageNet-1k's train/ and val/, each with one sub-folder per class (n01440764, "
                "...); sort the validation images into class folders first."
            )
        missing += [f"{split}/{wnid}" for wnid in classes if not (folder / wnid).is_dir()]
    if missing:
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        listed = ", ".join(missing[:20]) + more
        raise RotauxError(
            f"{imagenet} lacks {len(missing)} of the ImageNet-100 class folders: {listed}. "
            "ImageNet-100 needs all 100 classes of rotaux/data/imagenet100_classes.txt in both "
            "train/ and val/: give the full ImageNet-1k, with the validation images sorted into "
            "class folders."
        )


def link_or_copy(imagenet: Path, out: Path, classes: list[str], copy: bool) -> None:
    """``out/<split>/<wnid>`` for every class: a link to ImageNet's folder, or a copy of it."""
    for split in SPLITS:
        (out / split).mkdir(parents=True)
        for wnid in classes:
            source, target = (imagenet / split / wnid).resolve(), out / split / wnid
            if copy:
                shutil.copytree(source, target)
            else:
                os.symlink(source, target, target_is_directory=True)


def build(
    imagenet: str,
    out: str,
    mode: BuildMode = "symlink",
    verify: str = "full",
    shard_size: str = DEFAULT_SHARD_SIZE,
    threads: int = 8,
    progress: bool = True,
) -> None:
    """Build ImageNet-100 from ``imagenet`` (ImageNet-1k's ``train/`` and ``val/``) into
    ``out``: an image folder of links or copies, or shards (``verify``, ``shard_size`` and
    ``threads`` as ``rotaux shards``)."""
    classes = imagenet100_classes()
    source_dir, out_dir = Path(imagenet), Path(out)
    check_imagenet(source_dir, classes)
    taken = [out_dir / split for split in SPLITS if (out_dir / split).exists()]
    if taken:
        raise RotauxError(
            f"{out} already holds {', '.join(str(path) for path in taken)}. Choose an empty "
            "--out or remove them."
        )
    if mode != "shards":
        link_or_copy(source_dir, out_dir, classes, copy=mode == "copy")
        return
    with tempfile.TemporaryDirectory(prefix="imagenet100-") as links:
        link_or_copy(source_dir, Path(links), classes, copy=False)
        convert(
            input_source(links, verify=verify),
            out,
            names_from=links,
            shard_size=shard_size,
            threads=threads,
            progress=progress,
        )


def main(argv: list[str] | None = None) -> int:
    """``rotaux imagenet100 --imagenet DIR --out DIR [--mode symlink|copy|shards]``."""
    parser = argparse.ArgumentParser(
        prog="rotaux imagenet100",
        description=(
            "Build ImageNet-100, the 100-class ImageNet subset of CMC (Tian et al. 2020) that "
            "solo-learn reports on (class list: rotaux/data/imagenet100_classes.txt), from "
            "ImageNet-1k's train/ and val/ class folders: symbolic links to the class folders "
            "(default, no extra space), copies, or shards for --data.dataset Shards."
        ),
    )
    parser.add_argument("--imagenet", required=True, help="folder with ImageNet-1k train/, val/")
    parser.add_argument("--out", required=True, help="folder to write train/ and val/ into")
    parser.add_argument("--mode", choices=("symlink", "copy", "shards"), default="symlink")
    parser.add_argument(
        "--verify",
        choices=("full", "header", "none"),
        default="full",
        help="shards: check every image first (decode it, parse its header, or not)",
    )
    parser.add_argument("--shard-size", default=DEFAULT_SHARD_SIZE, help="shards: bytes per file")
    parser.add_argument("--threads", type=int, default=8, help="shards: threads reading files")
    args = parser.parse_args(argv)
    try:
        build(args.imagenet, args.out, args.mode, args.verify, args.shard_size, args.threads)
    except RotauxError as error:
        print(f"rotaux: error: {error}", file=sys.stderr)
        return 2
    if args.mode == "shards":
        usage = f"--data.dataset Shards --data.dataset.path {args.out}"
    else:
        usage = f"--data.dataset ImageFolder --data.dataset.root {args.out}"
    print(f"Wrote ImageNet-100 ({args.mode}) to {args.out}. Train on it with {usage}")
    return 0
