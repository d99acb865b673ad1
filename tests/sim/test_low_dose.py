"""sim.low_dose_sinogram: Poisson counting statistics against theory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mskjax import sim


@pytest.mark.parametrize("p, photons, dose", [(0.5, 1e4, 1.0), (2.0, 1e5, 0.1),
                                              (4.0, 1e5, 0.25)])
def test_counts_are_poisson_with_the_stated_mean(p, photons, dose):
    rays = 200_000
    sinogram = jnp.full((rays,), p, jnp.float32)
    noisy = np.asarray(sim.low_dose_sinogram(jax.random.key(0), sinogram,
                                             incident_photons=photons, dose_fraction=dose),
                       np.float64)
    lam = photons * dose * np.exp(-p)
    counts = photons * dose * np.exp(-noisy)  # the counts back (all > 0 at these means)
    assert np.allclose(counts, np.round(counts), rtol=1e-4)
    # Mean and variance of the counts equal lambda (Poisson): within 5 standard errors.
    assert abs(counts.mean() - lam) <= 5 * np.sqrt(lam / rays)
    var_se = np.sqrt((2 * lam ** 2 + lam) / rays)  # standard error of a Poisson variance
    assert abs(counts.var() - lam) <= 5 * var_se
    # The measured line integral: mean p + 1 / (2 lambda), variance 1 / lambda (delta method,
    # accurate to O(1 / lambda^2) here: lambda >= 458).
    assert abs(noisy.mean() - (p + 1 / (2 * lam))) <= 5 * np.sqrt(1 / (lam * rays)) + 1e-6
    assert abs(noisy.var() * lam - 1) <= 0.02


def test_distribution_matches_scipy_poisson():
    # A small mean, where the Poisson shape is far from Gaussian: chi-square against scipy.
    lam, rays = 3.0, 50_000
    p = np.log(10.0 / lam)  # I0 d = 10 photons
    noisy = sim.low_dose_sinogram(jax.random.key(3), jnp.full((rays,), p, jnp.float32),
                                  incident_photons=10.0)
    counts = np.round(10.0 * np.exp(-np.asarray(noisy, np.float64))).astype(int)
    # Zero counts are read as half a photon: p = log(2 * 10), finite.
    zero = np.isclose(np.asarray(noisy), np.log(20.0), atol=1e-5)
    assert np.all(np.isfinite(noisy))
    counts[zero] = 0
    observed = np.bincount(counts, minlength=12)[:12].astype(float)
    expected = stats.poisson.pmf(np.arange(12), lam) * rays
    observed[-1] += rays - observed.sum()
    expected[-1] += rays - expected.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    assert abs(zero.mean() - np.exp(-lam)) <= 5 * np.sqrt(np.exp(-lam) / rays)


def test_zero_counts_are_finite_and_lower_dose_is_noisier():
    key = jax.random.key(1)
    opaque = sim.low_dose_sinogram(key, jnp.full((1000,), 60.0), incident_photons=1e5,
                                   dose_fraction=0.1)
    np.testing.assert_allclose(opaque, np.log(2 * 1e4), rtol=1e-6)
    clean = jnp.linspace(0.0, 3.0, 20_000)
    full = sim.low_dose_sinogram(key, clean, incident_photons=1e5)
    low = sim.low_dose_sinogram(key, clean, incident_photons=1e5, dose_fraction=0.1)
    err_full = float(jnp.std(full - clean))
    err_low = float(jnp.std(low - clean))
    # Noise standard deviation scales as 1 / sqrt(dose): about sqrt(10) here.
    assert 2.8 <= err_low / err_full <= 3.5
    assert full.dtype == jnp.float32 and full.shape == clean.shape


def test_jit_and_float64():
    f = jax.jit(lambda k, s: sim.low_dose_sinogram(k, s, incident_photons=1e4,
                                                   dose_fraction=0.5))
    out = f(jax.random.key(2), jnp.ones((3, 5)))
    assert out.shape == (3, 5) and bool(jnp.all(jnp.isfinite(out)))
    with jax.enable_x64(True):
        out64 = sim.low_dose_sinogram(jax.random.key(2), np.ones(4), incident_photons=1e4)
        assert out64.dtype == jnp.float64


@pytest.mark.parametrize("sinogram, kwargs, error, match", [
    (np.ones(3), {"incident_photons": 0.0}, ValueError, "incident_photons must be in"),
    (np.ones(3), {"incident_photons": 1e10}, ValueError, "incident_photons must be in"),
    (np.ones(3), {"incident_photons": 1e9, "dose_fraction": 2.0}, ValueError,
     r"incident_photons \* dose_fraction must be at most 1e9"),
    (np.ones(3), {"incident_photons": 1e5, "dose_fraction": 0.0}, ValueError,
     "dose_fraction must be in"),
    (np.ones(3) * 1j, {"incident_photons": 1e5}, TypeError, "sinogram must be real"),
    (np.array([1.0, np.nan]), {"incident_photons": 1e5}, ValueError, "sinogram must be finite"),
    (np.array([1.0, -0.5]), {"incident_photons": 1e5}, ValueError, "sinogram must be >= 0"),
])
def test_bad_input(sinogram, kwargs, error, match):
    with pytest.raises(error, match="mskjax.sim.low_dose_sinogram: " + match):
        sim.low_dose_sinogram(jax.random.key(0), sinogram, **kwargs)


@pytest.mark.parametrize("key", [None, 3, np.zeros(3, np.uint32), "key"], ids=repr)
def test_bad_key_is_a_clean_type_error(key):
    # regression: JAX's own TypeError ("unexpected PRNG key type") without the function's name
    with pytest.raises(TypeError, match="^mskjax.sim.low_dose_sinogram: key"):
        sim.low_dose_sinogram(key, np.ones((4, 4), np.float32), incident_photons=1e5)


def test_jitted_nonfinite_or_negative_line_integrals_read_as_nan():
    # regression: under jit NaN, +-inf and negative entries read as a plausible 9.9 (no photon)
    key = jax.random.PRNGKey(0)
    noisy = jax.jit(lambda s: sim.low_dose_sinogram(key, s, incident_photons=1e5,
                                                    dose_fraction=0.1))
    out = np.asarray(noisy(np.float32([np.nan, np.inf, -np.inf, -1e3, 0.0, 1.0])))
    assert np.all(np.isnan(out[:4]))
    assert np.all(np.isfinite(out[4:]))
