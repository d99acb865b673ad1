"""recon.tv_denoise against scikit-image's Chambolle TV denoising (same objective)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.restoration import denoise_tv_chambolle

from mskjax import recon
from mskjax.solvers import Status


def _objective(x, y, lamda):
    """1/2 ||x - y||^2 + lamda * isotropic TV with forward differences, Neumann boundary."""
    grads = []
    for axis in range(x.ndim):
        g = np.zeros_like(x)
        index = [slice(None)] * x.ndim
        index[axis] = slice(None, -1)
        g[tuple(index)] = np.diff(x, axis=axis)
        grads.append(g)
    return 0.5 * np.sum((x - y) ** 2) + lamda * np.sum(np.sqrt(sum(g ** 2 for g in grads)))


def _noisy_discs(n, seed=0):
    r, c = np.mgrid[:n, :n] - n // 2
    img = np.zeros((n, n))
    img[(r - 3) ** 2 + (c + 4) ** 2 < 15 ** 2] = 1.0
    img[(r + 5) ** 2 + (c - 6) ** 2 < 5 ** 2] = 2.0
    return img, img + 0.3 * np.random.default_rng(seed).standard_normal(img.shape)


@pytest.mark.parametrize("lamda", [0.1, 0.3])
def test_matches_skimage_chambolle(lamda):
    _, y = _noisy_discs(48)
    reference = denoise_tv_chambolle(y, weight=lamda, eps=1e-8, max_num_iter=3000)
    out = recon.tv_denoise(y.astype(np.float32), lamda=lamda, max_iter=300)
    x = np.asarray(out.image, np.float64)
    assert out.image.dtype == jnp.float32 and int(out.status) == Status.MAX_ITERATIONS
    # The same minimiser: the objectives agree to 1e-4 relative (measured 2e-5), the images
    # to 5e-3 of the range (flat directions of TV and float32).
    assert _objective(x, y, lamda) <= _objective(reference, y, lamda) * (1 + 1e-4)
    assert np.max(np.abs(x - reference)) <= 5e-3 * np.ptp(y)
    # It did change the image (a no-op would fail the objective test only by luck).
    assert np.max(np.abs(x - y)) > 0.05


def test_three_dimensional_matches_skimage():
    y = np.random.default_rng(1).standard_normal((10, 12, 9))
    y[3:7, 2:9, 2:6] += 2.0
    reference = denoise_tv_chambolle(y, weight=0.4, eps=1e-8, max_num_iter=3000)
    x = np.asarray(recon.tv_denoise(jnp.asarray(y, jnp.float32), lamda=0.4).image)
    assert _objective(x, y, 0.4) <= _objective(reference, y, 0.4) * (1 + 1e-4)
    assert np.max(np.abs(x - reference)) <= 1e-2 * np.ptp(y)


def test_identities():
    clean, y = _noisy_discs(32, seed=2)
    y = jnp.asarray(y, jnp.float32)
    # lamda = 0: the image itself; the mean is kept exactly for any lamda; a huge lamda
    # flattens the image to its mean; a constant image is a fixed point.
    np.testing.assert_allclose(recon.tv_denoise(y, lamda=0.0).image, y, atol=1e-6)
    strong = recon.tv_denoise(y, lamda=50.0, max_iter=500).image
    assert abs(float(strong.mean()) - float(y.mean())) <= 1e-5
    assert float(jnp.ptp(strong)) <= 2e-2 * float(jnp.ptp(y))
    flat = jnp.full((8, 9), 3.5, jnp.float32)
    np.testing.assert_allclose(recon.tv_denoise(flat, lamda=1.0).image, flat, atol=1e-5)
    # Denoising brings the image closer to the clean one.
    mid = recon.tv_denoise(y, lamda=0.2).image
    assert np.linalg.norm(mid - clean) < 0.5 * np.linalg.norm(y - clean)


def test_vmap_over_lamda_and_jit():
    _, y = _noisy_discs(24, seed=3)
    y = jnp.asarray(y, jnp.float32)
    lamdas = jnp.asarray([0.05, 0.2])
    f = jax.jit(lambda lam: recon.tv_denoise(y, lamda=lam, max_iter=100).image)
    batched = jax.vmap(f)(lamdas)
    for lam, image in zip(lamdas, batched):
        np.testing.assert_allclose(image, recon.tv_denoise(y, lamda=float(lam),
                                                           max_iter=100).image, atol=1e-5)


def test_nonfinite_input_gets_a_status_not_silence():
    y = np.ones((6, 6), np.float32)
    y[2, 3] = np.nan
    out = recon.tv_denoise(y, lamda=0.1, max_iter=10)
    assert int(out.status) == Status.NONFINITE


@pytest.mark.parametrize("image, kwargs, error, match", [
    (np.zeros((2, 3, 4, 5), np.float32), {"lamda": 0.1}, ValueError,
     "image must have 1 to 3 spatial axes"),
    (np.zeros((4, 5), np.int32), {"lamda": 0.1}, TypeError, "image must be floating point"),
    (np.zeros((4, 5), np.float32), {"lamda": -0.1}, ValueError, "lamda must be in"),
    (np.zeros((4, 5), np.float32), {"lamda": 0.1, "max_iter": 0}, ValueError,
     "max_iter must be an integer"),
    ("image", {"lamda": 0.1}, TypeError, "image must be an array"),
])
def test_bad_input(image, kwargs, error, match):
    with pytest.raises(error, match="mskjax.recon.tv_denoise: " + match):
        recon.tv_denoise(image, **kwargs)


def test_zero_image_is_a_fixed_point():
    out = recon.tv_denoise(np.zeros((5, 7), np.float32), lamda=0.5, max_iter=20)
    np.testing.assert_array_equal(out.image, 0)
    assert int(out.status) == Status.MAX_ITERATIONS


@pytest.mark.parametrize("shape", [(0,), (0, 4), (4, 4, 0)])
def test_empty_axis_is_a_clean_error(shape):
    # regression: an empty axis raised IndexError from the finite-difference weights
    with pytest.raises(ValueError, match="^mskjax.recon.tv_denoise: image must not have an empty"):
        recon.tv_denoise(np.zeros(shape, np.float32), lamda=0.1, max_iter=3)


@pytest.mark.parametrize("lamda", [float("nan"), -1.0])
def test_traced_invalid_lamda_is_visible(lamda):
    # regression: under jit a NaN or negative lamda returned the image unchanged with status
    # MAX_ITERATIONS (the ball projection treated it as lamda = 0)
    denoise = jax.jit(lambda x, lam: recon.tv_denoise(x, lamda=lam, max_iter=5))
    image = np.random.default_rng(0).random((6, 6)).astype(np.float32)
    out = denoise(image, jnp.float32(lamda))
    assert int(out.status) == Status.NONFINITE
    assert np.all(np.isnan(np.asarray(out.image)))
    ok = denoise(image, jnp.float32(0.0))
    assert int(ok.status) != Status.NONFINITE
    np.testing.assert_allclose(np.asarray(ok.image), image, rtol=1e-6)
