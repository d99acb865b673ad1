"""BART non-Cartesian trajectories and k-space, converted to and from mskjax's layout.

BART (``bart traj``, ``bart nufft``, ``bart pics -t``) stores a trajectory as a ``.cfl`` of
dimensions ``(3, readout, spokes, 1, ...)``: the coordinates ``(x, y, z)`` of every sample in
grid units (cycles per field of view, the units of :class:`mskjax.linop.NUFFT`; ``z = 0`` for
2D), real values in a complex array. Its non-Cartesian k-space is ``(1, readout, spokes, coils,
...)``. mskjax holds the same data as coordinates ``(*trajectory, ndim)`` (float32) and k-space
``(coils, *trajectory)`` (complex64). The conversions are:

- **Coordinates.** BART's ``x``, ``y``, ``z`` are the coordinates along BART's image dimensions
  0, 1, 2, which :func:`mskjax.io.read_cfl` returns as array axes 0, 1, 2. So mskjax's
  ``coords[..., 0]`` is BART's ``x`` (the rows of a ``(rows, cols)`` image read with
  ``read_cfl``), ``coords[..., 1]`` is ``y`` (the columns) and ``coords[..., 2]`` is ``z``. The
  sign and scale agree: BART's ``nufft`` of an image read with ``read_cfl`` equals
  ``linop.NUFFT(coords, shape=image.shape)`` of it (tested against ``bart nufft``).
- **Trajectory axes.** The trajectory axes are BART's dimensions 1, 2, 4, 5, ..., 15 (every
  dimension but 0, the coordinate or readout-point dimension, and 3, the coil dimension), with
  trailing singleton dimensions dropped, in **reverse order**: BART's ``(readout, spokes)``
  becomes mskjax's ``(spokes, readout)``, the C-order layout of the same bytes and the layout of
  :func:`mskjax.sampling.radial` (``(num_spokes, num_samples, 2)``). Inner singleton dimensions
  are kept (an echo dimension after the coil dimension stays where it was), so a round trip
  restores BART's dimensions; a trajectory whose leading mskjax axes have size 1 comes back
  without them (BART's headers cannot tell them from the trailing ones it always writes).
- **k-space.** BART's ``(1, readout, spokes, coils, ...)`` is mskjax's ``(coils, spokes,
  readout)``: the coil axis first, then the trajectory axes as above, so k-space read with
  :func:`read_bart_kspace` fits coordinates read with :func:`read_bart_trajectory`.

Writers are atomic (:func:`mskjax.io.write_cfl`). Nothing is rounded silently: coordinates must
be float32 or values float32 holds exactly, k-space complex64.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from ._cfl import _base, _with, read_cfl, write_cfl

_READ_TRAJ = "mskjax.io.read_bart_trajectory"
_WRITE_TRAJ = "mskjax.io.write_bart_trajectory"
_READ_KSP = "mskjax.io.read_bart_kspace"
_WRITE_KSP = "mskjax.io.write_bart_kspace"
#: BART's COIL_DIM, the dimension that is not part of the trajectory.
_COIL_DIM = 3
#: BART arrays have at most 16 dimensions: 0 and 3 leave 14 for the trajectory.
_MAX_TRAJECTORY_NDIM = 14


def _trajectory_dims(dims: tuple[int, ...]) -> tuple[int, ...]:
    """BART's trajectory dimensions (1, 2, 4, ...) with trailing ones dropped, BART order."""
    dims = tuple(dims) + (1,) * max(0, 16 - len(dims))
    traj = dims[1:_COIL_DIM] + dims[_COIL_DIM + 1:]
    end = len(traj)
    while end > 1 and traj[end - 1] == 1:
        end -= 1
    return traj[:end]


def _bart_dims(trajectory: tuple[int, ...], first: int, coils: int) -> tuple[int, ...]:
    """BART dimensions ``(first, readout, spokes, coils, ...)`` for an mskjax trajectory."""
    bart = tuple(reversed(trajectory))
    if len(bart) < 2:
        bart = bart + (1,)
    return (first, *bart[:2], coils, *bart[2:])


def _file(name) -> Path:
    return _with(_base(name), ".cfl")


def read_bart_trajectory(name: str | os.PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Read a BART trajectory as mskjax coordinates ``(*trajectory, ndim)``.

    Args:
        name: the BART array's name, with or without ``.cfl``/``.hdr``; dimensions ``(3,
            readout, spokes, 1, ...)`` as ``bart traj`` writes them.
        ndim: the number of coordinates kept (1, 2 or 3; keyword-only): ``x``, then ``y``, then
            ``z``. Default: 3 when any ``z`` is nonzero, else 2. The coordinates left out must
            be zero.

    Returns:
        float32 ``(*trajectory, ndim)`` in cycles per field of view, C-ordered, with the
        trajectory axes in reverse BART order (``(spokes, readout, ndim)`` for ``bart traj
        -r``); ``coords[..., a]`` is BART's coordinate ``a`` (``x``, ``y``, ``z``), the one
        along array axis ``a`` of an image read with :func:`mskjax.io.read_cfl`.

    Raises:
        FileNotFoundError: the ``.hdr`` or ``.cfl`` is missing.
        ValueError: dimension 0 is not 3, the coil dimension (3) is not 1, coordinates with a
            nonzero imaginary part or not finite, ``ndim`` outside 1 to 3, or a coordinate left
            out by ``ndim`` that is not zero. Each names the file.
    """
    if ndim is not None and (isinstance(ndim, bool) or not isinstance(ndim, (int, np.integer))
                             or not 1 <= ndim <= 3):
        raise ValueError(f"{_READ_TRAJ}: ndim must be None, 1, 2 or 3, got {ndim!r}")
    array = read_cfl(name)
    path = _file(name)
    dims = array.shape
    if dims[0] != 3:
        raise ValueError(f"{_READ_TRAJ}: {path}: a BART trajectory has 3 coordinates (x, y, z) "
                         f"in dimension 0, got dimensions {dims}")
    if len(dims) > _COIL_DIM and dims[_COIL_DIM] != 1:
        raise ValueError(f"{_READ_TRAJ}: {path}: a BART trajectory has size 1 in the coil "
                         f"dimension ({_COIL_DIM}), got dimensions {dims}")
    if np.any(array.imag != 0):
        raise ValueError(f"{_READ_TRAJ}: {path}: coordinates must be real, got "
                         f"{int(np.count_nonzero(array.imag))} values with a nonzero imaginary "
                         "part")
    real = array.real
    if not np.all(np.isfinite(real)):
        raise ValueError(f"{_READ_TRAJ}: {path}: coordinates must be finite, got "
                         f"{int(np.sum(~np.isfinite(real)))} NaN or infinite values")
    if real.ndim > _COIL_DIM:
        real = real[(slice(None),) * _COIL_DIM + (0,)]
    trajectory = _trajectory_dims(dims)
    # (3, d1, d2, d4, ...) in Fortran order is (..., d2, d1, 3) in C order: a transpose.
    coords = np.transpose(real.reshape((3, *trajectory), order="F"))
    if ndim is None:
        ndim = 3 if np.any(coords[..., 2] != 0) else 2
    dropped = coords[..., ndim:]
    if np.any(dropped != 0):
        axis = ndim + int(np.argmax(np.any(dropped != 0, axis=tuple(range(dropped.ndim - 1)))))
        raise ValueError(
            f"{_READ_TRAJ}: {path}: coordinate {'xyz'[axis]} is nonzero (up to "
            f"{float(np.max(np.abs(coords[..., axis]))):g}), so ndim={ndim} would drop it; "
            f"read it with ndim={axis + 1} or more")
    return np.ascontiguousarray(coords[..., :ndim], dtype=np.float32)


def _exact_float32(array: np.ndarray, name: str, func: str) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{func}: {name} must be real (float32), got {array.dtype}")
    single = array.astype(np.float32)
    if array.dtype != np.float32:
        with np.errstate(invalid="ignore"):
            exact = np.array_equal(single.astype(np.float64), array.astype(np.float64),
                                   equal_nan=True)
        if not exact:
            raise TypeError(f"{func}: {name} must be float32 or hold values float32 represents "
                            f"exactly (BART stores complex64), got {array.dtype} values that "
                            f"would be rounded; convert explicitly with "
                            f"{name}.astype(np.float32)")
    return single


def write_bart_trajectory(name: str | os.PathLike, coords: ArrayLike) -> Path:
    """Write mskjax coordinates as a BART trajectory ``(3, readout, spokes, 1, ...)``, atomically.

    The inverse of :func:`read_bart_trajectory`: ``coords[..., a]`` becomes BART's coordinate
    ``a`` (``x``, ``y``, ``z``; missing ones are written as 0) and the trajectory axes are
    written in reverse order, the last (the readout) becoming BART's dimension 1.

    Args:
        name: the array's name, with or without ``.cfl``/``.hdr``; its folder must exist.
        coords: real ``(*trajectory, ndim)`` coordinates in cycles per field of view, ``ndim``
            1 to 3, at most 14 trajectory axes; float32 (or values float32 holds exactly),
            finite, numpy or JAX.

    Returns:
        The ``.cfl`` path.
    """
    if isinstance(coords, (list, tuple)) or not hasattr(coords, "__array__"):
        raise TypeError(f"{_WRITE_TRAJ}: coords must be an array, got {type(coords).__name__}")
    coords = np.asarray(coords)
    if coords.ndim < 2 or not 1 <= coords.shape[-1] <= 3 or 0 in coords.shape:
        raise ValueError(f"{_WRITE_TRAJ}: coords must be (*trajectory, ndim) with ndim 1 to 3 "
                         f"and at least one point, got shape {coords.shape}")
    if coords.ndim - 1 > _MAX_TRAJECTORY_NDIM:
        raise ValueError(f"{_WRITE_TRAJ}: coords may have at most {_MAX_TRAJECTORY_NDIM} "
                         f"trajectory axes (BART has 16 dimensions), got shape {coords.shape}")
    coords = _exact_float32(coords, "coords", _WRITE_TRAJ)
    if not np.all(np.isfinite(coords)):
        raise ValueError(f"{_WRITE_TRAJ}: coords must be finite, got "
                         f"{int(np.sum(~np.isfinite(coords)))} NaN or infinite values")
    trajectory = coords.shape[:-1]
    full = np.zeros((*trajectory, 3), np.float32)
    full[..., :coords.shape[-1]] = coords
    bart = np.transpose(full).reshape(_bart_dims(trajectory, 3, 1), order="F")
    return write_cfl(name, bart)


def read_bart_kspace(name: str | os.PathLike) -> np.ndarray:
    """Read BART non-Cartesian k-space ``(1, readout, spokes, coils, ...)`` as ``(coils,
    *trajectory)``.

    The trajectory axes are those :func:`read_bart_trajectory` gives the matching trajectory
    (BART's dimensions 1, 2, 4, ... reversed, trailing ones dropped), so the result fits its
    coordinates: ``linop.NufftSense(maps, coords)`` maps an image to this k-space.

    Returns:
        complex64 ``(coils, *trajectory)``, C-ordered (``(coils, spokes, readout)`` for
        radial k-space).

    Raises:
        FileNotFoundError: the ``.hdr`` or ``.cfl`` is missing.
        ValueError: dimension 0 is not 1 (Cartesian k-space, read with
            :func:`mskjax.io.read_cfl`), naming the file.
    """
    array = read_cfl(name)
    dims = array.shape
    if dims[0] != 1:
        raise ValueError(f"{_READ_KSP}: {_file(name)}: non-Cartesian BART k-space has size 1 "
                         f"in dimension 0 (the samples run along dimension 1), got dimensions "
                         f"{dims}; read Cartesian k-space with mskjax.io.read_cfl")
    full = dims + (1,) * (16 - len(dims))
    coils = full[_COIL_DIM]
    trajectory = _trajectory_dims(dims)
    data = array.reshape(full, order="F")[0]            # (d1, d2, coils, d4, ...)
    data = np.moveaxis(data, _COIL_DIM - 1, -1)          # (d1, d2, d4, ..., coils)
    data = data.reshape((*trajectory, coils), order="F")
    return np.ascontiguousarray(np.transpose(data), dtype=np.complex64)


def write_bart_kspace(name: str | os.PathLike, kspace: ArrayLike) -> Path:
    """Write ``(coils, *trajectory)`` k-space as BART's ``(1, readout, spokes, coils, ...)``,
    atomically; the inverse of :func:`read_bart_kspace`.

    Args:
        name: the array's name, with or without ``.cfl``/``.hdr``; its folder must exist.
        kspace: complex64 ``(coils, *trajectory)`` (at most 14 trajectory axes), numpy or JAX.

    Returns:
        The ``.cfl`` path.
    """
    if isinstance(kspace, (list, tuple)) or not hasattr(kspace, "__array__"):
        raise TypeError(f"{_WRITE_KSP}: kspace must be an array, got {type(kspace).__name__}")
    kspace = np.asarray(kspace)
    if kspace.dtype != np.complex64:
        hint = ("; convert explicitly with kspace.astype(np.complex64)"
                if kspace.dtype.kind == "c" else "")
        raise TypeError(f"{_WRITE_KSP}: kspace must be complex64 (coils, *trajectory), got "
                        f"{kspace.dtype}{hint}")
    if not 2 <= kspace.ndim <= _MAX_TRAJECTORY_NDIM + 1 or 0 in kspace.shape:
        raise ValueError(f"{_WRITE_KSP}: kspace must be (coils, *trajectory) with 1 to "
                         f"{_MAX_TRAJECTORY_NDIM} trajectory axes and no empty axis, got shape "
                         f"{kspace.shape}")
    coils, trajectory = kspace.shape[0], kspace.shape[1:]
    data = np.transpose(kspace)                           # (d1, d2, d3, ..., coils)
    data = data.reshape((*reversed(trajectory), coils), order="F")
    data = np.moveaxis(data, -1, min(2, data.ndim - 1))   # (d1, d2, coils, d3, ...)
    return write_cfl(name, data.reshape(_bart_dims(trajectory, 1, coils), order="F"))
