"""Photon-counting noise of a CT scan at a stated dose (Poisson statistics of Beer-Lambert).

A ray with line integral ``p = integral mu ds`` (dimensionless: attenuation in 1/cm times path
in cm, as :class:`mskjax.linop.Radon` gives it with ``pixel_size`` in cm) that enters with
``I0`` photons leaves with ``I0 exp(-p)`` on average. At a fraction ``d`` of the dose the
detected counts are

    N ~ Poisson(I0 d exp(-p)),

and the measured line integral is ``-log(N / (I0 d))``. A ray that detects no photon at all
(``N = 0``, whose log is infinite) is read as half a photon, ``p = log(2 I0 d)``: finite and
above every ray that detected one. Electronic noise, scatter and beam hardening are not
modelled. For counts well above zero the estimate has mean ``p + 1 / (2 lambda)`` and variance
``1 / lambda``, ``lambda = I0 d exp(-p)`` (the delta method): the noise grows as the dose falls
and as the ray crosses more bone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array, check_interval
from ._phantom import check_key

_FUNC = "mskjax.sim.low_dose_sinogram"

#: Counts read for a ray that detected no photon (see the module docstring).
ZERO_COUNT_READING = 0.5


def low_dose_sinogram(key: jax.Array, sinogram: ArrayLike, *, incident_photons: float,
                      dose_fraction: float = 1.0) -> jax.Array:
    """A noisy measurement of ``sinogram`` at ``dose_fraction`` of ``incident_photons`` per ray.

    Args:
        key: a ``jax.random`` key.
        sinogram: noise-free line integrals ``integral mu ds``, any shape (``(angles,
            detectors)`` from :class:`mskjax.linop.Radon`), real, finite, ``>= 0`` where
            concrete.
        incident_photons: ``I0``, the photons per ray at the full (normal) dose, e.g. ``1e5``
            (keyword-only; at most ``1e9`` so that counts fit in int32).
        dose_fraction: ``d > 0``, the fraction of the full dose (keyword-only; ``0.25`` for
            quarter dose; 1, the default, is the full dose).

    Returns:
        ``-log(max(N, 1/2) / (I0 d))`` with ``N ~ Poisson(I0 d exp(-p))`` per ray, the shape
        and float dtype of ``sinogram`` (float32 for integer input). Under ``jit`` (values
        unchecked) a NaN, infinite or negative entry gives NaN there.
    """
    func = _FUNC
    check_key(key, func)
    check_interval(incident_photons, "incident_photons", func, low=0, high=1e9,
                   high_open=False)
    check_interval(dose_fraction, "dose_fraction", func, low=0)
    photons = float(incident_photons) * float(dose_fraction)
    if photons > 1e9:
        raise ValueError(f"{func}: incident_photons * dose_fraction must be at most 1e9 (counts "
                         f"in int32), got {photons:g}")
    sinogram = as_array(sinogram, "sinogram", func)
    dtype = jnp.result_type(sinogram)
    if jnp.issubdtype(dtype, jnp.complexfloating) or jnp.issubdtype(dtype, jnp.bool_):
        raise TypeError(f"{func}: sinogram must be real line integrals, got {dtype}")
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float32
    p = jnp.asarray(sinogram, dtype)
    if not isinstance(p, jax.core.Tracer):
        if not bool(jnp.all(jnp.isfinite(p))):
            raise ValueError(f"{func}: sinogram must be finite, got NaN or infinite values")
        if bool(jnp.any(p < 0)):
            raise ValueError(f"{func}: sinogram must be >= 0 (line integrals of a "
                             f"non-negative attenuation), got a minimum of {float(p.min()):g}")
    expected = photons * jnp.exp(-p.astype(jnp.float32))
    counts = jax.random.poisson(key, expected, dtype=jnp.int32).astype(jnp.float32)
    counts = jnp.maximum(counts, ZERO_COUNT_READING)
    reading = jnp.log(photons) - jnp.log(counts)
    # Under jit the values are not checked: a NaN, infinite or negative line integral reads as
    # NaN, never as a plausible measurement.
    reading = jnp.where(jnp.isfinite(p) & (p >= 0), reading, jnp.nan)
    return reading.astype(dtype)
