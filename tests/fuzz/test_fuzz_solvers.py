"""Fuzzing the solvers: a finite estimate with an ordinary status, or a status that says why not."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mskjax import linop, solvers

from .conftest import outcome

N = 6


def matrix(kind, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((N, N)).astype(np.float32)
    if kind == "spd":
        return a @ a.T + N * np.eye(N, dtype=np.float32)
    if kind == "zero":
        return np.zeros((N, N), np.float32)
    if kind == "negative":
        return -(a @ a.T + np.eye(N, dtype=np.float32))
    if kind == "singular":
        m = a @ a.T
        m[:, 0] = m[0, :] = 0
        return m
    m = a @ a.T
    m[0, 0] = np.nan
    return m


def rhs(kind, seed):
    b = np.random.default_rng(seed + 7).standard_normal(N).astype(np.float32)
    if kind == "zeros":
        return b * 0
    if kind == "nan":
        b[seed % N] = np.nan
    if kind == "huge":
        b *= np.float32(1e30)
    return b


CG = jax.jit(lambda m, b: solvers.cg(linop.Matrix(m), b, max_iter=10))
FISTA = jax.jit(lambda m, b: solvers.fista(linop.Matrix(m), b, solvers.prox.l1(None, 0.01), max_iter=10,
                                           power_iter=10))
MATRICES = st.sampled_from(["spd", "zero", "negative", "singular"])
RHS = st.sampled_from(["random", "zeros", "nan", "huge"])


def check(name, res, m, b):
    status = int(res.status)
    x = np.asarray(res.x)
    assert status in (0, 1, 2, 3), f"{name}: unknown status {status}"
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(b))):
        assert status == 3 or not np.all(np.isfinite(x)), f"{name} hid non-finite input"
    if status in (0, 1):
        assert np.all(np.isfinite(x)), f"{name} returned NaN with status {status}"
    if status == 3:
        assert not np.all(np.isfinite(x)) or not np.all(np.isfinite(b)) or not np.all(
            np.isfinite(m)) or np.max(np.abs(b)) > 1e20, f"{name}: NONFINITE without cause"


@given(mk=MATRICES, bk=RHS, seed=st.integers(0, 2**16), jit=st.booleans())
def test_cg_answers_or_says_why_not(mk, bk, seed, jit):
    m, b = matrix(mk, seed), rhs(bk, seed)
    name = "mskjax.solvers.cg"
    res = CG(m, b) if jit else outcome(name, solvers.cg, linop.Matrix(m), b, max_iter=10)
    if res is None:
        return
    check(name, res, m, b)
    if int(res.status) in (0, 1) and mk == "spd" and bk == "random":
        np.testing.assert_allclose(m @ np.asarray(res.x), b, rtol=1e-2, atol=1e-2)
    if mk in ("negative",) and bk == "random":
        assert int(res.status) == 2, "cg on a negative definite operator did not report breakdown"


@given(mk=MATRICES, bk=RHS, seed=st.integers(0, 2**16), jit=st.booleans())
def test_fista_answers_or_says_why_not(mk, bk, seed, jit):
    m, b = matrix(mk, seed), rhs(bk, seed)
    name = "mskjax.solvers.fista"
    if jit:
        res = FISTA(m, b)
    else:
        res = outcome(name, solvers.fista, linop.Matrix(m), b, solvers.prox.l1(None, 0.01),
                      max_iter=10, power_iter=10)
    if res is not None:
        check(name, res, m, b)


@pytest.mark.parametrize("kwargs", [{"max_iter": 0}, {"max_iter": -1}, {"max_iter": "3"},
                                    {"max_iter": 2.5}, {"tol": -1.0}, {"tol": float("nan")},
                                    {"x0": np.ones(N + 1, np.float32)}], ids=repr)
def test_cg_bad_options_give_a_clean_error(kwargs):
    with pytest.raises((ValueError, TypeError), match="^mskjax.solvers.cg:"):
        solvers.cg(linop.Matrix(matrix("spd", 0)), rhs("random", 0), **kwargs)


@pytest.mark.parametrize("operator", ["A", None, 3.0], ids=repr)
def test_cg_bad_operator_gives_a_clean_type_error(operator):
    with pytest.raises(TypeError, match="^mskjax.solvers.cg:"):
        solvers.cg(operator, rhs("random", 0))


@given(mk=st.sampled_from(["spd", "zero", "singular", "nan"]), seed=st.integers(0, 2**16))
def test_max_eigenvalue_is_finite_nonnegative_or_visibly_not(mk, seed):
    m = matrix(mk, seed)
    name = "mskjax.solvers.max_eigenvalue"
    op = (lambda v: m @ v) if mk == "nan" else linop.Matrix(m.T @ m)
    out = outcome(name, solvers.max_eigenvalue, op, jax.random.PRNGKey(seed), num_iter=20,
                  dtype=np.float32)
    if out is None:
        return
    value = float(out)
    if mk == "nan":
        assert not np.isfinite(value), "max_eigenvalue hid a NaN operator"
    else:
        assert np.isfinite(value) and value >= -1e-4
