"""Reading image files, and checking them before training, with errors that name the file."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image

from rotaux.errors import RotauxError

VerifyMode = Literal["full", "header", "none"]
CorruptImagePolicy = Literal["error", "skip"]


class CorruptImageError(RotauxError):
    """An image file that cannot be decoded."""


def load_rgb(path: str) -> Image.Image:
    """Decode an image file to RGB, naming the file if it is corrupt or truncated."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImageError(
            f"Cannot decode image {path}: {error}. Remove or replace the file."
        ) from error


def verify_image_files(
    paths: list[str], mode: VerifyMode, on_corrupt: CorruptImagePolicy = "error"
) -> set[str]:
    """Check image files before training: ``full`` decodes every image, ``header`` only parses
    headers (fast, misses truncated files), ``none`` skips the check. With ``on_corrupt="error"``
    all problems are listed in one error; with ``"skip"`` they are listed in a warning and the
    unreadable paths are returned for the caller to leave out."""
    if mode == "none":
        return set()

    def problem(path: str) -> str | None:
        try:
            if mode == "full":
                load_rgb(path)
            else:
                with Image.open(path) as image:
                    image.verify()
        except (CorruptImageError, OSError, SyntaxError, ValueError) as error:
            return f"{path}: {error}"
        return None

    # file reads dominate on network and cold disks, so use more threads than cores
    with ThreadPoolExecutor(max_workers=4 * (os.cpu_count() or 1)) as pool:
        problems = [p for p in pool.map(problem, paths, chunksize=256) if p is not None]
    if not problems:
        return set()
    listed = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    summary = f"{len(problems)} of {len(paths)} image files cannot be read:\n  {listed}{more}\n"
    if on_corrupt == "error":
        raise CorruptImageError(
            summary + "Remove or replace them, or leave them out with "
            "--data.dataset.on_corrupt_image skip (--data.dataset.verify_images none skips this "
            "check)."
        )
    rank_zero_warn(summary + "They are left out of training and validation.")
    return {problem.split(": ", 1)[0] for problem in problems}


def shorter_sides(paths: list[str], count: int = 16) -> list[int]:
    """Shorter side of up to ``count`` of ``paths``, spread over the list, read from headers."""
    step = max(1, len(paths) // count)
    sides = []
    for path in paths[::step][:count]:
        with Image.open(path) as image:
            sides.append(min(image.size))
    return sides
