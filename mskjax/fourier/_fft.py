"""Centred, orthonormal FFTs.

Conventions (used everywhere in mskjax):

- *centred*: the zero frequency sits at index ``n // 2`` of each transformed axis, in both
  domains. ``fftnc(x) = fftshift(fftn(ifftshift(x)))``, so the transforms are correct for even
  and odd sizes alike (for odd sizes ``fftshift`` and ``ifftshift`` differ, and the order above
  matters).
- *orthonormal*: ``norm="ortho"``, so ``ifftnc`` is both the inverse and the adjoint of
  ``fftnc`` and Parseval holds: ``||fftnc(x)|| == ||x||``.
- Spatial axes are last. ``fft2c`` transforms the last two axes by default; ``fftnc`` all axes.
- Real input is promoted to complex (complex64 for float32, complex128 for float64).

The functions are pure ``jax.numpy`` and are safe under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import check_inexact, check_ndim, normalize_axes


def _transform(transform, x, axes, func, *, two_d):
    x = jnp.asarray(x)
    check_inexact(x, "x", func)
    check_ndim(x, "x", func, min_ndim=2 if two_d else 1)
    if axes is None:
        axes = tuple(range(x.ndim))
    axes = normalize_axes(axes, x.ndim, "axes", func)
    if two_d and len(axes) != 2:
        raise ValueError(f"{func}: axes must name 2 axes, got {axes}")
    x = jnp.fft.ifftshift(x, axes=axes)
    # XLA transforms at most 3 axes at once; more are done in groups of 3 (separable).
    for start in range(0, len(axes), 3):
        x = transform(x, axes=axes[start:start + 3], norm="ortho")
    return jnp.fft.fftshift(x, axes=axes)


def fftnc(x: ArrayLike, *, axes: int | Sequence[int] | None = None) -> jax.Array:
    """Centred orthonormal N-D FFT.

    Args:
        x: array ``(..., *spatial)``, real or complex.
        axes: axes to transform (keyword-only); default all axes.

    Returns:
        Complex array of the same shape.
    """
    return _transform(jnp.fft.fftn, x, axes, "mskjax.fourier.fftnc", two_d=False)


def ifftnc(x: ArrayLike, *, axes: int | Sequence[int] | None = None) -> jax.Array:
    """Centred orthonormal N-D inverse FFT (the adjoint and inverse of :func:`fftnc`).

    Args:
        x: array ``(..., *spatial)``, real or complex.
        axes: axes to transform (keyword-only); default all axes.

    Returns:
        Complex array of the same shape.
    """
    return _transform(jnp.fft.ifftn, x, axes, "mskjax.fourier.ifftnc", two_d=False)


def fft2c(x: ArrayLike, *, axes: Sequence[int] = (-2, -1)) -> jax.Array:
    """Centred orthonormal 2D FFT over ``axes`` (default the last two).

    Args:
        x: array ``(..., rows, cols)``, real or complex.
        axes: the two axes to transform (keyword-only).

    Returns:
        Complex array of the same shape.
    """
    return _transform(jnp.fft.fftn, x, axes, "mskjax.fourier.fft2c", two_d=True)


def ifft2c(x: ArrayLike, *, axes: Sequence[int] = (-2, -1)) -> jax.Array:
    """Centred orthonormal 2D inverse FFT over ``axes`` (default the last two).

    Args:
        x: array ``(..., rows, cols)``, real or complex.
        axes: the two axes to transform (keyword-only).

    Returns:
        Complex array of the same shape.
    """
    return _transform(jnp.fft.ifftn, x, axes, "mskjax.fourier.ifft2c", two_d=True)
