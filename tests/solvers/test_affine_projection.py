"""solvers.affine_projection: exact data consistency through linop.Sense, idempotence, the
single-coil closed form, gradients, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import linop, solvers
from mskjax.fourier import fft2c, ifft2c
from tests.conftest import random_complex


def _problem(rng, dtype, coils=4, shape=(16, 12)):
    maps = random_complex(rng, (coils, *shape), dtype)
    maps = maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    mask = np.zeros(shape[-1], bool)
    mask[::3] = True
    mask[shape[-1] // 2 - 1:shape[-1] // 2 + 2] = True
    x_true = random_complex(rng, shape, dtype)
    x = random_complex(rng, shape, dtype)
    operator = linop.Sense(maps, mask=mask)
    return operator, x_true, x, mask


@pytest.mark.parametrize("dtype, rel", [(np.complex128, 1e-10), (np.complex64, 1e-5)])
def test_projection_is_consistent_on_the_sampled_locations(rng, dtype, rel):
    with jax.enable_x64(dtype == np.complex128):
        operator, x_true, x, mask = _problem(rng, dtype)
        y = operator(jnp.asarray(x_true))
        result = solvers.affine_projection(operator, jnp.asarray(x), y, max_iter=100)
        assert result.x.dtype == dtype
        assert int(result.status) in (solvers.Status.CONVERGED, solvers.Status.MAX_ITERATIONS)
        residual = operator(result.x) - y
        assert float(jnp.linalg.norm(residual) / jnp.linalg.norm(y)) < rel
        # The unprojected point is far from consistent (the test can fail).
        assert float(jnp.linalg.norm(operator(jnp.asarray(x)) - y) / jnp.linalg.norm(y)) > 0.1
        # Idempotent: P(P(x)) = P(x).
        again = solvers.affine_projection(operator, result.x, y, max_iter=100).x
        scale = float(jnp.linalg.norm(result.x))
        assert float(jnp.linalg.norm(again - result.x)) < 100 * rel * scale


def test_projection_is_the_nearest_consistent_point(rng):
    # x - P(x) = -A^+ r lies in the range of A^H: orthogonal to the null space of A, so that
    # for any consistent z, ||x - z||^2 = ||x - P(x)||^2 + ||P(x) - z||^2 (Pythagoras).
    with jax.enable_x64(True):
        operator, x_true, x, _ = _problem(rng, np.complex128)
        y = operator(jnp.asarray(x_true))
        p = solvers.affine_projection(operator, jnp.asarray(x), y, max_iter=100).x
        z = jnp.asarray(x_true)
        lhs = float(jnp.sum(jnp.abs(x - z) ** 2))
        rhs = float(jnp.sum(jnp.abs(x - p) ** 2) + jnp.sum(jnp.abs(p - z) ** 2))
        assert lhs == pytest.approx(rhs, rel=1e-9)


def test_single_coil_cartesian_equals_the_closed_form(rng):
    with jax.enable_x64(True):
        shape = (12, 10)
        mask = np.zeros(shape, bool)
        mask[:, ::2] = True
        mask[3, 1] = True
        maps = np.ones((1, *shape), np.complex128)
        operator = linop.Sense(maps, mask=mask)
        x_true = random_complex(rng, shape, np.complex128)
        x = random_complex(rng, shape, np.complex128)
        y = operator(jnp.asarray(x_true))
        result = solvers.affine_projection(operator, jnp.asarray(x), y, max_iter=5)
        expected = ifft2c((1 - mask) * fft2c(jnp.asarray(x)) + y[0])
        np.testing.assert_allclose(np.asarray(result.x), np.asarray(expected), rtol=0,
                                   atol=1e-12 * float(jnp.max(jnp.abs(expected))))
        assert int(result.iterations) == 1  # F^H M F is a projection: one CG step


def test_gradient_is_the_null_space_projection(rng):
    # dP/dx = I - A^+ A, the projection onto the null space of A (self-adjoint), so the
    # vector-Jacobian product of a null-space vector is itself and of A^H z is zero.
    with jax.enable_x64(True):
        operator, x_true, x, mask = _problem(rng, np.complex128, coils=1)
        maps = np.ones((1, 16, 12), np.complex128)
        operator = linop.Sense(maps, mask=mask)
        y = operator(jnp.asarray(x_true))

        def f(v):
            return solvers.affine_projection(operator, v, y, max_iter=5).x

        _, vjp = jax.vjp(f, jnp.asarray(x))
        g = random_complex(rng, (16, 12), np.complex128)
        (out,) = vjp(jnp.asarray(g))
        expected = ifft2c((1 - mask) * fft2c(jnp.asarray(g)))
        np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-10)


@pytest.mark.slow
def test_jit_and_vmap(rng):
    operator, x_true, x, mask = _problem(rng, np.complex64)
    y = operator(jnp.asarray(x_true))
    eager = solvers.affine_projection(operator, jnp.asarray(x), y, max_iter=20).x
    jitted = jax.jit(lambda a, b: solvers.affine_projection(operator, a, b, max_iter=20).x)
    np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(x), y)), np.asarray(eager),
                               rtol=1e-5, atol=1e-5)
    batch = jnp.stack([jnp.asarray(x), 2 * jnp.asarray(x)])
    out = jax.vmap(lambda a: solvers.affine_projection(operator, a, y, max_iter=20).x)(batch)
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(eager), rtol=1e-4, atol=1e-4)


def test_nonfinite_data_gives_a_status(rng):
    operator, x_true, x, _ = _problem(rng, np.complex64)
    y = operator(jnp.asarray(x_true)).at[0, 0, 0].set(jnp.nan)
    result = solvers.affine_projection(operator, jnp.asarray(x), y, max_iter=5)
    assert int(result.status) == solvers.Status.NONFINITE
    assert not bool(jnp.all(jnp.isfinite(result.x)))


def test_bad_input(rng):
    operator, x_true, x, _ = _problem(rng, np.complex64)
    y = operator(jnp.asarray(x_true))
    with pytest.raises(ValueError, match="affine_projection: x must have the operator's input"):
        solvers.affine_projection(operator, jnp.asarray(x)[:-1], y)
    with pytest.raises(ValueError, match="affine_projection: y must have the operator's output"):
        solvers.affine_projection(operator, jnp.asarray(x), y[0])
    with pytest.raises(TypeError, match="affine_projection: operator must be"):
        solvers.affine_projection(lambda v: v, jnp.asarray(x), y)
    with pytest.raises(TypeError, match="affine_projection: x must hold floating"):
        solvers.affine_projection(operator, jnp.zeros((16, 12), jnp.int32), y)
    with pytest.raises(ValueError, match="max_iter"):
        solvers.affine_projection(operator, jnp.asarray(x), y, max_iter=0)


def test_unrolled_gradient_is_the_derivative_of_the_truncated_projection(rng):
    # implicit=False differentiates what 3 CG iterations compute: a central finite difference.
    with jax.enable_x64(True):
        operator, x_true, x, _ = _problem(rng, np.complex128)
        y = operator(jnp.asarray(x_true))
        weights = jnp.asarray(rng.standard_normal((16, 12)))

        def f(v):
            p = solvers.affine_projection(operator, v, y, max_iter=3, tol=0.0, implicit=False).x
            return jnp.sum(weights * jnp.abs(p))

        v = jnp.asarray(x)
        direction = jnp.asarray(random_complex(rng, (16, 12), np.complex128))
        grad = jax.grad(f)(v)
        # jax.grad of a real function of complex input is the conjugate of the gradient.
        predicted = float(jnp.real(jnp.vdot(jnp.conj(grad), direction)))
        h = 1e-6
        numeric = (float(f(v + h * direction)) - float(f(v - h * direction))) / (2 * h)
        assert predicted == pytest.approx(numeric, rel=1e-6)


def test_complex_operator_with_real_point_and_data(rng):
    # regression: real x and y with a complex operator raised JAX's "cotangent type does not
    # match" TypeError (A x was cast back to real, dropping its imaginary part)
    m = (rng.standard_normal((3, 6)) + 1j * rng.standard_normal((3, 6))).astype(np.complex64)
    x = jnp.asarray(rng.standard_normal(6).astype(np.float32))
    y = jnp.asarray(rng.standard_normal(3).astype(np.float32))
    result = solvers.affine_projection(linop.Matrix(m), x, y, max_iter=30)
    assert result.x.dtype == np.complex64
    np.testing.assert_allclose(m @ np.asarray(result.x), np.asarray(y), atol=1e-4)
