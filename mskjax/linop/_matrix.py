"""A dense matrix as a linear operator, for small problems and for tests.

``Matrix(M)`` maps vectors ``(n,)`` to ``(m,)`` for an ``(m, n)`` array ``M`` (real or
complex); the adjoint is the conjugate transpose and the normal operator ``M^H M`` is applied
as two products (never formed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_finite, check_inexact, check_ndim
from ._base import LinearOperator, static_field


class Matrix(LinearOperator):
    """Multiplication by a dense ``(m, n)`` matrix: ``(n,) -> (m,)``.

    Args:
        matrix: real or complex ``(m, n)`` array.

    Example::

        A = linop.Matrix(jnp.array([[2.0, 1.0], [1.0, 3.0]]))
        solvers.cg(A, jnp.array([1.0, 2.0])).x    # numpy.linalg.solve(A, b)
    """

    matrix: jax.Array
    self_adjoint: bool | None = static_field()

    def __init__(self, matrix: ArrayLike):
        func = "mskjax.linop.Matrix"
        matrix = as_array(matrix, "matrix", func)
        check_ndim(matrix, "matrix", func, ndim=2, layout="a 2D (m, n) array")
        check_inexact(matrix, "matrix", func)
        check_finite(matrix, "matrix", func)
        m, n = matrix.shape
        self_adjoint = None
        if m != n:
            self_adjoint = False
        elif not isinstance(matrix, jax.core.Tracer):
            dense = np.asarray(matrix)
            self_adjoint = True if np.array_equal(dense, dense.conj().T) else None
        self._set(matrix=jnp.asarray(matrix), self_adjoint=self_adjoint, ishape=(n,),
                  oshape=(m,))

    def _apply(self, x):
        return self.matrix @ x

    def _adjoint(self, y):
        return jnp.conj(self.matrix).T @ y

    def _normal(self, x):
        return jnp.conj(self.matrix).T @ (self.matrix @ x)

    @property
    def hermitian(self) -> bool | None:
        return self.self_adjoint
