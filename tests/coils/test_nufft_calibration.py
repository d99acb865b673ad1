"""ESPIRiT from non-Cartesian k-space: the gridded calibration region and the maps.

The reference is :func:`mskjax.coils.espirit` on the fully sampled Cartesian k-space of the same
coil images. The realistic case is a real knee (``knee_axial_rss`` image 5, averaged 2 x 2 to
160 x 128, scaled to a maximum of 1, with a smooth simulated phase) times 8 simulated birdcage
coils, sampled on radial spokes by :class:`mskjax.linop.NufftSense` (elliptical spokes reaching
``n/2`` on both axes, twofold readout oversampling). The object is where the magnitude exceeds
0.08 (33 % of the pixels).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.coils import birdcage_maps, espirit, espirit_nufft, nufft_calibration
from mskjax.fourier import fftnc
from mskjax.linop import NufftSense
from mskjax.recon import cg_sense
from mskjax.sampling import pipe_menon_density

from ..conftest import random_complex

CALIB = 24


def radial(grid, spokes, samples):
    """``(spokes, samples, 2)`` spokes at uniform angles reaching ``n_a / 2`` on each axis."""
    angle = np.pi * np.arange(spokes) / spokes
    t = (np.arange(samples) - samples / 2) / samples * 2
    return np.stack([np.cos(angle)[:, None] * t * grid[0] / 2,
                     np.sin(angle)[:, None] * t * grid[1] / 2], axis=-1).astype(np.float32)


def cartesian(grid):
    return np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in grid], indexing="ij"),
                    axis=-1).astype(np.float32)


def region(grid, calib):
    """The calibration region of ``(coils, *grid)`` k-space (``calib`` an int or one per axis)."""
    widths = (calib,) * len(grid) if isinstance(calib, int) else calib
    return (slice(None),) + tuple(slice(n // 2 - c // 2, n // 2 - c // 2 + c)
                                  for n, c in zip(grid, widths))


def coherence(maps, reference, where):
    """``1 - |<m, r>| / (|m| |r|)`` per pixel in ``where`` (0 for the same map up to phase)."""
    num = np.abs(np.sum(np.conj(maps) * reference, axis=0))
    den = np.linalg.norm(maps, axis=0) * np.linalg.norm(reference, axis=0)
    return 1 - np.where(den > 0, num / np.where(den > 0, den, 1), 0)[where]


def projection_residual(maps, coil_images, where):
    """``||(I - S S^H) x_c|| / ||x_c||`` over ``where``: how far the coil images are from the
    span of the maps (the ESPIRiT / SENSE model)."""
    projected = maps * np.sum(np.conj(maps) * coil_images, axis=0)
    return (np.linalg.norm((coil_images - projected)[:, where])
            / np.linalg.norm(coil_images[:, where]))


@pytest.fixture(scope="module")
def knee(shared_data):
    image = np.load(shared_data / "knee_axial_rss" / "knee_axial_rss.npz")["images"][5]
    image = image.reshape(160, 2, 128, 2).mean(axis=(1, 3))
    image = image / image.max()
    ny, nx = image.shape
    y, x = np.meshgrid((np.arange(ny) - ny / 2) / ny, (np.arange(nx) - nx / 2) / nx,
                       indexing="ij")
    complex_image = (image * np.exp(1j * np.pi * (0.6 * x + 0.4 * y ** 2))).astype(np.complex64)
    maps = np.asarray(birdcage_maps((8, ny, nx)))
    coil_images = maps * complex_image
    cartesian_kspace = np.asarray(fftnc(coil_images, axes=(-2, -1)))
    reference = np.asarray(espirit(cartesian_kspace, calib_width=CALIB))
    coords = radial((ny, nx), 96, 2 * ny)  # 96 spokes: 2.6 x fewer than pi / 2 * 160
    kspace = np.asarray(NufftSense(maps, coords)(complex_image))
    density = np.asarray(pipe_menon_density(coords, shape=(ny, nx)))
    return dict(image=complex_image, maps=maps, coil_images=coil_images, coords=coords,
                kspace=kspace, density=density, cartesian=cartesian_kspace,
                reference=reference, object=image > 0.08, grid=(ny, nx))


# --------------------------------------------------------------------------- exact cases


@pytest.mark.parametrize("grid, calib", [((24, 20), 8), ((24, 20), (9, 6)), ((10, 12, 8), 6)])
def test_cartesian_samples_give_the_cartesian_region(rng, grid, calib):
    """On the integer grid the adjoint NUFFT is the inverse centred FFT, so the calibration
    region is the Cartesian k-space itself (float32 NUFFT accuracy, 1e-6 asked) and the rest is
    zero; the Pipe-Menon density of a Cartesian grid is 1, so the default agrees too (its
    tolerance 1e-4)."""
    kspace = random_complex(rng, (3, *grid))
    coords = cartesian(grid)
    box = region(grid, calib)
    ones = np.ones(grid, np.float32)
    for margin in (0, 4.0):
        out = np.asarray(nufft_calibration(kspace, coords, shape=grid, calib_width=calib,
                                           density=ones, margin=margin))
        assert out.shape == kspace.shape and out.dtype == np.complex64
        np.testing.assert_allclose(out[box], kspace[box], rtol=0, atol=1e-5)
        outside = np.ones(out.shape, bool)
        outside[box] = False
        assert np.all(out[outside] == 0)
    default = np.asarray(nufft_calibration(kspace, coords, shape=grid, calib_width=calib))
    np.testing.assert_allclose(default[box], kspace[box], rtol=0, atol=5e-4)


# --------------------------------------------------------------------------- the knee


def test_gridded_region_is_close_to_the_cartesian_one(knee):
    """The gridded 24 x 24 region against the Cartesian k-space: measured 1.1 % relative error
    with the default margin of 4, 4.9 % with none (the interpolation at the region's edge misses
    the samples beyond it)."""
    box = region(knee["grid"], CALIB)

    def error(margin):
        out = np.asarray(nufft_calibration(knee["kspace"], knee["coords"], shape=knee["grid"],
                                           density=knee["density"], margin=margin))
        return (np.linalg.norm(out[box] - knee["cartesian"][box])
                / np.linalg.norm(knee["cartesian"][box]))

    with_margin, without = error(4.0), error(0)
    assert with_margin < 0.02
    assert with_margin < 0.5 * without


def test_maps_agree_with_cartesian_espirit(knee):
    """Inside the object, 1 - |<S_est, S_ref>| / (|S_est| |S_ref|) is 1.8e-7 at the median,
    3.4e-6 at the 95th percentile and 6.6e-5 at worst (measured); the supports agree (Dice
    0.997). Without density compensation the gridded region is the k-space times the sampling
    density, and the same numbers are 1.8e-2, 5.5e-2 and 7.6e-2: the bounds tell the two apart
    by two orders of magnitude."""
    where = knee["object"]
    maps = np.asarray(espirit_nufft(knee["kspace"], knee["coords"], shape=knee["grid"]))
    assert maps.shape == knee["maps"].shape and maps.dtype == np.complex64
    error = coherence(maps, knee["reference"], where)
    assert np.median(error) < 1e-5 and np.percentile(error, 95) < 1e-4 and error.max() < 1e-3
    support, reference_support = (np.linalg.norm(m, axis=0) > 0 for m in (maps,
                                                                            knee["reference"]))
    dice = 2 * np.sum(support & reference_support) / (support.sum() + reference_support.sum())
    assert dice > 0.99
    assert np.all(support[where])
    plain = np.asarray(espirit_nufft(knee["kspace"], knee["coords"], shape=knee["grid"],
                                     density=np.ones(knee["coords"].shape[:-1], np.float32)))
    assert np.median(coherence(plain, knee["reference"], where)) > 1e-3


def test_maps_span_the_coil_images(knee):
    """SENSE projection: the coil images lie in the span of the estimated maps as closely as in
    that of the Cartesian ESPIRiT maps (residual 0.38 % against 0.37 %, measured; the true maps
    give 1e-7). With k-space noise of 5 % of its RMS the maps still agree with the reference
    (median 1 - coherence 4.6e-6, measured) and the residual is 0.50 %."""
    where, coil_images = knee["object"], knee["coil_images"]
    maps = np.asarray(espirit_nufft(knee["kspace"], knee["coords"], shape=knee["grid"],
                                    density=knee["density"]))
    reference = projection_residual(knee["reference"], coil_images, where)
    assert projection_residual(maps, coil_images, where) < 1.1 * reference < 0.01
    rng = np.random.default_rng(0)
    sigma = 0.05 * np.sqrt(np.mean(np.abs(knee["kspace"]) ** 2))
    noisy = knee["kspace"] + sigma * random_complex(rng, knee["kspace"].shape) / np.sqrt(2)
    maps = np.asarray(espirit_nufft(noisy, knee["coords"], shape=knee["grid"],
                                    density=knee["density"]))
    assert np.median(coherence(maps, knee["reference"], where)) < 1e-4
    assert projection_residual(maps, coil_images, where) < 0.01


def test_cg_sense_with_the_estimated_maps(knee):
    """CG-SENSE (20 iterations) of the noisy radial k-space: the magnitude error inside the
    object is the same with the estimated maps as with the true ones (measured 10.37 % and
    10.41 %, noise-limited)."""
    where, image = knee["object"], knee["image"]
    rng = np.random.default_rng(1)
    sigma = 0.05 * np.sqrt(np.mean(np.abs(knee["kspace"]) ** 2))
    noisy = knee["kspace"] + sigma * random_complex(rng, knee["kspace"].shape) / np.sqrt(2)
    maps = espirit_nufft(noisy, knee["coords"], shape=knee["grid"], density=knee["density"])

    def error(m):
        x = np.asarray(cg_sense(noisy, m, coords=knee["coords"], density=knee["density"],
                                max_iter=20).image)
        return np.linalg.norm(np.abs(x[where]) - np.abs(image[where])) / np.linalg.norm(
            image[where])

    estimated, true = error(maps), error(knee["maps"])
    assert estimated < 1.05 * true < 0.2


# --------------------------------------------------------------------------- JAX behaviour


def test_jit_equals_eager(rng):
    grid = (32, 28)
    coords = radial(grid, 40, 64)
    kspace = random_complex(rng, (2, *coords.shape[:-1]))
    density = pipe_menon_density(coords, shape=grid)
    eager = nufft_calibration(kspace, coords, shape=grid, calib_width=12, density=density)
    jitted = jax.jit(functools.partial(nufft_calibration, shape=grid, calib_width=12))(
        jnp.asarray(kspace), jnp.asarray(coords), density=density)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5,
                               atol=1e-5 * float(np.abs(eager).max()))


# --------------------------------------------------------------------------- bad input


GRID = (16, 16)
COORDS = radial(GRID, 8, 16)
KSPACE = np.ones((2, 8, 16), np.complex64)


@pytest.mark.parametrize("kspace, coords, options, error, message", [
    (KSPACE.real, COORDS, {}, TypeError, "kspace must be complex"),
    (KSPACE[:, :4], COORDS, {}, ValueError, "kspace must be"),
    (KSPACE[0, 0], COORDS, {}, ValueError, "kspace must be"),
    (KSPACE * np.nan, COORDS, {}, ValueError, "finite"),
    (KSPACE, COORDS * 3, {}, ValueError, "must lie in"),
    (KSPACE, COORDS[..., :1], {}, ValueError, "coords must be"),
    (KSPACE, COORDS.astype(np.complex64), {}, TypeError, "coords must be real"),
    (KSPACE, COORDS, {"shape": (16,)}, ValueError, "shape must be the image grid"),
    (KSPACE, COORDS, {"shape": (2, 2, 16, 16)}, ValueError, "shape must be the image grid"),
    (KSPACE, COORDS, {"calib_width": 0}, ValueError, "calib_width"),
    (KSPACE, COORDS, {"calib_width": 17}, ValueError, "calib_width"),
    (KSPACE, COORDS, {"calib_width": (8, 8, 8)}, ValueError, "calib_width"),
    (KSPACE, COORDS, {"calib_width": 8.0}, ValueError, "calib_width"),
    (KSPACE, COORDS, {"margin": -1}, ValueError, "margin"),
    (KSPACE, COORDS, {"density": -np.ones((8, 16))}, ValueError, "density must be "
                                                                "non-negative"),
    (KSPACE, COORDS, {"density": np.ones((8, 15))}, ValueError, "density must have"),
])
@pytest.mark.parametrize("function, name", [(nufft_calibration, "nufft_calibration"),
                                            (espirit_nufft, "espirit_nufft")])
def test_bad_input(function, name, kspace, coords, options, error, message):
    options = {"shape": GRID, "calib_width": 8, **options}
    with pytest.raises(error, match=message) as info:
        function(kspace, coords, **options)
    assert f"mskjax.coils.{name}" in str(info.value)


def test_unknown_espirit_option():
    with pytest.raises(TypeError, match="mskjax.coils.espirit_nufft: unknown options"):
        espirit_nufft(KSPACE, COORDS, shape=GRID, calib_width=8, kernel=4)
    with pytest.raises(TypeError, match="calib_width is its own argument"):
        espirit_nufft(KSPACE, COORDS, shape=GRID, calib=8)
