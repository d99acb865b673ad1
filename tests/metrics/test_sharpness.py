"""Sharpness: high-frequency energy (share and ratio) and gradient entropy, against hand
computations and on a blurred against a sharp image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from mskjax import metrics
from mskjax.sim import knee_section


def test_high_frequency_energy_of_cosines_by_hand():
    # 1 + cos(2 pi 0.375 x) on 16 columns: energy N^2 at DC, (N/2)^2 at each of +-0.375.
    rows, cols = 8, 16
    x = np.arange(cols)
    image = np.broadcast_to(1 + np.cos(2 * np.pi * 0.375 * x), (rows, cols)).astype(np.float32)
    assert float(metrics.high_frequency_energy(image, cutoff=0.25)) == pytest.approx(1 / 3,
                                                                                     rel=1e-5)
    assert float(metrics.high_frequency_energy(image, cutoff=0.4)) == pytest.approx(0, abs=1e-6)
    # A diagonal frequency (0.25, 0.25) has radius 0.354: above 0.3, below 0.36.
    yy, xx = np.mgrid[:rows, :cols]
    diagonal = np.cos(2 * np.pi * 0.25 * (yy + xx)).astype(np.float32)
    assert float(metrics.high_frequency_energy(diagonal, cutoff=0.3)) == pytest.approx(1, rel=1e-5)
    assert float(metrics.high_frequency_energy(diagonal, cutoff=0.36)) == pytest.approx(
        0, abs=1e-6)


def test_high_frequency_energy_equals_numpy():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(2, 12, 10)).astype(np.float64)
    power = np.abs(np.fft.fft2(image)) ** 2
    k = np.sqrt(np.fft.fftfreq(12)[:, None] ** 2 + np.fft.fftfreq(10)[None] ** 2)
    expected = power[:, k > 0.2].sum() / power.sum()
    with jax.enable_x64(True):
        got = float(metrics.high_frequency_energy(image, cutoff=0.2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_gradient_entropy_by_hand():
    # One vertical step edge: the gradient is equal at the `rows - 1` pixels of the column
    # before the edge and zero elsewhere, so h is uniform over rows - 1 pixels: log(rows - 1).
    image = np.zeros((9, 8), np.float32)
    image[:, 4:] = 1
    assert float(metrics.gradient_entropy(image)) == pytest.approx(np.log(8), rel=1e-6)
    # A linear ramp: equal gradient everywhere on the (rows - 1) x (cols - 1) grid.
    ramp = np.tile(np.arange(8, dtype=np.float32), (9, 1))
    assert float(metrics.gradient_entropy(ramp)) == pytest.approx(np.log(8 * 7), rel=1e-6)


def test_blurring_is_less_sharp():
    sharp = np.asarray(knee_section((96, 80)), np.float32)
    blurred = ndimage.gaussian_filter(sharp, 1.5).astype(np.float32)
    assert float(metrics.high_frequency_energy(blurred)) < 0.5 * float(
        metrics.high_frequency_energy(sharp))
    assert float(metrics.high_frequency_energy_ratio(sharp, blurred)) < 0.5
    assert float(metrics.high_frequency_energy_ratio(sharp, sharp)) == pytest.approx(1)
    assert float(metrics.gradient_entropy(blurred)) > float(metrics.gradient_entropy(sharp)) + 0.3
    jitted = jax.jit(metrics.gradient_entropy)(jnp.asarray(sharp))
    assert float(jitted) == pytest.approx(float(metrics.gradient_entropy(sharp)), rel=1e-5)


def test_degenerate_and_bad_input():
    with pytest.raises(ValueError, match="high_frequency_energy: image is all zeros"):
        metrics.high_frequency_energy(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="gradient_entropy: image is constant"):
        metrics.gradient_entropy(np.ones((4, 4), np.float32))
    assert np.isnan(float(jax.jit(metrics.gradient_entropy)(jnp.ones((4, 4)))))
    flat = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match="ratio: target has no energy above the cutoff"):
        metrics.high_frequency_energy_ratio(flat, flat)
    with pytest.raises(ValueError, match="ratio: target and image must have the same shape"):
        metrics.high_frequency_energy_ratio(np.ones((8, 8)), np.ones((8, 6)))
    with pytest.raises(TypeError, match="gradient_entropy: image must be a real"):
        metrics.gradient_entropy(np.ones((4, 4), np.complex64))
    with pytest.raises(ValueError, match="gradient_entropy: image must be \\(..., rows, cols\\)"):
        metrics.gradient_entropy(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="high_frequency_energy: cutoff must be in"):
        metrics.high_frequency_energy(np.ones((4, 4)), cutoff=0.8)
    nan = np.ones((4, 4), np.float32)
    nan[0, 0] = np.nan
    assert np.isnan(float(metrics.gradient_entropy(nan)))


@pytest.mark.parametrize("scale", [1e-30, 1e25, 1e30])
def test_huge_and_tiny_images_give_the_scale_free_value(scale):
    # regression: the spectral power (|X|^2) and the gradient sums overflowed for huge images
    # (NaN, or entropy 0) and underflowed for tiny ones ("all zeros" / "constant" errors)
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    for f in (metrics.high_frequency_energy, metrics.gradient_entropy,
              jax.jit(metrics.high_frequency_energy), jax.jit(metrics.gradient_entropy)):
        np.testing.assert_allclose(float(f(image * np.float32(scale))), float(f(image)),
                                   rtol=1e-5)
    assert abs(float(metrics.high_frequency_energy_ratio(image, image * np.float32(scale)))
               - 1) < 1e-5


def test_constant_image_under_jit_has_no_gradient_entropy():
    # regression (of the unit-peak scaling): under jit XLA's fused x / peak differed by an ulp
    # between neighbours, so a constant image got the entropy of a uniform gradient, log(49)
    value = float(jax.jit(metrics.gradient_entropy)(np.full((8, 8), 3.0, np.float32)))
    assert np.isnan(value)


@pytest.mark.parametrize("func", [metrics.high_frequency_energy, metrics.gradient_entropy])
def test_empty_stack_is_a_clean_error(func):
    # regression (of the unit-peak scaling): jnp.max of a (0, 8, 8) stack raised numpy's
    # "zero-size array" ValueError without the function's name
    with pytest.raises(ValueError, match=f"^mskjax.metrics.{func.__name__}: image"):
        func(np.zeros((0, 8, 8), np.float32))
