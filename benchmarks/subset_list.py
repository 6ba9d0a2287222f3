"""Write a file list (CSV for ``--data.dataset FileList``) of a smaller training set with the
same validation images: the validation split that ``ImageFolder`` holds out of an image folder
(seeded and stratified, as every efficiency preset uses it) plus ``--per-class`` training images
of every class drawn with ``--seed`` from the rest. For runs too slow for the whole training set
on a CPU (a ViT), evaluated on exactly the dev split of the full runs::

    python benchmarks/subset_list.py --root /tmp/cifar10-jpeg --per-class 1000 \\
        --out runs/cifar10_dev_1000.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from rotaux.data import ImageFolder


def subset_rows(
    root: str, per_class: int, seed: int, val_fraction: float, split_seed: int
) -> list[tuple[str, str, str]]:
    """``(path, label, split)`` rows: every held-out validation image, and ``per_class`` seeded
    training images of each class."""
    splits = ImageFolder(
        root, val_fraction=val_fraction, split_seed=split_seed, verify_images="none"
    ).load()
    folder = splits.train.dataset
    rows = [
        (folder.samples[index][0], splits.classes[folder.samples[index][1]], "val")
        for index in splits.val.indices
    ]
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index in splits.train.indices:
        by_class.setdefault(folder.samples[index][1], []).append(index)
    for label, members in sorted(by_class.items()):
        if len(members) < per_class:
            raise SystemExit(f"Class {splits.classes[label]} has only {len(members)} images.")
        chosen = torch.randperm(len(members), generator=generator)[:per_class].tolist()
        rows += [(folder.samples[members[i]][0], splits.classes[label], "train") for i in chosen]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="image folder (train/<class>/...)")
    parser.add_argument("--per-class", type=int, required=True, help="training images per class")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training subset")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = subset_rows(
        str(args.root), args.per_class, args.seed, args.val_fraction, args.split_seed
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    print(f"Wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
