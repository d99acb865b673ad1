"""sim.thick_slice: band-limited volumes come back exactly at the thick-slice centres, the
truncation equals a direct evaluation of the kept Fourier series (numpy), the slice profiles
equal the continuous convolution computed by quadrature (scipy), scaling, jit, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from mskjax import sim


def band_limited(n, m, rng, *, complex_=False):
    """A periodic signal on ``n`` thin slices with frequencies strictly inside the band of the
    ``m``-point thick grid, as a function of the (continuous) thin-slice coordinate."""
    top = (m - 1) // 2
    amps = rng.standard_normal(top + 1)
    phases = rng.uniform(0, 2 * np.pi, top + 1)
    if complex_:
        freqs = rng.integers(-top, top + 1, size=top + 1)
        return lambda t: sum(a * np.exp(1j * (2 * np.pi * k * np.asarray(t) / n + p))
                             for a, k, p in zip(amps, freqs, phases))
    return lambda t: sum(a * np.cos(2 * np.pi * k * np.asarray(t) / n + p)
                         for k, (a, p) in enumerate(zip(amps, phases)))


def centres(m, factor):
    return np.arange(m) * factor + (factor - 1) / 2


@pytest.mark.parametrize("n,factor", [(24, 1), (24, 2), (24, 3), (24, 4), (30, 3), (30, 2),
                                      (28, 4), (21, 3)])
@pytest.mark.parametrize("complex_", [False, True])
def test_band_limited_exact_at_centres(n, factor, complex_, rng):
    m = n // factor
    f = band_limited(n, m, rng, complex_=complex_)
    line = f(np.arange(n))
    other = rng.standard_normal((3, 1, 2))  # the other axes only scale the profile
    volume = (other * line[None, :, None]).astype(np.complex64 if complex_ else np.float32)
    out = np.asarray(sim.thick_slice(volume, factor=factor, axis=1))
    assert out.shape == (3, m, 2)
    assert np.iscomplexobj(out) == complex_
    expected = other * f(centres(m, factor))[None, :, None]
    np.testing.assert_allclose(out, expected, atol=2e-5 * np.abs(line).max())


def direct_truncation(x, factor, axis):
    """The kept Fourier series evaluated at the thick-slice centres: numpy's unshifted FFT,
    frequencies -(m // 2) .. m - m // 2 - 1, one complex exponential at a time."""
    x = np.moveaxis(np.asarray(x, np.float64 if not np.iscomplexobj(x) else np.complex128),
                    axis, -1)
    n = x.shape[-1]
    m = n // factor
    spectrum = np.fft.fft(x, axis=-1)
    out = np.zeros(x.shape[:-1] + (m,), np.complex128)
    for k in range(-(m // 2), m - m // 2):
        out += spectrum[..., k % n, None] * np.exp(2j * np.pi * k * centres(m, factor) / n)
    out /= n
    out = out if np.iscomplexobj(x) else out.real
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("factor,axis", [(2, 0), (3, 1), (4, 2), (4, -1)])
@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_any_volume_equals_direct_truncation(factor, axis, dtype, rng):
    x = rng.standard_normal((12, 12, 24))
    if dtype == np.complex64:
        x = x + 1j * rng.standard_normal(x.shape)
    x = x.astype(dtype)
    out = np.asarray(sim.thick_slice(x, factor=factor, axis=axis))
    ref = direct_truncation(x, factor, axis % 3)
    np.testing.assert_allclose(out, ref, atol=1e-5 * np.abs(ref).max() * 10)


def test_constant_kept_and_ortho_scaling(rng):
    x = np.full((8, 12), 3.5, np.float32)
    np.testing.assert_allclose(sim.thick_slice(x, factor=3, axis=1), 3.5, rtol=1e-6)
    y = rng.standard_normal((8, 12)).astype(np.float32)
    a = sim.thick_slice(y, factor=4, axis=0)
    b = sim.thick_slice(y, factor=4, axis=0, norm="ortho")
    np.testing.assert_allclose(b, 2.0 * a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("profile,width", [("boxcar", None), ("boxcar", 2.5),
                                           ("gaussian", None), ("gaussian", 1.7)])
@pytest.mark.parametrize("factor", [2, 3])
def test_profile_equals_continuous_convolution(profile, width, factor, rng):
    n = 24
    m = n // factor
    f = band_limited(n, m, rng)
    w = float(factor if width is None else width)
    if profile == "boxcar":
        def blurred(t):
            return integrate.quad(lambda s: f(t - s), -w / 2, w / 2, epsabs=1e-12)[0] / w
    else:
        sigma = w / (2 * np.sqrt(2 * np.log(2)))

        def blurred(t):
            kernel = lambda s: np.exp(-s ** 2 / (2 * sigma ** 2)) / (np.sqrt(2 * np.pi) * sigma)  # noqa: E731
            return integrate.quad(lambda s: f(t - s) * kernel(s), -12 * sigma, 12 * sigma,
                                  epsabs=1e-12, limit=200)[0]
    x = f(np.arange(n)).astype(np.float32)
    out = np.asarray(sim.thick_slice(x, factor=factor, axis=0, profile=profile,
                                     profile_width=width))
    expected = np.array([blurred(t) for t in centres(m, factor)])
    np.testing.assert_allclose(out, expected, atol=2e-5 * np.abs(x).max())
    # and the profile does something: differs from the ideal truncation
    plain = np.asarray(sim.thick_slice(x, factor=factor, axis=0))
    assert np.abs(plain - out).max() > 1e-2 * np.abs(x).max()


def test_jit_and_gradient(rng):
    x = jnp.asarray(rng.standard_normal((6, 12, 4)).astype(np.float32))
    fn = jax.jit(sim.thick_slice, static_argnames=("factor", "axis", "profile"))
    np.testing.assert_allclose(fn(x, factor=3, axis=1, profile="gaussian"),
                               sim.thick_slice(x, factor=3, axis=1, profile="gaussian"),
                               rtol=1e-5, atol=1e-6)
    # linear: the gradient of <w, T x> is T^T w, and <T^T w, x> == <w, T x>
    w = jnp.asarray(rng.standard_normal((6, 4, 4)).astype(np.float32))
    grad = jax.grad(lambda v: jnp.sum(w * sim.thick_slice(v, factor=3, axis=1)))(x)
    np.testing.assert_allclose(jnp.vdot(grad, x), jnp.vdot(w, sim.thick_slice(x, factor=3,
                                                                                axis=1)),
                               rtol=1e-4)


def test_bad_input():
    x = np.zeros((10, 12), np.float32)
    with pytest.raises(ValueError, match=r"thick_slice: factor 3 must divide .* got 10"):
        sim.thick_slice(x, factor=3, axis=0)
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        sim.thick_slice(x, factor=0, axis=0)
    with pytest.raises(ValueError, match="factor must be an integer"):
        sim.thick_slice(x, factor=2.5, axis=0)
    with pytest.raises(ValueError, match="axis"):
        sim.thick_slice(x, factor=2, axis=2)
    with pytest.raises(TypeError, match="thick_slice: volume must be floating point"):
        sim.thick_slice(np.zeros((4, 4), np.int32), factor=2, axis=0)
    with pytest.raises(ValueError, match="profile must be None or one of"):
        sim.thick_slice(x, factor=2, axis=0, profile="sinc")
    with pytest.raises(ValueError, match="profile_width is given without a profile"):
        sim.thick_slice(x, factor=2, axis=0, profile_width=2.0)
    with pytest.raises(ValueError, match="profile_width must be a finite number > 0"):
        sim.thick_slice(x, factor=2, axis=0, profile="boxcar", profile_width=-1.0)
    with pytest.raises(ValueError, match="norm must be"):
        sim.thick_slice(x, factor=2, axis=0, norm="forward")
    with pytest.raises(ValueError, match="volume must be finite"):
        sim.thick_slice(np.full((4, 4), np.nan, np.float32), factor=2, axis=0)


@settings(max_examples=12, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
       factor=st.integers(1, 5), axis=st.integers(-3, 2),
       kind=st.sampled_from(["random", "zeros", "huge", "tiny"]))
def test_fuzz_shapes_and_scales(shape, factor, axis, kind):
    """Any shape, factor and axis: the thick-slice shape with finite values (zeros stay zeros,
    scaling commutes), or a ValueError naming the function."""
    rng = np.random.default_rng(len(shape) * 31 + factor)
    x = rng.standard_normal(shape).astype(np.float32)
    x = {"random": x, "zeros": 0 * x, "huge": x * np.float32(1e30),
         "tiny": x * np.float32(1e-30)}[kind]
    if not -len(shape) <= axis < len(shape) or shape[axis] % factor:
        with pytest.raises(ValueError, match="mskjax.sim.thick_slice"):
            sim.thick_slice(x, factor=factor, axis=axis)
        return
    out = np.asarray(sim.thick_slice(x, factor=factor, axis=axis))
    expected = list(shape)
    expected[axis] //= factor
    assert out.shape == tuple(expected)
    assert np.all(np.isfinite(out))
    if kind == "zeros":
        assert not out.any()
    scale = np.float32({"random": 1, "zeros": 1, "huge": 1e30, "tiny": 1e-30}[kind])
    ref = np.asarray(sim.thick_slice(x / scale, factor=factor, axis=axis)) * scale
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * float(scale))


def test_several_axes_are_a_clean_error():
    # regression: axis=(0, 1) raised "too many values to unpack" without the function's name
    with pytest.raises(ValueError, match="^mskjax.sim.thick_slice: axis must be one int"):
        sim.thick_slice(np.ones((4, 4), np.float32), factor=2, axis=(0, 1))


@pytest.mark.parametrize("profile", ["boxcar", "gaussian"])
def test_huge_profile_width_gives_its_limit(profile):
    # regression: profile_width=1e300 raised OverflowError (gaussian) or gave NaN (boxcar);
    # the limit of an infinitely wide profile keeps only the mean along the axis
    volume = np.random.default_rng(0).random((8, 3)).astype(np.float32)
    out = np.asarray(sim.thick_slice(volume, factor=2, axis=0, profile=profile,
                                     profile_width=1e300))
    assert np.all(np.isfinite(out))
    expected = np.broadcast_to(volume.mean(axis=0), out.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
