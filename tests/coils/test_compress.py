"""SVD coil compression against numpy's SVD: energy, unitarity, low rank, conventions, errors."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from mskjax.coils import birdcage_maps, coil_compress, coil_compression_matrix, rss
from mskjax.fourier import fft2c, ifft2c

from ..conftest import random_complex


def _kspace(rng, coils=8, shape=(24, 20)):
    """Coil k-space of a smooth object seen through birdcage maps, plus noise."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2) / 40.0) + 0.2
    maps = np.asarray(birdcage_maps((coils,) + shape))
    noise = 0.05 * random_complex(rng, (coils,) + shape)
    return np.asarray(fft2c(maps * image + noise))


def test_unitary_when_keeping_all_coils(rng):
    k = _kspace(rng)
    matrix = np.asarray(coil_compression_matrix(k, num_virtual=8))
    np.testing.assert_allclose(matrix @ matrix.conj().T, np.eye(8), atol=1e-5)
    out = coil_compress(k, num_virtual=8)
    np.testing.assert_allclose(rss(out), rss(k), rtol=1e-4, atol=1e-6 * np.abs(k).max())
    np.testing.assert_allclose(np.linalg.norm(out), np.linalg.norm(k), rtol=1e-5)


@pytest.mark.parametrize("num_virtual", [1, 3, 5])
def test_energy_is_top_singular_values(rng, num_virtual):
    k = _kspace(rng)
    data = k.reshape(8, -1).astype(np.complex128)
    u, s, _ = np.linalg.svd(data, full_matrices=False)
    out = np.asarray(coil_compress(k, num_virtual=num_virtual))
    assert out.shape == (num_virtual, 24, 20) and out.dtype == np.complex64
    energy = np.sum(np.abs(out.reshape(num_virtual, -1)) ** 2, axis=1)
    np.testing.assert_allclose(energy, s[:num_virtual] ** 2, rtol=1e-4)
    matrix = np.asarray(coil_compression_matrix(k, num_virtual=num_virtual))
    # Rows are the conjugated leading left singular vectors (up to each one's free phase) ...
    np.testing.assert_allclose(np.abs(matrix @ u[:, :num_virtual]), np.eye(num_virtual),
                               atol=1e-4)
    # ... with the phase fixed: the largest-magnitude entry of each row is real and positive.
    pivots = matrix[np.arange(num_virtual), np.argmax(np.abs(matrix), axis=1)]
    np.testing.assert_allclose(pivots.imag, 0, atol=1e-6)
    assert np.all(pivots.real > 0)
    np.testing.assert_allclose(out.reshape(num_virtual, -1), matrix @ k.reshape(8, -1),
                               rtol=1e-5, atol=1e-5 * np.abs(out).max())


def test_low_rank_data_compress_exactly(rng):
    mixing = random_complex(rng, (8, 3))
    virtual = random_complex(rng, (3, 16, 12, 10))
    k = np.einsum("cv,vzyx->czyx", mixing, virtual).astype(np.complex64)
    matrix = np.asarray(coil_compression_matrix(k, num_virtual=3))
    out = np.asarray(coil_compress(k, num_virtual=3))
    assert out.shape == (3, 16, 12, 10)
    back = matrix.conj().T @ out.reshape(3, -1)
    residual = np.linalg.norm(k.reshape(8, -1) - back) / np.linalg.norm(k)
    assert residual < 1e-5, residual


def test_same_matrix_for_images_and_kspace(rng):
    k = _kspace(rng)
    from_kspace = coil_compression_matrix(k, num_virtual=4)
    from_images = coil_compression_matrix(ifft2c(k), num_virtual=4)
    np.testing.assert_allclose(from_images, from_kspace, atol=1e-5)


def test_jit_and_vmap(rng):
    k = np.stack([_kspace(rng, coils=6, shape=(10, 12)) for _ in range(3)])
    eager = np.stack([coil_compress(e, num_virtual=2) for e in k])
    compress = functools.partial(coil_compress, num_virtual=2)
    np.testing.assert_allclose(jax.jit(compress)(k[0]), eager[0], rtol=1e-5,
                               atol=1e-5 * np.abs(eager).max())
    np.testing.assert_allclose(jax.vmap(compress)(k), eager, rtol=1e-5,
                               atol=1e-5 * np.abs(eager).max())


@pytest.mark.parametrize("func", [coil_compress, coil_compression_matrix])
def test_errors(rng, func):
    name = f"mskjax.coils.{func.__name__}"
    k = random_complex(rng, (4, 6, 6))
    for bad in (0, 5, 2.5):
        with pytest.raises(ValueError, match=f"{name}: num_virtual must be"):
            func(k, num_virtual=bad)
    with pytest.raises(TypeError, match=f"{name}: kspace must be complex"):
        func(k.real, num_virtual=2)
    with pytest.raises(ValueError, match=rf"{name}: kspace must be \(coils, \*spatial\)"):
        func(k[:, 0, 0], num_virtual=2)
    bad = k.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match=f"{name}: kspace must be finite, got 1 NaN"):
        func(bad, num_virtual=2)
