import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.coils import rss
from mskjax.recon import zero_filled
from mskjax.sim import knee_section
from mskjax.sim._kspace import simulate_kspace, smooth_phase


def test_noise_free_sense_adjoint_returns_the_image():
    image = knee_section((48, 40))
    out = simulate_kspace(image, jax.random.key(0), num_coils=6, snr_db=float("inf"))
    assert out.kspace.shape == (6, 48, 40) and out.kspace.dtype == jnp.complex64
    assert float(out.noise_std) == 0
    np.testing.assert_allclose(rss(out.maps), np.ones((48, 40)), rtol=1e-5)
    np.testing.assert_allclose(np.abs(out.image), image, atol=1e-6)
    np.testing.assert_allclose(zero_filled(out.kspace, maps=out.maps), out.image, atol=1e-5)
    # The phase is smooth (no wraps between neighbours) and not constant.
    phase = np.angle(np.asarray(out.image))[np.asarray(image) > 0]
    assert np.ptp(phase) > 0.1


def test_snr_matches_its_definition():
    image = knee_section((256, 192))
    out = simulate_kspace(image, jax.random.key(1), num_coils=8, snr_db=20.0)
    noise = np.asarray(zero_filled(out.kspace, maps=out.maps) - out.image)
    magnitude = np.asarray(image)
    signal = magnitude[magnitude > 0.1 * magnitude.max()].mean()
    assert abs(signal / np.std(noise) / 10.0 - 1) < 0.02
    # Noise is white and the same in k-space (orthonormal FFT, normalised maps).
    clean = simulate_kspace(image, jax.random.key(1), num_coils=8, snr_db=float("inf"))
    k_noise = np.asarray(out.kspace - clean.kspace)
    assert abs(np.std(k_noise) / float(out.noise_std) - 1) < 0.02


def test_determinism_3d_phase_options_and_gaussian_maps():
    volume = jnp.ones((6, 10, 8))
    a = simulate_kspace(volume, jax.random.key(2), num_coils=3, snr_db=25.0)
    b = simulate_kspace(volume, jax.random.key(2), num_coils=3, snr_db=25.0)
    c = simulate_kspace(volume, jax.random.key(3), num_coils=3, snr_db=25.0)
    assert a.kspace.shape == (3, 6, 10, 8)
    np.testing.assert_array_equal(a.kspace, b.kspace)
    assert not np.allclose(a.kspace, c.kspace)
    real = simulate_kspace(volume, jax.random.key(2), num_coils=3, phase=None,
                           snr_db=float("inf"))
    np.testing.assert_allclose(real.image, np.ones((6, 10, 8)), atol=0)
    given = simulate_kspace(volume, jax.random.key(2), num_coils=3, snr_db=float("inf"),
                            phase=np.full((6, 10, 8), 0.5))
    np.testing.assert_allclose(np.angle(given.image), 0.5, atol=1e-6)
    complex_image = np.exp(1j * np.linspace(0, 1, 80)).reshape(10, 8).astype(np.complex64)
    kept = simulate_kspace(complex_image, jax.random.key(2), num_coils=3, maps="gaussian",
                           snr_db=float("inf"))
    np.testing.assert_allclose(kept.image, complex_image, atol=1e-6)
    assert not np.allclose(kept.maps, simulate_kspace(complex_image, jax.random.key(2),
                                                      num_coils=3).maps)
    phase = smooth_phase(jax.random.key(4), (32, 24))
    assert phase.shape == (32, 24) and np.abs(np.diff(np.asarray(phase), axis=0)).max() < 0.3


def test_jit():
    image = knee_section((32, 24))
    run = jax.jit(lambda x, k: simulate_kspace(x, k, num_coils=4, snr_db=30.0))
    np.testing.assert_allclose(run(image, jax.random.key(0)).kspace,
                               simulate_kspace(image, jax.random.key(0), num_coils=4,
                                               snr_db=30.0).kspace, atol=1e-5)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(image=np.ones(5)), ValueError, r"image must be a 2D or 3D image"),
    (dict(image=np.full((4, 4), np.nan)), ValueError, "image must be finite"),
    (dict(num_coils=0), ValueError, "num_coils must be an integer >= 1"),
    (dict(snr_db=float("nan")), ValueError, "snr_db must be a finite real number"),
    (dict(phase="random"), ValueError, "phase must be 'smooth', None or an array"),
    (dict(phase=np.zeros((3, 3))), ValueError, r"phase must have the image's shape \(8, 8\)"),
    (dict(maps="sphere"), ValueError, "maps must be 'birdcage', 'gaussian' or an array"),
    (dict(maps=np.ones((2, 8, 8), np.complex64)), ValueError, r"maps must be \(num_coils"),
])
def test_bad_input(kwargs, error, message):
    args = dict(image=np.ones((8, 8), np.float32), num_coils=4)
    args.update(kwargs)
    image = args.pop("image")
    with pytest.raises(error, match=f"mskjax.sim.simulate_kspace: {message}"):
        simulate_kspace(image, jax.random.key(0), **args)
