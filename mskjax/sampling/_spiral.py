"""Variable-density spiral trajectories (the analytic design of Kim et al. 2003)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_interval
from ._common import check_shape
from ._radial import check_counts


def spiral(num_interleaves: int, num_samples: int, *, shape: Sequence[int],
           alpha: float = 2.0, turns: float | None = None) -> jax.Array:
    """A 2D variable-density spiral of rotated interleaves, from the k-space centre to the edge.

    The radius grows as a power of the parameter ``tau`` (Kim, Adalsteinsson and Spielman,
    MRM 50:214, 2003, without gradient-hardware limits: ``tau`` is sampled uniformly). In
    normalised units ``q_a = k_a / (n_a / 2)`` sample ``i`` of interleave ``j`` is

    ``tau = i / (num_samples - 1)``, ``r = tau**alpha``,
    ``angle = 2 pi (turns * tau + j / num_interleaves)``,
    ``k = r * (sin(angle) * rows / 2, cos(angle) * cols / 2)``,

    so every interleave starts at the k-space centre (sampled by all of them) and ends on the
    edge ``|q| = 1`` (``n / 2`` along each axis), all points inside the grid, and interleave
    ``j`` is interleave 0 rotated by ``2 pi j / num_interleaves``. ``alpha = 1`` is the
    Archimedean spiral (rings equally spaced); ``alpha > 1`` packs the rings near the centre,
    where the spacing is ``alpha * r**(1 - 1/alpha) / (turns * num_interleaves)`` in ``q``. The
    fraction of the samples within radius ``r`` is ``r**(1/alpha)``, so the number of samples
    per unit area falls as ``r**(1/alpha - 2)``.

    Args:
        num_interleaves: the number of interleaves, >= 1.
        num_samples: samples per interleave, >= 2. At the edge consecutive samples are about
            ``pi * turns * n / (num_samples - 1)`` cycles per field of view apart (the
            angular speed; the radial one, ``alpha * n / 2``, adds in quadrature), so the
            readout meets the Nyquist rate there for about
            ``num_samples >= pi * turns * max(n) + 1``.
        shape: the image grid ``(rows, cols)`` (keyword-only).
        alpha: the density exponent, a real number >= 1 (default 2).
        turns: turns of each interleave around the centre, > 0. The default
            ``alpha * max(rows, cols) / (2 * num_interleaves)`` puts the rings of all
            interleaves one cycle per field of view apart at the edge (the Nyquist rate
            there); fewer turns undersample the edge.

    Returns:
        coords ``(num_interleaves, num_samples, 2)`` float32 in cycles per field of view.
    """
    func = "mskjax.sampling.spiral"
    check_counts(func, num_interleaves=num_interleaves, num_samples=num_samples)
    rows, cols = check_shape(shape, func, ndim=2)
    check_interval(alpha, "alpha", func, low=1, low_open=False)
    if turns is None:
        turns = alpha * max(rows, cols) / (2 * num_interleaves)
    else:
        check_interval(turns, "turns", func, low=0)
    tau = np.linspace(0.0, 1.0, num_samples)[None, :]
    radius = tau ** float(alpha)
    angle = 2 * math.pi * (float(turns) * tau
                           + np.arange(num_interleaves)[:, None] / num_interleaves)
    coords = np.stack([radius * np.sin(angle) * (rows / 2),
                       radius * np.cos(angle) * (cols / 2)], axis=-1)
    return jnp.asarray(coords.astype(np.float32))
