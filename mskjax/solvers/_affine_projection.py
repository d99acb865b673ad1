"""The projection onto an affine set ``{x : A x = y}``, for any linear operator ``A``.

``P(x) = x + A^+ (y - A x)``, with ``A^+`` the Moore-Penrose pseudo-inverse: the point of the
set nearest to ``x`` (in the Euclidean norm) when the data are consistent (``y`` in the range
of ``A``), and otherwise the point nearest to ``x`` among the least-squares solutions. The
correction ``d = A^+ r`` of the residual ``r = y - A x`` is the minimum-norm least-squares
solution of ``A d = r``, computed by :func:`mskjax.solvers.cg` on the normal equations
``A^H A d = A^H r`` from ``d = 0`` (CG started at zero stays in the range of ``A^H``, so it
converges to the minimum-norm solution even when ``A^H A`` is singular, as it is for an
undersampled MRI operator).

Differentiation is implicit (``jax.lax.custom_linear_solve``) by default, so memory does not
grow with the iterations: the gradient is that of the exact projection, ``dP/dx = I - A^+ A``
(the projection onto the null space of ``A``). Since ``A^H A`` is singular, the transposed solve
of a cotangent ``g`` (any vector, not only one in the range of ``A^H A``) is computed as
``N^+ g = N^+ (N^+ N g)`` with ``N = A^H A``: two CG solves whose right-hand sides, ``N g`` and
``N^+ N g``, lie in the range of ``N``, where CG converges (plain CG on ``N z = g`` would
diverge along the null space). ``implicit=False`` differentiates through the iterations
instead.

For an MRI operator ``A = M F S`` (:class:`mskjax.linop.Sense`) the projection is the
data-consistency step of GANCS (Mardani et al., IEEE TMI 2018): after it, ``M F S P(x) == y``
on the sampled locations to the CG tolerance. For a single coil with a unit map and a Cartesian
mask ``A^H A = F^H M F`` is itself a projection, CG converges in one iteration, and ``P(x) =
F^H ((1 - M) F x + y)``: the sampled k-space is replaced by the data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..linop import LinearOperator
from .._checks import check_interval, check_positive_int
from ._cg import _iterate_scan, _iterate_while
from ._operator import check_vector, hermitian_matvec, linear_operator
from ._result import SolverResult


def affine_projection(operator: LinearOperator, x: jax.Array, y: jax.Array, *,
                      max_iter: int = 30, tol: float | None = None,
                      implicit: bool = True) -> SolverResult:
    """Project ``x`` onto ``{x : A x = y}``: ``P(x) = x + A^+ (y - A x)`` (module docstring).

    Args:
        operator: ``A``, any :class:`~mskjax.linop.LinearOperator` (need not be square).
        x: the point to project, an array of ``A.ishape`` (float or complex).
        y: the data, an array of ``A.oshape``.
        max_iter: the most CG iterations on ``A^H A d = A^H (y - A x)`` (keyword-only, static).
        tol: CG's relative residual tolerance (``> 0``: stop early in a
            ``lax.while_loop``; ``0``: run all ``max_iter`` iterations in a ``lax.scan``).
            Default ``10 * eps`` of the working precision: ``A^H A`` is singular for an
            undersampled operator, and CG iterating on a residual that is already round-off
            (``tol=0`` after convergence) divides by ``<p, A^H A p> ~ 0`` and diverges.
        implicit: implicit gradients through CG (default) or through its iterations.

    Returns:
        :class:`SolverResult` with ``x`` the projected point ``P(x)`` (the dtype of ``x``,
        ``y`` and ``A x`` promoted together: complex for a complex operator), and CG's ``iterations``, ``history`` (relative residual of
        the normal equations) and ``status`` (``NONFINITE`` when ``x`` or ``y`` holds NaN or
        infinity, which then stays visible in ``x``).
    """
    func = "mskjax.solvers.affine_projection"
    y = linear_operator(operator, y, func)
    x = check_vector(x, "x", func)
    if not isinstance(x, jax.Array) or x.shape != operator.ishape:
        raise ValueError(f"{func}: x must have the operator's input shape {operator.ishape}, "
                         f"got {getattr(x, 'shape', type(x).__name__)}")
    # a complex operator makes real x and y complex (casting A x back to real dropped its
    # imaginary part and broke the transposed solve)
    dtype = jnp.result_type(x, y, jax.eval_shape(operator, x).dtype)
    x, y = x.astype(dtype), y.astype(dtype)
    check_positive_int(max_iter, "max_iter", func)
    if tol is None:
        tol = 10 * float(jnp.finfo(dtype).eps)
    check_interval(tol, "tol", func, low=0, low_open=False)
    if not isinstance(implicit, bool):
        raise TypeError(f"{func}: implicit must be a bool, got {implicit!r}")
    rhs = operator.H(y - operator(x)).astype(dtype)
    matvec = hermitian_matvec(operator.N, rhs, func)
    iterate = _iterate_scan if tol == 0 or not implicit else _iterate_while

    def solve(mv, b):
        return iterate(mv, b, max_iter, tol)

    def transpose_solve(mv, g):
        # N^+ g = N^+ (N^+ N g): both right-hand sides lie in the range of N.
        inner, _ = solve(mv, mv(g))
        return solve(mv, inner)

    if implicit:
        d, (iterations, history, status) = jax.lax.custom_linear_solve(
            matvec, rhs, solve, transpose_solve=transpose_solve, has_aux=True)
    else:
        d, (iterations, history, status) = solve(matvec, rhs)
    return SolverResult(x=x + d, iterations=iterations, history=history, status=status)
