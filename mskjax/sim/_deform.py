"""Elastic deformation of an image and its labels, for segmentation training.

One smooth random displacement field moves image and labels together: each component is white
noise smoothed by a Gaussian of standard deviation ``sigma`` (mm), and the vector field is
scaled so that its largest displacement is ``alpha`` (mm). The output at grid point ``x`` is
the input at ``x + u(x)`` (backward mapping): linear interpolation for the image, the nearest
voxel for the labels (so they keep their integer values), edges extended outwards. The
smoothing is a product in Fourier space, so the field is periodic over the grid. Pure JAX, 2D
and 3D, jittable and vmappable over keys.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._phantom import check_key
from ._realism import _gaussian_response


def _check_length(value, name, func, *, allow_zero):
    if isinstance(value, jax.core.Tracer):
        return value
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{func}: {name} must be a finite number {bound} (mm), got {value!r}")
    return float(value)


def _check_voxel_size(voxel_size, ndim, func):
    if voxel_size is None:
        return (1.0,) * ndim
    if isinstance(voxel_size, numbers.Real) and not isinstance(voxel_size, bool):
        voxel_size = (voxel_size,) * ndim
    try:
        values = tuple(voxel_size)
    except TypeError:
        raise TypeError(f"{func}: voxel_size must be None, a number or {ndim} numbers (mm), got "
                        f"{voxel_size!r}") from None
    if len(values) != ndim or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v > 0
            for v in values):
        raise ValueError(f"{func}: voxel_size must be {ndim} finite numbers > 0 (mm), got "
                         f"{voxel_size!r}")
    return tuple(float(v) for v in values)


def displacement_field(key, shape, alpha, sigma, voxel_size):
    """float32 ``(ndim, *shape)`` displacement in voxels whose largest magnitude is ``alpha``
    mm, each component white noise smoothed by a Gaussian of ``sigma`` mm."""
    ndim = len(shape)
    white = jax.random.normal(key, (ndim, *shape), jnp.float32)
    sigmas = [sigma / d for d in voxel_size]
    response = _gaussian_response(shape, sigmas)
    axes = tuple(range(1, ndim + 1))
    field = jnp.real(jnp.fft.ifftn(jnp.fft.fftn(white, axes=axes) * response, axes=axes))
    size = jnp.asarray(voxel_size, jnp.float32).reshape((ndim,) + (1,) * ndim)
    peak = jnp.sqrt(jnp.max(jnp.sum(field ** 2, axis=0)))
    return (field * (alpha / jnp.maximum(peak, 1e-30)) / size).astype(jnp.float32)


def elastic_deformation(key: jax.Array, image: ArrayLike, labels: ArrayLike, *,
                        alpha: float = 3.0, sigma: float = 15.0,
                        voxel_size: float | Sequence[float] | None = None
                        ) -> tuple[jax.Array, jax.Array]:
    """Deform an image and its labels by one smooth random displacement field.

    Args:
        key: a ``jax.random`` key.
        image: floating ``(*spatial)`` or ``(channels, *spatial)`` (every channel moved by the
            same field), 2D or 3D.
        labels: integer ``(*spatial)``.
        alpha: largest displacement (mm, keyword-only); 0 returns the inputs unchanged.
        sigma: standard deviation of the Gaussian that smooths the field (mm): the distance
            over which the displacement changes.
        voxel_size: mm per voxel along each spatial axis, a number or ``ndim`` numbers; None
            for 1 (``alpha`` and ``sigma`` then count voxels).

    Returns:
        ``(image, labels)`` with the inputs' shapes and dtypes; the labels take only values
        that were in ``labels``.
    """
    func = "mskjax.sim.elastic_deformation"
    check_key(key, func)
    for name, value in (("image", image), ("labels", labels)):
        if not hasattr(value, "dtype") or not hasattr(value, "shape"):
            raise TypeError(f"{func}: {name} must be an array, got {type(value).__name__}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{func}: labels must be an integer array, got {labels.dtype}")
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"{func}: image must be real floating point, got {image.dtype}")
    spatial = tuple(labels.shape)
    if len(spatial) not in (2, 3):
        raise ValueError(f"{func}: labels must be 2D or 3D (*spatial), got shape {spatial}")
    if tuple(image.shape) != spatial and tuple(image.shape[1:]) != spatial:
        raise ValueError(f"{func}: image must be (*spatial) or (channels, *spatial) with the "
                         f"labels' spatial shape {spatial}, got shape {tuple(image.shape)}")
    alpha = _check_length(alpha, "alpha", func, allow_zero=True)
    sigma = _check_length(sigma, "sigma", func, allow_zero=False)
    voxel_size = _check_voxel_size(voxel_size, len(spatial), func)
    return _deform(key, jnp.asarray(image), jnp.asarray(labels), alpha, sigma, voxel_size)


@functools.partial(jax.jit, static_argnames=("voxel_size",))
def _deform(key, image, labels, alpha, sigma, voxel_size):
    spatial = labels.shape
    u = displacement_field(key, spatial, alpha, sigma, voxel_size)
    grid = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in spatial], indexing="ij")
    coordinates = [g + d for g, d in zip(grid, u)]

    def move(channel, order):
        return jax.scipy.ndimage.map_coordinates(channel, coordinates, order=order,
                                                 mode="nearest")

    # Every channel through the same compiled loop body, so a channel moves the same alone or
    # among others.
    channels = image.reshape((-1, *spatial))
    moved = jax.lax.map(lambda channel: move(channel, 1), channels).reshape(image.shape)
    return moved.astype(image.dtype), move(labels, 0).astype(labels.dtype)
