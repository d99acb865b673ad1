"""Root-sum-of-squares coil combination."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array, check_inexact, check_ndim, normalize_axes


def squared_magnitude(x):
    """``|x|^2`` computed as ``re^2 + im^2`` (differentiable everywhere, also at 0)."""
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


def safe_sqrt(power):
    """``sqrt(power)`` for ``power >= 0``, with gradient 0 (not infinite) where ``power == 0``.

    NaN stays NaN (and infinity infinite): corrupted input must stay visible under ``jit``.
    """
    positive = power > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, power, 1)),
                     jnp.where(jnp.isnan(power), power, 0))


def rss(x: ArrayLike, *, axis: int | Sequence[int] = 0) -> jax.Array:
    """Root-sum-of-squares over the coil axis: ``sqrt(sum_c |x_c|^2)``.

    Args:
        x: coil images or k-space ``(coils, *spatial)``, real or complex.
        axis: the coil axis, or a tuple of axes to combine (keyword-only); default 0.

    Returns:
        Real array of ``x``'s shape without ``axis`` (float32 for complex64 or float32 input).
        Safe under ``jit``, ``vmap`` and ``grad``: the gradient at a pixel where every coil is
        zero is 0, not NaN. A NaN in any coil makes that pixel NaN (never 0). Computed on
        values scaled by their largest component, so huge (1e30) and tiny (1e-30) float32
        values neither overflow nor underflow.
    """
    func = "mskjax.coils.rss"
    x = as_array(x, "x", func)
    check_inexact(x, "x", func)
    check_ndim(x, "x", func, min_ndim=1, layout="at least 1-dimensional, e.g. (coils, *spatial)")
    axes = normalize_axes(axis, x.ndim, "axis", func)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"{func}: x must hold at least one coil along axis {axis}, got shape "
                         f"{tuple(x.shape)}")
    return _rss(jnp.asarray(x), axes)


@functools.partial(jax.jit, static_argnums=1)
def _rss(x, axes):
    # Scale by the largest real or imaginary component (a constant for the gradient: rss is
    # homogeneous of degree 1); 1 where that is 0, infinite or NaN, which then shows through.
    parts = jnp.maximum(jnp.abs(jnp.real(x)), jnp.abs(jnp.imag(x))) if jnp.iscomplexobj(x) \
        else jnp.abs(x)
    scale = jax.lax.stop_gradient(jnp.max(parts, axis=axes, keepdims=True))
    scale = jnp.where((scale > 0) & jnp.isfinite(scale), scale, jnp.ones((), scale.dtype))
    power = jnp.sum(squared_magnitude(x / scale), axis=axes)
    return safe_sqrt(power) * jnp.squeeze(scale, axis=axes)
