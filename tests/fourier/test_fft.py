import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.fourier import fft2c, fftnc, ifft2c, ifftnc
from tests.conftest import random_complex

SHAPES = [(8, 6), (7, 5), (4, 9, 11), (3, 16, 15)]


def numpy_fftnc(x, axes):
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"),
                           axes=axes)


@pytest.mark.parametrize("shape", SHAPES)
def test_fft2c_matches_numpy_centred(rng, shape):
    x = random_complex(rng, shape)
    got = np.asarray(fft2c(x))
    want = numpy_fftnc(x.astype(np.complex128), (-2, -1))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("shape", SHAPES)
def test_inverse_and_parseval(rng, shape):
    x = random_complex(rng, shape)
    k = fftnc(x)
    np.testing.assert_allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-5)
    np.testing.assert_allclose(ifftnc(k), x, atol=1e-5)
    np.testing.assert_allclose(ifft2c(fft2c(x)), x, atol=1e-5)


def test_centre_of_delta_is_flat_and_centre_pixel_is_dc(rng):
    # A delta at the centre index n // 2 has a flat spectrum with zero phase (centred FFT),
    # for even and odd sizes.
    for shape in [(6, 6), (7, 5)]:
        x = np.zeros(shape, np.complex64)
        x[shape[0] // 2, shape[1] // 2] = 1
        np.testing.assert_allclose(fft2c(x), np.full(shape, 1 / np.sqrt(np.prod(shape))),
                                   atol=1e-6)
        ones = np.ones(shape, np.complex64)
        k = np.array(fft2c(ones))
        assert abs(k[shape[0] // 2, shape[1] // 2] - np.sqrt(np.prod(shape))) < 1e-4
        k[shape[0] // 2, shape[1] // 2] = 0
        assert np.abs(k).max() < 1e-4


def test_axes_keyword_and_more_than_three_axes(rng):
    x = random_complex(rng, (2, 3, 4, 5, 6))
    np.testing.assert_allclose(fftnc(x), numpy_fftnc(x, tuple(range(5))), atol=1e-4)
    np.testing.assert_allclose(fftnc(x, axes=(0, 2)), numpy_fftnc(x, (0, 2)), atol=1e-4)
    np.testing.assert_allclose(fft2c(x, axes=(1, 3)), numpy_fftnc(x, (1, 3)), atol=1e-4)


def test_real_input_promotes_to_complex64():
    assert fft2c(jnp.ones((4, 4), jnp.float32)).dtype == jnp.complex64


def test_jit_vmap_grad(rng):
    x = random_complex(rng, (3, 8, 7))
    np.testing.assert_allclose(jax.jit(fft2c)(x), fft2c(x), atol=1e-6)
    np.testing.assert_allclose(jax.vmap(fft2c)(x), fft2c(x), atol=1e-6)
    # ||F x||^2 = ||x||^2, so the gradient is 2 conj(x) in JAX's convention.
    g = jax.grad(lambda z: jnp.sum(jnp.abs(fft2c(z)) ** 2))(x)
    np.testing.assert_allclose(g, 2 * np.conj(x), atol=1e-4)


def test_bad_input():
    with pytest.raises(TypeError, match="mskjax.fourier.fft2c: x must be floating point"):
        fft2c(np.ones((4, 4), np.int32))
    with pytest.raises(ValueError, match="mskjax.fourier.fft2c: x must be at least 2-dim"):
        fft2c(np.ones(4, np.complex64))
    with pytest.raises(ValueError, match="axes must name 2 axes"):
        fft2c(np.ones((2, 4, 4), np.complex64), axes=(0, 1, 2))
    with pytest.raises(ValueError, match="out of range"):
        ifftnc(np.ones((4, 4), np.complex64), axes=(2,))
