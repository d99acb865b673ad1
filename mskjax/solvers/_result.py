"""The one result type of every solver, and its status codes."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Status(enum.IntEnum):
    """Why a solver stopped. ``SolverResult.status`` holds one of these as an int32 array.

    - ``CONVERGED`` (0): the stopping tolerance was reached (for CG also: the residual became
      exactly zero, e.g. ``b == 0``).
    - ``MAX_ITERATIONS`` (1): ``max_iter`` iterations ran without reaching a tolerance (the
      normal end of a solver run for a fixed number of iterations).
    - ``BREAKDOWN`` (2): the method cannot continue: CG met a direction ``p`` with
      ``<p, A p> <= 0`` while the residual was nonzero (a singular or indefinite operator).
      The estimate is the last one before the breakdown.
    - ``NONFINITE`` (3): NaN or infinity appeared (in the data, the operator or the
      iterates). The estimate keeps the non-finite values where they arose; they are never
      replaced by zeros.
    """

    CONVERGED = 0
    MAX_ITERATIONS = 1
    BREAKDOWN = 2
    NONFINITE = 3


class SolverResult(NamedTuple):
    """What a solver returns: a pytree, so it can be jitted, vmapped and saved.

    Attributes:
        x: the estimate, the same structure, shapes and dtypes as the unknown.
        iterations: int32 scalar, the iterations run.
        history: real ``(max_iter,)``: a per-iteration quantity that each solver documents (the
            relative residual for CG, the objective for FISTA and the primal-dual method); NaN
            after the last iteration run.
        status: int32 scalar, a :class:`Status` code.
    """

    x: Any
    iterations: jax.Array
    history: jax.Array
    status: jax.Array

    @property
    def converged(self) -> jax.Array:
        """Bool array: ``status == Status.CONVERGED``."""
        return self.status == Status.CONVERGED

    @property
    def ok(self) -> jax.Array:
        """Bool array: the run ended normally (converged or used its iterations)."""
        return self.status <= Status.MAX_ITERATIONS


def final_status(finite: jax.Array, converged: jax.Array | bool = False) -> jax.Array:
    """The status of a run that ended without breakdown: non-finite, converged or max iter."""
    return jnp.where(~finite, Status.NONFINITE,
                     jnp.where(converged, Status.CONVERGED, Status.MAX_ITERATIONS)
                     ).astype(jnp.int32)
