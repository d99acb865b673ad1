"""Fuzzing the coil tools: rss, normalize_maps, espirit, gaussian_maps."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mskjax import coils

from .conftest import outcome

SHAPES = st.sampled_from([(1, 4, 4), (3, 4, 4), (4, 8, 8), (2, 4, 4, 4)])
DTYPES = st.sampled_from([np.float32, np.complex64, np.float64])
RSS = jax.jit(coils.rss)
NORMALIZE = jax.jit(coils.normalize_maps)


def arrays(shape, dtype, lo=-1e3, hi=1e3):
    real = hnp.arrays(np.float32, shape, elements=st.floats(lo, hi, width=32))
    return real.map(lambda a: a.astype(dtype))


@given(data=st.data())
def test_rss_of_finite_input_is_finite_nonnegative_and_zero_only_for_zeros(data):
    shape, dtype = data.draw(SHAPES), data.draw(DTYPES)
    x = data.draw(arrays(shape, dtype))
    out = np.asarray(coils.rss(x))
    assert out.shape == shape[1:]
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    expected = np.sqrt(np.sum(np.abs(x.astype(np.complex128)) ** 2, axis=0))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(RSS(x)), out, rtol=1e-5, atol=1e-5)


@given(shape=SHAPES, bad=st.sampled_from([np.nan, np.inf, -np.inf]), where=st.integers(0, 999))
def test_rss_keeps_nonfinite_visible_eager_and_jitted(shape, bad, where):
    x = np.ones(shape, np.complex64)
    x.flat[where % x.size] = bad
    pixel = np.unravel_index(where % x.size, shape)[1:]
    for f in (coils.rss, RSS):
        out = outcome("mskjax.coils.rss", f, x)
        if out is not None:
            assert not np.isfinite(np.asarray(out)[pixel]), "rss turned a non-finite coil value finite"


@pytest.mark.parametrize("bad", ["x", None, {"a": 1}, np.ones((3, 4), np.int32)], ids=repr)
def test_rss_wrong_types_give_a_clean_type_error(bad):
    with pytest.raises(TypeError, match="^mskjax.coils.rss:"):
        coils.rss(bad)


@pytest.mark.parametrize("axis", [5, -4, "a", 1.5, (0, 0)], ids=repr)
def test_rss_bad_axis_gives_a_clean_error(axis):
    out = outcome("mskjax.coils.rss", coils.rss, np.ones((3, 4, 4), np.float32), axis=axis)
    assert out is None, f"rss accepted axis={axis!r}"


def test_rss_of_no_coils_is_refused():
    out = outcome("mskjax.coils.rss", coils.rss, np.ones((0, 4, 4), np.float32))
    assert out is None


def test_rss_of_huge_values_is_finite():
    out = np.asarray(coils.rss(np.full((3, 4, 4), 1e30, np.float32)))
    assert np.all(np.isfinite(out))


@given(shape=SHAPES, kind=st.sampled_from(["random", "zeros", "nan", "one zero pixel"]),
       seed=st.integers(0, 999))
def test_normalize_maps_answers_or_refuses(shape, kind, seed):
    rng = np.random.default_rng(seed)
    maps = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    if kind == "zeros":
        maps[:] = 0
    elif kind == "nan":
        maps.flat[seed % maps.size] = np.nan
    elif kind == "one zero pixel":
        maps[(slice(None),) + (0,) * (len(shape) - 1)] = 0
    name = "mskjax.coils.normalize_maps"
    out = outcome(name, coils.normalize_maps, maps)
    jitted = np.asarray(NORMALIZE(maps))
    if kind == "nan":
        assert out is None, "normalize_maps accepted NaN maps eagerly"
        assert not np.all(np.isfinite(jitted)), "normalize_maps under jit hid a NaN"
        return
    if out is None:
        return
    out = np.asarray(out)
    assert np.all(np.isfinite(out))
    power = np.sqrt(np.sum(np.abs(out) ** 2, axis=0))
    nonzero = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0)) > 0
    np.testing.assert_allclose(power[nonzero], 1, rtol=1e-4)
    np.testing.assert_allclose(jitted, out, rtol=1e-5, atol=1e-6)


def _kspace(seed, kind):
    rng = np.random.default_rng(seed)
    maps = np.asarray(coils.gaussian_maps((4, 16, 16)))
    img = rng.random((16, 16)) + 0.5
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(maps * img, axes=(-2, -1)), norm="ortho"),
                        axes=(-2, -1)).astype(np.complex64)
    if kind == "zeros":
        k[:] = 0
    elif kind == "zero centre":
        k[:, 4:12, 4:12] = 0
    elif kind == "nan":
        k[0, 8, 8] = np.nan
    elif kind == "noise":
        k = (rng.standard_normal(k.shape) * 1e-3).astype(np.complex64)
    return k


ESPIRIT = jax.jit(lambda k: coils.espirit(k, calib_width=8, kernel_width=4))


@settings(max_examples=6)
@given(kind=st.sampled_from(["signal", "zeros", "zero centre", "nan"]),
       seed=st.integers(0, 999))
def test_espirit_answers_or_refuses(kind, seed):
    k = _kspace(seed, kind)
    name = "mskjax.coils.espirit"
    out = outcome(name, coils.espirit, k, calib_width=8, kernel_width=4)
    if kind in ("zeros", "zero centre", "nan"):
        assert out is None, f"espirit accepted {kind} calibration data eagerly"
    else:
        assert out is not None
        out = np.asarray(out)
        assert out.shape == k.shape and np.all(np.isfinite(out)) and np.any(out)
    if kind in ("zeros", "zero centre", "nan"):
        jitted = np.asarray(ESPIRIT(k))
        assert not np.all(np.isfinite(jitted)), f"espirit under jit gave finite maps for {kind}"


@pytest.mark.parametrize("seed", [0, 1])
def test_espirit_of_noise_gives_maps_or_refuses(seed):
    out = outcome("mskjax.coils.espirit", coils.espirit, _kspace(seed, "noise"), calib_width=8,
                  kernel_width=4)
    if out is not None:
        assert np.any(np.asarray(out)), "espirit returned all-zero maps for noise"


@pytest.mark.parametrize("kwargs", [
    {"calib_width": 40}, {"calib_width": 0}, {"kernel_width": 0}, {"kernel_width": 20},
    {"thresh": -1.0}, {"thresh": float("nan")}, {"crop": 2.0}, {"num_maps": 0},
    {"max_iter": 0}, {"calib_width": "8"}, {"num_maps": 1.5},
], ids=repr)
def test_espirit_bad_options_give_a_clean_error(kwargs):
    k = _kspace(0, "signal")
    out = outcome("mskjax.coils.espirit", coils.espirit, k, **kwargs)
    assert out is None, f"espirit accepted {kwargs}"


@given(shape=st.tuples(st.integers(-2, 6), st.integers(-1, 8), st.integers(-1, 8)),
       width=st.sampled_from([0.5, 0.0, -1.0, float("nan"), float("inf")]))
def test_gaussian_maps_answers_or_refuses(shape, width):
    out = outcome("mskjax.coils.gaussian_maps", coils.gaussian_maps, shape, width=width)
    if out is not None:
        out = np.asarray(out)
        assert out.shape == shape and np.all(np.isfinite(out)) and np.any(out)
