"""The contract every solver passes (as the operator contract of tests/linop).

For each solver: jit equals eager, vmap over a batch of problems (operators included) equals a
loop, reverse-mode gradients equal finite differences, the answer on small dense problems
equals an independent reference (numpy.linalg.solve, or an exhaustive search over the sign
patterns of the l1 term), and the status is right on singular and non-finite problems.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import linop, solvers
from mskjax.solvers import Status, prox

RNG = np.random.default_rng(0)


def spd(n, seed, dtype=np.float32, cond=20.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n))
                                                       if np.iscomplexobj(dtype(0)) else 0))
    values = np.linspace(1.0, cond, n)
    return ((q * values) @ q.conj().T).astype(dtype)


def tall(m, n, seed):
    return np.random.default_rng(seed).standard_normal((m, n)).astype(np.float32)


# -- references --------------------------------------------------------------------------

def sparse_reference(a, y, d, lamda):
    """argmin 1/2 ||a x - y||^2 + lamda ||d x||_1 (real, a of full column rank), exactly.

    The minimiser solves, for its own sign pattern s = sign(d x), the equality-constrained
    quadratic problem min 1/2 ||a x - y||^2 + lamda s.(d x) s.t. (d x)_i = 0 where s_i = 0; so
    it is among the solutions of all 3^m such problems, the one of least true objective.
    """
    a, y, d = (np.asarray(v, np.float64) for v in (a, y, d))
    n = a.shape[1]
    best, best_value = None, np.inf
    for signs in itertools.product((-1.0, 0.0, 1.0), repeat=d.shape[0]):
        s = np.array(signs)
        zero = d[s == 0]
        kkt = np.block([[a.T @ a, zero.T], [zero, np.zeros((len(zero), len(zero)))]])
        rhs = np.concatenate([a.T @ y - lamda * d.T @ s, np.zeros(len(zero))])
        x = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:n]
        value = 0.5 * np.sum((a @ x - y) ** 2) + lamda * np.sum(np.abs(d @ x))
        if value < best_value:
            best, best_value = x, value
    return best


def periodic_difference(n):
    return (np.eye(n) - np.roll(np.eye(n), 1, axis=0)).astype(np.float32)


# -- the solvers, each as a function of (array data, problem arrays) ----------------------

def run_cg(matrix, b, **kw):
    return solvers.cg(linop.Matrix(matrix), b, **kw)


def run_cg_function(matrix, b, **kw):
    return solvers.cg(lambda v: matrix @ v, b, **kw)


def run_fista(matrix, y, lamda=0.3, **kw):
    return solvers.fista(linop.Matrix(matrix), y, prox.l1(None, lamda), **kw)


def run_primal_dual(matrix, y, lamda=0.3, **kw):
    op = linop.Matrix(matrix)
    return solvers.primal_dual(op, y, linop.FiniteDifference((matrix.shape[1],)),
                               prox.l1(None, lamda), **kw)


CASES = {
    # name: (solver, problem builder (seed -> matrix, rhs), keyword arguments)
    "cg_fixed": (run_cg, lambda s: (spd(5, s), RNG.standard_normal(5).astype(np.float32)),
                 dict(max_iter=30)),
    "cg_tol": (run_cg, lambda s: (spd(5, s), RNG.standard_normal(5).astype(np.float32)),
               dict(max_iter=30, tol=1e-5)),
    "cg_complex_function": (
        run_cg_function,
        lambda s: (spd(4, s, np.complex64),
                   (RNG.standard_normal(4) + 1j * RNG.standard_normal(4)).astype(np.complex64)),
        dict(max_iter=20, tol=1e-5)),
    "cg_unrolled": (run_cg, lambda s: (spd(5, s), RNG.standard_normal(5).astype(np.float32)),
                    dict(max_iter=30, tol=1e-5, implicit=False)),
    "fista": (run_fista, lambda s: (tall(7, 4, s), RNG.standard_normal(7).astype(np.float32)),
              dict(max_iter=60)),
    "primal_dual": (run_primal_dual,
                    lambda s: (tall(7, 4, s), RNG.standard_normal(7).astype(np.float32)),
                    dict(max_iter=60)),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    return CASES[request.param]


def test_jit_equals_eager(case):
    solve, build, kw = case
    matrix, rhs = build(1)
    eager = solve(matrix, rhs, **kw)
    jitted = jax.jit(lambda m, r: solve(m, r, **kw))(matrix, rhs)
    np.testing.assert_allclose(jitted.x, eager.x, rtol=1e-5, atol=1e-6)
    assert int(jitted.iterations) == int(eager.iterations)
    assert int(jitted.status) == int(eager.status)
    np.testing.assert_allclose(jitted.history, eager.history, rtol=1e-4, atol=1e-6, equal_nan=True)


def test_vmap_over_problems_equals_a_loop(case):
    solve, build, kw = case
    problems = [build(seed) for seed in (1, 2, 3)]
    matrices = np.stack([m for m, _ in problems])
    rhs = np.stack([r for _, r in problems])
    batched = jax.vmap(lambda m, r: solve(m, r, **kw))(matrices, rhs)
    for i, (m, r) in enumerate(problems):
        single = solve(m, r, **kw)
        np.testing.assert_allclose(batched.x[i], single.x, rtol=1e-4, atol=1e-5)
        assert int(batched.status[i]) == int(single.status)
        assert int(batched.iterations[i]) == int(single.iterations)


def test_gradients_equal_finite_differences(case):
    """d/dt <w, x(m + t dm, r + t dr)> by reverse mode against a central difference (x64)."""
    solve, build, kw = case
    with jax.enable_x64(True):
        matrix, rhs = build(1)
        dtype = np.complex128 if np.iscomplexobj(matrix) else np.float64
        matrix, rhs = matrix.astype(dtype), rhs.astype(dtype)
        rng = np.random.default_rng(5)
        dm = rng.standard_normal(matrix.shape)
        dm = (dm + dm.T) if "cg" in str(solve.__name__) else dm    # keep A self-adjoint
        dr = rng.standard_normal(rhs.shape)
        w = rng.standard_normal(matrix.shape[1])
        kw = {**kw, "tol": 1e-12} if "tol" in kw else kw
        # The step sizes come from power iterations without gradient: fix them here, so that
        # the differences see the same steps as the gradient.
        norm2 = 2 * np.linalg.norm(matrix, 2) ** 2
        if solve is run_fista:
            kw = {**kw, "step": 1 / norm2}
        elif solve is run_primal_dual:
            kw = {**kw, "operator_norm2": norm2}

        def f(t):
            x = solve(matrix + t * dm, rhs + t * dr, **kw).x
            return jnp.real(jnp.vdot(w, x))

        grad = float(jax.grad(f)(0.0))
        h = 1e-4
        reference = (float(f(h)) - float(f(-h))) / (2 * h)
    assert abs(grad - reference) <= 1e-5 * max(1.0, abs(reference)), (grad, reference)


def test_cg_solves_dense_systems_like_numpy():
    for seed, dtype in ((1, np.float32), (2, np.complex64)):
        a = spd(6, seed, dtype)
        b = np.random.default_rng(seed).standard_normal(6).astype(dtype)
        out = solvers.cg(linop.Matrix(a), b, max_iter=50, tol=1e-6)
        assert int(out.status) == Status.CONVERGED and int(out.iterations) <= 12
        reference = np.linalg.solve(a.astype(np.complex128), b)
        assert np.linalg.norm(out.x - reference) <= 1e-4 * np.linalg.norm(reference)
        # Without a tolerance all iterations run; the status says so.
        fixed = solvers.cg(linop.Matrix(a), b, max_iter=4)
        assert int(fixed.status) == Status.MAX_ITERATIONS and int(fixed.iterations) == 4
        # A starting point changes nothing at convergence.
        warm = solvers.cg(linop.Matrix(a), b, x0=np.ones(6, dtype), max_iter=50, tol=1e-6)
        assert np.linalg.norm(warm.x - reference) <= 1e-4 * np.linalg.norm(reference)


def test_cg_on_pytrees_solves_a_block_diagonal_system():
    a1, a2 = spd(3, 1), spd(2, 2)
    b = {"u": np.ones(3, np.float32), "v": np.arange(2, dtype=np.float32)}
    out = solvers.cg(lambda t: {"u": a1 @ t["u"], "v": a2 @ t["v"]}, b, max_iter=20, tol=1e-6)
    np.testing.assert_allclose(out.x["u"], np.linalg.solve(a1, b["u"]), rtol=1e-4)
    np.testing.assert_allclose(out.x["v"], np.linalg.solve(a2, b["v"]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lamda", [0.05, 0.5])
def test_fista_finds_the_lasso_minimiser(lamda):
    with jax.enable_x64(True):
        a, y = tall(8, 4, 3).astype(np.float64), np.random.default_rng(3).standard_normal(8)
        reference = sparse_reference(a, y, np.eye(4), lamda)
        out = solvers.fista(linop.Matrix(a), y, prox.l1(None, lamda), max_iter=3000)
        assert np.abs(np.asarray(out.x) - reference).max() < 1e-6
        assert int(out.status) == Status.MAX_ITERATIONS
        history = np.asarray(out.history)
        objective = 0.5 * np.sum((a @ reference - y) ** 2) + lamda * np.abs(reference).sum()
        assert abs(history[-1] - objective) < 1e-10 and history[0] > history[-1]
    # float32: the same minimiser to single precision
    out = solvers.fista(linop.Matrix(a.astype(np.float32)), y.astype(np.float32),
                        prox.l1(None, lamda), max_iter=3000)
    assert np.abs(np.asarray(out.x) - reference).max() < 1e-3


@pytest.mark.parametrize("lamda", [0.05, 0.5])
def test_primal_dual_finds_the_total_variation_minimiser(lamda):
    with jax.enable_x64(True):
        a, y = tall(8, 4, 4).astype(np.float64), np.random.default_rng(4).standard_normal(8)
        d = periodic_difference(4)
        reference = sparse_reference(a, y, d, lamda)
        out = solvers.primal_dual(linop.Matrix(a), y, linop.FiniteDifference((4,)),
                                  prox.l1(None, lamda), max_iter=3000)
        assert np.abs(np.asarray(out.x) - reference).max() < 1e-6
        # With Moreau's identity instead of the closed-form projection: the same minimiser.
        generic = prox.Prox(prox.l1(None, lamda).apply)
        out2 = solvers.primal_dual(linop.Matrix(a), y, linop.FiniteDifference((4,)), generic,
                                   max_iter=3000)
        assert np.abs(np.asarray(out2.x) - reference).max() < 1e-6


def test_tikhonov_prox_gives_the_ridge_solution():
    a, y = tall(8, 4, 5), np.random.default_rng(5).standard_normal(8).astype(np.float32)
    ridge = np.linalg.solve(a.T @ a + 0.7 * np.eye(4), a.T @ y)
    out = solvers.fista(linop.Matrix(a), y, prox.l2_squared(0.7), max_iter=300)
    np.testing.assert_allclose(out.x, ridge, atol=1e-5)
    cg = solvers.cg(linop.Matrix(a).N + 0.7 * linop.Identity((4,)), linop.Matrix(a).H(y),
                    max_iter=20, tol=1e-7)
    np.testing.assert_allclose(cg.x, ridge, atol=1e-5)


def test_cg_status_on_singular_systems():
    singular = linop.Matrix(np.diag([1.0, 0.0]).astype(np.float32))
    consistent = solvers.cg(singular, np.array([1.0, 0.0], np.float32), max_iter=10)
    assert int(consistent.status) == Status.CONVERGED
    np.testing.assert_allclose(consistent.x, [1.0, 0.0])
    inconsistent = solvers.cg(singular, np.array([1.0, 1.0], np.float32), max_iter=10)
    assert int(inconsistent.status) == Status.BREAKDOWN
    assert np.all(np.isfinite(inconsistent.x)) and int(inconsistent.iterations) == 1
    zero = solvers.cg(singular, np.zeros(2, np.float32), max_iter=10)
    assert int(zero.status) == Status.CONVERGED and int(zero.iterations) == 0
    np.testing.assert_array_equal(zero.x, [0.0, 0.0])
    # The same under jit, in the fixed-iteration scan.
    jitted = jax.jit(lambda b: solvers.cg(singular, b, max_iter=10))(
        np.array([1.0, 1.0], np.float32))
    assert int(jitted.status) == Status.BREAKDOWN


@pytest.mark.parametrize("name", list(CASES))
def test_status_is_nonfinite_and_nan_stays_visible(name):
    solve, build, kw = CASES[name]
    matrix, rhs = build(1)
    bad = rhs.copy()
    bad[0] = np.nan
    for out in (solve(matrix, bad, **kw), jax.jit(lambda m, r: solve(m, r, **kw))(matrix, bad)):
        assert int(out.status) == Status.NONFINITE
        assert np.any(np.isnan(np.asarray(out.x))), "NaN must not turn into numbers"
    # NaN inside the operator (only reachable under jit: the factory rejects it).
    poisoned = jax.jit(lambda m, r: solve(m.at[0, 0].set(jnp.nan), r, **kw))(matrix, rhs)
    assert int(poisoned.status) == Status.NONFINITE


def test_zero_operator_gives_zero_not_nan():
    zero = linop.Matrix(np.zeros((3, 3), np.float32))
    y = np.zeros(3, np.float32)
    out = solvers.fista(zero, y, prox.l1(None, 0.1), max_iter=5)
    assert int(out.status) == Status.MAX_ITERATIONS
    np.testing.assert_array_equal(out.x, np.zeros(3))
    out = solvers.primal_dual(zero, y, linop.FiniteDifference((3,)), prox.l1(None, 0.1),
                              max_iter=5)
    np.testing.assert_array_equal(out.x, np.zeros(3))
    assert float(solvers.max_eigenvalue(zero, np.ones(3, np.float32))) == 0.0


def test_max_eigenvalue_and_no_gradient_through_it():
    a = spd(6, 7, cond=50.0)
    assert abs(float(solvers.max_eigenvalue(linop.Matrix(a), jax.random.key(0), num_iter=100,
                                            dtype=jnp.float32)) - 50.0) < 1e-3 * 50
    grad = jax.grad(lambda m: solvers.max_eigenvalue(linop.Matrix(m), jnp.ones(6)))(a)
    np.testing.assert_array_equal(grad, np.zeros_like(a))


def test_unrolled_and_implicit_gradients_differ_when_truncated():
    """Three CG steps on a 5x5 system: unrolled = derivative of the truncated iteration,
    implicit = derivative of the exact solution (both checked against differences)."""
    with jax.enable_x64(True):
        a, b = spd(5, 2).astype(np.float64), np.linspace(1, 2, 5)

        def f(t, implicit, max_iter):
            return jnp.sum(solvers.cg(linop.Matrix(a), b * (1 + t), max_iter=max_iter,
                                      implicit=implicit).x ** 2)

        h = 1e-5
        truncated = (f(h, False, 3) - f(-h, False, 3)) / (2 * h)
        exact = (f(h, True, 50) - f(-h, True, 50)) / (2 * h)
        unrolled = jax.grad(f)(0.0, False, 3)
        implicit = jax.grad(f)(0.0, True, 3)
        # implicit differentiation of the truncated solve: A^-1 applied by 3 CG steps too
        assert abs(unrolled - truncated) < 1e-7 * abs(truncated)
        assert abs(jax.grad(f)(0.0, True, 50) - exact) < 1e-7 * abs(exact)
        assert abs(unrolled - implicit) > 1e-3 * abs(unrolled)


@pytest.mark.slow
def test_implicit_gradient_memory_does_not_grow_with_iterations():
    rng = np.random.default_rng(0)
    maps = jnp.asarray(rng.standard_normal((4, 32, 32)) + 0j, jnp.complex64)
    mask = rng.random(32) < 0.4
    y = linop.Sense(maps, mask=mask)(jnp.ones((32, 32), jnp.complex64))

    def temp_bytes(max_iter, implicit):
        def loss(m):
            op = linop.Sense(m, mask=mask)
            x = solvers.cg(op.N + 0.1 * linop.Identity((32, 32)), op.H(y), max_iter=max_iter,
                           implicit=implicit).x
            return jnp.sum(jnp.abs(x) ** 2)
        compiled = jax.jit(jax.grad(loss)).lower(maps).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(100, True) <= 1.05 * temp_bytes(10, True)
    assert temp_bytes(100, False) >= 5 * temp_bytes(10, False)
