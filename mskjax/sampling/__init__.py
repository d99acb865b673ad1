"""Undersampling masks: the fastMRI Cartesian masks, Poisson disc and variable density.

Conventions:

- A mask is boolean, True where k-space is sampled, and broadcasts against the k-space
  ``(coils, *spatial)`` (spatial axes last, :mod:`mskjax.linop`).
- The k-space centre (the DC sample of the centred FFT, :mod:`mskjax.fourier`) is index
  ``n // 2`` on an axis of size n. A calibration box of size c covers indices
  ``n // 2 - c // 2`` to ``n // 2 - c // 2 + c - 1``.
- 2D Cartesian (fastMRI) masks: ``shape`` is the complex k-space shape, e.g.
  ``(coils, rows, cols)`` or ``(rows, cols)``, and the phase-encode axis is the last one. The
  mask is a ``(cols,)`` vector. These run on the host with numpy and match the ``fastmri``
  package bit for bit for the same seed (an int or a tuple of ints, as in fastMRI); fastMRI's
  tensors carry a trailing real/imaginary axis, so its ``shape[-2]`` is our ``shape[-1]``.
  Each returns ``(mask, num_low_frequencies)``.
- 3D Cartesian masks cover the two phase-encode axes ``(ky, kz)`` (every readout ``kx`` is
  kept): :func:`poisson_disc` runs on the host (sigpy) and returns numpy;
  :func:`variable_density` is pure JAX, takes a ``jax.random`` key first and is jittable with
  its other arguments static.
- Options are keyword-only. ``acceleration`` is ``number of grid points / samples``.
"""

from ._fastmri import (
    equispaced_fraction_mask,
    equispaced_mask,
    magic_fraction_mask,
    magic_mask,
    random_mask,
)
from ._poisson import poisson_disc
from ._variable_density import variable_density

__all__ = [
    "random_mask",
    "equispaced_mask",
    "equispaced_fraction_mask",
    "magic_mask",
    "magic_fraction_mask",
    "poisson_disc",
    "variable_density",
]
