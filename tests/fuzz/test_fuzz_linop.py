"""Fuzzing the linear operators: adjoints, jitted application, bad shapes and types."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mskjax import linop

from .conftest import outcome

SHAPES = st.sampled_from([(8, 8), (4, 8), (4, 4, 4)])
APPLY = jax.jit(lambda A, v: A(v))  # operators are pytrees: one compilation per structure
APPLY_H = jax.jit(lambda A, v: A.H(v))


def build(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "FFT":
        return linop.FFT(shape)
    if kind == "FiniteDifference":
        return linop.FiniteDifference(shape)
    if kind == "Wavelet":
        return linop.Wavelet(shape, wavelet="haar")
    if kind == "Mask":
        return linop.Mask(rng.random(shape) < 0.5)
    maps = (rng.standard_normal((3, *shape)) + 1j * rng.standard_normal((3, *shape)))
    return linop.Sense(maps.astype(np.complex64))


def rand(shape, rng):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("kind", ["FFT", "FiniteDifference", "Wavelet", "Mask", "Sense"])
@given(shape=SHAPES, seed=st.integers(0, 2**16))
def test_adjoint_is_the_adjoint_and_jit_agrees(kind, shape, seed):
    A = build(kind, shape, seed)
    rng = np.random.default_rng(seed + 1)
    x, y = rand(A.ishape, rng), rand(A.oshape, rng)
    Ax, AHy = np.asarray(APPLY(A, x)), np.asarray(APPLY_H(A, y))
    assert Ax.shape == tuple(A.oshape) and AHy.shape == tuple(A.ishape)
    assert np.all(np.isfinite(Ax)) and np.all(np.isfinite(AHy))
    lhs, rhs = np.vdot(Ax, y), np.vdot(x, AHy)
    assert abs(lhs - rhs) <= 1e-4 * (1 + abs(lhs)) * np.sqrt(x.size)
    if seed % 4 == 0:  # eager application agrees with the jitted one
        np.testing.assert_allclose(np.asarray(A(x)), Ax, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["FFT", "Sense", "Wavelet"])
@given(shape=SHAPES, seed=st.integers(0, 2**16), bad=st.sampled_from([np.nan, np.inf]))
def test_nonfinite_input_stays_visible(kind, shape, seed, bad):
    A = build(kind, shape, seed)
    x = rand(A.ishape, np.random.default_rng(seed))
    x.flat[seed % x.size] = bad
    assert not np.all(np.isfinite(np.asarray(A(x)))), f"{kind} turned a non-finite input finite"


@pytest.mark.parametrize("kind", ["FFT", "FiniteDifference", "Wavelet", "Mask", "Sense"])
@given(shape=SHAPES, other=SHAPES, seed=st.integers(0, 99))
def test_wrong_input_shape_gives_a_clean_error(kind, shape, other, seed):
    A = build(kind, shape, seed)
    x = np.ones(other, np.complex64)
    out = outcome(f"mskjax.linop.{kind}", A, x)
    if out is not None:
        assert other == tuple(A.ishape)


@pytest.mark.parametrize("kind", ["FFT", "FiniteDifference", "Wavelet"])
@pytest.mark.parametrize("shape", [(0, 4), (-1, 4), (), None, [[4]]], ids=repr)
def test_bad_shape_argument_gives_a_clean_error(kind, shape):
    cls = getattr(linop, kind)
    with pytest.raises((ValueError, TypeError), match=f"^mskjax.linop.{kind}:"):
        cls(shape)


@pytest.mark.parametrize("kind", ["FFT", "FiniteDifference"])
def test_non_integer_shape_gives_a_clean_error(kind):
    with pytest.raises((ValueError, TypeError), match=f"^mskjax.linop.{kind}:"):
        getattr(linop, kind)((4.5, 4))


@pytest.mark.parametrize("kind", ["FFT"])
def test_string_shape_gives_a_clean_error(kind):
    with pytest.raises((ValueError, TypeError), match=f"^mskjax.linop.{kind}:"):
        getattr(linop, kind)("ab")


@given(maps_shape=st.sampled_from([(4,), (3, 4, 4), (1, 4, 4)]),
       kind=st.sampled_from(["random", "nan", "zeros", "int", "string"]))
def test_sense_maps_answer_or_refuse(maps_shape, kind):
    if kind == "string":
        maps = "maps"
    else:
        maps = np.ones(maps_shape, np.int32 if kind == "int" else np.complex64)
        if kind == "nan" and maps.size:
            maps.flat[0] = np.nan
        if kind == "zeros":
            maps = maps * 0
    A = outcome("mskjax.linop.Sense", linop.Sense, maps)
    if A is None:
        return
    assert kind in ("random", "zeros", "int") and len(maps_shape) >= 2 and 0 not in maps_shape
    out = np.asarray(A(np.ones(A.ishape, np.complex64)))
    assert np.all(np.isfinite(out))


@given(kind=st.sampled_from(["bool", "int", "float", "nan", "negative", "string"]))
def test_mask_answers_or_refuses(kind):
    values = {"bool": np.ones((4, 4), bool), "int": np.ones((4, 4), np.int32),
              "float": np.full((4, 4), 0.5, np.float32), "nan": np.full((4, 4), np.nan),
              "negative": -np.ones((4, 4)), "string": "mask", "wrong shape": np.ones((0, 4))}
    A = outcome("mskjax.linop.Mask", linop.Mask, values[kind])
    if A is not None:
        assert kind not in ("nan", "string", "wrong shape")
        out = np.asarray(A(np.ones(A.ishape, np.complex64)))
        assert np.all(np.isfinite(out))


@pytest.mark.parametrize("shape", [(0, 4, 4), (3, 0, 4)])
def test_empty_sense_maps_are_refused(shape):
    assert outcome("mskjax.linop.Sense", linop.Sense, np.ones(shape, np.complex64)) is None


def test_empty_mask_is_refused():
    assert outcome("mskjax.linop.Mask", linop.Mask, np.ones((0, 4))) is None
