"""The contract every LinearOperator passes (DESIGN.md section 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import linop
from tests.conftest import random_complex, tol


def _maps(shape, seed=0):
    return random_complex(np.random.default_rng(seed), shape)


def _vec_mask(n, seed=0):
    m = np.random.default_rng(seed).random(n) < 0.5
    m[n // 2] = True
    return m


def _coords(shape, points, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-n / 2, n / 2, points) for n in shape], -1).astype(np.float32)


CASES = {
    "identity": lambda: linop.Identity((5, 7)),
    "fft_2d": lambda: linop.FFT((6, 5)),
    "fft_coil_axes": lambda: linop.FFT((3, 6, 7), axes=(1, 2)),
    "fft_3d_odd": lambda: linop.FFT((5, 4, 7)),
    "mask_bool_2d": lambda: linop.Mask(np.random.default_rng(1).random((6, 5)) < 0.4),
    "mask_weights_broadcast": lambda: linop.Mask(
        np.random.default_rng(2).random(5).astype(np.float32), shape=(3, 6, 5)),
    "coils": lambda: linop.Coils(_maps((4, 6, 5))),
    "sense_2d_nomask": lambda: linop.Sense(_maps((4, 8, 6))),
    "sense_2d_vector_mask_odd": lambda: linop.Sense(_maps((3, 7, 9)), mask=_vec_mask(9)),
    "sense_2d_weights": lambda: linop.Sense(
        _maps((3, 6, 6)), mask=np.random.default_rng(3).random((6, 6)).astype(np.float32)),
    "sense_3d": lambda: linop.Sense(_maps((3, 4, 5, 6)),
                                    mask=np.random.default_rng(4).random((5, 6)) < 0.5),
    "soft_sense_two_sets": lambda: linop.SoftSense(_maps((2, 3, 6, 5)), mask=_vec_mask(5)),
    "finite_difference_2d": lambda: linop.FiniteDifference((6, 5)),
    "finite_difference_3d_axes": lambda: linop.FiniteDifference((4, 5, 6), axes=(0, 2)),
    "compose_mask_fft_coils": lambda: (
        linop.Mask(_vec_mask(5), shape=(4, 6, 5)) @ linop.FFT((4, 6, 5), axes=(1, 2))
        @ linop.Coils(_maps((4, 6, 5)))),
    "scaled_complex": lambda: (2 - 1j) * linop.Sense(_maps((3, 6, 5)), mask=_vec_mask(5)),
    "sum_fft_identity": lambda: linop.FFT((6, 5)) + 0.5 * linop.Identity((6, 5)),
    "difference": lambda: linop.Coils(_maps((2, 4, 4))) - linop.Coils(_maps((2, 4, 4), 1)),
    "adjoint_of_sense": lambda: linop.Sense(_maps((3, 6, 5)), mask=_vec_mask(5)).H,
    "normal_of_sense": lambda: linop.Sense(_maps((3, 6, 5)), mask=_vec_mask(5)).N,
    "finite_difference_normal": lambda: linop.FiniteDifference((6, 5)).N,
    "wavelet_2d_db4_padded": lambda: linop.Wavelet((30, 29), wavelet="db4"),
    "wavelet_3d_db2_axes": lambda: linop.Wavelet((3, 13, 12), wavelet="db2", axes=(1, 2)),
    "wavelet_1d_haar": lambda: linop.Wavelet((11,), wavelet="haar"),
    "sense_2d_mask_varies_along_rows_only": lambda: linop.Sense(
        _maps((3, 7, 6)), mask=np.broadcast_to(_vec_mask(7)[:, None], (7, 6))),
    "sense_per_coil_mask": lambda: linop.Sense(
        _maps((3, 6, 5)), mask=np.random.default_rng(5).random((3, 6, 5)) < 0.5),
    "soft_sense_2d_mask_normal": lambda: linop.SoftSense(
        _maps((2, 3, 6, 5)), mask=np.random.default_rng(6).random((6, 5)) < 0.5).N,
    "matrix_complex_rectangular": lambda: linop.Matrix(
        random_complex(np.random.default_rng(8), (5, 3))),
    "nufft_2d": lambda: linop.NUFFT(_coords((6, 5), 23).reshape(1, 23, 2), shape=(6, 5)),
    "nufft_3d_coils_weights": lambda: linop.NUFFT(
        _coords((4, 5, 6), 17, 1), shape=(2, 4, 5, 6),
        weights=np.random.default_rng(9).random(17).astype(np.float32)),
    "nufft_2d_plain_normal": lambda: linop.NUFFT(_coords((7, 6), 31, 2), shape=(7, 6),
                                                 toeplitz=False),
    "toeplitz_normal_weights": lambda: linop.NUFFT(
        _coords((6, 7), 29, 3), shape=(6, 7),
        weights=np.random.default_rng(10).random(29).astype(np.float32)).N,
    "nufft_sense_2d": lambda: linop.NufftSense(_maps((3, 6, 5)), _coords((6, 5), 19, 4)),
    "nufft_sense_3d_weights": lambda: linop.NufftSense(
        _maps((2, 4, 4, 5)), _coords((4, 4, 5), 13, 5).reshape(13, 1, 3),
        weights=np.random.default_rng(11).random((13, 1)).astype(np.float32)),
    "nufft_sense_normal": lambda: linop.NufftSense(_maps((3, 5, 6)), _coords((5, 6), 21, 6)).N,
    "function_with_adjoint": lambda: linop.FunctionOperator(
        lambda x: jnp.cumsum(x), adjoint=lambda y: jnp.cumsum(y[::-1])[::-1],
        ishape=(6,), oshape=(6,)),
    "function_derived_adjoint": lambda: linop.FunctionOperator(
        lambda x: jnp.stack([x[1:] - x[:-1], 2 * x[1:]]), ishape=(5,), oshape=(2, 4)),
    "radon_odd_default_detectors": lambda: linop.Radon(
        (7, 6), np.linspace(0, np.pi, 5, endpoint=False), pixel_size=0.5),
    "radon_square_normal": lambda: linop.Radon(
        (8, 8), np.array([0.1, 0.9, 2.0], np.float32), num_detectors=8).N,
}


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def inputs(op, seed=0, dtype=np.complex64):
    rng = np.random.default_rng(seed)
    return random_complex(rng, op.ishape, dtype), random_complex(rng, op.oshape, dtype)


@pytest.fixture(params=list(CASES), ids=list(CASES))
def op(request):
    return CASES[request.param]()


def test_dot_product_adjoint(op):
    x, y = inputs(op)
    lhs = np.vdot(np.asarray(op(x)), y)
    rhs = np.vdot(x, np.asarray(op.H(y)))
    scale = np.linalg.norm(op(x)) * np.linalg.norm(y)
    assert abs(lhs - rhs) <= tol(np.complex64) * scale, (lhs, rhs)


def test_dot_product_adjoint_complex128(op):
    with jax.enable_x64(True):
        op64 = jax.tree_util.tree_map(
            lambda a: a.astype(jnp.complex128) if jnp.iscomplexobj(a) else a, op)
        x, y = inputs(op64, dtype=np.complex128)
        ax = op64(x)
        assert ax.dtype == jnp.complex128
        lhs = np.vdot(np.asarray(ax), y)
        rhs = np.vdot(x, np.asarray(op64.H(y)))
        scale = np.linalg.norm(ax) * np.linalg.norm(y)
        assert abs(lhs - rhs) <= tol(np.complex128) * scale, (lhs, rhs)


def test_double_adjoint(op):
    x, _ = inputs(op)
    assert op.H.H.ishape == op.ishape and op.H.H.oshape == op.oshape
    assert rel_err(op.H.H(x), op(x)) <= tol(np.complex64)


def test_normal_is_adjoint_of_forward(op):
    x, _ = inputs(op)
    assert op.N.ishape == op.N.oshape == op.ishape
    assert rel_err(op.N(x), op.H(op(x))) <= 10 * tol(np.complex64)
    assert rel_err((op.H @ op)(x), op.H(op(x))) <= tol(np.complex64)


def test_linearity(op):
    x, _ = inputs(op, 0)
    z, _ = inputs(op, 1)
    a, b = 0.7 - 1.3j, -2.1 + 0.4j
    assert rel_err(op(a * x + b * z), a * op(x) + b * op(z)) <= 10 * tol(np.complex64)


def test_jit_equals_eager(op):
    x, y = inputs(op)
    forward = jax.jit(lambda A, v: A(v))
    adjoint = jax.jit(lambda A, v: A.H(v))
    assert rel_err(forward(op, x), op(x)) <= tol(np.complex64)
    assert rel_err(adjoint(op, y), op.H(y)) <= tol(np.complex64)


def test_vmap_equals_loop(op):
    xs = np.stack([inputs(op, s)[0] for s in range(3)])
    batched = jax.vmap(op)(xs)
    looped = np.stack([op(x) for x in xs])
    assert rel_err(batched, looped) <= tol(np.complex64)


def _perturb(leaf):
    if leaf.dtype == jnp.bool_:
        return jnp.logical_not(leaf)
    return leaf * 1.5 + 0.25


def test_no_recompilation_for_new_values_of_same_shape(op):
    traces = []

    @jax.jit
    def f(A, v):
        traces.append(1)
        return A.N(v)

    x, _ = inputs(op, 0)
    z, _ = inputs(op, 1)
    f(op, x).block_until_ready()
    other = jax.tree_util.tree_map(_perturb, op)
    f(other, z).block_until_ready()
    f(op, z).block_until_ready()
    assert len(traces) == 1


def test_gradient_with_respect_to_input(op):
    # f(x) = ||A x||^2 has gradient 2 A^H A x; JAX returns its conjugate for complex x.
    x, _ = inputs(op)
    g = jax.grad(lambda v: jnp.sum(jnp.abs(op(v)) ** 2))(x)
    assert rel_err(g, 2 * np.conj(np.asarray(op.N(x)))) <= 10 * tol(np.complex64)


def _polynomial(path) -> bool:
    """Whether ``A(x)`` is a polynomial in the leaf at ``path`` (the NUFFT's coordinates enter
    through complex exponentials, their gradient tested in tests/linop/test_nufft.py; the
    Radon transform's angles through bilinear interpolation, tested in test_radon.py)."""
    return not any(getattr(key, "name", None) in ("coords", "angles") for key in path)


def test_gradient_with_respect_to_operator_arrays(op):
    paths, treedef = jax.tree_util.tree_flatten_with_path(op)
    leaves = [leaf for _, leaf in paths]
    inexact = [i for i, (path, leaf) in enumerate(paths)
               if jnp.issubdtype(leaf.dtype, jnp.inexact) and _polynomial(path)]
    if not inexact:
        pytest.skip("operator has no differentiable arrays")
    x, _ = inputs(op)

    def f(params):
        full = list(leaves)
        for i, p in zip(inexact, params):
            full[i] = p
        A = jax.tree_util.tree_unflatten(treedef, full)
        return jnp.sum(jnp.abs(A(x)) ** 2)

    params = [leaves[i] for i in inexact]
    rng = np.random.default_rng(7)
    direction = [random_complex(rng, p.shape).astype(p.dtype) if jnp.iscomplexobj(p)
                 else rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    derivative = float(jax.jvp(f, (params,), (direction,))[1])
    grads = jax.grad(f)(params)
    assert all(np.all(np.isfinite(g)) for g in grads)

    # f is a polynomial of degree <= 6 along the line (degree 6: maps twice and a Toeplitz
    # kernel once in a NUFFT-SENSE normal operator), so two Richardson steps over three central
    # differences (removing the t**2 and t**4 terms) are exact up to rounding.
    def central(t):
        plus = f([p + t * d for p, d in zip(params, direction)])
        minus = f([p - t * d for p, d in zip(params, direction)])
        return (plus - minus) / (2 * t)

    with jax.enable_x64(True):
        params = [np.asarray(p).astype(np.complex128 if np.iscomplexobj(p) else np.float64)
                  for p in params]
        direction = [np.asarray(d).astype(p.dtype) for p, d in zip(params, direction)]
        x = x.astype(np.complex128)
        first = [(4 * central(t) - central(2 * t)) / 3 for t in (0.125, 0.25)]
        reference = float((16 * first[0] - first[1]) / 15)
    assert abs(derivative - reference) <= 1e-4 * abs(reference)
    # The gradient agrees with the directional derivative: <grad, d> (real inner product).
    inner = sum(np.real(np.vdot(np.conj(np.asarray(g)), d)) if np.iscomplexobj(g)
                else np.vdot(np.asarray(g), d) for g, d in zip(grads, direction))
    assert abs(inner - derivative) <= 1e-4 * abs(derivative)
