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

Non-Cartesian trajectories (:func:`radial`, :func:`stack_of_stars`, :func:`kooshball`,
:func:`spiral`) are float32 coordinates ``(*trajectory, ndim)`` in cycles per field of view,
the units of :class:`mskjax.linop.NUFFT`, sigpy and BART: on an axis of n grid points
``-n/2 <= k <= n/2``, k = 0 the k-space centre, and coordinate a belongs to the a-th image
axis in array order (``coords[..., 0]`` along the rows of a ``(rows, cols)`` image). They are
deterministic, computed on the host. jax-finufft's radians are ``x_a = 2 pi k_a / n_a``;
trajectories given in ``[-0.5, 0.5]`` are ``k_a / n_a``. A density compensation function
``d`` (one real value per trajectory point) is the k-space area (volume) each sample stands
for, in the same units, so that ``NUFFT.H(d * NUFFT(x)) ~= x`` and a full Cartesian grid has
``d = 1``: :func:`ramp_density` for radial trajectories, :func:`pipe_menon_density` (the
iterative method of Pipe and Menon) for any trajectory.
"""

from ._fastmri import (
    equispaced_fraction_mask,
    equispaced_mask,
    magic_fraction_mask,
    magic_mask,
    random_mask,
)
from ._pipe_menon import pipe_menon_density
from ._poisson import poisson_disc
from ._radial import kooshball, radial, stack_of_stars
from ._ramp import ramp_density
from ._spiral import spiral
from ._variable_density import variable_density

__all__ = [
    "random_mask",
    "equispaced_mask",
    "equispaced_fraction_mask",
    "magic_mask",
    "magic_fraction_mask",
    "poisson_disc",
    "pipe_menon_density",
    "variable_density",
    "radial",
    "stack_of_stars",
    "kooshball",
    "spiral",
    "ramp_density",
]
