"""Random variable-density masks with an exact number of samples, in pure JAX."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_interval
from ._common import calibration_slices, check_calib, check_shape, sample_budget

#: Weight added everywhere, so the outer k-space (r >= 1) is rare but never impossible.
FLOOR = 1e-2


def density_weights(shape: tuple[int, ...], power: float) -> np.ndarray:
    """``(1 - min(r, 1))**power + FLOOR`` on the grid, r the normalised k-space radius.

    ``r = sqrt(sum_i ((k_i - n_i // 2) / (n_i / 2))**2)``: 0 at the centre ``n // 2`` of every
    axis, 1 at the middle of each edge (so the corners of a 2D grid lie at r up to sqrt(2)).
    """
    r2 = np.zeros(shape)
    for axis, n in enumerate(shape):
        k = (np.arange(n) - n // 2) / (n / 2)
        r2 = r2 + np.expand_dims(k**2, tuple(a for a in range(len(shape)) if a != axis))
    return (1.0 - np.minimum(np.sqrt(r2), 1.0)) ** power + FLOOR


def variable_density(key: jax.Array, shape: Sequence[int], *, acceleration: float,
                     calib: int | Sequence[int] = (0, 0), power: float = 2.0) -> jax.Array:
    """A random variable-density mask with exactly ``round(prod(shape) / acceleration)`` samples.

    Every point of the grid gets the weight ``w = (1 - min(r, 1))**power + 0.01`` (r the
    normalised k-space radius, 0 at the centre ``n // 2`` of each axis and 1 at the middle of
    each edge), the calibration box is always sampled, and the remaining samples are drawn
    from the rest without replacement with probabilities proportional to ``w`` (successive
    sampling: Gumbel-top-k, the top ``k`` of ``log w + Gumbel noise``). Jittable with
    ``shape``, ``acceleration``, ``calib`` and ``power`` static; vmap it over keys for a batch.

    Args:
        key: a ``jax.random`` key.
        shape: the sampled grid, e.g. ``(ky, kz)`` for 3D imaging; any number of axes.
        acceleration: ``prod(shape) / samples``, a real number >= 1.
        calib: the fully sampled calibration box, one size per axis or one int for all, each in
            ``[0, n]``; box indices on an axis of size n start at ``n // 2 - c // 2``. The
            default ``(0, 0)`` (no box) is for 2D grids; pass ``0`` for other ranks.
        power: how fast the density falls with r, a real number >= 0 (0 is uniform).

    Returns:
        a bool jax array of ``shape`` (True = sampled).
    """
    func = "mskjax.sampling.variable_density"
    shape = check_shape(shape, func)
    check_interval(acceleration, "acceleration", func, low=1, low_open=False)
    check_interval(power, "power", func, low=0, low_open=False)
    calib = check_calib(calib, shape, func, strictly_inside=False)
    if not hasattr(key, "dtype") or not (
        (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ())
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    ):
        raise TypeError(
            f"{func}: key must be one jax.random key (vmap over a batch of keys), got "
            f"{getattr(key, 'dtype', type(key).__name__)} of shape {getattr(key, 'shape', ())}"
        )
    budget = sample_budget(shape, acceleration)
    calibration = math.prod(calib)
    if budget < 1:
        raise ValueError(
            f"{func}: acceleration {acceleration!r} leaves no samples on {shape}"
        )
    if calibration > budget:
        raise ValueError(
            f"{func}: the calibration box {calib} ({calibration} samples) exceeds the "
            f"{budget} samples of acceleration {acceleration!r} on {shape}"
        )
    # The weights are fixed by the static arguments: computed once on the host, they are
    # constants of the compiled function.
    scores = np.log(density_weights(shape, float(power))).astype(np.float32)
    scores[calibration_slices(shape, calib)] = np.inf
    return _draw(key, scores, budget)


@functools.partial(jax.jit, static_argnums=2)
def _draw(key, log_weights, budget: int):
    """The ``budget`` top entries of ``log_weights + Gumbel noise`` as a bool mask."""
    scores = log_weights + jax.random.gumbel(key, log_weights.shape, dtype=log_weights.dtype)
    _, chosen = jax.lax.top_k(scores.reshape(-1), budget)
    mask = jnp.zeros(log_weights.size, dtype=bool).at[chosen].set(True)
    return mask.reshape(log_weights.shape)
