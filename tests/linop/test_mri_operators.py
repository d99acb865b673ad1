"""MRI operators against sigpy, and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sigpy
import sigpy.mri

from mskjax import linop
from tests.conftest import fft_ranks, random_complex


def rel_err(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


@pytest.mark.parametrize("shape", [(8, 32, 24), (5, 31, 17), (4, 12, 10, 9)])
@pytest.mark.parametrize("masked", [False, True])
def test_sense_matches_sigpy(shape, masked):
    rng = np.random.default_rng(sum(shape))
    maps = random_complex(rng, shape)
    mask = None
    if masked:
        mask = rng.random(shape[-1]) < 0.4
        mask[::3] = True
    x = random_complex(rng, shape[1:])
    y = random_complex(rng, shape)
    weights = None if mask is None else np.broadcast_to(mask, shape[1:]).astype(np.float32)
    ref = sigpy.mri.linop.Sense(maps.astype(np.complex128), weights=weights)
    op = linop.Sense(maps, mask=mask)
    assert rel_err(op(x), ref * x.astype(np.complex128)) < 1e-5
    assert rel_err(op.H(y), ref.H * y.astype(np.complex128)) < 1e-5
    assert rel_err(op.N(x), ref.N * x.astype(np.complex128)) < 1e-5


def test_sense_equals_its_factorisation():
    rng = np.random.default_rng(0)
    maps = random_complex(rng, (4, 10, 9))
    mask = rng.random((10, 9)) < 0.5
    x = random_complex(rng, (10, 9))
    composed = linop.Mask(mask, shape=maps.shape) @ linop.FFT(maps.shape, axes=(1, 2)) \
        @ linop.Coils(maps)
    op = linop.Sense(maps, mask=mask)
    assert rel_err(op(x), composed(x)) < 1e-6
    assert rel_err(op.N(x), composed.N(x)) < 1e-5


def test_soft_sense_sums_the_sets_and_reduces_to_sense():
    rng = np.random.default_rng(5)
    maps = random_complex(rng, (2, 3, 8, 7))
    mask = rng.random(7) < 0.6
    x = random_complex(rng, (2, 8, 7))
    op = linop.SoftSense(maps, mask=mask)
    want = np.asarray(linop.Sense(maps[0], mask=mask)(x[0])) + np.asarray(
        linop.Sense(maps[1], mask=mask)(x[1]))
    assert rel_err(op(x), want) < 1e-6
    one = linop.SoftSense(maps[:1], mask=mask)
    assert rel_err(one(x[:1]), linop.Sense(maps[0], mask=mask)(x[0])) < 1e-6
    with pytest.raises(ValueError, match=r"SoftSense: maps must be \(sets, coils, \*spatial\)"):
        linop.SoftSense(maps[0, 0])


def test_masked_entries_are_positive_zero():
    maps = -np.ones((2, 4, 4), np.complex64)
    mask = np.array([True, False, True, False])
    k = np.asarray(linop.Sense(maps, mask=mask)(np.ones((4, 4), np.complex64)))
    zeros = k[..., ~mask]
    assert np.all(zeros == 0)
    assert not np.any(np.signbit(zeros.real)) and not np.any(np.signbit(zeros.imag))
    weighted = np.asarray(linop.Mask(np.array([0.0, 1.0]), shape=(2,))(-np.ones(2, np.complex64)))
    assert not np.signbit(weighted[0].real)


@pytest.mark.parametrize("shape,axes", [((6, 5), None), ((4, 5, 6), (0, 2)), ((7,), None)])
def test_finite_difference_matches_sigpy(shape, axes):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    ref = sigpy.linop.FiniteDifference(shape, axes=axes)
    op = linop.FiniteDifference(shape, axes=axes)
    assert op.oshape == tuple(ref.oshape)
    np.testing.assert_allclose(op(x), ref * x, atol=1e-6)
    y = rng.standard_normal(op.oshape).astype(np.float32)
    np.testing.assert_allclose(op.H(y), ref.H * y, atol=1e-5)


def test_fft_matches_sigpy():
    rng = np.random.default_rng(2)
    x = random_complex(rng, (3, 9, 8))
    ref = sigpy.linop.FFT((3, 9, 8), axes=(-2, -1))
    assert rel_err(linop.FFT((3, 9, 8), axes=(1, 2))(x), ref * x) < 1e-6


def test_algebra_structure():
    A = linop.Sense(random_complex(np.random.default_rng(0), (2, 4, 4)))
    assert A.H.H is A
    normal = A.N
    assert normal.H is normal
    assert isinstance(A.H @ A, linop.Compose) and len((A.H @ A @ linop.Identity((4, 4))).ops) == 3
    assert "Sense(ishape=(4, 4), oshape=(2, 4, 4)" in repr(A)
    x = np.ones((4, 4), np.complex64)
    assert rel_err(A @ x, A(x)) == 0
    assert (2 * A)(x).dtype == jnp.complex64 and (A * 2)(x).dtype == jnp.complex64
    assert rel_err((-A)(x), -np.asarray(A(x))) == 0


def test_operator_is_a_pytree_with_array_leaves():
    maps = random_complex(np.random.default_rng(0), (2, 4, 4))
    op = linop.Sense(maps, mask=np.array([True, False, True, True]))
    leaves = jax.tree_util.tree_leaves(op)
    assert [leaf.shape for leaf in leaves] == [(2, 4, 4), (4,)]
    # vmap over per-example maps: a batch of operators.
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]) if a.dtype != bool
                                   else jnp.stack([a, a]), op)
    x = np.ones((2, 4, 4), np.complex64)
    out = jax.vmap(lambda A, v: A(v))(batch, x)
    assert rel_err(out[1], 2 * np.asarray(op(x[1]))) < 1e-6


def test_constant_mask_axes_are_reduced_and_keep_the_operator():
    rng = np.random.default_rng(3)
    maps = random_complex(rng, (3, 8, 6))
    pattern = rng.random(6) < 0.5
    full = np.broadcast_to(pattern, (3, 8, 6))            # a 1D pattern stored as 3D
    reduced, plain = linop.Sense(maps, mask=full), linop.Sense(maps, mask=pattern)
    assert reduced.mask.shape == (1, 1, 6)
    assert plain.mask.shape == (6,)
    x = random_complex(rng, (8, 6))
    dense = np.asarray(full, np.complex64)
    expected_n = np.asarray(linop.Sense(maps).H(dense * np.asarray(linop.Sense(maps)(x))))
    for op in (reduced, plain):
        assert rel_err(op(x), dense * np.asarray(linop.Sense(maps)(x))) < 1e-6
        assert rel_err(op.N(x), expected_n) < 1e-5
    # Under jit the mask's values are unknown: a traced mask keeps its shape and still works.
    n_traced = jax.jit(lambda m, v: linop.Sense(maps, mask=m).N(v))(full, x)
    assert rel_err(n_traced, expected_n) < 1e-5
    # Fully sampled (all ones) reduces to a scalar-like mask: no FFT at all in the normal.
    ones = linop.Sense(maps, mask=np.ones((8, 6), bool))
    assert ones.mask.shape == (1, 1)
    assert rel_err(ones.N(x), np.sum(np.abs(maps) ** 2, axis=0) * x) < 1e-5


@pytest.mark.parametrize("mask_shape,axes", [((9,), 1), ((12, 1), 1), ((12, 9), 2),
                                             ((4, 12, 9), 2), ((4, 1, 1), 0)])
def test_normal_transforms_only_the_axes_where_the_mask_varies(mask_shape, axes):
    rng = np.random.default_rng(3)
    maps = random_complex(rng, (4, 12, 9))
    x = random_complex(rng, (12, 9))
    mask = rng.random(mask_shape) < 0.5
    mask.flat[0], mask.flat[-1] = True, False          # never constant by chance
    A = linop.Sense(maps, mask=mask)
    # One FFT and one inverse over `axes` axes each (none when the mask is spatially constant).
    assert fft_ranks(A.N, x) == ([axes, axes] if axes else [])
    assert fft_ranks(lambda v: A.H(A(v)), x) == [2, 2]
    assert rel_err(A.N(x), A.H(A(x))) < 1e-5
    soft = linop.SoftSense(random_complex(rng, (2, 4, 12, 9)), mask=mask)
    xs = random_complex(rng, (2, 12, 9))
    assert fft_ranks(soft.N, xs) == ([axes, axes] if axes else [])
    assert rel_err(soft.N(xs), soft.H(soft(xs))) < 1e-5


def test_self_adjointness_is_known_from_structure():
    maps = random_complex(np.random.default_rng(0), (2, 4, 4))
    A = linop.Sense(maps, mask=np.array([True, False, True, True]))
    assert A.hermitian is False and A.H.hermitian is False
    assert A.N.hermitian and (A.H @ A).hermitian and (A.N + 0.5 * linop.Identity((4, 4))).hermitian
    assert linop.Mask(np.ones(4, bool)).hermitian
    assert linop.FFT((4, 4)).hermitian is None
    assert ((1j) * A.N).hermitian is None
    assert linop.Matrix(np.array([[2.0, 1.0], [1.0, 3.0]])).hermitian
    assert linop.Matrix(np.array([[2.0, 1.0], [0.0, 3.0]])).hermitian is None
    assert linop.Matrix(np.ones((2, 3))).hermitian is False


BAD = [
    (lambda: linop.Matrix(np.ones(3)), ValueError, r"mskjax.linop.Matrix: matrix must be a 2D"),
    (lambda: linop.Matrix(np.ones((2, 2), int)), TypeError, "matrix must be floating point"),
    (lambda: linop.FunctionOperator(lambda x: x[:2], ishape=(3,), oshape=(3,))(np.ones(3)),
     ValueError, r"FunctionOperator: forward must return an array of shape \(3,\), got \(2,\)"),
    (lambda: linop.FunctionOperator("f", ishape=(3,), oshape=(3,)), TypeError,
     "forward must be callable"),
    (lambda: linop.Sense(np.ones(8, np.complex64)), ValueError,
     r"mskjax.linop.Sense: maps must be \(coils, \*spatial\), got shape \(8,\)"),
    (lambda: linop.Sense(np.ones((2, 4, 4), np.float32)), TypeError,
     "mskjax.linop.Sense: maps must be complex"),
    (lambda: linop.Sense(np.full((2, 4, 4), np.nan, np.complex64)), ValueError,
     "mskjax.linop.Sense: maps must be finite, got 32 NaN"),
    (lambda: linop.Sense(np.ones((2, 4, 4), np.complex64), mask=np.ones(5, bool)), ValueError,
     r"mskjax.linop.Sense: mask must broadcast to the k-space shape \(2, 4, 4\), got shape \(5,\)"),
    (lambda: linop.Sense(np.ones((2, 4, 4), np.complex64), mask=np.ones((3, 2, 4, 4), bool)),
     ValueError, "mask must broadcast"),
    (lambda: linop.Mask(np.ones(4, np.complex64)), TypeError, "mask must be boolean or real"),
    (lambda: linop.Mask(np.array([1.0, np.inf])), ValueError, "mask must be finite"),
    (lambda: linop.Coils("maps"), TypeError, "mskjax.linop.Coils: maps must be an array"),
    (lambda: linop.FFT((4, 4), axes=(2,)), ValueError, "mskjax.linop.FFT: axes"),
    (lambda: linop.Identity((0, 3)), ValueError, "mskjax.linop.Identity: shape must be"),
    (lambda: linop.FFT((4, 4)) @ linop.Identity((4, 5)), ValueError,
     r"cannot compose FFT \(input \(4, 4\)\) after Identity \(output \(4, 5\)\)"),
    (lambda: linop.FFT((4, 4)) + linop.Identity((4, 5)), ValueError, "must share input and"),
    (lambda: linop.FFT((4, 4)) * linop.FFT((4, 4)), TypeError, "use A @ B"),
    (lambda: np.ones(3) * linop.FFT((4, 4)), TypeError, "scale must be a scalar"),
    (lambda: linop.FFT((4, 4))(np.ones((2, 4, 4), np.complex64)), ValueError,
     r"mskjax.linop.FFT: input must have shape \(4, 4\), got \(2, 4, 4\)"),
]


@pytest.mark.parametrize("build,error,message", BAD)
def test_bad_input(build, error, message):
    with pytest.raises(error, match=message):
        build()
