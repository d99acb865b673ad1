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

import jax.numpy as jnp

from .._checks import check_inexact, check_ndim, normalize_axes


def _axes(x, axes, default, func):
    if axes is None:
        axes = default(x.ndim)
    return normalize_axes(axes, x.ndim, "axes", func)


def _centred(transform, x, axes):
    x = jnp.fft.ifftshift(x, axes=axes)
    # XLA transforms at most 3 axes at once; more are done in groups of 3 (separable).
    for start in range(0, len(axes), 3):
        x = transform(x, axes=axes[start:start + 3], norm="ortho")
    return jnp.fft.fftshift(x, axes=axes)


def _prepare(x, func, min_ndim):
    x = jnp.asarray(x)
    check_inexact(x, "x", func)
    check_ndim(x, "x", func, min_ndim=min_ndim)
    return x


def fftnc(x, *, axes=None):
    """Centred orthonormal N-D FFT.

    Args:
        x: array ``(..., *spatial)``, real or complex.
        axes: axes to transform (keyword-only); default all axes.

    Returns:
        Complex array of the same shape.
    """
    x = _prepare(x, "mskjax.fourier.fftnc", 1)
    axes = _axes(x, axes, lambda n: tuple(range(n)), "mskjax.fourier.fftnc")
    return _centred(jnp.fft.fftn, x, axes)


def ifftnc(x, *, axes=None):
    """Centred orthonormal N-D inverse FFT (the adjoint and inverse of :func:`fftnc`).

    Args:
        x: array ``(..., *spatial)``, real or complex.
        axes: axes to transform (keyword-only); default all axes.

    Returns:
        Complex array of the same shape.
    """
    x = _prepare(x, "mskjax.fourier.ifftnc", 1)
    axes = _axes(x, axes, lambda n: tuple(range(n)), "mskjax.fourier.ifftnc")
    return _centred(jnp.fft.ifftn, x, axes)


def fft2c(x, *, axes=(-2, -1)):
    """Centred orthonormal 2D FFT over ``axes`` (default the last two).

    Args:
        x: array ``(..., rows, cols)``, real or complex.
        axes: the two axes to transform (keyword-only).

    Returns:
        Complex array of the same shape.
    """
    x = _prepare(x, "mskjax.fourier.fft2c", 2)
    axes = _axes(x, axes, None, "mskjax.fourier.fft2c")
    if len(axes) != 2:
        raise ValueError(f"mskjax.fourier.fft2c: axes must name 2 axes, got {axes}")
    return _centred(jnp.fft.fftn, x, axes)


def ifft2c(x, *, axes=(-2, -1)):
    """Centred orthonormal 2D inverse FFT over ``axes`` (default the last two).

    Args:
        x: array ``(..., rows, cols)``, real or complex.
        axes: the two axes to transform (keyword-only).

    Returns:
        Complex array of the same shape.
    """
    x = _prepare(x, "mskjax.fourier.ifft2c", 2)
    axes = _axes(x, axes, None, "mskjax.fourier.ifft2c")
    if len(axes) != 2:
        raise ValueError(f"mskjax.fourier.ifft2c: axes must name 2 axes, got {axes}")
    return _centred(jnp.fft.ifftn, x, axes)
