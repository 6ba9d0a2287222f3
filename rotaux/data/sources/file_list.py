"""Images named in a CSV or plain-text file, with optional labels and splits."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset, Subset

from rotaux.data.sources.base import DataSource, SplitDatasets, held_out_split
from rotaux.data.sources.file_samples import FileSamples, sample_paths
from rotaux.data.sources.image_files import (
    CorruptImagePolicy,
    VerifyMode,
    load_rgb,
    shorter_sides,
    verify_image_files,
)
from rotaux.errors import RotauxError

SPLIT_NAMES = ("train", "val")
"""Values of a file list's split column."""

_LISTED = 10
"""How many offending lines an error lists."""


@dataclass(frozen=True)
class _Row:
    line: int
    path: str
    label: str | None
    split: str | None


@dataclass(frozen=True)
class FileList(DataSource):
    """Images listed in a file, decoded to RGB. A ``.csv`` (or tab-separated ``.tsv``) file has
    a header naming its columns: ``path_column`` holds the image paths, ``label_column`` the
    labels (any strings) and ``split_column`` ``train`` or ``val``. Any other file is plain
    text: one path per line, blank lines and lines starting with ``#`` skipped, no labels.

    Relative paths are relative to ``base_dir`` (the list's folder by default). Class names are the
    distinct labels, sorted (numerically when every label is an integer), and a label's index
    in that list is its class index. Without a label column every image is unlabeled (-1), and
    the evaluation callbacks need ``--data.eval_dataset``.

    The validation split is the ``val`` rows of the split column or, without one, a seeded
    ``val_fraction`` of the rows (stratified by label when there are labels); neither gives no
    validation split.

    Args:
        path: the list file.
        base_dir: folder the relative paths start from; ``None`` is the list file's folder.
            (Not called ``root``: a config's ``--data.dataset.root`` for another source would
            otherwise carry over to it when the command line switches to ``FileList``.)
        path_column: CSV column of the image paths.
        label_column: CSV column of the labels; ``None`` for unlabeled images.
        split_column: CSV column saying ``train`` or ``val`` per row; ``None`` to split by
            ``val_fraction``.
        val_fraction: share of the rows held out for validation when there is no split column.
        split_seed: seed of that hold-out.
        verify_images: ``full`` decodes every image before training, ``header`` parses headers
            only (fast, misses truncated files), ``none`` skips it.
        on_corrupt_image: ``error`` stops with the list of unreadable images; ``skip`` warns
            with that list and leaves them out.
    """

    path: str = "images.csv"
    base_dir: str | None = None
    path_column: str = "path"
    label_column: str | None = None
    split_column: str | None = None
    val_fraction: float = 0.0
    split_seed: int = 0
    verify_images: VerifyMode = "full"
    on_corrupt_image: CorruptImagePolicy = "error"

    def load(self) -> SplitDatasets:
        rows = self._rows()
        base = Path(self.base_dir) if self.base_dir is not None else Path(self.path).parent
        paths = [str(base / row.path) for row in rows]
        self._check_exist(rows, paths)
        classes, targets = self._labels(rows)
        unreadable = verify_image_files(paths, self.verify_images, self.on_corrupt_image)
        kept = [i for i, path in enumerate(paths) if path not in unreadable]
        images = FileSamples([paths[i] for i in kept], [targets[i] for i in kept], load_rgb)
        if self.split_column is None:
            train_indices, val_indices = held_out_split(
                images.targets, self.val_fraction, self.split_seed
            )
        else:
            splits = [rows[i].split for i in kept]
            train_indices = [i for i, split in enumerate(splits) if split == "train"]
            val_indices = [i for i, split in enumerate(splits) if split == "val"]
        return SplitDatasets(Subset(images, train_indices), Subset(images, val_indices), classes)

    def image_sides(self, train: Dataset) -> list[int]:
        return shorter_sides(sample_paths(train))

    def _is_table(self) -> bool:
        return Path(self.path).suffix.lower() in (".csv", ".tsv")

    def _rows(self) -> list[_Row]:
        if not Path(self.path).is_file():
            raise RotauxError(
                f"File list {self.path!r} does not exist. Set --data.dataset.path to a CSV file "
                "with a header (a path column, optionally label and split columns) or a text "
                "file with one image path per line."
            )
        if self.split_column is not None and self.val_fraction:
            raise RotauxError(
                f"Give either a split column ({self.split_column!r}) or val_fraction "
                f"({self.val_fraction}) for {self.path}, not both."
            )
        rows = self._table_rows() if self._is_table() else self._text_rows()
        if not rows:
            raise RotauxError(
                f"File list {self.path} lists no images. Add one image path per line (per row "
                "below the header in a CSV file)."
            )
        return rows

    def _text_rows(self) -> list[_Row]:
        if self.label_column is not None or self.split_column is not None:
            raise RotauxError(
                f"{self.path} is a plain-text list (one path per line), which has no label or "
                "split columns. Use a .csv file with a header for labels and splits, or drop "
                "--data.dataset.label_column / split_column."
            )
        with open(self.path, encoding="utf-8") as lines:
            return [
                _Row(number, line.strip(), None, None)
                for number, line in enumerate(lines, start=1)
                if line.strip() and not line.lstrip().startswith("#")
            ]

    def _table_rows(self) -> list[_Row]:
        delimiter = "\t" if Path(self.path).suffix.lower() == ".tsv" else ","
        with open(self.path, encoding="utf-8", newline="") as table:
            reader = csv.DictReader(table, delimiter=delimiter)
            header = reader.fieldnames or []
            wanted = {
                "path_column": self.path_column,
                "label_column": self.label_column,
                "split_column": self.split_column,
            }
            for option, column in wanted.items():
                if column is not None and column not in header:
                    raise RotauxError(
                        f"{self.path} has no column {column!r} (its header: {header}). Set "
                        f"--data.dataset.{option} to one of those columns."
                    )
            rows = []
            for record in reader:
                rows.append(
                    _Row(
                        reader.line_num,
                        (record[self.path_column] or "").strip(),
                        self._cell(record, self.label_column),
                        self._cell(record, self.split_column),
                    )
                )
        self._check_cells(rows, "path", self.path_column, lambda row: row.path)
        if self.label_column is not None:
            self._check_cells(rows, "label", self.label_column, lambda row: row.label)
        if self.split_column is not None:
            self._check_cells(rows, "split", self.split_column, lambda row: row.split)
            wrong = [row.line for row in rows if row.split.lower() not in SPLIT_NAMES]
            if wrong:
                raise RotauxError(
                    f"{self.path}: lines {_lines(wrong)} have a split other than "
                    f"{' or '.join(SPLIT_NAMES)} in column {self.split_column!r}."
                )
            rows = [_Row(row.line, row.path, row.label, row.split.lower()) for row in rows]
        return rows

    @staticmethod
    def _cell(record: dict[str, str | None], column: str | None) -> str | None:
        return None if column is None else (record.get(column) or "").strip()

    def _check_cells(self, rows: list[_Row], what: str, column: str, cell) -> None:
        missing = [row.line for row in rows if not cell(row)]
        if missing:
            raise RotauxError(
                f"{self.path}: lines {_lines(missing)} have no {what} in column {column!r}. "
                "Fill them in or remove those lines."
            )

    def _check_exist(self, rows: list[_Row], paths: list[str]) -> None:
        missing = [
            (row.line, path)
            for row, path in zip(rows, paths, strict=True)
            if not os.path.isfile(path)
        ]
        if not missing:
            return
        listed = "\n  ".join(f"line {line}: {path}" for line, path in missing[:_LISTED])
        more = f"\n  ... and {len(missing) - _LISTED} more" if len(missing) > _LISTED else ""
        raise RotauxError(
            f"{len(missing)} of the {len(paths)} files listed in {self.path} do not exist:\n  "
            f"{listed}{more}\nRelative paths start from --data.dataset.base_dir (default: "
            "the list's folder); fix the paths or base_dir, or remove those lines."
        )

    def _labels(self, rows: list[_Row]) -> tuple[list[str], list[int]]:
        if self.label_column is None:
            return [], [-1] * len(rows)
        names = {row.label for row in rows}
        integers = all(_is_integer(name) for name in names)
        classes = sorted(names, key=int if integers else None)
        index = {name: position for position, name in enumerate(classes)}
        return classes, [index[row.label] for row in rows]


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:_LISTED])
    return shown + (f" and {len(numbers) - _LISTED} more" if len(numbers) > _LISTED else "")
