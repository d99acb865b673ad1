"""ESPIRiT calibration from non-Cartesian k-space: the gridded centre of k-space.

Conventions:

- Non-Cartesian k-space is ``(coils, *trajectory)`` on coordinates ``(*trajectory, ndim)`` in
  cycles per field of view (:class:`mskjax.linop.NUFFT`), ``ndim`` 2 or 3; ``shape`` is the
  image grid ``(*spatial)`` of ``ndim`` axes.
- The calibration region is the central ``calib_width`` grid frequencies of each axis, as in
  :func:`mskjax.coils.espirit`: indices ``n // 2 - c // 2`` to ``n // 2 - c // 2 + c - 1`` of
  the centred k-space, frequencies ``k = -(c // 2)`` to ``c - 1 - c // 2`` (cycles per field
  of view).
- Density compensation ``d`` is on the project's scale (:func:`mskjax.sampling.
  pipe_menon_density`): ``NUFFT.H(d * NUFFT(x)) ~= x`` for a smooth ``x``.

Gridding the centre: the samples within ``margin`` of the calibration region (every coordinate
in ``[-(c // 2) - margin, c - 1 - c // 2 + margin]``) are weighted by ``d`` (zero weight
elsewhere), the adjoint NUFFT makes coil images on the grid, and their centred FFT
(:func:`mskjax.fourier.fftnc`) is read in the calibration region. The value at a grid frequency
is then ``sum_j d_j y_j D(k - k_j)``, ``D`` the Dirichlet kernel of the grid (a periodic sinc):
the band-limited interpolation of the samples, exact on a Cartesian grid with ``d = 1``. The
margin lets the interpolation at the edge of the region reach the samples beyond it: on a
radial knee simulation (160 x 128, 96 spokes, 24 x 24 region) the gridded region differs from
the Cartesian k-space by 4.9 % with no margin and 1.1 % with the default 4, and the samples
far from the centre, undersampled and noisier, are left out.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import check_interval
from ..fourier import fftnc
from ..linop import NUFFT, check_coords, check_kspace_on_coords, check_weights
from ..sampling import pipe_menon_density
from ._espirit import espirit

_CALIBRATION = "mskjax.coils.nufft_calibration"
_ESPIRIT = "mskjax.coils.espirit_nufft"
#: The options of :func:`espirit` that :func:`espirit_nufft` passes on.
_ESPIRIT_OPTIONS = ("kernel_width", "thresh", "crop", "num_maps", "max_iter")
#: FINUFFT's tolerance for the gridding (single precision reaches about 1e-6).
_EPS = 1e-6


def _calib_widths(calib_width, spatial, func):
    """``calib_width`` (an int or one per axis) as a tuple of ints in ``[1, n]``."""
    ndim = len(spatial)
    if isinstance(calib_width, numbers.Integral) and not isinstance(calib_width, bool):
        calib_width = (calib_width,) * ndim
    try:
        widths = tuple(calib_width)
    except TypeError:
        widths = None
    if (widths is None or len(widths) != ndim
            or not all(isinstance(w, numbers.Integral) and not isinstance(w, bool)
                       and 1 <= w <= n for w, n in zip(widths, spatial))):
        raise ValueError(f"{func}: calib_width must be a positive integer or {ndim} positive "
                         f"integers (one per spatial axis), each at most the grid {spatial}, "
                         f"got {calib_width!r}")
    return tuple(int(w) for w in widths)


def _check_grid(shape, func):
    """``shape`` as the image grid: 2 or 3 positive ints."""
    try:
        grid = tuple(shape)
    except TypeError:
        grid = None
    if (grid is None or len(grid) not in (2, 3)
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                       for n in grid)):
        raise ValueError(f"{func}: shape must be the image grid (ny, nx) or (nz, ny, nx) of "
                         f"positive ints, got {shape!r}")
    return tuple(int(n) for n in grid)


def _check_inputs(kspace, coords, shape, calib_width, density, margin, func):
    shape = _check_grid(shape, func)
    coords = check_coords(coords, shape, func)
    kspace = check_kspace_on_coords(kspace, coords, func)
    calib = _calib_widths(calib_width, shape, func)
    check_interval(margin, "margin", func, low=0, low_open=False)
    if density is not None:
        density = check_weights(density, coords.shape[:-1], func, "density")
    return kspace, coords, shape, calib, density


def nufft_calibration(kspace: ArrayLike, coords: ArrayLike, *, shape: Sequence[int],
                      calib_width: int | Sequence[int] = 24,
                      density: ArrayLike | None = None, margin: float = 4.0) -> jax.Array:
    """Cartesian calibration k-space gridded from the centre of non-Cartesian k-space.

    The samples within ``margin`` of the central ``calib_width`` region are density-compensated,
    put on the grid by the adjoint NUFFT and Fourier transformed (module docstring); the result
    holds the gridded values in the calibration region and zeros elsewhere, ready for
    :func:`espirit` with the same ``calib_width``. Jittable with ``shape``, ``calib_width`` and
    ``margin`` static.

    Args:
        kspace: complex ``(coils, *trajectory)`` non-Cartesian k-space.
        coords: ``(*trajectory, ndim)`` coordinates in cycles per field of view, ``ndim`` 2 or 3.
        shape: the image grid ``(*spatial)``, ``ndim`` axes (keyword-only).
        calib_width: the width of the calibration region, an int for every axis or one per axis,
            each at most the grid size.
        density: real non-negative ``(*trajectory)`` density compensation on the project's scale;
            ``None`` computes :func:`mskjax.sampling.pipe_menon_density` of ``coords``.
        margin: how far beyond the calibration region samples are used, in cycles per field of
            view (a real number >= 0).

    Returns:
        Complex centred k-space ``(coils, *shape)`` in ``kspace``'s dtype, zero outside the
        calibration region.

    Raises:
        TypeError: real k-space or coordinates that are not real, non-array input.
        ValueError: mismatched shapes, coordinates outside ``[-n/2, n/2]``, non-finite data, a
            bad ``calib_width``, ``margin`` or ``density``.
    """
    kspace, coords, shape, calib, density = _check_inputs(
        kspace, coords, shape, calib_width, density, margin, _CALIBRATION)
    return _calibrate(kspace, coords, density, shape, calib, margin)


def _calibrate(kspace, coords, density, shape, calib, margin):
    if density is None:
        density = pipe_menon_density(coords, shape=shape)
    return _grid_centre(kspace, coords, density, shape=shape, calib=calib,
                        margin=float(margin))


@functools.partial(jax.jit, static_argnames=("shape", "calib", "margin"))
def _grid_centre(kspace, coords, density, *, shape, calib, margin):
    real = jnp.finfo(kspace.dtype).dtype
    low = jnp.asarray([-(c // 2) - margin for c in calib], coords.dtype)
    high = jnp.asarray([c - 1 - c // 2 + margin for c in calib], coords.dtype)
    inside = jnp.all((coords >= low) & (coords <= high), axis=-1)
    weights = jnp.where(inside, density.astype(real), jnp.zeros((), real))
    coil_images = NUFFT(coords, shape=(kspace.shape[0], *shape), eps=_EPS).H(kspace * weights)
    gridded = fftnc(coil_images, axes=tuple(range(1, len(shape) + 1)))
    region = (slice(None),) + tuple(slice(n // 2 - c // 2, n // 2 - c // 2 + c)
                                    for n, c in zip(shape, calib))
    return jnp.zeros_like(gridded).at[region].set(gridded[region])


def espirit_nufft(kspace: ArrayLike, coords: ArrayLike, *, shape: Sequence[int],
                  calib_width: int | Sequence[int] = 24, density: ArrayLike | None = None,
                  margin: float = 4.0, **espirit_options) -> jax.Array:
    """ESPIRiT coil sensitivity maps from non-Cartesian k-space, with no Cartesian scan.

    :func:`nufft_calibration` grids the centre of k-space, then :func:`espirit` runs on it with
    the same ``calib_width``.

    Args:
        kspace: complex ``(coils, *trajectory)`` non-Cartesian k-space.
        coords: ``(*trajectory, ndim)`` coordinates in cycles per field of view, ``ndim`` 2 or 3.
        shape: the image grid ``(*spatial)`` (keyword-only).
        calib_width: the width of the calibration region (an int or one per axis).
        density: density compensation on the project's scale, or ``None`` for
            :func:`mskjax.sampling.pipe_menon_density`.
        margin: how far beyond the calibration region samples are used (cycles per field of
            view).
        **espirit_options: ``kernel_width``, ``thresh``, ``crop``, ``num_maps`` and
            ``max_iter`` of :func:`espirit`.

    Returns:
        Complex maps ``(coils, *shape)`` (``(num_maps, coils, *shape)`` for several sets), as
        :func:`espirit` returns them.

    Raises:
        TypeError: an option :func:`espirit` does not take, and the errors of
            :func:`nufft_calibration` and :func:`espirit`.
    """
    unknown = sorted(set(espirit_options) - set(_ESPIRIT_OPTIONS))
    if unknown:
        raise TypeError(f"{_ESPIRIT}: unknown options {unknown}; the ESPIRiT options are "
                        f"{list(_ESPIRIT_OPTIONS)} (calib_width is its own argument)")
    kspace, coords, shape, calib, density = _check_inputs(
        kspace, coords, shape, calib_width, density, margin, _ESPIRIT)
    calibration = _calibrate(kspace, coords, density, shape, calib, margin)
    return espirit(calibration, calib_width=calib, **espirit_options)
