"""FISTA for ``min_x 1/2 ||A x - y||^2 + g(x)`` with a proximal map of ``g``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..linop import LinearOperator
from . import _tree
from ._operator import check_prox
from ._result import SolverResult, final_status
from ._smooth import check_step, least_squares, safe_inverse


def fista(operator: LinearOperator, y: jax.Array, prox: Callable, *, step=None,
          x0: jax.Array | None = None, max_iter: int = 30,
          power_iter: int = 30) -> SolverResult:
    """Minimise ``1/2 ||A x - y||^2 + g(x)`` by FISTA (Beck and Teboulle 2009).

    ``x_{k+1} = prox(z_k - step (A^H A z_k - A^H y), step)`` with the momentum point
    ``z_k = x_k + (t_{k-1} - 1) / t_k (x_k - x_{k-1})``, ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) /
    2``, ``t_0 = t_1 = 1``. The normal operator is linear, so ``A^H A z_k`` follows from the
    two previous ``A^H A x``: one application of ``A.N`` per iteration (and the operator's own
    fast ``N``, e.g. FFTs only along the axes where a SENSE mask varies).

    Args:
        operator: ``A``, a :class:`~mskjax.linop.LinearOperator`.
        y: data of ``A.oshape``.
        prox: ``prox(v, step)``, the proximal map of ``step * g`` (see
            :mod:`mskjax.solvers.prox`); with a :class:`~mskjax.solvers.prox.Prox` that knows
            ``g``'s value the history is the whole objective, otherwise the data term only.
        step: the step size (keyword-only); default ``1 / ||A||^2`` by ``power_iter`` power
            iterations from a fixed start (1 for the zero operator; no gradient flows through
            the estimate).
        x0: starting point of ``A.ishape``; default zeros.
        max_iter: iterations (static); all of them run, in a ``lax.scan``, so the solver is
            reverse-differentiable (unrolled).
        power_iter: power iterations for the step size (static).

    Returns:
        :class:`SolverResult`: ``history`` ``(max_iter,)`` the objective after each
        iteration; ``status`` ``MAX_ITERATIONS``, or ``NONFINITE`` when NaN or infinity
        reached the estimate or the objective.
    """
    func = "mskjax.solvers.fista"
    check_step(step, func)
    data, x0 = least_squares(operator, y, x0=x0, max_iter=max_iter, power_iter=power_iter,
                             func=func, lipschitz=None if step is None else 1 / step)
    check_prox(prox, x0, func)
    real = jnp.finfo(x0.dtype).dtype
    step = safe_inverse(data.lipschitz).astype(real) if step is None else \
        jnp.asarray(step, real)
    value = getattr(prox, "value", None)

    def objective(x, normal_x):
        total = data.value(x, normal_x)
        return (total + value(x) if value is not None else total).astype(real)

    def body(state, _):
        x, x_prev, normal_x, normal_prev, t_prev, t = state
        momentum = (t_prev - 1) / t
        z = x + momentum * (x - x_prev)
        normal_z = normal_x + momentum * (normal_x - normal_prev)
        x_new = prox(z - step * (normal_z - data.b), step)
        normal_new = data.normal(x_new)
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        return (x_new, x, normal_new, normal_x, t, t_new), objective(x_new, normal_new)

    normal0 = data.start_normal
    one = jnp.asarray(1.0, real)
    (x, *_), history = jax.lax.scan(body, (x0, x0, normal0, normal0, one, one), None,
                                    length=max_iter)
    finite = jnp.isfinite(history[-1]) & _tree.all_finite(x)
    return SolverResult(x=x, iterations=jnp.int32(max_iter), history=history,
                        status=final_status(finite))
