"""Simulated coil sensitivity maps: a birdcage model and Gaussian surface coils.

Both families use the same normalised coordinates on each spatial axis of length ``n``:
``u = (i - n / 2) / (n / 2)``, so the field of view spans ``[-1, 1)`` along every axis (an
ellipse of radius ``r`` in these units is an ellipse with semi-axes ``r * n / 2`` in pixels).
``x`` is the last axis, ``y`` the one before it and ``z`` (3D only) the one before that.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from .._checks import _is_concrete, check_interval, check_positive_int


def _check_shape(shape, func):
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if (dims is None or len(dims) not in (3, 4)
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                       for n in dims)):
        got = dims if dims is not None else shape
        raise ValueError(
            f"{func}: shape must be (coils, ny, nx) or (coils, nz, ny, nx) with positive "
            f"integer sizes, got {got!r}"
        )
    return tuple(int(n) for n in dims)


def _check_dtype(dtype, func):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{func}: dtype must be complex64 or complex128, got {dtype!r}")
    if not np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{func}: dtype must be complex64 or complex128, got {dtype}")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise TypeError(
            f"{func}: dtype {dtype} needs 64-bit JAX; enable it with "
            "jax.config.update('jax_enable_x64', True) or use complex64"
        )
    return dtype


def _grid(n, real):
    """Normalised coordinates ``(i - n/2) / (n/2)`` of an axis of length ``n``."""
    return (jnp.arange(n, dtype=real) - n / 2) / (n / 2)


def _polar(magnitude, phase, dtype):
    return jax.lax.complex(magnitude * jnp.cos(phase), magnitude * jnp.sin(phase)).astype(dtype)


def _check_result(maps, func, what):
    if _is_concrete(maps) and not bool(jnp.all(jnp.isfinite(maps))):
        raise ValueError(f"{func}: {what}")
    return maps


def birdcage_maps(shape: Sequence[int], *, radius: float = 1.5, coils_per_ring: int = 8,
                  dtype: DTypeLike = jnp.complex64) -> jax.Array:
    """Birdcage coil sensitivities (the model of ``sigpy.mri.birdcage_maps(shape, r, nzz)``).

    Coil ``c`` sits at ``radius * (cos a_c, sin a_c)`` in the normalised ``(x, y)`` plane and its
    sensitivity is ``exp(i * phi_c) / dist_c`` (``dist_c`` the distance to the coil,
    ``phi_c = atan2(x - x_c, y_c - y) + phase_c``); the maps are then scaled so that
    ``sum_c |S_c|^2 == 1`` everywhere.

    - 2D: the ``coils`` coils form one ring, ``a_c = 2 pi c / coils`` and
      ``phase_c = -a_c``; ``coils_per_ring`` is not used.
    - 3D: rings of ``coils_per_ring`` coils, ``a_c = 2 pi c / coils_per_ring``; ring
      ``q = c // coils_per_ring`` is centred at ``z = q - (rings - 1) / 2`` and
      ``phase_c = -2 pi (c + q) / coils_per_ring``.

    Args:
        shape: ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``.
        radius: coil distance from the centre in normalised units (keyword-only, ``> 0``;
            above ``sqrt(2)`` every coil lies outside the field of view).
        coils_per_ring: coils per ring in 3D (keyword-only).
        dtype: complex64 (default) or complex128 (needs 64-bit JAX).

    Returns:
        Complex maps of ``shape`` with unit root-sum-of-squares at every pixel.

    Raises:
        ValueError: a bad ``shape``, ``radius`` or ``coils_per_ring``, or a coil centre that
            falls exactly on a grid point (only possible for ``radius <= sqrt(2)``).
        TypeError: a non-complex ``dtype``.
    """
    func = "mskjax.coils.birdcage_maps"
    shape = _check_shape(shape, func)
    check_interval(radius, "radius", func, low=0)
    check_positive_int(coils_per_ring, "coils_per_ring", func)
    dtype = _check_dtype(dtype, func)
    maps = _birdcage(shape, float(radius), int(coils_per_ring), dtype)
    return _check_result(maps, func, f"radius={radius!r} puts a coil centre on a grid point; "
                                     "choose another radius")


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _birdcage(shape, radius, coils_per_ring, dtype):
    real = np.finfo(dtype).dtype
    coils, spatial = shape[0], shape[1:]
    c = np.arange(coils, dtype=np.float64)
    per_ring = coils if len(spatial) == 2 else coils_per_ring
    ring = np.floor(c / per_ring)
    angle = c * (2 * np.pi / per_ring)
    phase = -angle if len(spatial) == 2 else -(c + ring) * (2 * np.pi / per_ring)
    centre_x = radius * np.cos(angle)
    centre_y = radius * np.sin(angle)

    def per_coil(values):  # (coils,) -> (coils, 1, ..., 1), broadcasting over space
        return jnp.asarray(values.reshape((coils,) + (1,) * len(spatial)), dtype=real)

    axes = [_grid(n, real).reshape((1,) * (1 + k) + (n,) + (1,) * (len(spatial) - 1 - k))
            for k, n in enumerate(spatial)]
    dx = axes[-1] - per_coil(centre_x)
    dy = axes[-2] - per_coil(centre_y)
    dist2 = dx ** 2 + dy ** 2
    if len(spatial) == 3:
        centre_z = ring - 0.5 * (np.ceil(coils / coils_per_ring) - 1)
        dist2 = dist2 + (axes[-3] - per_coil(centre_z)) ** 2
    magnitude = 1 / jnp.sqrt(dist2)
    magnitude = magnitude / jnp.sqrt(jnp.sum(magnitude ** 2, axis=0))
    return _polar(magnitude, jnp.arctan2(dx, -dy) + per_coil(phase), dtype)


def gaussian_maps(shape: Sequence[int], *, width: float = 0.5, radius: float = 1.2,
                  phase_ramp: float = np.pi / 2, coils_per_ring: int = 8,
                  dtype: DTypeLike = jnp.complex64) -> jax.Array:
    """Gaussian surface-coil sensitivities: smooth blobs centred around the field of view.

    In normalised coordinates, coil ``c`` is centred at ``(x_c, y_c) = radius * (cos a_c,
    sin a_c)``: on an ellipse just outside the ellipse inscribed in the field of view (radius 1,
    where the anatomy usually is) for ``radius`` a little above 1; with the default 1.2 the
    diagonal coils lie in the corners of the rectangular field of view, and ``radius`` above
    ``sqrt(2)`` puts every coil outside it. Coil ``c``'s sensitivity is

    ``S_c = exp(-d_c^2 / (2 width^2)) * exp(i * (a_c + phase_ramp * (x cos a_c + y sin a_c)))``

    with ``d_c`` the distance to the centre: a Gaussian magnitude and a phase that is linear in
    space, increasing towards the coil. The maps are not normalised (their root-sum-of-squares
    varies, as for a real receive array); apply :func:`normalize_maps` for ESPIRiT-style maps.

    - 2D: all coils form one ring, ``a_c = 2 pi c / coils``; ``coils_per_ring`` is not used.
    - 3D: rings of ``coils_per_ring`` coils, ``a_c = 2 pi c / coils_per_ring``; ring
      ``q = c // coils_per_ring`` is centred at ``z_c = q - (rings - 1) / 2`` and ``d_c``
      includes ``z - z_c``. The phase does not vary along ``z``.

    Args:
        shape: ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``.
        width: standard deviation of the Gaussian in normalised units (keyword-only, ``> 0``;
            0.5 is a quarter of the field of view).
        radius: distance of the coil centres from the centre, normalised units (``> 0``);
            a coil is brightest at the pixel nearest its centre.
        phase_ramp: phase slope in radians per normalised unit (default ``pi / 2``, so the phase
            changes by ``pi`` across the field of view along the coil's direction).
        coils_per_ring: coils per ring in 3D.
        dtype: complex64 (default) or complex128 (needs 64-bit JAX).

    Returns:
        Complex maps of ``shape``; the peak magnitude of each coil is at most 1.
    """
    func = "mskjax.coils.gaussian_maps"
    shape = _check_shape(shape, func)
    check_interval(width, "width", func, low=0)
    check_interval(radius, "radius", func, low=0)
    check_interval(phase_ramp, "phase_ramp", func)
    check_positive_int(coils_per_ring, "coils_per_ring", func)
    dtype = _check_dtype(dtype, func)
    return _gaussian(shape, float(width), float(radius), float(phase_ramp), int(coils_per_ring),
                     dtype)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _gaussian(shape, width, radius, phase_ramp, coils_per_ring, dtype):
    real = np.finfo(dtype).dtype
    coils, spatial = shape[0], shape[1:]
    c = np.arange(coils, dtype=np.float64)
    per_ring = coils if len(spatial) == 2 else coils_per_ring
    ring = np.floor(c / per_ring)
    angle = (c % per_ring) * (2 * np.pi / per_ring)

    def per_coil(values):
        return jnp.asarray(values.reshape((coils,) + (1,) * len(spatial)), dtype=real)

    axes = [_grid(n, real).reshape((1,) * (1 + k) + (n,) + (1,) * (len(spatial) - 1 - k))
            for k, n in enumerate(spatial)]
    x, y = axes[-1], axes[-2]
    cos, sin = per_coil(np.cos(angle)), per_coil(np.sin(angle))
    dist2 = (x - radius * cos) ** 2 + (y - radius * sin) ** 2
    if len(spatial) == 3:
        centre_z = ring - 0.5 * (np.ceil(coils / coils_per_ring) - 1)
        dist2 = dist2 + (axes[-3] - per_coil(centre_z)) ** 2
    magnitude = jnp.exp(-dist2 / (2 * width ** 2))
    phase = per_coil(angle) + phase_ramp * (x * cos + y * sin)
    return _polar(magnitude, phase, dtype)
