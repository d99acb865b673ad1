"""NIfTI images and label volumes (``.nii``, ``.nii.gz``), read and written with nibabel.

Conventions:

- Arrays are numpy, in the file's own voxel order as nibabel gives it: ``(x, y, z)`` for a
  volume, ``(x, y, z, t)`` for a time series (``(x, y)`` for a single 2D slice). Nothing is
  reoriented; use ``affine`` to map voxel indices to world coordinates.
- ``affine`` is the 4x4 float64 voxel-to-world matrix (nibabel's ``img.affine``: the sform,
  else the qform), world coordinates in millimetres (RAS+, the NIfTI convention).
- ``voxel_size`` is one size per spatial axis, in millimetres, from the header zooms. A header
  that declares metres or micrometres is converted to millimetres, affine included.
- A ``.nii.gz`` file is decompressed to its end, so a truncated or damaged file (a wrong
  gzip CRC-32) is an error rather than silently wrong voxels.
- Images whose header scales the stored values (``scl_slope``/``scl_inter``) are read as
  float32 with the scaling applied. Unscaled data keep their stored dtype, so label volumes
  stay integer.
- Files are written atomically: to a temporary name beside the target, renamed on success.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._atomic import atomic_path

_SUFFIXES = (".nii", ".nii.gz")
_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}


@dataclass(frozen=True, eq=False)
class Volume:
    """A NIfTI image read from disk.

    Attributes:
        array: ``(x, y, z[, t])`` numpy array in the file's voxel order.
        affine: ``(4, 4)`` float64 voxel-to-world matrix, world coordinates in mm.
        voxel_size: one size in mm per spatial axis (length 3 for a volume).
        path: the file that was read.
    """

    array: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    voxel_size: tuple[float, ...]
    path: Path

    def __repr__(self) -> str:
        sizes = ", ".join(f"{v:g}" for v in self.voxel_size)
        return (f"Volume(shape={self.array.shape}, dtype={self.array.dtype}, "
                f"voxel_size=({sizes}) mm, path='{self.path}')")


def _check_suffix(path: Path, func: str) -> None:
    if not path.name.endswith(_SUFFIXES):
        raise ValueError(f"{func}: {path}: expected a file name ending in .nii or .nii.gz, "
                         f"got {path.name!r}")


def _load(path, func: str):
    """Load a NIfTI header with nibabel; errors name the file and what is wrong with it."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{func}: {path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{func}: {path}: is a folder, expected a NIfTI file")
    try:
        img = nib.load(path, mmap=False)
    except ImageFileError as err:
        raise ValueError(f"{func}: {path}: not a NIfTI file, or its header is damaged "
                         f"({err})") from err
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"{func}: {path}: cannot read the NIfTI header ({err})") from err
    if not isinstance(img, (nib.Nifti1Pair, nib.Nifti2Pair)):
        raise ValueError(f"{func}: {path}: not a NIfTI file (nibabel reads it as "
                         f"{type(img).__name__})")
    return path, img


def _singular(affine: np.ndarray) -> bool:
    """Whether the 3x3 part of a finite affine maps voxels onto a plane, a line or a point.

    The determinant is compared with the product of the column norms (1 for orthogonal axes,
    0 for parallel or zero ones), so the test does not depend on the voxel size.
    """
    matrix = affine[:3, :3]
    norms = np.prod(np.linalg.norm(matrix, axis=0))
    return not norms > 0 or abs(np.linalg.det(matrix)) <= 1e-6 * norms


def _geometry(path: Path, img, func: str) -> tuple[np.ndarray, tuple[float, ...]]:
    affine = np.array(img.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"{func}: {path}: the header's affine (sform/qform) is not a finite "
                         f"4x4 matrix:\n{affine}")
    if _singular(affine):
        raise ValueError(f"{func}: {path}: the header's affine (sform/qform) is singular (a "
                         "zero voxel size or parallel axes), so voxels have no world "
                         f"position: {np.round(affine, 6).tolist()}")
    spatial_unit = img.header.get_xyzt_units()[0]
    to_mm = _UNIT_TO_MM.get(spatial_unit, 1.0)
    n_spatial = min(len(img.shape), 3)
    zooms = img.header.get_zooms()[:n_spatial]
    if not np.all(np.isfinite(zooms)):
        raise ValueError(f"{func}: {path}: the header's voxel sizes are not finite, got {zooms}")
    if to_mm != 1.0:
        affine[:3] *= to_mm
    return affine, tuple(float(z) * to_mm for z in zooms)


def _read_data(path: Path, img, func: str, *, float_dtype=np.float32) -> np.ndarray:
    """The voxel values, with the header's scaling applied only when it is not the identity."""
    proxy = img.dataobj
    slope = float(getattr(proxy, "slope", 1.0))
    inter = float(getattr(proxy, "inter", 0.0))
    try:
        if slope == 1.0 and inter == 0.0:
            data = np.asarray(np.asanyarray(proxy))
        else:
            data = img.get_fdata(dtype=float_dtype)
        if path.name.endswith(".gz"):
            _check_gzip(path)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise ValueError(f"{func}: {path}: the voxel data are truncated or corrupt "
                         f"({type(err).__name__}: {err})") from err
    return data


def _check_gzip(path: Path) -> None:
    """Decompress to the end, so that gzip checks the stream's length and CRC-32."""
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 24):
            pass


def _cast(array: np.ndarray, dtype, path: Path, func: str) -> np.ndarray:
    """Cast to ``dtype``, refusing integer casts that would round or wrap values."""
    dtype = np.dtype(dtype)
    if array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.integer) and array.size:
        info = np.iinfo(dtype)
        if np.issubdtype(array.dtype, np.inexact):
            bad = ~np.isfinite(array) | (array != np.round(array))
            if np.any(bad):
                raise ValueError(f"{func}: {path}: cannot read as {dtype}: {int(bad.sum())} "
                                 f"voxels are not whole numbers (e.g. {array[bad].flat[0]!r})")
        lo, hi = array.min(), array.max()
        if lo < info.min or hi > info.max:
            raise ValueError(f"{func}: {path}: cannot read as {dtype}: values span "
                             f"[{lo}, {hi}], outside [{info.min}, {info.max}]")
    return array.astype(dtype)


def read_nifti(path: str | os.PathLike, *, dtype: DTypeLike | None = None) -> Volume:
    """Read a NIfTI-1 or NIfTI-2 file (``.nii`` or ``.nii.gz``).

    Args:
        path: the file.
        dtype: optional dtype of the returned array (keyword-only). By default unscaled data keep
            their stored dtype and scaled data (``scl_slope`` not 1 or ``scl_inter`` not 0)
            are float32. A cast to an integer dtype is refused if it would round or wrap.

    Returns:
        A :class:`Volume`: ``array`` ``(x, y, z[, t])``, ``affine`` ``(4, 4)`` float64 in mm,
        ``voxel_size`` in mm, ``path``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not NIfTI, is truncated or corrupt, or its affine is not finite
            or is singular.
    """
    func = "mskjax.io.read_nifti"
    path, img = _load(path, func)
    affine, voxel_size = _geometry(path, img, func)
    float_dtype = (np.dtype(dtype) if dtype is not None
                   and np.issubdtype(np.dtype(dtype), np.floating) else np.float32)
    array = _read_data(path, img, func, float_dtype=float_dtype)
    if dtype is not None:
        array = _cast(array, dtype, path, func)
    return Volume(array=array, affine=affine, voxel_size=voxel_size, path=path)


def read_labels(path: str | os.PathLike, *,
                names: Mapping[int, str] | None = None) -> Volume:
    """Read a label volume (a segmentation) from a NIfTI file as integers.

    Labels stored as integers keep their dtype. Labels stored as floats (or with a scaling in
    the header) must hold whole numbers only; they are returned in the smallest integer dtype
    that holds them (``uint8`` for 0 to 255).

    Args:
        path: the file.
        names: optional ``{label value: name}`` of the known labels (keyword-only). If given,
            every value in the file other than 0 (background, always allowed) must be a key.

    Returns:
        A :class:`Volume` whose ``array`` ``(x, y, z)`` has an integer dtype.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read (see :func:`read_nifti`), holds values that are not
            whole numbers, or holds label values missing from ``names``.
    """
    func = "mskjax.io.read_labels"
    if names is not None:
        if not isinstance(names, Mapping) or not all(
                isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in names):
            raise TypeError(f"{func}: names must be a dict {{label value (int): name}}, "
                            f"got {names!r}")
    path, img = _load(path, func)
    affine, voxel_size = _geometry(path, img, func)
    array = _read_data(path, img, func, float_dtype=np.float64)
    if not np.issubdtype(array.dtype, np.integer):
        whole = _cast(array, np.int64, path, func)  # refuses fractions and non-finite values
        target = (np.promote_types(np.min_scalar_type(whole.min()),
                                   np.min_scalar_type(whole.max())) if whole.size else np.uint8)
        array = whole.astype(target)
    if names is not None:
        values = np.unique(array)
        unknown = [int(v) for v in values if int(v) != 0 and int(v) not in names]
        if unknown:
            known = ", ".join(f"{k}: {v!r}" for k, v in sorted(names.items()))
            raise ValueError(f"{func}: {path}: label values {unknown} are not among the known "
                             f"names {{{known}}} (0, background, is always allowed)")
    return Volume(array=array, affine=affine, voxel_size=voxel_size, path=path)


def write_nifti(path: str | os.PathLike, array: ArrayLike, *, affine: ArrayLike | None = None,
                voxel_size: float | Sequence[float] | None = None) -> Path:
    """Write an array to a NIfTI-1 file, ``.nii`` or ``.nii.gz`` (gzip compressed).

    The file is written to a temporary name beside ``path`` and renamed, so a failure leaves
    neither a partial file nor a changed existing file. Spatial units are recorded as mm.

    Args:
        path: the output file, ending in ``.nii`` or ``.nii.gz``.
        array: ``(x, y[, z[, t]])`` real array (numpy or JAX). The dtype is stored as is;
            ``bool`` is stored as ``uint8``. Complex arrays are refused (TypeError): NIfTI-1
            complex data are rarely read correctly by other tools.
        affine: ``(4, 4)`` voxel-to-world matrix in mm (keyword-only). Default
            ``diag(*voxel_size, 1)``.
        voxel_size: one size in mm per spatial axis (keyword-only). Default: from ``affine``,
            else 1 mm. If both are given they must agree (the column norms of ``affine``).

    Returns:
        The path written.
    """
    import nibabel as nib
    from nibabel.spatialimages import HeaderDataError

    func = "mskjax.io.write_nifti"
    path = Path(path)
    _check_suffix(path, func)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{func}: {path}: the folder {path.parent} does not exist")
    data = np.asarray(array)
    if np.iscomplexobj(data):
        raise TypeError(f"{func}: {path}: array must be real, got {data.dtype}; NIfTI-1 complex "
                        "data are rarely read correctly by other tools, so save the magnitude "
                        "and phase (np.abs(x), np.angle(x)) or the real and imaginary parts "
                        "(x.real, x.imag) as two files")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if not 2 <= data.ndim <= 4:
        raise ValueError(f"{func}: array must be (x, y[, z[, t]]), 2- to 4-dimensional, got "
                         f"shape {data.shape}")
    header = nib.Nifti1Header()
    try:
        header.set_data_dtype(data.dtype)
    except (HeaderDataError, TypeError, ValueError) as err:
        raise TypeError(f"{func}: array dtype {data.dtype} cannot be stored in NIfTI-1; cast "
                        "it, e.g. to float32 or int16") from err
    n_spatial = min(data.ndim, 3)
    if voxel_size is not None:
        try:
            sizes = np.asarray(voxel_size, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            sizes = np.array([np.nan])
        if (sizes.size != n_spatial or not np.all(np.isfinite(sizes))
                or not np.all(sizes > 0)):
            raise ValueError(f"{func}: voxel_size must be {n_spatial} positive finite sizes in "
                             f"mm (one per spatial axis), got {voxel_size!r}")
    if affine is not None:
        try:
            matrix = np.asarray(affine, dtype=np.float64)
        except (TypeError, ValueError):
            matrix = np.full((), np.nan)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            got = f"shape {matrix.shape}" if matrix.shape != (4, 4) else f"\n{matrix}"
            raise ValueError(f"{func}: affine must be a finite 4x4 matrix, got {got}")
        if _singular(matrix):
            raise ValueError(f"{func}: affine must be invertible (its 3x3 part maps voxels to "
                             f"world positions), got a singular matrix: "
                             f"{np.round(matrix, 6).tolist()}")
        if voxel_size is not None:
            norms = np.linalg.norm(matrix[:3, :n_spatial], axis=0)
            if not np.allclose(norms, sizes, rtol=1e-4, atol=1e-6):
                raise ValueError(f"{func}: voxel_size {tuple(sizes.tolist())} disagrees with the "
                                 f"affine's column norms {tuple(np.round(norms, 6).tolist())}; "
                                 "pass only one of them, or make them agree")
    else:
        matrix = np.eye(4)
        if voxel_size is not None:
            matrix[np.arange(n_spatial), np.arange(n_spatial)] = sizes
    img = nib.Nifti1Image(data, matrix, header=header)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        img.to_filename(str(tmp))
    return path
