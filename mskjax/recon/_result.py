"""The result of an iterative reconstruction."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Reconstruction(NamedTuple):
    """What an iterative solver returns (a pytree: it can be jitted, vmapped and saved).

    Attributes:
        image: the estimate, ``(*spatial)`` (or ``(sets, *spatial)`` with several sets of maps),
            complex.
        iterations: int32 scalar, the iterations run (fewer than ``max_iter`` when a tolerance
            stopped the solver).
        history: float32 ``(max_iter,)``: the objective (or residual norm, as each solver
            documents) after each iteration; NaN after the last iteration run.
        converged: bool scalar, True when the stopping tolerance was reached.
    """

    image: jax.Array
    iterations: jax.Array
    history: jax.Array
    converged: jax.Array
