"""Filtered back-projection of a parallel-beam sinogram (CT).

Conventions are those of :class:`mskjax.linop.Radon`: the sinogram is ``(angles, detectors)``
with detector ``j`` at ``t = j - detectors // 2`` pixels from the rotation centre, angles in
radians, the image ``(rows, cols)`` rotating about pixel ``(rows // 2, cols // 2)``.

Each projection is zero-padded along the detector to a power of two (at least twice its length
and 64), multiplied in Fourier by the ramp filter (built as the DFT of the band-limited
spatial Ram-Lak kernel, ``h(0) = 1/4``, ``h(n) = -1 / (pi n)^2`` for odd ``n``, which removes
the DC bias of sampling ``|f|`` directly; Kak and Slaney 1988, ch. 3, eq. 61) and optionally a
window, cropped, and back-projected with ``Radon.H``, the exact adjoint of the projector::

    f = pi / (2 * num_angles * pixel_size^2) * Radon.H(filtered) / density

(the filter is ``2 |f|`` per sample, 1 at Nyquist, as scikit-image's). ``Radon.H`` spreads
every ray sample onto its four pixels; the samples lie on a rotated unit lattice whose
density around a pixel is 1 on average but not pixel by pixel (from 0.96 to 1.03, and 1.18 at
the rotation centre, which every angle's central ray hits exactly). ``density``, the
back-projection of ones divided by ``num_angles * pixel_size`` (computed by a projector with
detectors wide enough to see every pixel), removes that pattern; it costs a second
back-projection. The weight
``pi / num_angles`` of each angle assumes angles evenly spread over a half turn ``[0, pi)`` (or a
full turn). With the sinogram in the units of ``Radon`` (``integral mu ds``, ``pixel_size`` in
cm) the image is the attenuation in 1/cm.

It computes what ``skimage.transform.iradon`` computes except the back-projection itself:
scikit-image interpolates each filtered projection linearly at every pixel's ``t``
(pixel-driven), ``Radon.H`` spreads every ray sample onto its four pixels (the transpose of
bilinear sampling), slightly smoother; the two differ by about 1 % of the image's range.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_finite, check_interval, check_ndim
from ..linop import Radon

#: The filters of :func:`filtered_back_projection` (those of ``skimage.transform.iradon``).
FBP_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")

_FUNC = "mskjax.recon.filtered_back_projection"


def ramp_filter(size: int, window: str = "ramp") -> np.ndarray:
    """The Fourier filter of length ``size`` (even), in numpy's FFT order, float64: the
    Ram-Lak ramp ``2 |f|`` (1 at Nyquist, per sample) from its spatial kernel, times the
    window (``"shepp-logan"``: ``sinc``; ``"cosine"``; ``"hamming"``; ``"hann"``)."""
    if window not in FBP_FILTERS:
        raise ValueError(f"{_FUNC}: filter must be one of {FBP_FILTERS}, got {window!r}")
    n = np.concatenate([np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)])
    kernel = np.zeros(size)
    kernel[0] = 0.25
    kernel[1::2] = -1.0 / (np.pi * n) ** 2
    response = 2 * np.real(np.fft.fft(kernel))
    if window == "shepp-logan":
        omega = np.pi * np.fft.fftfreq(size)[1:]
        response[1:] *= np.sin(omega) / omega
    elif window == "cosine":
        response *= np.fft.fftshift(np.sin(np.linspace(0, np.pi, size, endpoint=False)))
    elif window == "hamming":
        response *= np.fft.fftshift(np.hamming(size))
    elif window == "hann":
        response *= np.fft.fftshift(np.hanning(size))
    return response


def filtered_back_projection(sinogram: ArrayLike, angles: ArrayLike, *, shape: Sequence[int],
                             filter: str = "ramp", pixel_size: float = 1.0) -> jax.Array:
    """Reconstruct a ``(rows, cols)`` image from a parallel-beam sinogram (module docstring).

    Args:
        sinogram: real ``(angles, detectors)`` line integrals, as :class:`mskjax.linop.Radon`
            returns them (``skimage.transform.radon``'s output transposed).
        angles: the projection angles in radians, ``(angles,)``, evenly covering a half turn.
        shape: the image shape ``(rows, cols)`` (keyword-only, static).
        filter: one of :data:`FBP_FILTERS` (keyword-only): ``"ramp"`` (Ram-Lak, the default),
            or the ramp times a ``"shepp-logan"``, ``"cosine"``, ``"hamming"`` or ``"hann"``
            window (smoother, less noise, less resolution).
        pixel_size: the pixel side in the sinogram's length unit (keyword-only; cm for
            attenuation in 1/cm), as given to ``Radon``.

    Returns:
        The image, ``(rows, cols)``, the sinogram's float dtype. Jit-able (``shape``,
        ``filter`` and ``pixel_size`` static) and vmap-able over sinograms.
    """
    func = _FUNC
    sinogram = as_array(sinogram, "sinogram", func)
    check_ndim(sinogram, "sinogram", func, ndim=2, layout="(angles, detectors)")
    dtype = jnp.result_type(sinogram)
    if not jnp.issubdtype(dtype, jnp.floating):
        if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
            raise TypeError(f"{func}: sinogram must be floating point, got {dtype}")
        raise TypeError(f"{func}: sinogram must be real, got {dtype}")
    if (isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                       for n in shape)):
        raise ValueError(f"{func}: shape must be (rows, cols), two positive ints, got {shape!r}")
    shape = tuple(int(n) for n in shape)
    if not isinstance(filter, str) or filter not in FBP_FILTERS:
        raise ValueError(f"{func}: filter must be one of {FBP_FILTERS}, got {filter!r}")
    check_interval(pixel_size, "pixel_size", func, low=0)
    num_angles, num_detectors = sinogram.shape
    if num_angles == 0 or num_detectors == 0:
        raise ValueError(f"{func}: sinogram must have at least one angle and one detector, got "
                         f"shape {tuple(sinogram.shape)}")
    angles = as_array(angles, "angles", func)
    if np.shape(angles) != (num_angles,):
        raise ValueError(f"{func}: angles must be ({num_angles},), one per sinogram row, got "
                         f"shape {tuple(np.shape(angles))}")
    if not jnp.issubdtype(jnp.result_type(angles), jnp.floating) and not jnp.issubdtype(
            jnp.result_type(angles), jnp.integer):
        raise TypeError(f"{func}: angles must be real (radians), got {jnp.result_type(angles)}")
    check_finite(angles, "angles", func)
    return _fbp(sinogram, jnp.asarray(angles), shape=shape, window=filter,
                pixel_size=float(pixel_size))


@functools.partial(jax.jit, static_argnames=("shape", "window", "pixel_size"))
def _fbp(sinogram, angles, *, shape, window, pixel_size):
    dtype = sinogram.dtype
    num_angles, num_detectors = sinogram.shape
    # Both projectors in pixel units: their pixel_size factors cancel against the scale's
    # (pi / (2 n pixel_size^2) times pixel_size), which overflowed float32 for tiny pixels.
    projector = Radon(shape, angles, num_detectors=num_detectors)
    size = max(64, int(2 ** np.ceil(np.log2(2 * num_detectors))))
    response = jnp.asarray(ramp_filter(size, window), dtype)
    spectrum = jnp.fft.fft(sinogram, n=size, axis=-1) * response
    filtered = jnp.real(jnp.fft.ifft(spectrum, axis=-1))[:, :num_detectors].astype(dtype)
    # The samples' density around each pixel, from a projector wide enough to see every
    # pixel at every angle (it measures the lattice, not the detector's coverage).
    wide = Radon(shape, angles)
    density = wide.H(jnp.ones(wide.oshape, dtype)) / num_angles
    density = jnp.where(density > 0.5, density, 1).astype(dtype)
    scale = np.pi / (2 * num_angles * pixel_size)
    return (scale * projector.H(filtered) / density).astype(dtype)
