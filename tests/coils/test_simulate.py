"""Simulated coil maps: birdcage against sigpy, Gaussian maps against their documented formula."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sigpy.mri

from mskjax.coils import birdcage_maps, gaussian_maps, rss

BIRDCAGE_CASES = [
    ((8, 32, 32), {}),
    ((7, 33, 29), {}),
    ((6, 20, 25), {"radius": 2.0}),
    ((12, 9, 16, 15), {"coils_per_ring": 4}),
    ((16, 8, 10, 11), {}),
    ((5, 7, 12, 12), {"radius": 1.7, "coils_per_ring": 3}),
]


@pytest.mark.parametrize("shape, kwargs", BIRDCAGE_CASES)
def test_birdcage_matches_sigpy(shape, kwargs):
    maps = birdcage_maps(shape, **kwargs)
    assert maps.shape == shape and maps.dtype == jnp.complex64
    expected = sigpy.mri.birdcage_maps(shape, r=kwargs.get("radius", 1.5),
                                       nzz=kwargs.get("coils_per_ring", 8))
    rel = np.max(np.abs(np.asarray(maps) - expected)) / np.max(np.abs(expected))
    assert rel < 1e-5, rel
    np.testing.assert_allclose(rss(maps), 1.0, rtol=1e-5)


def test_birdcage_jit_equals_eager():
    eager = birdcage_maps((4, 6, 9, 8), coils_per_ring=2)
    jitted = jax.jit(functools.partial(birdcage_maps, (4, 6, 9, 8), coils_per_ring=2))()
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


def test_birdcage_errors():
    func = "mskjax.coils.birdcage_maps"
    shape_msg = rf"{func}: shape must be \(coils, ny, nx\) or \(coils, nz, ny, nx\)"
    with pytest.raises(ValueError, match=shape_msg + r".*got \(8,\)"):
        birdcage_maps((8,))
    with pytest.raises(ValueError, match=shape_msg):
        birdcage_maps((8, 0, 4))
    with pytest.raises(ValueError, match=shape_msg):
        birdcage_maps((8, 4.0, 4))
    with pytest.raises(ValueError, match=shape_msg):
        birdcage_maps(8)
    with pytest.raises(ValueError, match=f"{func}: radius must be in"):
        birdcage_maps((8, 4, 4), radius=0.0)
    with pytest.raises(ValueError, match=f"{func}: coils_per_ring must be an integer"):
        birdcage_maps((8, 2, 4, 4), coils_per_ring=0)
    with pytest.raises(TypeError, match=f"{func}: dtype must be complex"):
        birdcage_maps((8, 4, 4), dtype=jnp.float32)
    if not jax.config.jax_enable_x64:
        with pytest.raises(TypeError, match=f"{func}: dtype complex128 needs 64-bit JAX"):
            birdcage_maps((8, 4, 4), dtype=jnp.complex128)
    # Coil 0 at normalised (0.5, 0) is grid point (y, x) = (4, 6) of an 8x8 grid.
    with pytest.raises(ValueError, match=f"{func}: radius=0.5 puts a coil centre on a grid"):
        birdcage_maps((4, 8, 8), radius=0.5)


def _gaussian_reference(shape, width=0.5, radius=1.2, phase_ramp=np.pi / 2, coils_per_ring=8):
    """The formula in the gaussian_maps docstring, in numpy float64."""
    coils, spatial = shape[0], shape[1:]
    grids = np.meshgrid(*[(np.arange(n) - n / 2) / (n / 2) for n in spatial], indexing="ij")
    x, y = grids[-1], grids[-2]
    per_ring = coils if len(spatial) == 2 else coils_per_ring
    rings = int(np.ceil(coils / per_ring))
    out = np.empty(shape, np.complex128)
    for c in range(coils):
        a = 2 * np.pi * (c % per_ring) / per_ring
        d2 = (x - radius * np.cos(a)) ** 2 + (y - radius * np.sin(a)) ** 2
        if len(spatial) == 3:
            d2 = d2 + (grids[0] - (c // per_ring - (rings - 1) / 2)) ** 2
        phase = a + phase_ramp * (x * np.cos(a) + y * np.sin(a))
        out[c] = np.exp(-d2 / (2 * width ** 2)) * np.exp(1j * phase)
    return out


@pytest.mark.parametrize("shape, kwargs", [
    ((8, 24, 24), {}),
    ((5, 19, 30), {"width": 0.8, "radius": 1.1, "phase_ramp": 1.0}),
    ((12, 7, 16, 13), {"coils_per_ring": 6}),
    ((8, 6, 11, 12), {}),
])
def test_gaussian_matches_formula(shape, kwargs):
    maps = gaussian_maps(shape, **kwargs)
    assert maps.shape == shape and maps.dtype == jnp.complex64
    expected = _gaussian_reference(shape, **kwargs)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(maps)) <= 1.0
    # Not normalised: the coil-combined sensitivity varies over the field of view.
    assert np.ptp(np.asarray(rss(maps))) > 0.1


def test_gaussian_linear_phase_and_peaks():
    coils, ny, nx = 8, 32, 40
    ramp = 0.9
    maps = np.asarray(gaussian_maps((coils, ny, nx), phase_ramp=ramp))
    angles = 2 * np.pi * np.arange(coils) / coils
    # Linear phase: neighbouring pixels differ by the same phase everywhere.
    step_x = np.angle(maps[:, :, 1:] * np.conj(maps[:, :, :-1]))
    step_y = np.angle(maps[:, 1:, :] * np.conj(maps[:, :-1, :]))
    np.testing.assert_allclose(step_x, np.broadcast_to(
        (ramp * np.cos(angles) * 2 / nx)[:, None, None], step_x.shape), atol=1e-5)
    np.testing.assert_allclose(step_y, np.broadcast_to(
        (ramp * np.sin(angles) * 2 / ny)[:, None, None], step_y.shape), atol=1e-5)
    # Each coil is brightest at the pixel nearest its centre (per axis, as the Gaussian is
    # separable), which is on the edge of the field of view unless the coil is in a corner.
    x = (np.arange(nx) - nx / 2) / (nx / 2)
    y = (np.arange(ny) - ny / 2) / (ny / 2)
    for c in range(coils):
        peak = np.unravel_index(np.argmax(np.abs(maps[c])), (ny, nx))
        nearest = (np.argmin(np.abs(y - 1.2 * np.sin(angles[c]))),
                   np.argmin(np.abs(x - 1.2 * np.cos(angles[c]))))
        assert peak == nearest
        if c % 2 == 0:  # coils on the axes lie outside the field of view
            assert peak[0] in (0, ny // 2, ny - 1) and peak[1] in (0, nx // 2, nx - 1)


def test_gaussian_errors():
    func = "mskjax.coils.gaussian_maps"
    with pytest.raises(ValueError, match=rf"{func}: shape must be \(coils, ny, nx\)"):
        gaussian_maps((8, 4, 4, 4, 4))
    with pytest.raises(ValueError, match=f"{func}: width must be in"):
        gaussian_maps((8, 4, 4), width=0)
    with pytest.raises(ValueError, match=f"{func}: width must be a finite real number"):
        gaussian_maps((8, 4, 4), width=float("nan"))
    with pytest.raises(ValueError, match=f"{func}: phase_ramp must be a finite real number"):
        gaussian_maps((8, 4, 4), phase_ramp=float("inf"))
    with pytest.raises(TypeError, match=f"{func}: dtype must be complex"):
        gaussian_maps((8, 4, 4), dtype="int8")
