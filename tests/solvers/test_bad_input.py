"""What the solvers do with wrong input: a clear error naming the solver, or a status."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import linop, solvers
from mskjax.solvers import Status, prox

SPD = np.array([[2.0, 1.0], [1.0, 3.0]], np.float32)
B = np.array([1.0, 2.0], np.float32)
TALL = np.arange(6, dtype=np.float32).reshape(3, 2) + 1


def not_linear(v):
    return v ** 2


BAD = [
    # CG needs a square, self-adjoint, linear operator and b of its shape.
    (lambda: solvers.cg(linop.Matrix(TALL), B), ValueError,
     r"mskjax.solvers.cg: the operator must be square and self-adjoint, got mskjax.linop.Matrix "
     r"\(2,\) -> \(3,\)"),
    (lambda: solvers.cg(linop.Sense(np.ones((2, 4, 4), np.complex64)), np.ones((4, 4))),
     ValueError, "square and self-adjoint"),
    (lambda: solvers.cg(linop.FFT((2,)) @ linop.Matrix(np.ones((2, 2), np.complex64)),
                        np.ones(2, np.complex64)), ValueError, "must be self-adjoint"),
    (lambda: solvers.cg(linop.Matrix(np.array([[2.0, 1.0], [0.0, 3.0]])), B), ValueError,
     r"must be self-adjoint, but <A x, y> != <x, A y>"),
    (lambda: solvers.cg(not_linear, B), ValueError, "the operator is not linear"),
    (lambda: solvers.cg(lambda v: v[:1], B), ValueError,
     r"must map b to the same shapes and dtypes \(it must be square\), got float32\[2\] -> "
     r"float32\[1\]"),
    (lambda: solvers.cg(lambda v: v @ np.ones((3, 3)), B), TypeError,
     "the operator failed on b float32"),
    (lambda: solvers.cg(linop.Matrix(SPD), np.ones(3, np.float32)), ValueError,
     r"b must have the operator's shape \(2,\), got float32\[3\]"),
    (lambda: solvers.cg(linop.Matrix(SPD), np.ones(2, int)), TypeError,
     "b must hold floating point or complex arrays"),
    (lambda: solvers.cg("A", B), TypeError, "operator must be a mskjax.linop.LinearOperator"),
    (lambda: solvers.cg(linop.Matrix(SPD), B, tol=-1.0), ValueError, r"tol must be in \[0"),
    (lambda: solvers.cg(linop.Matrix(SPD), B, max_iter=0), ValueError, "max_iter must be"),
    (lambda: solvers.cg(linop.Matrix(SPD), B, x0=np.ones(3, np.float32)), ValueError,
     "x0 must have the structure and shapes of b"),
    # FISTA and primal-dual: operators, data shapes and proximal maps.
    (lambda: solvers.fista(lambda v: v, B, prox.zero()), TypeError,
     "mskjax.solvers.fista: operator must be a mskjax.linop.LinearOperator.*FunctionOperator"),
    (lambda: solvers.fista(linop.Matrix(TALL), B, prox.zero()), ValueError,
     r"y must have the operator's output shape \(3,\), got float32\[2\]"),
    (lambda: solvers.fista(linop.Matrix(TALL), np.ones(3, np.float32), lambda v: v), TypeError,
     r"mskjax.solvers.fista: prox must be callable as prox\(v, step\)"),
    (lambda: solvers.fista(linop.Matrix(TALL), np.ones(3, np.float32), "soft"), TypeError,
     "prox must be callable"),
    (lambda: solvers.fista(linop.Matrix(TALL), np.ones(3, np.float32),
                           lambda v, step: v[:1]), ValueError,
     r"prox\(v, step\) must return an array like v"),
    (lambda: solvers.fista(linop.Matrix(TALL), np.ones(3, np.float32), prox.zero(),
                           step=0.0), ValueError, r"step must be in \(0"),
    (lambda: solvers.fista(linop.Matrix(TALL), np.ones(3, np.float32), prox.zero(),
                           x0=np.ones(3)), ValueError, r"x0 must have the operator's input shape"),
    (lambda: solvers.primal_dual(linop.Matrix(TALL), np.ones(3, np.float32),
                                 linop.FiniteDifference((3,)), prox.l1(None, 0.1)), ValueError,
     r"mskjax.solvers.primal_dual: transform must act on the operator's input shape \(2,\)"),
    (lambda: solvers.primal_dual(linop.Matrix(TALL), np.ones(3, np.float32),
                                 linop.FiniteDifference((2,)), prox.l1(None, 0.1),
                                 transform_norm2=-1.0), ValueError, "transform_norm2 must be in"),
    (lambda: prox.l1(None, -0.1), ValueError, r"mskjax.solvers.prox.l1: lamda must be in \[0"),
    (lambda: prox.l1(np.eye(2), 0.1), TypeError, "transform must be a LinearOperator or None"),
    (lambda: solvers.max_eigenvalue(linop.Matrix(SPD), np.zeros(2, np.float32)), ValueError,
     "mskjax.solvers.max_eigenvalue: the start x0 must not be all zeros"),
    (lambda: solvers.max_eigenvalue(lambda v: v, jax.random.key(0)), TypeError,
     "a random start needs a LinearOperator"),
]


@pytest.mark.parametrize("call,error,message", BAD)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_operator_of_unknown_structure_is_trusted_under_jit():
    """Under jit the probe cannot run: a non-self-adjoint matrix is then the caller's fault,
    documented; the solver still returns (no exception, a status)."""
    a = np.array([[2.0, 1.0], [0.0, 3.0]], np.float32)
    out = jax.jit(lambda m, b: solvers.cg(linop.Matrix(m), b, max_iter=5))(a, B)
    assert int(out.status) in (Status.CONVERGED, Status.MAX_ITERATIONS, Status.BREAKDOWN)


def test_nan_in_b_is_a_status_not_an_exception():
    out = solvers.cg(linop.Matrix(SPD), np.array([np.nan, 1.0], np.float32), max_iter=5)
    assert int(out.status) == Status.NONFINITE and np.isnan(np.asarray(out.x)).any()
    assert not bool(out.ok) and not bool(out.converged)


def test_prox_maps():
    x = jnp.array([3 + 4j, 0.5, 0], jnp.complex64)
    np.testing.assert_allclose(prox.soft_threshold(x, 1.0), [2.4 + 3.2j, 0, 0], atol=1e-6)
    # l1 without transform, its value and its conjugate (projection onto |v| <= lamda)
    p = prox.l1(None, 2.0)
    np.testing.assert_allclose(p(x, 0.5), prox.soft_threshold(x, 1.0), atol=1e-6)
    assert abs(float(p.value(x)) - 2.0 * 5.5) < 1e-5
    np.testing.assert_allclose(prox.conjugate(p, x, 0.3), [1.2 + 1.6j, 0.5, 0], atol=1e-6)
    # Moreau: prox_{s g*}(v) = v - s prox_{g/s}(v/s) agrees with the closed form
    np.testing.assert_allclose(prox.conjugate(prox.Prox(p.apply), x, 0.3),
                               prox.conjugate(p, x, 0.3), atol=1e-5)
    # l1 of an orthonormal transform: prox = W^H soft(W v)
    w = linop.Wavelet((8,), wavelet="haar")
    v = jnp.arange(8, dtype=jnp.float32)
    np.testing.assert_allclose(prox.l1(w, 0.5)(v, 2.0),
                               w.H(prox.soft_threshold(w(v), 1.0)), atol=1e-6)
    # Tikhonov and its conjugate (g*(u) = |u|^2 / (2 lamda)) satisfy Moreau's identity
    t = prox.l2_squared(3.0)
    np.testing.assert_allclose(t(v, 0.5), v / 2.5, rtol=1e-6)
    np.testing.assert_allclose(prox.conjugate(t, v, 0.5),
                               v - 0.5 * t(v / 0.5, 1 / 0.5), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(prox.nonnegative()(jnp.array([-1.0, 2.0]), 1.0), [0.0, 2.0])
