"""Sharpness measures of magnitude images: the high-frequency energy share and gradient
entropy.

Both take real images ``(..., rows, cols)`` (float32, or float64 with 64-bit JAX); leading axes
are slices, reduced together. They are pure ``jax.numpy`` (jit, vmap).

- :func:`high_frequency_energy` is the fraction of the image's spectral energy at spatial
  frequencies above ``cutoff`` (in cycles per pixel, radially: ``sqrt(kx^2 + ky^2) > cutoff``
  with ``kx, ky`` from ``numpy.fft.fftfreq``, so in ``[0, 0.5 sqrt(2)]``). Blurring lowers it;
  noise raises it too, so read it next to an error measure.
  :func:`high_frequency_energy_ratio` divides it by the reference's: 1 means as much fine detail
  (or noise) as the reference, below 1 blurrier.
- :func:`gradient_entropy` is the entropy ``-sum_i h_i log h_i`` of the normalised gradient
  magnitude ``h_i = |grad x|_i / sum_j |grad x|_j`` (forward differences, over the
  ``(rows - 1, cols - 1)`` pixels where both exist): the autofocus measure of MRI motion
  correction (McGee et al., MRM 2000). Sharp edges concentrate the gradient in few pixels and
  give a low entropy; blurring spreads it and raises the entropy. Lower is sharper.

An image with no energy at all (all zeros) or no gradient (constant) has no sharpness: these
are ValueErrors when the input is concrete, and NaN under ``jit`` (never a number that looks
valid).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_interval
from ._image import _check_real

_MAX_CUTOFF = 0.5 * float(np.sqrt(2.0))


def _image(x, name, func):
    x = as_array(x, name, func)
    _check_real(x, name, func)
    if x.ndim < 2 or min(x.shape[-2:]) < 2 or x.size == 0:
        raise ValueError(f"{func}: {name} must be (..., rows, cols) with at least 2 rows and "
                         f"columns, got shape {tuple(x.shape)}")
    return jnp.asarray(x)


def _unit_peak(x):
    """``x / max |x|`` (``x`` when all zero): the measure is scale-invariant, and this keeps
    the spectral power of huge or tiny (but finite) images from overflowing or underflowing.
    NaN stays NaN."""
    peak = jnp.max(jnp.abs(x)) if x.size else jnp.zeros((), x.dtype)
    return x / jnp.where(peak > 0, peak, 1).astype(x.dtype)


def _radial_frequency(rows: int, cols: int) -> np.ndarray:
    ky = np.fft.fftfreq(rows)[:, None]
    kx = np.fft.fftfreq(cols)[None, :]
    return np.sqrt(ky ** 2 + kx ** 2)


def _refuse_degenerate(value, what, func):
    if _is_concrete(value) and bool(jnp.any(value == 0)):  # NaN stays visible: no error
        raise ValueError(f"{func}: {what}")


def high_frequency_energy(image: ArrayLike, *, cutoff: float = 0.25) -> jax.Array:
    """The share of spectral energy above ``cutoff`` cycles per pixel (module docstring).

    Args:
        image: real ``(..., rows, cols)``; leading axes (slices) are summed together.
        cutoff: the radial frequency in cycles per pixel, in ``(0, 0.5 sqrt(2))``
            (keyword-only); default 0.25, half the Nyquist frequency along an axis.

    Returns:
        Scalar in ``[0, 1]``: ``sum_{|k| > cutoff} |X(k)|^2 / sum_k |X(k)|^2``.
    """
    func = "mskjax.metrics.high_frequency_energy"
    x = _image(image, "image", func)
    check_interval(cutoff, "cutoff", func, low=0, high=_MAX_CUTOFF, high_open=True)
    power = jnp.abs(jnp.fft.fft2(_unit_peak(x))) ** 2
    high = jnp.asarray(_radial_frequency(*x.shape[-2:]) > cutoff, power.dtype)
    total = jnp.sum(power)
    _refuse_degenerate(total, "image is all zeros: it has no spectral energy", func)
    return jnp.where(total > 0, jnp.sum(power * high) / jnp.where(total > 0, total, 1), jnp.nan)


def high_frequency_energy_ratio(target: ArrayLike, image: ArrayLike, *,
                                cutoff: float = 0.25) -> jax.Array:
    """:func:`high_frequency_energy` of ``image`` divided by that of ``target``.

    Args:
        target: the reference, real ``(..., rows, cols)``.
        image: the estimate, the same shape.
        cutoff: as in :func:`high_frequency_energy` (keyword-only).

    Returns:
        Scalar >= 0: 1 for as much high-frequency energy as the reference, < 1 blurrier.
    """
    func = "mskjax.metrics.high_frequency_energy_ratio"
    target = _image(target, "target", func)
    image = _image(image, "image", func)
    if target.shape != image.shape:
        raise ValueError(f"{func}: target and image must have the same shape, got "
                         f"{tuple(target.shape)} and {tuple(image.shape)}")
    reference = high_frequency_energy(target, cutoff=cutoff)
    _refuse_degenerate(reference, "target has no energy above the cutoff", func)
    return high_frequency_energy(image, cutoff=cutoff) / jnp.where(reference > 0, reference,
                                                                   jnp.nan)


def gradient_entropy(image: ArrayLike) -> jax.Array:
    """The entropy of the normalised gradient magnitude (module docstring); lower is sharper.

    Args:
        image: real ``(..., rows, cols)``; leading axes (slices) are normalised together.

    Returns:
        Scalar in ``[0, log(n)]`` (natural logarithm), ``n`` the number of gradient pixels.
    """
    func = "mskjax.metrics.gradient_entropy"
    x = _image(image, "image", func)
    # differences of the image as given (a constant gives exact zeros, also under jit), then
    # scaled to a unit peak so that the squares neither overflow nor underflow
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    peak = jnp.maximum(jnp.max(jnp.abs(dy)), jnp.max(jnp.abs(dx)))
    peak = jnp.where(peak > 0, peak, 1).astype(x.dtype)
    dy, dx = dy / peak, dx / peak
    magnitude = jnp.sqrt(dy * dy + dx * dx)
    total = jnp.sum(magnitude)
    _refuse_degenerate(total, "image is constant: it has no gradient", func)
    h = magnitude / jnp.where(total > 0, total, 1)
    entropy = -jnp.sum(jnp.where(h > 0, h * jnp.log(jnp.where(h > 0, h, 1)), 0))
    return jnp.where(total > 0, entropy, jnp.nan)
