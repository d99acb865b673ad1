"""The conjugate gradient method for self-adjoint positive semi-definite operators.

Solves ``A x = b`` for ``A`` a :class:`mskjax.linop.LinearOperator` (``A.ishape == A.oshape``)
or any linear function on arrays or pytrees of arrays. The iterations are Hestenes-Stiefel CG
with one operator application per iteration.

Differentiation. By default the solve is wrapped in ``jax.lax.custom_linear_solve``: reverse-
mode gradients (with respect to ``b`` and to the arrays inside the operator) are computed by a
second CG solve with the adjoint, so their memory does not grow with the iteration count, and
this works whether the loop is a fixed-length ``scan`` (``tol == 0``) or an early-exit
``while_loop`` (``tol > 0``). The implicit gradient is the gradient of the exact solution
``A^-1 b``, which the iterates approach; with few iterations it differs from the derivative of
the truncated iteration. ``implicit=False`` differentiates through the iterations instead
(unrolled: memory grows with ``max_iter``; a ``tol > 0`` then still runs ``max_iter`` steps in a
``scan``, frozen after convergence, so that it stays reverse-differentiable).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_interval, check_positive_int
from ..linop import LinearOperator
from . import _tree
from ._operator import check_vector, hermitian_matvec
from ._result import SolverResult, Status


def cg(operator: LinearOperator | Callable, b: Any, *, x0: Any = None, max_iter: int = 30,
       tol: float = 0.0, implicit: bool = True) -> SolverResult:
    """Solve ``A x = b`` by conjugate gradients, ``A`` self-adjoint positive semi-definite.

    Args:
        operator: ``A``: a square self-adjoint :class:`~mskjax.linop.LinearOperator` (for
            least squares ``min ||M x - y||`` pass ``M.N`` and ``b = M.H(y)``; Tikhonov:
            ``M.N + lamda * linop.Identity(M.ishape)``) or a linear function mapping ``b``'s
            structure to itself. An operator that is known not to be self-adjoint is rejected;
            one of unknown structure is probed for linearity and self-adjointness when ``b``
            is concrete and small (:data:`mskjax.solvers.PROBE_MAX_SIZE`); under ``jit`` this
            is the caller's responsibility.
        b: the right-hand side: an array of ``A.ishape`` or a pytree of arrays (float or
            complex).
        x0: starting point like ``b`` (keyword-only); default zeros.
        max_iter: the most iterations (static).
        tol: stop when ``||b - A x_k|| <= tol * ||b - A x0||``. ``0`` (the default) runs all
            ``max_iter`` iterations in a ``lax.scan``; ``tol > 0`` exits early in a
            ``lax.while_loop``. May be a traced scalar only together with ``implicit=False``
            or when nonzero.
        implicit: differentiate implicitly (default) or through the iterations (see the module
            docstring).

    Returns:
        :class:`SolverResult`: ``x`` like ``b``; ``history`` ``(max_iter,)`` the relative
        residual ``||r_k|| / ||r_0||`` after each iteration (NaN after the last one run);
        ``status`` ``CONVERGED`` (tolerance reached, or a zero residual), ``MAX_ITERATIONS``,
        ``BREAKDOWN`` (``<p, A p> <= 0``: the operator is singular or indefinite along a search
        direction; ``x`` is the last iterate before it) or ``NONFINITE`` (NaN or infinity in
        ``b``, ``x0`` or the operator's output; the NaN stays in ``x``).
    """
    func = "mskjax.solvers.cg"
    check_positive_int(max_iter, "max_iter", func)
    if not isinstance(tol, jax.core.Tracer):
        check_interval(tol, "tol", func, low=0, low_open=False)
    fixed = isinstance(tol, numbers.Real) and tol == 0
    b = check_vector(b, "b", func)
    matvec = hermitian_matvec(operator, b, func)
    if x0 is None:
        x0, r0 = _tree.zeros_like(b), b
    else:
        x0 = check_vector(x0, "x0", func)
        if jax.tree_util.tree_structure(x0) != jax.tree_util.tree_structure(b) or any(
                u.shape != v.shape for u, v in zip(jax.tree_util.tree_leaves(x0),
                                                   jax.tree_util.tree_leaves(b))):
            raise ValueError(f"{func}: x0 must have the structure and shapes of b")
        x0 = jax.tree_util.tree_map(lambda u, v: u.astype(v.dtype), x0, b)
        r0 = _tree.sub(b, matvec(x0))

    def solve(mv, rhs):
        iterate = _iterate_scan if fixed or not implicit else _iterate_while
        return iterate(mv, rhs, max_iter, tol)

    if implicit:
        # Transposing a Hermitian operator gives its conjugate, also Hermitian positive
        # semi-definite: the same CG solves it (as jax.scipy.sparse.linalg.cg does).
        dx, (iterations, history, status) = jax.lax.custom_linear_solve(
            matvec, r0, solve, transpose_solve=solve, has_aux=True)
    else:
        dx, (iterations, history, status) = solve(matvec, r0)
    return SolverResult(x=_tree.add(x0, dx), iterations=iterations, history=history,
                        status=status)


def _setup(rhs, tol):
    real = _tree.real_dtype(rhs)
    rr = _tree.norm2(rhs)
    scale = jnp.where(rr > 0, jnp.sqrt(rr), 1)
    threshold = (jnp.asarray(tol, real) * scale) ** 2
    status = jnp.where(rr <= threshold, Status.CONVERGED, -1).astype(jnp.int32)
    return real, rr, scale, threshold, status


def _step(matvec, threshold, carry):
    """One CG iteration; a no-op once ``status`` is set (``-1`` while running)."""
    x, r, p, rr, status = carry
    running = status < 0
    ap = matvec(p)
    pap = _tree.vdot(p, ap)
    breakdown = running & (pap <= 0)
    go = running & ~breakdown
    # NaN in pap or rr passes through alpha into x, so that it stays visible.
    alpha = jnp.where(go, rr / jnp.where(pap == 0, 1, pap), 0)
    x = _tree.axpy(alpha, p, x)
    r = _tree.axpy(-alpha, ap, r)
    rr_new = jnp.where(go, _tree.norm2(r), rr)
    beta = jnp.where(go, rr_new / jnp.where(rr == 0, 1, rr), 0)
    p = _tree.axpy(beta, p, r)
    new_status = jnp.where(
        ~jnp.isfinite(rr_new) | ~jnp.isfinite(pap), Status.NONFINITE,
        jnp.where(breakdown, Status.BREAKDOWN,
                  jnp.where(rr_new <= threshold, Status.CONVERGED, -1)))
    status = jnp.where(running, new_status, status).astype(jnp.int32)
    return (x, r, p, rr_new, status), go


def _finish(status):
    return jnp.where(status < 0, Status.MAX_ITERATIONS, status).astype(jnp.int32)


def _iterate_scan(matvec, rhs, max_iter, tol):
    real, rr, scale, threshold, status = _setup(rhs, tol)

    def body(carry, _):
        carry, went = _step(matvec, threshold, carry)
        residual = jnp.where(went, jnp.sqrt(carry[3]) / scale, jnp.nan).astype(real)
        return carry, (residual, went)

    carry = (_tree.zeros_like(rhs), rhs, rhs, rr, status)
    (x, _, _, _, status), (history, went) = jax.lax.scan(body, carry, None, length=max_iter)
    return x, (jnp.sum(went, dtype=jnp.int32), history, _finish(status))


def _iterate_while(matvec, rhs, max_iter, tol):
    real, rr, scale, threshold, status = _setup(rhs, tol)

    def cond(state):
        i, carry, _ = state
        return (i < max_iter) & (carry[4] < 0)

    def body(state):
        i, carry, history = state
        carry, _ = _step(matvec, threshold, carry)
        history = history.at[i].set((jnp.sqrt(carry[3]) / scale).astype(real))
        return i + 1, carry, history

    history = jnp.full((max_iter,), jnp.nan, real)
    state = (jnp.int32(0), (_tree.zeros_like(rhs), rhs, rhs, rr, status), history)
    iterations, (x, *_, status), history = jax.lax.while_loop(cond, body, state)
    return x, (iterations, history, _finish(status))
