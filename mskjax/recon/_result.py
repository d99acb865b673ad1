"""The result of an iterative reconstruction: a solver result with the estimate named ``image``."""

from __future__ import annotations

from typing import NamedTuple

import jax

from ..solvers import SolverResult, Status


class Reconstruction(NamedTuple):
    """What an iterative reconstruction returns (a pytree: it can be jitted, vmapped and saved).

    Attributes:
        image: the estimate, ``(*spatial)`` (or ``(sets, *spatial)`` with several sets of maps),
            complex.
        iterations: int32 scalar, the iterations run (fewer than ``max_iter`` when a tolerance
            stopped the solver).
        history: real ``(max_iter,)``: the objective (or relative residual, as each method
            documents) after each iteration; NaN after the last iteration run.
        status: int32 scalar, a :class:`mskjax.solvers.Status` code (converged, max iterations,
            breakdown, non-finite).
    """

    image: jax.Array
    iterations: jax.Array
    history: jax.Array
    status: jax.Array

    @property
    def converged(self) -> jax.Array:
        """Bool array: the stopping tolerance was reached (``status == Status.CONVERGED``)."""
        return self.status == Status.CONVERGED

    @classmethod
    def from_result(cls, result: SolverResult) -> Reconstruction:
        return cls(image=result.x, iterations=result.iterations, history=result.history,
                   status=result.status)
