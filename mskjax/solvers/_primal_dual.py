"""The primal-dual method of Condat and Vu for ``min_x 1/2 ||A x - y||^2 + g(K x)``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._checks import check_interval
from ..linop import LinearOperator
from . import _tree
from ._operator import check_prox
from ._power import max_eigenvalue
from ._result import SolverResult, final_status
from ._smooth import least_squares, safe_inverse
from .prox import conjugate


def primal_dual(operator: LinearOperator, y: jax.Array, transform: LinearOperator,
                prox: Callable, *, x0: jax.Array | None = None, max_iter: int = 100,
                power_iter: int = 30, operator_norm2=None, transform_norm2=None
                ) -> SolverResult:
    """Minimise ``1/2 ||A x - y||^2 + g(K x)`` by the Condat-Vu primal-dual method.

    The smooth data term is handled by an explicit gradient step in the primal (Condat 2013,
    J Optim Theory Appl 158:460; Vu 2013, Adv Comput Math 38:667), ``g`` through the proximal
    map of its conjugate in the dual::

        x+ = x - tau (A^H (A x - y) + K^H v)
        v+ = prox_{sigma g*}(v + sigma K (2 x+ - x))

    with ``sigma = 1 / ||K||^2`` and ``1 / tau = 1.01 (||A||^2 / 2 + 1)``, which satisfies the
    convergence condition ``1 / tau - sigma ||K||^2 >= ||A||^2 / 2``. Total variation is
    ``K = linop.FiniteDifference`` with ``prox.l1(None, lamda)``; handling the data term in the
    primal, rather than through a dual variable as the primal-dual hybrid gradient on
    ``[A; K]`` does, converges in far fewer iterations on undersampled MRI. One ``A.N`` per
    iteration.

    Args:
        operator: ``A``, a :class:`~mskjax.linop.LinearOperator`.
        y: data of ``A.oshape``.
        transform: ``K``, a :class:`~mskjax.linop.LinearOperator` on ``A.ishape``.
        prox: ``prox(v, step)`` of ``step * g`` on ``K.oshape`` (see
            :mod:`mskjax.solvers.prox`; the conjugate's map is its closed form when the
            :class:`~mskjax.solvers.prox.Prox` has one, else Moreau's identity).
        x0: starting point of ``A.ishape``; default zeros. The dual variable starts at zero.
        max_iter: iterations (static), all run in a ``lax.scan``.
        power_iter: power iterations for ``||A||^2`` and ``||K||^2`` where not given.
        operator_norm2: ``||A||^2`` or an upper bound; default estimated by power iteration
            (no gradient flows through the estimate).
        transform_norm2: ``||K||^2`` or an upper bound (``4 * ndim`` for periodic finite
            differences); default estimated by power iteration.

    Returns:
        :class:`SolverResult`: ``history`` the objective ``1/2 ||A x - y||^2 + g(K x)`` after
        each iteration (the data term only if ``prox`` does not know ``g``); ``status``
        ``MAX_ITERATIONS`` or ``NONFINITE``.
    """
    func = "mskjax.solvers.primal_dual"
    data, x0 = least_squares(operator, y, x0=x0, max_iter=max_iter, power_iter=power_iter,
                             func=func, lipschitz=operator_norm2)
    if not isinstance(transform, LinearOperator):
        raise TypeError(f"{func}: transform must be a LinearOperator, got "
                        f"{type(transform).__name__}")
    if transform.ishape != operator.ishape:
        raise ValueError(f"{func}: transform must act on the operator's input shape "
                         f"{operator.ishape}, got {transform.ishape}")
    real = jnp.finfo(x0.dtype).dtype
    v0 = jnp.zeros(transform.oshape, x0.dtype)
    check_prox(prox, v0, func)
    if transform_norm2 is not None and not isinstance(transform_norm2, jax.core.Tracer):
        check_interval(transform_norm2, "transform_norm2", func, low=0)
    if transform_norm2 is None:
        transform_norm2 = max_eigenvalue(transform.N, jax.random.key(1), num_iter=power_iter,
                                         dtype=x0.dtype)
    sigma = safe_inverse(jnp.asarray(transform_norm2, real))
    tau = 1 / (1.01 * (data.lipschitz / 2 + sigma * transform_norm2))
    value = getattr(prox, "value", None)

    def objective(x, normal_x):
        total = data.value(x, normal_x)
        return (total + value(transform(x)) if value is not None else total).astype(real)

    def body(state, _):
        x, v, normal_x = state
        x_new = x - tau * (normal_x - data.b + transform.H(v))
        v = conjugate(prox, v + sigma * transform(2 * x_new - x), sigma)
        normal_new = data.normal(x_new)
        return (x_new, v, normal_new), objective(x_new, normal_new)

    (x, _, _), history = jax.lax.scan(body, (x0, v0, data.start_normal), None,
                                      length=max_iter)
    finite = jnp.isfinite(history[-1]) & _tree.all_finite(x)
    return SolverResult(x=x, iterations=jnp.int32(max_iter), history=history,
                        status=final_status(finite))
