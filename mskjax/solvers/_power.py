"""The largest eigenvalue of a self-adjoint positive semi-definite operator (power iteration)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int
from ..linop import LinearOperator
from . import _tree
from ._operator import check_vector, hermitian_matvec


def max_eigenvalue(operator: LinearOperator | Callable, x0_or_key, *, num_iter: int = 30,
                   dtype=jnp.complex64) -> jax.Array:
    """Estimate ``lambda_max`` of a self-adjoint positive semi-definite operator.

    ``num_iter`` power iterations from ``x0`` (or a standard normal start drawn with ``key``),
    then the Rayleigh quotient ``<x, A x> / <x, x>``, which never exceeds ``lambda_max``. The
    step sizes of :func:`fista` and :func:`primal_dual` use it on ``A.N`` (``||A||^2``). No
    gradient flows through the estimate (it is a step size, not a model output).

    Args:
        operator: a square self-adjoint :class:`~mskjax.linop.LinearOperator` (such as
            ``A.N``) or a linear function; checked as by :func:`cg`.
        x0_or_key: a starting array (or pytree) of the operator's input shape, or a
            ``jax.random`` key (a LinearOperator only: the start is drawn with its
            ``ishape`` and ``dtype``).
        num_iter: power iterations (static).
        dtype: the dtype of a drawn start (keyword-only).

    Returns:
        Real scalar. ``0`` for the zero operator. A start of zeros gives ``0`` under ``jit``
        (and a ValueError outside it); NaN in the operator's output gives NaN.
    """
    func = "mskjax.solvers.max_eigenvalue"
    check_positive_int(num_iter, "num_iter", func)
    if _is_key(x0_or_key):
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"{func}: a random start needs a LinearOperator (for its ishape); "
                            "give a starting array x0 for a function")
        x0 = jax.random.normal(x0_or_key, operator.ishape, dtype)
    else:
        x0 = check_vector(x0_or_key, "x0", func)
        leaves = jax.tree_util.tree_leaves(x0)
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves) and not any(
                np.any(np.asarray(leaf) != 0) for leaf in leaves):
            raise ValueError(f"{func}: the start x0 must not be all zeros")
    if isinstance(operator, LinearOperator):
        operator = jax.tree_util.tree_map(jax.lax.stop_gradient, operator)
    matvec = hermitian_matvec(operator, x0, func)
    x0 = jax.lax.stop_gradient(x0)

    def normalise(v):
        n = jnp.sqrt(_tree.norm2(v))
        return jax.tree_util.tree_map(lambda u: u / jnp.where(n > 0, n, 1).astype(u.dtype), v)

    def step(x, _):
        return normalise(matvec(x)), None

    x, _ = jax.lax.scan(step, normalise(x0), None, length=num_iter)
    xx = _tree.norm2(x)
    value = _tree.vdot(x, matvec(x)) / jnp.where(xx > 0, xx, 1)
    return jax.lax.stop_gradient(value)


def _is_key(x) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    # legacy uint32[2] keys from jax.random.PRNGKey
    return dtype == jnp.uint32 and getattr(x, "shape", None) == (2,)
