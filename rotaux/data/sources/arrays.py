"""Reading multi-channel image arrays (``.npy``, and multi-band TIFF through tifffile) as
``(C, H, W)`` tensors, with errors that name the file."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from rotaux.errors import RotauxError

ARRAY_EXTENSIONS = (".npy", ".tif", ".tiff")
"""Files that :func:`read_array` reads."""

ArrayLayout = Literal["CHW", "HWC"]

_TIFF_BAND_AXES = ("S", "C")
"""tifffile's axis letters for samples per pixel (``YXS``, planar ``SYX``) and channels."""


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError as error:
        raise RotauxError(
            "Reading TIFF files needs tifffile: pip install 'rotaux[tiff]' (or pip install "
            "tifffile), or convert the images to .npy."
        ) from error
    return tifffile


def _band_axis(path: str, shape: tuple[int, ...], axes: str | None, layout: ArrayLayout) -> int:
    """Which axis of an array of ``shape`` holds the bands; -1 for a single-band 2-D array."""
    if len(shape) == 2:
        return -1
    if len(shape) != 3:
        raise RotauxError(
            f"{path} holds an array of shape {shape}; images must be (H, W), (C, H, W) or "
            "(H, W, C). Save one image per file."
        )
    marked = [axes.index(letter) for letter in _TIFF_BAND_AXES if axes and letter in axes]
    if marked:
        return marked[0]
    return 0 if layout == "CHW" else 2


def array_shape(path: str, layout: ArrayLayout) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the array in ``path``, from the file's header only."""
    try:
        if path.lower().endswith(".npy"):
            shape, axes = tuple(np.load(path, mmap_mode="r").shape), None
        else:
            with _tifffile().TiffFile(path) as tiff:
                series = tiff.series[0]
                shape, axes = tuple(series.shape), series.axes
    except (OSError, ValueError, IndexError) as error:
        raise RotauxError(f"Cannot read {path}: {error}. Remove or replace the file.") from error
    band_axis = _band_axis(path, shape, axes, layout)
    if band_axis == -1:
        return 1, shape[0], shape[1]
    height, width = (side for axis, side in enumerate(shape) if axis != band_axis)
    return shape[band_axis], height, width


def read_array(path: str, layout: ArrayLayout = "CHW") -> torch.Tensor:
    """The image in ``path`` as a ``(C, H, W)`` tensor: ``uint8`` arrays stay ``uint8``
    (0..255, normalised like 8-bit images), every other type becomes ``float32`` in the file's
    own units. ``.npy`` arrays and TIFF files that do not mark their band axis are read with
    ``layout``; a 2-D array is one band."""
    try:
        if path.lower().endswith(".npy"):
            array, axes = np.load(path, allow_pickle=False), None
        else:
            with _tifffile().TiffFile(path) as tiff:
                series = tiff.series[0]
                array, axes = series.asarray(), series.axes
    except (OSError, ValueError, IndexError) as error:
        raise RotauxError(f"Cannot read {path}: {error}. Remove or replace the file.") from error
    band_axis = _band_axis(path, tuple(array.shape), axes, layout)
    array = array[None] if band_axis == -1 else np.moveaxis(array, band_axis, 0)
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise RotauxError(f"{path} holds {array.dtype} values; images must be numbers.")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
