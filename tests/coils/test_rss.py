"""rss and normalize_maps: values, transformations, gradients at zero, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.coils import gaussian_maps, normalize_maps, rss

from ..conftest import random_complex, tol


def test_rss_complex_matches_numpy(rng):
    x = random_complex(rng, (6, 9, 8))
    out = rss(x)
    assert out.shape == (9, 8) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, np.sqrt(np.sum(np.abs(x) ** 2, axis=0)), rtol=tol(np.float32))


def test_rss_real_and_other_axes(rng):
    x = rng.standard_normal((5, 4, 7)).astype(np.float32)
    np.testing.assert_allclose(rss(x, axis=1), np.sqrt(np.sum(x ** 2, axis=1)), rtol=1e-5)
    np.testing.assert_allclose(rss(x, axis=-1), np.sqrt(np.sum(x ** 2, axis=-1)), rtol=1e-5)
    np.testing.assert_allclose(rss(x, axis=(0, 2)), np.sqrt(np.sum(x ** 2, axis=(0, 2))),
                               rtol=1e-5)


def test_rss_jit_and_vmap(rng):
    x = random_complex(rng, (3, 4, 6, 5))
    eager = rss(x, axis=1)
    np.testing.assert_allclose(jax.jit(lambda a: rss(a, axis=1))(x), eager, rtol=1e-6)
    batched = jax.vmap(rss)(x)
    np.testing.assert_allclose(batched, np.stack([rss(e) for e in x]), rtol=1e-6)
    np.testing.assert_allclose(batched, eager, rtol=1e-6)


def test_rss_gradient_finite_at_zero_pixel(rng):
    x = rng.standard_normal((4, 3, 3)).astype(np.float32)
    x[:, 1, 2] = 0.0
    grad = jax.grad(lambda a: jnp.sum(rss(a)))(jnp.asarray(x))
    assert np.all(np.isfinite(grad))
    expected = x / np.where(x.any(axis=0), np.sqrt(np.sum(x ** 2, axis=0)), 1.0)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(grad)[:, 1, 2] == 0)

    z = random_complex(rng, (4, 3, 3))
    z[:, 0, 0] = 0
    gradz = jax.grad(lambda a: jnp.sum(rss(a)))(jnp.asarray(z))
    assert np.all(np.isfinite(np.asarray(gradz).view(np.float32)))
    assert np.all(np.asarray(gradz)[:, 0, 0] == 0)
    # JAX's gradient of a real function of complex z is conj(df/dz*) * 2, here conj(z) / rss.
    norm = np.sqrt(np.sum(np.abs(z) ** 2, axis=0))
    expected_z = np.conj(z) / np.where(norm > 0, norm, 1.0)
    np.testing.assert_allclose(gradz, expected_z, rtol=1e-5, atol=1e-7)


def test_rss_errors():
    with pytest.raises(TypeError, match="mskjax.coils.rss: x must be floating point"):
        rss(np.ones((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="mskjax.coils.rss: x must be at least 1-dimensional"):
        rss(np.float32(1.0))
    with pytest.raises(ValueError, match="mskjax.coils.rss: axis"):
        rss(np.ones((2, 3), np.float32), axis=2)
    with pytest.raises(TypeError, match="mskjax.coils.rss: x must be an array"):
        rss("coils")


def test_normalize_maps_unit_rss_and_phase_kept():
    maps = gaussian_maps((6, 20, 17))
    out = normalize_maps(maps)
    assert out.shape == maps.shape and out.dtype == maps.dtype
    np.testing.assert_allclose(rss(out), 1.0, rtol=1e-5)
    # Same phase and same ratios between coils: out * rss(maps) == maps.
    np.testing.assert_allclose(out * rss(maps)[None], maps, rtol=1e-5, atol=1e-7)
    # Idempotent.
    np.testing.assert_allclose(normalize_maps(out), out, rtol=1e-5, atol=1e-7)


def test_normalize_maps_zero_support_and_eps(rng):
    maps = random_complex(rng, (4, 8, 8))
    maps[:, :2] = 0
    maps[:, 5, 5] *= 1e-4
    out = np.asarray(normalize_maps(maps))
    assert np.all(out[:, :2] == 0)
    norm = np.sqrt(np.sum(np.abs(out) ** 2, axis=0))
    np.testing.assert_allclose(norm[2:], 1.0, rtol=1e-5)
    out_eps = np.asarray(normalize_maps(maps, eps=1e-2))
    assert np.all(out_eps[:, 5, 5] == 0) and np.all(out_eps[:, :2] == 0)
    above = np.ones((8, 8), bool)
    above[:2] = above[5, 5] = False
    np.testing.assert_allclose(out_eps[:, above], out[:, above])
    assert np.all(out[:, 5, 5] != 0)


def test_normalize_maps_jit_vmap_grad(rng):
    maps = random_complex(rng, (2, 3, 5, 5))
    maps[:, :, 0, 0] = 0
    eager = np.stack([normalize_maps(m) for m in maps])
    np.testing.assert_allclose(jax.jit(jax.vmap(normalize_maps))(maps), eager, rtol=1e-6)
    grad = jax.grad(lambda m: jnp.sum(jnp.real(normalize_maps(m))))(jnp.asarray(maps[0]))
    assert np.all(np.isfinite(np.asarray(grad).view(np.float32)))


def test_normalize_maps_errors():
    func = "mskjax.coils.normalize_maps"
    with pytest.raises(TypeError, match=f"{func}: maps must be complex"):
        normalize_maps(np.ones((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=rf"{func}: maps must be \(coils, \*spatial\)"):
        normalize_maps(np.ones((4,), np.complex64))
    bad = np.ones((2, 4, 4), np.complex64)
    bad[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=f"{func}: maps must be finite"):
        normalize_maps(bad)
    with pytest.raises(ValueError, match=f"{func}: eps must be in"):
        normalize_maps(np.ones((2, 4, 4), np.complex64), eps=-1.0)


def test_nan_stays_nan_under_jit():
    x = np.ones((3, 4, 5), np.complex64)
    x[1, 2, 3] = np.nan
    out = np.asarray(jax.jit(rss)(x))
    assert np.isnan(out[2, 3])
    assert np.sum(np.isnan(out)) == 1
    np.testing.assert_allclose(np.delete(out.ravel(), 2 * 5 + 3), np.sqrt(3), rtol=1e-6)
    g = jax.grad(lambda v: jnp.sum(rss(v)))(np.zeros((2, 3), np.float32))
    assert np.all(g == 0)
