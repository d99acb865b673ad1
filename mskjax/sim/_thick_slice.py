"""Thick-slice acquisition simulated in k-space, the input of super-resolution (DeepResolve).

A thick-slice scan measures fewer k-space lines along the slice axis: the same field of view
with ``n / factor`` samples instead of ``n``, i.e. the central ``m = n // factor`` frequencies
of the thin-slice volume's centred orthonormal FFT (:func:`mskjax.fourier.fftnc`). Its image is
the inverse FFT of those ``m`` samples on an ``m``-point grid: ``factor`` times coarser.

Conventions:

- *Grid*: cell-centred, as ``scipy.ndimage.zoom(..., grid_mode=True)`` and
  :func:`mskjax.recon.tricubic_upsample`. Thick slice ``l`` covers thin slices
  ``l * factor .. l * factor + factor - 1`` and sits at their centre, thin-slice coordinate
  ``l * factor + (factor - 1) / 2`` (half-way between two thin slices when the factor is
  even). The centred FFT's origin (index ``n // 2`` on the thin grid, ``m // 2`` on the thick
  one) does not fall there in general, so the kept frequencies carry the linear phase that
  moves it there.
- *Scaling*: ``norm="intensity"`` (default) keeps image intensities: a volume band-limited
  along the axis is returned as its values at the thick-slice centres (a constant stays the
  same constant). ``norm="ortho"`` is the orthonormal inverse FFT of the ``m`` kept samples
  (the energy of the kept k-space is kept), which is ``sqrt(factor)`` times the former.
- *Nyquist*: for even ``m`` the kept band holds the coarse grid's Nyquist frequency on one
  side only; for real input the output is the real part, which is the band with that
  frequency split equally between ``+m/2`` and ``-m/2`` (a Hermitian band), so real stays
  real. Complex input gives complex output.
- *Slice profile* (optional): a real slice does not sample a plane but averages over its
  thickness. ``profile="boxcar"`` (a rectangle of full width ``profile_width`` thin slices)
  or ``"gaussian"`` (full width at half maximum ``profile_width``) convolves the volume with
  that profile along the axis, applied in k-space as a multiplication by its continuous
  Fourier transform (``sinc(w nu)``, ``exp(-2 pi^2 sigma^2 nu^2)``, ``nu`` in cycles per
  thin slice) before truncation. ``profile_width`` defaults to ``factor``.

Pure ``jax.numpy``: jit it with ``factor``, ``axis``, ``profile``, ``profile_width`` and
``norm`` static; it is linear and differentiable in ``volume``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_finite, check_inexact, check_positive_int, normalize_axes
from ..fourier import fftnc, ifftnc

PROFILES = ("boxcar", "gaussian")
_FUNC = "mskjax.sim.thick_slice"


def _profile_response(profile: str, width: float, nu: np.ndarray) -> np.ndarray:
    """The continuous Fourier transform (value 1 at ``nu = 0``) of a slice profile of width
    ``width`` thin slices at ``nu`` cycles per thin slice (static, on the host in float64; a
    width so large that ``width * nu`` overflows gives the limit, 0 away from ``nu = 0``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        x = width * nu
        if profile == "boxcar":
            response = np.sinc(x)  # sin(pi x) / (pi x)
        else:
            sigma_nu = x / (2.0 * math.sqrt(2.0 * math.log(2.0)))
            response = np.exp(-2.0 * math.pi ** 2 * sigma_nu ** 2)
    return np.where(np.isfinite(x), response, 0.0)


def thick_slice(volume: ArrayLike, *, factor: int, axis: int, profile: str | None = None,
                profile_width: float | None = None, norm: str = "intensity") -> jax.Array:
    """Simulate a thick-slice acquisition of ``volume``: keep the central ``n // factor``
    k-space samples along ``axis`` (conventions in the module docstring).

    Args:
        volume: real or complex array, any rank (e.g. a ``(x, y, z)`` volume); not an int.
        factor: slice thickening, an int >= 1 that divides ``volume.shape[axis]``
            (keyword-only; static under jit). 1 returns the volume (with the profile applied).
        axis: the slice axis (keyword-only; static).
        profile: ``None`` (ideal truncation), ``"boxcar"`` or ``"gaussian"`` slice profile.
        profile_width: the profile's width in thin slices (full width, or the full width at
            half maximum for the Gaussian), > 0; default ``factor``. Only with ``profile``.
        norm: ``"intensity"`` (default: intensities kept) or ``"ortho"`` (orthonormal inverse
            FFT of the kept samples: ``sqrt(factor)`` times larger).

    Returns:
        The thick-slice volume: ``volume``'s shape with ``n // factor`` along ``axis``;
        float for real input (same precision), complex for complex input.

    Raises:
        TypeError: an integer or boolean ``volume``.
        ValueError: a factor that is not a positive int or does not divide the size along
            ``axis``; a bad ``axis``, ``profile``, ``profile_width`` or ``norm``; NaN or
            infinity in a concrete ``volume``.
    """
    func = _FUNC
    volume = as_array(volume, "volume", func)
    check_inexact(volume, "volume", func)
    if jnp.ndim(volume) == 0:
        raise ValueError(f"{func}: volume must have at least one axis, got a scalar")
    check_positive_int(factor, "factor", func)
    factor = int(factor)
    axes = normalize_axes(axis, jnp.ndim(volume), "axis", func)
    if len(axes) != 1:
        raise ValueError(f"{func}: axis must be one int (the slice axis), got {axis!r}")
    (axis,) = axes
    n = volume.shape[axis]
    if n % factor:
        raise ValueError(f"{func}: factor {factor} must divide the size along axis {axis}, got "
                         f"{n} (crop the volume to {n - n % factor} slices along that axis "
                         "first)")
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"{func}: profile must be None or one of {list(PROFILES)}, got "
                         f"{profile!r}")
    if profile_width is not None:
        if profile is None:
            raise ValueError(f"{func}: profile_width is given without a profile")
        if (isinstance(profile_width, bool) or not isinstance(profile_width, (int, float))
                or not math.isfinite(profile_width) or profile_width <= 0):
            raise ValueError(f"{func}: profile_width must be a finite number > 0 (thin "
                             f"slices), got {profile_width!r}")
    if norm not in ("intensity", "ortho"):
        raise ValueError(f'{func}: norm must be "intensity" or "ortho", got {norm!r}')
    check_finite(volume, "volume", func)
    real = not jnp.iscomplexobj(volume)
    volume = jnp.asarray(volume)
    m = n // factor
    kspace = fftnc(volume, axes=axis)
    start = n // 2 - m // 2
    kept = jax.lax.slice_in_dim(kspace, start, start + m, axis=axis)
    # centred frequency of each kept sample, in cycles per thin slice
    nu = (jnp.arange(m) - m // 2) / n
    # the coarse grid's origin (index m // 2) sits at thin coordinate n // 2; move it to the
    # centre of thick slice m // 2, (m // 2) * factor + (factor - 1) / 2
    shift = (m // 2) * factor + (factor - 1) / 2 - n // 2
    weight = jnp.exp(2j * math.pi * nu * shift)
    if profile is not None:
        width = float(factor if profile_width is None else profile_width)
        weight = weight * _profile_response(profile, width, (np.arange(m) - m // 2) / n)
    scale = 1.0 / math.sqrt(factor) if norm == "intensity" else 1.0
    shape = [1] * volume.ndim
    shape[axis] = m
    kept = kept * (scale * weight).astype(kept.dtype).reshape(shape)
    out = ifftnc(kept, axes=axis)
    return out.real if real else out
