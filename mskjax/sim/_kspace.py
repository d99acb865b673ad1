"""Multi-coil k-space from any image, real or simulated.

The image (2D or 3D, spatial axes last) is given a smooth background phase when it is magnitude
only, multiplied by normalised simulated coil sensitivities (``sum_c |S_c|^2 = 1``), Fourier
transformed (centred, orthonormal) and corrupted by circularly symmetric complex Gaussian
noise. SNR is defined in the image: the mean magnitude inside the object (pixels above 10 % of
the maximum) over the noise standard deviation of the coil-combined image. With normalised maps
and an orthonormal FFT this is also the per-sample standard deviation of the k-space noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array, check_finite, check_interval, check_ndim, check_positive_int
from ..coils import birdcage_maps, gaussian_maps, normalize_maps
from ..linop import Sense


class SimulatedKspace(NamedTuple):
    """The output of :func:`simulate_kspace`.

    Attributes:
        kspace: complex64 ``(coils, *spatial)`` noisy k-space.
        maps: complex64 ``(coils, *spatial)`` normalised sensitivity maps used.
        image: complex64 ``(*spatial)`` noise-free image (with the phase applied): the ground
            truth of a SENSE reconstruction with ``maps``.
        noise_std: the noise standard deviation per complex k-space sample (a scalar).
    """

    kspace: jax.Array
    maps: jax.Array
    image: jax.Array
    noise_std: jax.Array


def smooth_phase(key: jax.Array, shape: Sequence[int], *,
                 max_radians: float = jnp.pi) -> jax.Array:
    """A random smooth phase map: a quadratic polynomial over the normalised grid.

    Args:
        key: a ``jax.random`` key.
        shape: the spatial shape (1 to 3 axes), each axis spanning ``[-1, 1)``.
        max_radians: scale of the coefficients (keyword-only); the phase stays within about
            ``±2 * max_radians``.

    Returns:
        float32 ``shape`` phase in radians.
    """
    grids = jnp.meshgrid(*[(jnp.arange(n) - n / 2) / (n / 2) for n in shape], indexing="ij")
    terms = [jnp.ones(shape)] + list(grids)
    terms += [a * b for i, a in enumerate(grids) for b in grids[i:]]
    coefficients = jax.random.uniform(key, (len(terms),), minval=-1.0, maxval=1.0)
    coefficients = coefficients * max_radians / jnp.sqrt(len(terms))
    return sum(c * t for c, t in zip(coefficients, terms)).astype(jnp.float32)


def simulate_kspace(image: ArrayLike, key: jax.Array, *, num_coils: int = 8,
                    snr_db: float = 30.0, phase: str | ArrayLike | None = "smooth",
                    maps: str | ArrayLike = "birdcage") -> SimulatedKspace:
    """Simulate multi-coil k-space from an image.

    Args:
        image: ``(*spatial)`` image, 2D or 3D, real (magnitude) or complex.
        key: a ``jax.random`` key (noise and, for ``phase="smooth"``, the phase).
        num_coils: number of receive coils (keyword-only).
        snr_db: signal-to-noise ratio in dB (see the module docstring); ``inf`` for no noise.
        phase: for a real image: ``"smooth"`` (a random smooth phase from the key), ``None``
            (keep it real), or an array of phase in radians of the image's shape. Ignored (must
            be ``"smooth"`` or ``None``) for a complex image, whose phase is kept.
        maps: ``"birdcage"``, ``"gaussian"``, or a complex ``(coils, *spatial)`` array; maps are
            normalised so that ``sum_c |S_c|^2 = 1``.

    Returns:
        :class:`SimulatedKspace` with the k-space ``(coils, *spatial)``, maps, ground truth
        image and noise standard deviation.
    """
    func = "mskjax.sim.simulate_kspace"
    image = as_array(image, "image", func)
    check_ndim(image, "image", func, ndim=(2, 3), layout="a 2D or 3D image (*spatial)")
    check_finite(image, "image", func)
    check_positive_int(num_coils, "num_coils", func)
    if not (isinstance(snr_db, (int, float)) and snr_db == float("inf")):
        check_interval(snr_db, "snr_db", func)
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.inexact):
        image = image.astype(jnp.float32)
    shape = image.shape
    phase_key, noise_key = jax.random.split(key)
    if jnp.iscomplexobj(image):
        if not (phase is None or (isinstance(phase, str) and phase == "smooth")):
            raise ValueError(f"{func}: a complex image keeps its own phase; pass phase='smooth' "
                             f"or None, got an array")
    elif isinstance(phase, str):
        if phase != "smooth":
            raise ValueError(f"{func}: phase must be 'smooth', None or an array, got {phase!r}")
        image = image * jnp.exp(1j * smooth_phase(phase_key, shape))
    elif phase is not None:
        phase = as_array(phase, "phase", func)
        if tuple(phase.shape) != shape:
            raise ValueError(f"{func}: phase must have the image's shape {shape}, got "
                             f"{tuple(phase.shape)}")
        image = image * jnp.exp(1j * jnp.asarray(phase))
    image = image.astype(jnp.complex64)

    if isinstance(maps, str):
        if maps not in ("birdcage", "gaussian"):
            raise ValueError(f"{func}: maps must be 'birdcage', 'gaussian' or an array, got "
                             f"{maps!r}")
        build = birdcage_maps if maps == "birdcage" else gaussian_maps
        sensitivities = build((num_coils, *shape))
    else:
        sensitivities = as_array(maps, "maps", func)
        if tuple(sensitivities.shape) != (num_coils, *shape):
            raise ValueError(f"{func}: maps must be (num_coils, *image.shape) = "
                             f"{(num_coils, *shape)}, got {tuple(sensitivities.shape)}")
    sensitivities = normalize_maps(sensitivities).astype(jnp.complex64)

    kspace = Sense(sensitivities)(image)
    magnitude = jnp.abs(image)
    inside = magnitude > 0.1 * jnp.max(magnitude)
    signal = jnp.sum(jnp.where(inside, magnitude, 0)) / jnp.maximum(jnp.sum(inside), 1)
    noise_std = (signal / 10 ** (jnp.float32(snr_db) / 20)).astype(jnp.float32)
    noise = jax.random.normal(noise_key, kspace.shape, jnp.complex64) * noise_std
    return SimulatedKspace(kspace + noise, sensitivities, image, noise_std)
