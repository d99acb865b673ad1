"""The imperfections of a real knee MR image, as options of :func:`mskjax.sim.render`.

Applied in the order the physics has them: tissue parameters (the smooth ``texture`` and the
``trabecular`` texture of bone marrow) -> signal equation -> partial-volume average over
sub-voxel samples -> multiplicative receive bias -> truncation of k-space (Gibbs ringing) ->
complex Gaussian noise and the magnitude (Rician noise). All fields are drawn on the image's own
voxel grid ``(*spatial)``; an image with echoes ``(echoes, *spatial)`` shares them across its
echoes, each echo with its own noise.

* Partial volume: the phantom is re-evaluated at ``partial_volume`` points per voxel along each
  axis of the image, every sample is rendered and the signals are averaged (a box-shaped voxel).
* Receive bias: ``exp(bias * f)`` with ``f`` a random quadratic polynomial of the normalised
  grid coordinates, scaled so that ``f`` spans exactly ``[-1, 1]`` over the field of view: the
  intensity varies by a factor ``exp(2 * bias)`` from the darkest to the brightest point, the
  slow fall-off of a surface receive coil's sensitivity (the same field for every subject's
  echoes and contrasts rendered with one key).
* Gibbs ringing: the image is Fourier transformed (orthonormal) along its last two spatial axes
  (both axes of a 2D image; superior-inferior and anterior-posterior, the sagittal plane, of a
  volume), the spatial frequencies ``|k| > gibbs * n / 2`` are set to zero, and the result is
  transformed back: a scan that acquired a fraction ``gibbs`` of the displayed matrix and was
  zero-filled to it. The image is complex from then on; noise is added to it and the magnitude
  taken.
* Rician noise at ``snr``: each complex channel has standard deviation ``S_ref / snr``, where
  ``S_ref`` is the mean noise-free magnitude (after partial volume, bias and truncation) over
  the voxels whose label is not background, in the first echo. So ``snr`` is the foreground's
  mean signal over the noise of one channel; the magnitude of pure noise (background) has mean
  ``sqrt(pi / 2) * S_ref / snr``.
* Trabecular texture: the proton density of bone marrow (femur, tibia, patella, fibula) is
  multiplied by ``max(1 + trabecular * g, 0)``, ``g`` a zero-mean, unit-variance band-pass
  random field at the scale of one to a few voxels, elongated three times along the
  superior-inferior axis (the principal trabeculae of the distal femur and proximal tibia run
  along the load), isotropic where the image has no superior-inferior axis. The smooth
  ``texture`` field instead varies over several voxels in every tissue.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ._geometry import KNEE_LABELS

#: Labels whose voxels are bone marrow and get the trabecular texture.
MARROW_LABELS = tuple(KNEE_LABELS[name] for name in ("femur", "tibia", "patella", "fibula"))

#: Realistic settings of :func:`mskjax.sim.render` for training data, passed as
#: ``render(phantom, contrast=..., key=key, **REALISTIC_RENDERING)``. The choices, from what
#: clinical knee MRI at 3 T looks like at the phantom's default 1.25-2.5 mm grid:
#:
#: * ``partial_volume=2``: 8 samples per voxel (4 per pixel of a slice) make boundaries of
#:    cartilage, a 2 mm layer, intermediate as they are in a real 2-3 mm slice.
#: * ``texture=0.08``: within-tissue variation of signal of about 8 % (muscle fibres, fat
#:    septa, inhomogeneous fluid), smooth over a few voxels.
#: * ``trabecular=0.15``: bone marrow mottled by trabeculae (bone volume fractions of 10 to
#:    30 % in the epiphyses, averaged over a voxel of a few mm^3), visible in T1-weighted
#:    images as a fine grain in the bright marrow.
#: * ``bias=0.3``: a receive-coil shading of up to about +-35 % (factor 1.8 end to end), what
#:    a knee coil gives at 3 T without intensity normalisation.
#: * ``snr=20.0``: the foreground's mean signal 20 times the noise of a channel; cartilage
#:    SNR of clinical 2D fast spin echo and 3D gradient echo knee scans is of the order of 20
#:    to 40.
#: * ``gibbs=0.8``: 80 % of the displayed matrix acquired along each in-plane axis and
#:    zero-filled (e.g. 256 x 205 phase encodings shown as 256 x 256), so edges ring as they
#:    do next to fluid and fat in clinical images.
REALISTIC_RENDERING = {"partial_volume": 2, "texture": 0.08, "trabecular": 0.15, "bias": 0.3,
                       "snr": 20.0, "gibbs": 0.8}


def _real(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


def check_realism(*, partial_volume, bias, snr, gibbs, trabecular, noise, func):
    """The realism options of :func:`render`, validated and as Python numbers."""
    if isinstance(partial_volume, bool) or not isinstance(partial_volume, numbers.Integral) or (
            partial_volume < 1):
        raise ValueError(f"{func}: partial_volume must be an integer >= 1 (samples per voxel "
                         f"along each axis), got {partial_volume!r}")
    if not _real(bias) or bias < 0:
        raise ValueError(f"{func}: bias must be a finite number >= 0, got {bias!r}")
    if snr is not None and (not _real(snr) or snr <= 0):
        raise ValueError(f"{func}: snr must be None or a finite number > 0, got {snr!r}")
    if snr is not None and noise:
        raise ValueError(f"{func}: give either noise (a standard deviation) or snr, not both; "
                         f"got noise={noise!r}, snr={snr!r}")
    if gibbs is not None and (not _real(gibbs) or not 0 < gibbs <= 1):
        raise ValueError(f"{func}: gibbs must be None or the fraction of k-space kept, in "
                         f"(0, 1], got {gibbs!r}")
    if not _real(trabecular) or trabecular < 0:
        raise ValueError(f"{func}: trabecular must be a finite number >= 0, got "
                         f"{trabecular!r}")
    gibbs = None if gibbs is None or gibbs == 1 else float(gibbs)
    return (int(partial_volume), float(bias), None if snr is None else float(snr), gibbs,
            float(trabecular))


def _gaussian_response(shape, sigmas):
    """Fourier response (unshifted ``fftn`` order) of a Gaussian of std ``sigmas`` voxels."""
    response = 1.0
    for axis, (n, s) in enumerate(zip(shape, sigmas)):
        f = jnp.fft.fftfreq(n)
        g = jnp.exp(-2.0 * (jnp.pi * s * f) ** 2)
        response = response * g.reshape([n if a == axis else 1 for a in range(len(shape))])
    return response


def _unit(field):
    field = field - field.mean()
    return field / jnp.maximum(field.std(), 1e-12)


def trabecular_field(key, shape, grain_axis=None):
    """Zero-mean, unit-variance band-pass random field ``shape`` (float32): white noise
    filtered by the difference of two Gaussians (std 0.6 and 2.4 voxels), three times longer
    along ``grain_axis`` (None: isotropic)."""
    white = jax.random.normal(key, shape, jnp.float32)
    stretch = [3.0 if axis == grain_axis else 1.0 for axis in range(len(shape))]
    fine = _gaussian_response(shape, [0.6 * s for s in stretch])
    coarse = _gaussian_response(shape, [2.4 * s for s in stretch])
    return _unit(jnp.real(jnp.fft.ifftn(jnp.fft.fftn(white) * (fine - coarse))))


def bias_field(key, shape, amplitude):
    """``exp(amplitude * f)`` float32 ``shape``: ``f`` a random quadratic polynomial of the
    grid coordinates (each axis spanning [-1, 1]) scaled to span exactly [-1, 1]."""
    grids = jnp.meshgrid(*[jnp.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    terms = list(grids) + [a * b for i, a in enumerate(grids) for b in grids[i:]]
    coefficients = jax.random.normal(key, (len(terms),), jnp.float32)
    f = sum(c * t for c, t in zip(coefficients, terms))
    low, high = jnp.min(f), jnp.max(f)
    f = (2.0 * f - (high + low)) / jnp.maximum(high - low, 1e-12)
    return jnp.exp(amplitude * f).astype(jnp.float32)


def truncate_kspace(image, fraction, ndim):
    """Complex ``image`` with only the spatial frequencies ``|k| <= fraction * n / 2`` kept
    along its last ``min(2, ndim)`` axes (orthonormal FFT, zero-filled)."""
    axes = tuple(range(image.ndim - min(2, ndim), image.ndim))
    keep = 1.0
    for axis in axes:
        n = image.shape[axis]
        k = jnp.abs(jnp.fft.fftfreq(n) * n)
        kept = (k <= fraction * n / 2).astype(jnp.float32)
        keep = keep * kept.reshape([n if a == axis else 1 for a in range(image.ndim)])
    spectrum = jnp.fft.fftn(image, axes=axes, norm="ortho") * keep
    return jnp.fft.ifftn(spectrum, axes=axes, norm="ortho").astype(jnp.complex64)


def reference_signal(image, labels):
    """Mean magnitude of the first echo over the non-background voxels of ``labels``."""
    first = jnp.abs(image[(0,) * (image.ndim - labels.ndim)])
    foreground = labels != KNEE_LABELS["background"]
    return jnp.sum(jnp.where(foreground, first, 0.0)) / jnp.maximum(jnp.sum(foreground), 1)
