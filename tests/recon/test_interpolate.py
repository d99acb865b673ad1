"""recon.tricubic_upsample against scipy.ndimage.zoom(order=3, grid_mode=True) with the same
boundary mode, exact reproduction of cubic polynomials away from the edges, its grid against
sim.thick_slice's, jit, and bad input.

Where they differ: scipy's node-aligned grid (grid_mode=False, first and last samples kept at
the ends) and its other boundary modes (constant, nearest, wrap) are not offered; the test
below shows the node-aligned grid gives other values. With mode="reflect" on axes of fewer
than 5 samples scipy's prefilter is approximate and ours exact (tested too)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from mskjax import recon, sim


@pytest.mark.parametrize("mode", ["reflect", "mirror"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_one_axis_matches_scipy(mode, factor, rng):
    x = rng.standard_normal((6, 11, 5)).astype(np.float32)
    ours = np.asarray(recon.tricubic_upsample(x, factor=factor, axis=1, mode=mode))
    ref = ndimage.zoom(x.astype(np.float64), (1, factor, 1), order=3, grid_mode=True,
                       mode=mode)
    assert ours.shape == ref.shape == (6, 11 * factor, 5)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("mode", ["reflect", "mirror"])
def test_three_axes_and_complex_match_scipy(mode, rng):
    x = rng.standard_normal((5, 7, 6)) + 1j * rng.standard_normal((5, 7, 6))
    x = x.astype(np.complex64)
    ours = np.asarray(recon.tricubic_upsample(x, factor=(2, 3, 4), axis=(0, 1, 2), mode=mode))
    ref = (ndimage.zoom(x.real.astype(np.float64), (2, 3, 4), order=3, grid_mode=True,
                        mode=mode)
           + 1j * ndimage.zoom(x.imag.astype(np.float64), (2, 3, 4), order=3, grid_mode=True,
                               mode=mode))
    assert ours.dtype == np.complex64
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())


def test_node_aligned_grid_differs(rng):
    x = rng.standard_normal(10).astype(np.float32)
    ours = np.asarray(recon.tricubic_upsample(x, factor=2, axis=0))
    node = ndimage.zoom(x.astype(np.float64), 2, order=3, grid_mode=False, mode="reflect")
    assert np.abs(ours - node).max() > 1e-2


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_cubic_polynomial_reproduced_in_the_interior(factor):
    n = 40
    p = lambda t: 0.5 + 0.3 * t - 0.02 * t ** 2 + 0.001 * t ** 3  # noqa: E731
    x = p(np.arange(n, dtype=np.float64))
    out = np.asarray(recon.tricubic_upsample(jnp.asarray(x, jnp.float32), factor=factor,
                                             axis=0))
    coord = (np.arange(factor * n) + 0.5) / factor - 0.5
    # the boundary rule's influence decays like (2 - sqrt 3)^k: 12 samples in, below 1e-7
    inner = (coord > 12) & (coord < n - 13)
    np.testing.assert_allclose(out[inner], p(coord[inner]), rtol=2e-6)


def test_factor_one_is_identity_and_shares_thick_slice_grid(rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    np.testing.assert_array_equal(recon.tricubic_upsample(x, factor=1, axis=1), x)
    # a slowly varying (well sampled) signal: thick-slice then upsample comes back close,
    # which a grid shifted by half a thick slice would not
    t = np.arange(48)
    line = np.cos(2 * np.pi * 2 * t / 48).astype(np.float32)
    back = np.asarray(recon.tricubic_upsample(sim.thick_slice(line, factor=4, axis=0),
                                              factor=4, axis=0))
    assert np.abs(back - line).max() < 0.05  # 0.038 at the edges (reflect), below inside
    assert np.abs(back - line)[4:-4].max() < 0.015
    shifted = np.roll(back, 2)
    assert np.abs(shifted - line).max() > 0.2


def test_jit_and_gradient(rng):
    x = jnp.asarray(rng.standard_normal((5, 6)).astype(np.float32))
    fn = jax.jit(recon.tricubic_upsample, static_argnames=("factor", "axis", "mode"))
    np.testing.assert_allclose(fn(x, factor=3, axis=0), recon.tricubic_upsample(
        x, factor=3, axis=0), rtol=1e-6, atol=1e-6)
    w = jnp.asarray(rng.standard_normal((15, 6)).astype(np.float32))
    grad = jax.grad(lambda v: jnp.sum(w * recon.tricubic_upsample(v, factor=3, axis=0)))(x)
    np.testing.assert_allclose(jnp.vdot(grad, x), jnp.vdot(
        w, recon.tricubic_upsample(x, factor=3, axis=0)), rtol=1e-4)


def test_bad_input():
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="tricubic_upsample: factor must be an integer >= 1"):
        recon.tricubic_upsample(x, factor=0, axis=0)
    with pytest.raises(ValueError, match="one int per axis"):
        recon.tricubic_upsample(x, factor=(2, 2, 2), axis=(0, 1))
    with pytest.raises(ValueError, match="mode must be one of"):
        recon.tricubic_upsample(x, factor=2, axis=0, mode="constant")
    with pytest.raises(ValueError, match="axis"):
        recon.tricubic_upsample(x, factor=2, axis=3)
    with pytest.raises(TypeError, match="floating point"):
        recon.tricubic_upsample(np.zeros((4, 4), np.int16), factor=2, axis=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        recon.tricubic_upsample(np.zeros((1, 4), np.float32), factor=2, axis=0, mode="mirror")
    with pytest.raises(ValueError, match="finite"):
        recon.tricubic_upsample(np.full((4, 4), np.inf, np.float32), factor=2, axis=0)


@settings(max_examples=12, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), factor=st.integers(1, 4),
       mode=st.sampled_from(["reflect", "mirror"]))
def test_fuzz_against_scipy(shape, factor, mode):
    """Any small shape along every axis at once: scipy's values (reflect: on axes of 5
    samples or more), the samples themselves at the knots of odd factors, or a ValueError
    naming the function (mirror on a one-sample axis)."""
    x = np.random.default_rng(len(shape) + factor).standard_normal(shape).astype(np.float32)
    axes = tuple(range(len(shape)))
    if mode == "mirror" and factor > 1 and 1 in shape:
        with pytest.raises(ValueError, match="mskjax.recon.tricubic_upsample"):
            recon.tricubic_upsample(x, factor=factor, axis=axes, mode=mode)
        return
    ours = np.asarray(recon.tricubic_upsample(x, factor=factor, axis=axes, mode=mode))
    if factor % 2:  # odd factors put output samples on the input samples: kept exactly
        knots = tuple(slice((factor - 1) // 2, None, factor) for _ in shape)
        np.testing.assert_allclose(ours[knots], x, atol=1e-5 * max(1.0, np.abs(x).max()))
    if mode == "reflect" and factor > 1 and min(shape) < 5:
        return  # scipy's reflect prefilter is approximate there (test below)
    ref = ndimage.zoom(x.astype(np.float64), factor, order=3, grid_mode=True, mode=mode)
    np.testing.assert_allclose(ours, ref, atol=2e-5 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_short_reflect_axes_where_scipy_differs(n, rng):
    """On fewer than 5 samples scipy's reflect prefilter (its initial value) is approximate:
    it differs from the exact solution (up to about 4e-4 for 2 samples), which reproduces the
    samples at the knots (factor 3) where scipy's does not."""
    x = rng.standard_normal(n)
    ours = np.asarray(recon.tricubic_upsample(x.astype(np.float32), factor=3, axis=0))
    ref = ndimage.zoom(x, 3, order=3, grid_mode=True, mode="reflect")
    np.testing.assert_allclose(ours[1::3], x, atol=1e-6)
    assert np.abs(ref[1::3] - x).max() > 1e-6
