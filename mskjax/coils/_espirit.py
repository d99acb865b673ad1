"""ESPIRiT coil sensitivity maps (Uecker et al., MRM 71:990-1001, 2014).

Conventions:

- k-space is ``(coils, *spatial)`` with 2 or 3 spatial axes, centred as everywhere in mskjax
  (the zero frequency at index ``n // 2`` of each spatial axis). The calibration region is the
  central ``calib_width`` samples of each spatial axis, indices
  ``n // 2 - calib_width // 2`` to ``n // 2 - calib_width // 2 + calib_width - 1``, and must be
  fully sampled.
- Maps are ``(coils, *spatial)`` for one set and ``(num_maps, coils, *spatial)`` for several
  (the layout of :class:`mskjax.linop.SoftSense`), in the dtype of the k-space (complex64, or
  complex128 with 64-bit JAX). Each map has unit norm over coils where it is kept and is zero
  where its eigenvalue is at most ``crop``; its phase is relative to the first coil (coil 0 is
  real and non-negative).

The algorithm:

1. The calibration matrix has one row per ``kernel_width``-sized patch of the calibration
   region (all shifts, a block-Hankel matrix) and ``coils * kernel_width ** ndim`` columns,
   coil-major. Its right singular vectors ``v_k`` with singular value above
   ``thresh * s_max`` span the signal space.
2. The image-space operator at pixel ``x`` is the ``(coils, coils)`` matrix
   ``W(x) = sum_k g_k(x) g_k(x)^H * N / kernel_width ** ndim`` with
   ``g_k = ifftnc(zero-padded v_k)`` and ``N`` the number of pixels, exactly as in
   ``sigpy.mri.app.EspiritCalib``. It is formed without padding the kernels: ``W`` is a
   trigonometric polynomial whose coefficients are the correlations of the kernels at the
   ``(2 * kernel_width - 1) ** ndim`` lags, evaluated with small DFT matrices, one block of
   image lines at a time (so memory grows with ``coils ** 2`` times the lines of one block, not
   the whole image).
3. At each pixel the leading ``num_maps`` eigenvectors of ``W`` are found by subspace (power)
   iteration on ``num_maps + 1`` vectors (at most ``coils``), ``max_iter`` steps from a fixed
   start (the first columns of the ``coils``-point DFT matrix; the first is all ones, as in
   sigpy), followed by a Rayleigh-Ritz step. The extra vector makes a map accurate also where
   the next eigenvalue is nearly as large (a folded field of view), where plain power
   iteration converges slowly. A map is kept where its eigenvalue exceeds ``crop``.

Everything runs in JAX under one ``jit`` with the sizes static; ``thresh`` and ``crop`` are
traced, so changing them does not recompile.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import (
    _is_concrete, as_array, check_complex, check_finite, check_interval, check_ndim, check_positive_int,
)

_FUNC = "mskjax.coils.espirit"
#: Pixels per block of the eigen-solver (whole image lines are grouped up to about this many).
_BLOCK_PIXELS = 1024


def _widths(value, name, spatial):
    """``value`` (an int or one int per spatial axis) as a tuple of positive ints."""
    ndim = len(spatial)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * ndim
    try:
        widths = tuple(value)
    except TypeError:
        widths = None
    if (widths is None or len(widths) != ndim
            or not all(isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1
                       for w in widths)):
        raise ValueError(f"{_FUNC}: {name} must be a positive integer or {ndim} positive "
                         f"integers (one per spatial axis), got {value!r}")
    return tuple(int(w) for w in widths)


def espirit(kspace: ArrayLike, *, calib_width: int | Sequence[int] = 24,
            kernel_width: int | Sequence[int] = 6, thresh: float = 0.02, crop: float = 0.95,
            num_maps: int = 1, max_iter: int = 30) -> jax.Array:
    """ESPIRiT coil sensitivity maps from centred k-space.

    Takes the central ``calib_width`` calibration region, builds the block-Hankel calibration
    matrix of ``kernel_width`` patches, keeps the right singular vectors with singular value
    above ``thresh`` times the largest, turns them into the per-pixel ``(coils, coils)``
    image-space operator and returns its leading eigenvectors where the eigenvalue exceeds
    ``crop`` (see the module docstring for the details and conventions). With the same
    settings the maps equal ``sigpy.mri.app.EspiritCalib(...).run()`` and
    ``bart ecalib -r calib_width -k kernel_width -t thresh**2 -c crop -m num_maps`` up to a
    phase per pixel (BART keeps singular values with ``s / s_max > sqrt(t)``, so its ``-t`` is
    the square of ``thresh``; for two or more maps, the span of the maps at a pixel).

    Args:
        kspace: complex centred k-space ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``, fully
            sampled in the calibration region.
        calib_width: width of the calibration region, an int for every spatial axis or one
            per axis (keyword-only, static); at most the size of the axis.
        kernel_width: width of the kernels (patches), an int or one per axis (static); smaller
            than ``calib_width`` on every axis.
        thresh: singular values above ``thresh * s_max`` span the signal space (``[0, 1)``;
            as in sigpy, and the square root of BART's ``-t``).
        crop: a map is kept where its eigenvalue exceeds ``crop`` and is zero elsewhere
            (``[0, 1)``; eigenvalues lie in ``[0, 1]`` for data consistent with the kernels).
        num_maps: number of sets of maps, ``1 <= num_maps <= coils`` (static).
        max_iter: number of subspace iterations per pixel (static). Map ``m`` converges as
            ``(lambda_{num_maps + 2} / lambda_m) ** max_iter``; 30 (as in BART) gives the maps
            of 1000 iterations to a coherence above 0.9999 on the ESPIRiT brain examples.

    Returns:
        Complex maps ``(coils, *spatial)`` for ``num_maps == 1``, else
        ``(num_maps, coils, *spatial)`` ordered by decreasing eigenvalue, in ``kspace``'s dtype.

    Raises:
        TypeError: real k-space, or not an array.
        ValueError: a rank other than 3 or 4, non-finite values, a calibration region larger
            than the data or holding no signal (all zeros, or no pixel with an eigenvalue
            above ``crop``, as for pure noise: every map would be zero), a kernel not smaller
            than the calibration region, or a bad ``thresh``, ``crop``, ``num_maps`` or
            ``max_iter``.

    The value checks (finiteness, a calibration region with signal) run on concrete k-space
    only. Under ``jit`` a calibration region without signal (or with no pixel above ``crop``)
    gives maps that are all NaN (not zeros), so that a reconstruction using them reports
    ``NONFINITE`` instead of returning a zero image.
    """
    kspace = as_array(kspace, "kspace", _FUNC)
    check_ndim(kspace, "kspace", _FUNC, ndim=(3, 4),
               layout="(coils, ny, nx) or (coils, nz, ny, nx)")
    check_complex(kspace, "kspace", _FUNC)
    coils, spatial = kspace.shape[0], tuple(kspace.shape[1:])
    calib = _widths(calib_width, "calib_width", spatial)
    kernel = _widths(kernel_width, "kernel_width", spatial)
    if any(c > n for c, n in zip(calib, spatial)):
        raise ValueError(f"{_FUNC}: the calibration region {calib} is larger than the data: "
                         f"calib_width must be at most the spatial shape {spatial}")
    if any(k >= c for k, c in zip(kernel, calib)):
        raise ValueError(f"{_FUNC}: kernel_width must be smaller than calib_width on every "
                         f"axis, got kernel_width {kernel} and calib_width {calib}")
    check_interval(thresh, "thresh", _FUNC, low=0, high=1, low_open=False)
    check_interval(crop, "crop", _FUNC, low=0, high=1, low_open=False)
    check_positive_int(num_maps, "num_maps", _FUNC)
    if num_maps > coils:
        raise ValueError(f"{_FUNC}: num_maps must be at most the number of coils ({coils}), "
                         f"got {num_maps}")
    check_positive_int(max_iter, "max_iter", _FUNC)
    check_finite(kspace, "kspace", _FUNC)
    if _is_concrete(kspace):
        region = np.asarray(kspace)[(slice(None),) + tuple(
            slice(n // 2 - c // 2, n // 2 - c // 2 + c) for n, c in zip(spatial, calib))]
        if not np.any(region != 0):
            raise ValueError(f"{_FUNC}: the calibration region (the central {calib} samples) "
                             "holds no signal (all zeros), so there are no maps to estimate; "
                             "check that kspace is centred and fully sampled there")
    kspace = jnp.asarray(kspace)
    real = jnp.finfo(kspace.dtype).dtype
    maps = _espirit(kspace, jnp.asarray(thresh, real), jnp.asarray(crop, real), calib=calib,
                    kernel=kernel, num_maps=int(num_maps), max_iter=int(max_iter))
    if _is_concrete(kspace) and _is_concrete(crop) and bool(jnp.isnan(maps.ravel()[0])):
        raise ValueError(f"{_FUNC}: no pixel has an eigenvalue above crop={float(crop)}, so "
                         "every map would be zero: the calibration region holds no signal "
                         "consistent with the kernels (noise only?); check the data or lower "
                         "crop")
    return maps[0] if num_maps == 1 else maps


def _calibration_matrix(kspace, calib, kernel):
    """The block-Hankel matrix ``(blocks, coils * prod(kernel))`` of the calibration region."""
    coils, spatial = kspace.shape[0], kspace.shape[1:]
    ndim = len(spatial)
    region = kspace[(slice(None),) + tuple(slice(n // 2 - c // 2, n // 2 - c // 2 + c)
                                           for n, c in zip(spatial, calib))]
    blocks = [c - k + 1 for c, k in zip(calib, kernel)]
    index = []
    for axis, (b, k) in enumerate(zip(blocks, kernel)):
        shape = [1] * (2 * ndim)
        shape[axis], shape[ndim + axis] = b, k
        index.append((np.arange(b)[:, None] + np.arange(k)[None, :]).reshape(shape))
    patches = region[(slice(None),) + tuple(index)]  # (coils, *blocks, *kernel)
    patches = patches.reshape(coils, math.prod(blocks), math.prod(kernel))
    return patches.transpose(1, 0, 2).reshape(math.prod(blocks), -1)


def _lag_coefficients(vh, weights, coils, kernel):
    """``R[a, b, d] = sum_k w_k sum_{p - q = d} v_k[a, p] conj(v_k[b, q])``: ``(c, c, *lags)``."""
    size = math.prod(kernel)
    gram = jnp.matmul(vh.T * weights, vh.conj(), precision=jax.lax.Precision.HIGHEST)
    gram = gram.reshape(coils, size, coils, size).transpose(1, 3, 0, 2)
    gram = gram.reshape(size * size, coils, coils)
    lags = tuple(2 * k - 1 for k in kernel)
    positions = np.stack(np.unravel_index(np.arange(size), kernel), axis=-1)  # (size, ndim)
    diff = positions[:, None, :] - positions[None, :, :] + (np.asarray(kernel) - 1)
    segment = np.ravel_multi_index(tuple(diff.reshape(-1, len(kernel)).T), lags)
    coeffs = jax.ops.segment_sum(gram, jnp.asarray(segment), num_segments=math.prod(lags))
    return jnp.moveaxis(coeffs.reshape(lags + (coils, coils)), (-2, -1), (0, 1))


def _dft_matrix(n, k, dtype):
    """``E[j, d] = exp(2 pi i (d - k + 1) (j - n // 2) / n)``: ``(n, 2k - 1)``, for lags ``d``."""
    phase = 2 * np.pi * np.outer(np.arange(n) - n // 2, np.arange(2 * k - 1) - (k - 1)) / n
    return jnp.asarray(np.exp(1j * phase), dtype)


def _orthonormalise(y):
    """Gram-Schmidt on the columns of ``y`` ``(coils, k, pixels)``, per pixel."""
    tiny = jnp.finfo(y.real.dtype).tiny
    columns = []
    for j in range(y.shape[1]):
        v = y[:, j]
        for u in columns:
            v = v - u * jnp.sum(jnp.conj(u) * v, axis=0)
        power = jnp.sum(jnp.real(v) ** 2 + jnp.imag(v) ** 2, axis=0)
        columns.append(v * jax.lax.rsqrt(jnp.maximum(power, tiny)))
    return jnp.stack(columns, axis=1)


def _apply(operator, x):
    """``operator (c, c, pixels) @ x (c, k, pixels)`` per pixel."""
    return jnp.sum(operator[:, :, None] * x[None], axis=1)


def _eigenmaps(operator, crop, num_maps, max_iter):
    """Leading eigenvectors of ``operator`` ``(c, c, pixels)``: maps ``(num_maps, c, pixels)``.

    Subspace iteration on one vector more than returned (when there are more coils), then a
    Rayleigh-Ritz step: a map converges as ``(lambda_{num_maps + 2} / lambda_m) ** max_iter``,
    so it is accurate also where the next eigenvalue is nearly as large as its own.
    """
    coils = operator.shape[0]
    block = min(num_maps + 1, coils)
    start = np.exp(2j * np.pi * np.outer(np.arange(coils), np.arange(block)) / coils)
    x = jnp.broadcast_to(jnp.asarray(start / np.sqrt(coils), operator.dtype)[..., None],
                         (coils, block, operator.shape[-1]))
    x = jax.lax.fori_loop(0, max_iter, lambda _, x: _orthonormalise(_apply(operator, x)), x)
    ax = _apply(operator, x)
    if block == 1:
        values = jnp.real(jnp.sum(jnp.conj(x) * ax, axis=0))  # (1, pixels)
    else:
        ritz = jnp.einsum("cip,cjp->pij", jnp.conj(x), ax)
        ritz = (ritz + jnp.conj(jnp.swapaxes(ritz, -1, -2))) / 2
        values, vectors = jnp.linalg.eigh(ritz)  # ascending
        values = values[:, ::-1][:, :num_maps].T
        x = jnp.einsum("cip,pij->cjp", x, vectors[:, :, ::-1][:, :, :num_maps])
    maps = jnp.swapaxes(x, 0, 1)  # (num_maps, coils, pixels)
    first = maps[:, :1]
    magnitude = jnp.abs(first)
    phase = jnp.where(magnitude > 0, jnp.conj(first) / jnp.where(magnitude > 0, magnitude, 1), 1)
    return jnp.where((values > crop)[:, None], maps * phase, jnp.zeros((), maps.dtype))


@functools.partial(jax.jit, static_argnames=("calib", "kernel", "num_maps", "max_iter"))
def _espirit(kspace, thresh, crop, *, calib, kernel, num_maps, max_iter):
    coils, spatial = kspace.shape[0], kspace.shape[1:]
    ndim = len(spatial)
    _, s, vh = jnp.linalg.svd(_calibration_matrix(kspace, calib, kernel), full_matrices=False)
    signal = s[0] > 0  # False only for an all-zero calibration region
    weights = (s > thresh * s[0]).astype(s.dtype)
    coeffs = _lag_coefficients(vh, weights, coils, kernel) / math.prod(kernel)
    # Evaluate the lags of all axes but the last on the grid: (c, c, *spatial[:-1], lags).
    for axis in range(ndim - 1):
        dft = _dft_matrix(spatial[axis], kernel[axis], kspace.dtype)
        coeffs = jnp.moveaxis(jnp.tensordot(coeffs, dft, axes=([2 + axis], [1])), -1, 2 + axis)
    last = _dft_matrix(spatial[-1], kernel[-1], kspace.dtype)
    lines = math.prod(spatial[:-1])
    per_block = max(1, _BLOCK_PIXELS // spatial[-1])
    blocks = -(-lines // per_block)
    coeffs = coeffs.reshape(coils, coils, lines, -1)
    coeffs = jnp.pad(coeffs, ((0, 0), (0, 0), (0, blocks * per_block - lines), (0, 0)))
    coeffs = coeffs.reshape(coils, coils, blocks, per_block, -1).transpose(2, 0, 1, 3, 4)

    def block(c):  # (c, c, per_block, lags) -> maps (num_maps, c, per_block * nx)
        operator = jnp.einsum("abld,xd->ablx", c, last, precision=jax.lax.Precision.HIGHEST)
        return _eigenmaps(operator.reshape(coils, coils, -1), crop, num_maps, max_iter)

    maps = jax.lax.map(block, coeffs)  # (blocks, num_maps, c, per_block * nx)
    maps = maps.reshape(blocks, num_maps, coils, per_block, spatial[-1])
    maps = maps.transpose(1, 2, 0, 3, 4).reshape(num_maps, coils, blocks * per_block, -1)
    maps = maps[:, :, :lines].reshape((num_maps, coils) + tuple(spatial))
    # No signal, or no pixel above crop: all-NaN maps, never all-zero maps passed off as maps.
    signal = signal & jnp.any(maps[0] != 0)
    return jnp.where(signal, maps, jnp.asarray(jnp.nan, maps.dtype))
