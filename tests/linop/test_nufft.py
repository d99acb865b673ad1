"""The NUFFT and NUFFT-SENSE operators: explicit non-uniform DFT, the centred FFT, sigpy, the
Toeplitz normal operator, coordinate gradients and bad input (the operator contract is in
test_contract.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import fourier, linop
from tests.conftest import random_complex


def _coords(shape, points, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-n / 2, n / 2, points) for n in shape], -1).astype(dtype)


def _ndft_matrix(coords, shape):
    """The explicit non-uniform DFT of the module docstring, ``(points, prod(shape))``."""
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    phase = sum(coords[:, a, None] * grids[a].reshape(1, -1) / n for a, n in enumerate(shape))
    return np.exp(-2j * np.pi * phase) / np.sqrt(np.prod(shape))


def _rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b))


@pytest.mark.parametrize("shape", [(16, 12), (7, 9), (6, 8, 10)])
@pytest.mark.parametrize("eps", [1e-3, 1e-6, 1e-9, 1e-12])
def test_agrees_with_explicit_nudft_to_eps(shape, eps):
    coords = _coords(shape, 150, seed=len(shape))
    rng = np.random.default_rng(1)
    x = random_complex(rng, shape, np.complex128)
    matrix = _ndft_matrix(coords, shape)
    y_ref = matrix @ x.reshape(-1)
    with jax.enable_x64(True):
        op = linop.NUFFT(coords, shape=shape, eps=eps)
        y = np.asarray(op(x))
        back = np.asarray(op.H(y_ref))
    # FINUFFT's accuracy is a relative l2 error of about eps (measured: at most 1.9 eps).
    assert _rel(y, y_ref) <= 3 * eps
    assert _rel(back, (matrix.conj().T @ y_ref).reshape(shape)) <= 3 * eps


def test_single_precision_accuracy():
    shape = (20, 14)
    coords = _coords(shape, 300, dtype=np.float32)
    x = random_complex(np.random.default_rng(2), shape)
    y = linop.NUFFT(coords, shape=shape)(x)
    assert y.dtype == jnp.complex64
    assert _rel(y, _ndft_matrix(coords.astype(np.float64), shape) @ x.reshape(-1)) <= 5e-6


@pytest.mark.parametrize("shape", [(8, 6), (7, 5), (4, 5, 6)])
def test_integer_coordinates_equal_the_centred_fft(shape):
    grid = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1)
    x = random_complex(np.random.default_rng(3), (3, *shape))
    op = linop.NUFFT(grid.astype(np.float32), shape=(3, *shape))
    expected = fourier.fftnc(x, axes=tuple(range(1, len(shape) + 1)))
    assert op.oshape == expected.shape
    assert _rel(op(x), expected) <= 5e-6
    # A fully sampled grid: the normal operator (Toeplitz) is the identity.
    assert _rel(op.N(x), x) <= 5e-6


def test_the_edge_frequency_plus_half_n_equals_minus_half_n():
    shape = (8, 6)
    coords = np.array([[4.0, 1.5], [-4.0, 1.5]], np.float32)
    y = linop.NUFFT(coords, shape=shape)(random_complex(np.random.default_rng(4), shape))
    np.testing.assert_allclose(y[0], y[1], rtol=1e-5)


def test_agrees_with_sigpy_to_its_interpolation_accuracy():
    sigpy = pytest.importorskip("sigpy")
    shape = (32, 24)
    coords = _coords(shape, 500, seed=5)
    x = random_complex(np.random.default_rng(5), shape, np.complex128)
    exact = _ndft_matrix(coords, shape) @ x.reshape(-1)
    ours = np.asarray(linop.NUFFT(coords.astype(np.float32), shape=shape)(
        x.astype(np.complex64)))
    theirs = sigpy.nufft(x, coords)  # Kaiser-Bessel, width 4, oversampling 1.25
    sigpy_error = _rel(theirs, exact)
    assert _rel(ours, exact) < sigpy_error / 10
    assert _rel(ours, theirs) <= 1.1 * sigpy_error
    adj_theirs = sigpy.nufft_adjoint(exact, coords, oshape=shape)
    adj_exact = (_ndft_matrix(coords, shape).conj().T @ exact).reshape(shape)
    adj_ours = linop.NUFFT(coords, shape=shape).H(exact.astype(np.complex64))
    assert _rel(adj_ours, adj_theirs) <= 1.1 * _rel(adj_theirs, adj_exact)


@pytest.mark.parametrize("shape", [(12, 10), (6, 5, 7)])
def test_toeplitz_normal_equals_adjoint_of_forward_with_weights(shape):
    coords = _coords(shape, 400, seed=6)
    weights = np.random.default_rng(6).random(400)
    x = random_complex(np.random.default_rng(7), (2, *shape), np.complex128)
    with jax.enable_x64(True):
        op = linop.NUFFT(coords, shape=(2, *shape), eps=1e-12, weights=weights)
        assert isinstance(op.N, linop.ToeplitzNormal)
        assert op.N.kernel.shape == tuple(2 * n for n in shape)
        assert _rel(op.N(x), op.H(op(x))) <= 1e-10
        plain = linop.NUFFT(coords, shape=(2, *shape), eps=1e-12, weights=weights,
                            toeplitz=False)
        assert not isinstance(plain.N, linop.ToeplitzNormal)
        assert _rel(plain.N(x), op.N(x)) <= 1e-10


def test_nufft_sense_equals_maps_then_nufft_and_its_normal_is_toeplitz():
    shape = (10, 9)
    coords = _coords(shape, 90, seed=8).reshape(9, 10, 2)
    maps = random_complex(np.random.default_rng(8), (4, *shape), np.complex128)
    weights = np.random.default_rng(9).random((9, 10))
    x = random_complex(np.random.default_rng(10), shape, np.complex128)
    with jax.enable_x64(True):
        sense = linop.NufftSense(maps, coords, weights=weights, eps=1e-12)
        nufft = linop.NUFFT(coords, shape=(4, *shape), eps=1e-12, weights=weights)
        assert sense.oshape == (4, 9, 10)
        assert _rel(sense(x), nufft(maps * x)) <= 1e-12
        assert _rel(sense.N(x), sense.H(sense(x))) <= 1e-10
        assert isinstance(sense.N, linop.NufftSenseNormal)


def test_matches_sigpy_sense_with_sqrt_density_weights():
    sigpy_mri = pytest.importorskip("sigpy.mri")
    shape = (16, 16)
    coords = _coords(shape, 200, seed=11)
    maps = random_complex(np.random.default_rng(11), (3, *shape), np.complex128)
    density = np.random.default_rng(12).random(200) + 0.1
    x = random_complex(np.random.default_rng(13), shape, np.complex128)
    theirs = sigpy_mri.linop.Sense(maps, coord=coords, weights=density)
    with jax.enable_x64(True):
        ours = linop.NufftSense(maps, coords, weights=np.sqrt(density), eps=1e-12)
        y = np.asarray(ours(x))
    # Both apply sqrt(density) to the samples; they differ by sigpy's interpolation error only.
    assert _rel(y, theirs * x) <= 1e-2


def test_gradient_with_respect_to_coordinates_matches_the_explicit_dft():
    shape = (8, 7)
    coords = _coords(shape, 40, seed=14)
    x = random_complex(np.random.default_rng(14), shape, np.complex128)
    grids = jnp.asarray(np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape],
                                             indexing="ij"), -1).reshape(-1, 2))

    with jax.enable_x64(True):
        def explicit(c):
            phase = (c[:, None, 0] * grids[None, :, 0] / shape[0]
                     + c[:, None, 1] * grids[None, :, 1] / shape[1])
            y = jnp.exp(-2j * jnp.pi * phase) @ x.reshape(-1) / np.sqrt(np.prod(shape))
            return jnp.sum(jnp.abs(y) ** 2 * jnp.arange(1, 41))

        def ours(c):
            y = linop.NUFFT(c, shape=shape, eps=1e-12)(x)
            return jnp.sum(jnp.abs(y) ** 2 * jnp.arange(1, 41))

        expected = np.asarray(jax.grad(explicit)(jnp.asarray(coords)))
        got = np.asarray(jax.grad(ours)(jnp.asarray(coords)))
    assert _rel(got, expected) <= 1e-8


def test_jit_with_traced_coordinates_and_no_recompile():
    shape = (12, 12)
    traces = []

    @jax.jit
    def forward(c, x):
        traces.append(1)
        return linop.NUFFT(c, shape=shape)(x)

    x = random_complex(np.random.default_rng(15), shape)
    for seed in (1, 2):
        c = _coords(shape, 64, seed, np.float32)
        np.testing.assert_allclose(forward(c, x), linop.NUFFT(c, shape=shape)(x),
                                   rtol=1e-5, atol=1e-5)
    assert len(traces) == 1


@pytest.mark.parametrize("coords, message", [
    (np.array([[0.0, 5.5]]), r"coords\[\.\.\., 1\] must lie in \[-5, 5\]"),
    (np.array([[0.0, 1.0, 2.0]]), r"coords must be \(\*trajectory, 2\)"),
    (np.array([[np.nan, 0.0]]), "coords must be finite"),
    (np.array([[1 + 1j, 0.0]]), "coords must be real"),
    (np.zeros((0, 2)), "coords must hold at least one point"),
])
def test_bad_coordinates(coords, message):
    with pytest.raises((ValueError, TypeError), match="mskjax.linop.NufftSense: " + message):
        linop.NufftSense(np.ones((2, 8, 10), np.complex64), coords)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"eps": 0.0}, ValueError, r"eps must lie in \[1e-14, 0.1\]"),
    ({"eps": 0.5}, ValueError, "eps must lie"),
    ({"eps": "tight"}, TypeError, "eps must be a number"),
    ({"weights": np.ones(9)}, ValueError, r"weights must have the trajectory shape \(10,\)"),
    ({"weights": -np.ones(10)}, ValueError, "weights must be non-negative"),
    ({"weights": np.full(10, np.nan)}, ValueError, "weights must be finite"),
    ({"weights": np.ones(10, np.complex64)}, TypeError, "weights must be real"),
])
def test_bad_options(kwargs, error, message):
    coords = _coords((8, 8), 10, dtype=np.float32)
    with pytest.raises(error, match="mskjax.linop.NUFFT: " + message):
        linop.NUFFT(coords, shape=(8, 8), **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="ndim 1 to 3 and at most len"):
        linop.NUFFT(np.zeros((5, 3)), shape=(8, 8))
    with pytest.raises(ValueError, match="maps must be"):
        linop.NufftSense(np.ones((8, 8), np.complex64), np.zeros((5, 2)))
    op = linop.NUFFT(np.zeros((5, 2)), shape=(8, 8))
    with pytest.raises(ValueError, match=r"input must have shape \(8, 8\)"):
        op(np.zeros((8, 9), np.complex64))


def test_under_jit_nan_coordinates_give_nan_not_a_crash_and_wrapping_is_exact():
    shape = (8, 6)
    coords = _coords(shape, 12, seed=16, dtype=np.float32)
    x = random_complex(np.random.default_rng(16), shape)
    bad = coords.copy()
    bad[3, 1] = np.nan

    @jax.jit
    def run(c):
        op = linop.NUFFT(c, shape=shape)
        return op(x), op.H(jnp.ones(12, jnp.complex64)), op.N(x)

    y, back, normal = (np.asarray(a) for a in run(bad))
    assert np.isnan(y[3]) and np.all(np.isfinite(np.delete(y, 3)))
    assert np.all(np.isnan(back)) and np.all(np.isnan(normal))
    # A coordinate shifted by a whole grid period is the same frequency: exact under jit.
    shifted = coords.copy()
    shifted[:, 0] += 8 * np.array([1, -2, 3] * 4)
    np.testing.assert_allclose(run(shifted)[0], run(coords)[0], rtol=1e-4, atol=1e-5)
