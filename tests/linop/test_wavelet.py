"""mskjax.linop.Wavelet against PyWavelets, and its orthonormality, padding and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt

from mskjax import linop
from mskjax.linop._wavelet import WAVELETS, scaling_filter
from tests.conftest import random_complex, tol


def _random(rng, shape, dtype):
    if np.issubdtype(dtype, np.complexfloating):
        return random_complex(rng, shape, dtype)
    return rng.standard_normal(shape).astype(dtype)


def _pywt_reference(W, x, axes=None):
    """PyWavelets' wavedecn (periodization) packed by coeffs_to_array, on the padded array."""
    axes = W.axes if axes is None else axes
    padded = np.pad(np.asarray(x), [(0, m - n) for n, m in zip(W.ishape, W.oshape)])
    coeffs = pywt.wavedecn(padded, W.wavelet, mode="periodization", level=W.levels, axes=axes)
    array, _ = pywt.coeffs_to_array(coeffs, axes=axes)
    return array, coeffs


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("name", WAVELETS)
def test_filters_are_pywavelets_daubechies_filters(name):
    h = np.array(scaling_filter(name))
    np.testing.assert_allclose(h, pywt.Wavelet(name).rec_lo, rtol=0, atol=1e-15)
    assert abs(h.sum() - np.sqrt(2)) < 1e-14
    # Orthonormal to its own even shifts.
    for shift in range(0, len(h), 2):
        assert abs(h[shift:] @ h[:len(h) - shift] - (shift == 0)) < 1e-14


# (shape, wavelet, axes, dtype): 1D/2D/3D, odd, even and non-power-of-two sizes, subsets of axes.
PYWT_CASES = [
    ((37,), "db1", None, np.float32),
    ((45,), "db4", None, np.complex64),
    ((12, 20), "haar", None, np.complex64),
    ((17, 30), "db2", None, np.float32),
    ((36, 29), "db3", None, np.complex64),
    ((40, 33), "db4", None, np.float32),
    ((7, 30), "db4", (1,), np.complex64),
    ((5, 6, 7), "db1", None, np.complex64),
    ((12, 13, 14), "db2", None, np.float32),
    ((5, 14, 18), "db3", (1, 2), np.complex64),
    ((28, 3, 30), "db4", (0, -1), np.float32),
    ((16, 3, 12), "db2", (2, 0), np.complex64),
]


@pytest.mark.parametrize("shape,name,axes,dtype", PYWT_CASES,
                         ids=[f"{c[1]}-{'x'.join(map(str, c[0]))}-{c[2]}" for c in PYWT_CASES])
def test_matches_pywavelets_at_every_level(shape, name, axes, dtype):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    x = _random(rng, shape, dtype)
    most = linop.Wavelet(shape, wavelet=name, axes=axes).levels
    assert most >= 1
    for levels in range(1, most + 1):
        W = linop.Wavelet(shape, wavelet=name, levels=levels, axes=axes)
        reference, coeffs = _pywt_reference(W, x, axes)
        y = W(x)
        assert y.shape == W.oshape == reference.shape
        assert y.dtype == dtype
        assert _rel(y, reference) <= tol(dtype), (levels, _rel(y, reference))
        assert W.approximation_shape == coeffs[0].shape
        corner = tuple(slice(0, n) for n in W.approximation_shape)
        np.testing.assert_allclose(np.asarray(y)[corner], coeffs[0], rtol=1e-4, atol=1e-5)


def test_matches_pywavelets_to_double_precision():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        for shape, name, axes in [((40, 33), "db4", None), ((12, 13, 14), "db2", (0, 2)),
                                  ((50,), "db10", None)]:
            W = linop.Wavelet(shape, wavelet=name, axes=axes)
            x = random_complex(rng, shape, np.complex128)
            y = W(x)
            assert y.dtype == jnp.complex128
            assert _rel(y, _pywt_reference(W, x)[0]) <= tol(np.complex128)
            assert _rel(W.H(y), x) <= tol(np.complex128)


@pytest.mark.parametrize("shape,name,axes", [
    ((640, 368), "db4", None), ((320, 320), "db4", None), ((37,), "db1", None),
    ((16, 40, 30), "db2", None), ((8, 40, 30), "db3", (1, 2)), ((100, 7), "db5", 0),
])
def test_default_levels_are_pywavelets_dwt_max_level(shape, name, axes):
    W = linop.Wavelet(shape, wavelet=name, axes=axes)
    transformed = W.axes
    expected = min(pywt.dwt_max_level(shape[a], pywt.Wavelet(name).dec_len) for a in transformed)
    assert W.levels == expected
    assert all(m % 2 ** W.levels == 0 for m in (W.oshape[a] for a in transformed))
    assert all(0 <= W.oshape[a] - shape[a] < 2 ** W.levels for a in transformed)
    assert all(W.oshape[a] == shape[a] for a in range(len(shape)) if a not in transformed)


def test_default_levels_for_a_knee_image_pads_to_a_multiple_of_32():
    W = linop.Wavelet((640, 368))
    assert (W.wavelet, W.levels, W.oshape, W.approximation_shape) == \
        ("db4", 5, (640, 384), (20, 12))


@pytest.mark.parametrize("shape,name,axes", [
    ((64, 48), "db4", None), ((30, 27), "db2", None), ((11,), "haar", None),
    ((6, 20, 19), "db3", (1, 2)), ((8, 8, 8), "db1", None),
])
def test_adjoint_inverts_and_forward_preserves_energy(shape, name, axes):
    rng = np.random.default_rng(5)
    W = linop.Wavelet(shape, wavelet=name, axes=axes)
    x = random_complex(rng, shape)
    y = W(x)
    assert _rel(W.H(y), x) <= tol(np.complex64)
    # ||W x|| == ||x||: padding adds zeros only.
    assert abs(np.linalg.norm(y) / np.linalg.norm(x) - 1) <= tol(np.complex64)
    z = random_complex(rng, W.oshape)
    projected = W(W.H(z))
    if W.oshape == W.ishape:
        # Square: W is orthogonal, so W W^H is the identity too.
        assert _rel(projected, z) <= tol(np.complex64)
    else:
        # Padded: W W^H is the orthogonal projection onto the range of W, not the identity.
        assert _rel(projected, z) > 0.05
        assert _rel(W(W.H(projected)), projected) <= tol(np.complex64)
        residual = np.asarray(z) - np.asarray(projected)
        assert abs(np.vdot(residual, np.asarray(projected))) <= 1e-4 * np.linalg.norm(z) ** 2
        assert np.linalg.norm(W.H(z)) < np.linalg.norm(z)
    np.testing.assert_array_equal(W.N(x), x)


def test_constant_image_has_no_detail_coefficients():
    W = linop.Wavelet((48, 40), wavelet="db3", levels=2)
    y = np.array(W(jnp.full((48, 40), 1.5, jnp.float32)))
    corner = tuple(slice(0, n) for n in W.approximation_shape)
    np.testing.assert_allclose(y[corner], 1.5 * 2.0 ** W.levels, rtol=1e-5)
    y[corner] = 0
    assert np.abs(y).max() < 1e-5


def test_haar_is_db1_and_keeps_real_dtype():
    x = np.random.default_rng(2).standard_normal((12, 10)).astype(np.float32)
    haar = linop.Wavelet((12, 10), wavelet="haar", levels=1)
    assert haar.wavelet == "db1"
    y = haar(x)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, linop.Wavelet((12, 10), wavelet="db1", levels=1)(x))
    # One Haar level: the low corner holds (sum of each 2x2 block) / 2.
    np.testing.assert_allclose(y[:6, :5], x.reshape(6, 2, 5, 2).sum(axis=(1, 3)) / 2,
                               rtol=1e-6, atol=1e-6)


def test_operator_rebuilds_under_jit_without_recompiling_for_new_data():
    traces = []

    @jax.jit
    def shrink(W, x):
        traces.append(1)
        y = W(x)
        return W.H(jnp.where(jnp.abs(y) > 0.5, y, 0))

    W = linop.Wavelet((20, 18), wavelet="db2")
    rng = np.random.default_rng(9)
    out = shrink(W, random_complex(rng, W.ishape))
    shrink(linop.Wavelet((20, 18), wavelet="db2"), random_complex(rng, W.ishape))
    assert len(traces) == 1 and out.shape == W.ishape


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(shape=(32, 32), wavelet="db11"), ValueError, "wavelet must be one of"),
    (dict(shape=(32, 32), wavelet="sym4"), ValueError, "wavelet must be one of"),
    (dict(shape=(32, 32), wavelet=4), TypeError, "wavelet must be a name"),
    (dict(shape=(32, 32), levels=0), ValueError, "levels must be an integer from 1 to 2"),
    (dict(shape=(32, 32), levels=-1), ValueError, "levels must be"),
    (dict(shape=(32, 32), levels=3), ValueError, "levels must be an integer from 1 to 2"),
    (dict(shape=(32, 32), levels=1.5), ValueError, "levels must be"),
    (dict(shape=(32, 32), levels=True), ValueError, "levels must be"),
    (dict(shape=(32, 32), axes=2), ValueError, "out of range"),
    (dict(shape=(32, 32), axes=(0, -2)), ValueError, "distinct"),
    (dict(shape=(32, 32), axes=()), ValueError, "at least one axis"),
    (dict(shape=(32, 32), axes="rows"), TypeError, "axes must be"),
    (dict(shape=(13, 32)), ValueError, "at least 14 long"),
    (dict(shape=(32, 1, 32), wavelet="haar"), ValueError, "at least 2 long"),
    (dict(shape=()), ValueError, "shape must be"),
    (dict(shape=(32, 0)), ValueError, "shape must be"),
    (dict(shape=None), TypeError, "shape must be"),
])
def test_bad_input_names_the_function(kwargs, error, message):
    shape = kwargs.pop("shape")
    with pytest.raises(error, match=message) as info:
        linop.Wavelet(shape, **kwargs)
    assert str(info.value).startswith("mskjax.linop.Wavelet: ")


def test_wrong_input_shape_is_rejected():
    W = linop.Wavelet((30, 29))
    with pytest.raises(ValueError, match=r"mskjax.linop.Wavelet: input must have shape \(30, 29\)"):
        W(jnp.zeros((32, 32), jnp.complex64))
    with pytest.raises(ValueError, match=r"input must have shape \(32, 32\)"):
        W.H(jnp.zeros((30, 29), jnp.complex64))
