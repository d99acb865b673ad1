"""The least-squares data term ``1/2 ||A x - y||^2`` shared by FISTA and the primal-dual method.

Both methods need the normal operator once per iteration and nothing else of ``A``: with
``b = A^H y`` computed once, the gradient is ``N x - b`` and the data term follows from ``N x``
without applying ``A`` again, ``1/2 ||A x - y||^2 = 1/2 (<x, N x> - 2 Re<x, b> + ||y||^2)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import check_interval, check_positive_int
from ..linop import LinearOperator
from ._operator import linear_operator
from ._power import max_eigenvalue


class LeastSquares(NamedTuple):
    normal: LinearOperator  # A.N
    start_normal: jax.Array  # A.N x0 (zeros, not computed, for the default x0 = 0)
    b: jax.Array  # A^H y
    data_norm2: jax.Array  # ||y||^2
    lipschitz: jax.Array  # ||A||^2 (power iteration), or 1 / step when a step was given

    def value(self, x, normal_x):
        return 0.5 * (jnp.real(jnp.vdot(x, normal_x)) - 2 * jnp.real(jnp.vdot(x, self.b))
                      + self.data_norm2)


def least_squares(operator, y, *, x0, max_iter, power_iter, func, lipschitz=None):
    """Validate and set up the data term; return it with the starting point."""
    check_positive_int(max_iter, "max_iter", func)
    check_positive_int(power_iter, "power_iter", func)
    y = linear_operator(operator, y, func)
    b = operator.H(y)
    normal = operator.N
    if x0 is None:
        x0 = start_normal = jnp.zeros_like(b)
    else:
        x0 = jnp.asarray(x0)
        if x0.shape != operator.ishape:
            raise ValueError(f"{func}: x0 must have the operator's input shape "
                             f"{operator.ishape}, got {x0.shape}")
        x0 = x0.astype(b.dtype)
        start_normal = normal(x0)
    if lipschitz is None:
        lipschitz = max_eigenvalue(normal, jax.random.key(0), num_iter=power_iter,
                                   dtype=b.dtype)
    else:
        if not isinstance(lipschitz, jax.core.Tracer):
            check_interval(lipschitz, "operator_norm2", func, low=0)
        lipschitz = jnp.asarray(lipschitz, jnp.finfo(b.dtype).dtype)
    return LeastSquares(normal=normal, start_normal=start_normal, b=b,
                        data_norm2=jnp.real(jnp.vdot(y, y)), lipschitz=lipschitz), x0


def check_step(step, func):
    if step is not None and not isinstance(step, jax.core.Tracer):
        check_interval(step, "step", func, low=0)


def safe_inverse(value):
    """``1 / value``, or 1 where ``value`` is 0 (a zero operator: any step is exact)."""
    return 1 / jnp.where(value > 0, value, 1)
