"""Pipe-Menon density compensation: the Cartesian grid, the radial ramp, gridding accuracy,
a variable-density spiral, a 3D kooshball, sigpy's ``pipe_menon_dcf`` and bad input.

Trajectories are built here with numpy, in cycles per field of view: a radial spoke at angle
``theta`` has samples ``k = (i - S/2) n / S`` (``S`` samples, twofold readout oversampling for
``S = 2 n``), whose exact area per sample away from the centre is the ramp
``pi |k| dk / spokes`` (``dk = n / S``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.linop import NUFFT
from mskjax.sampling import pipe_menon_density
from ..conftest import tol

FUNC = "mskjax.sampling.pipe_menon_density"
N = 64
SPOKES = 101  # pi / 2 * N: the angular Nyquist rate at the edge of k-space
EPS = 1e-4  # the function's default NUFFT tolerance


def radial(n, spokes, samples):
    """``(spokes, samples, 2)``: uniform angles on the half circle, ``k = (i - S/2) n / S``."""
    angle = np.pi * np.arange(spokes) / spokes
    k = (np.arange(samples) - samples / 2) * n / samples
    return np.stack([np.cos(angle)[:, None] * k, np.sin(angle)[:, None] * k],
                    axis=-1).astype(np.float32)


def spiral(n, interleaves, samples, turns, power):
    """A variable-density spiral: radius ``n/2 t**power`` (denser near the centre for
    ``power > 1``), ``turns`` turns, ``interleaves`` rotated copies."""
    t = (np.arange(samples) + 0.5) / samples
    radius = n / 2 * t ** power
    angle = 2 * np.pi * turns * t + 2 * np.pi * np.arange(interleaves)[:, None] / interleaves
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).astype(np.float32)


def cartesian(grid):
    return np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in grid], indexing="ij"),
                    axis=-1).astype(np.float32)


def phantom(n):
    """A smooth 2D test object: three ellipses with logistic edges 1.5 pixels wide, inside the
    field of view."""
    y, x = np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2, indexing="ij")

    def ellipse(cy, cx, ry, rx, value):
        r = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
        return value / (1 + np.exp((r - 1) * min(ry, rx) / 1.5))

    image = (ellipse(0, 0, 0.36 * n, 0.28 * n, 1.0) + ellipse(-0.08 * n, 0.05 * n, 0.12 * n,
                                                              0.08 * n, -0.4)
             + ellipse(0.12 * n, -0.06 * n, 0.07 * n, 0.1 * n, 0.3))
    return image.astype(np.complex64)


def gridding(coords, density, image):
    """``NUFFT.H(d * NUFFT(x))`` at the NUFFT's best accuracy."""
    operator = NUFFT(coords, shape=image.shape)
    return np.asarray(operator.H(jnp.asarray(density, jnp.float32) * operator(image)))


def errors(estimate, image):
    """Relative error, the ratio of the means, and the relative error after the best real
    scaling of the estimate."""
    scale = np.real(np.vdot(estimate, image) / np.vdot(estimate, estimate))
    norm = np.linalg.norm(image)
    return (np.linalg.norm(estimate - image) / norm,
            np.mean(np.real(estimate)) / np.mean(np.real(image)),
            np.linalg.norm(scale * estimate - image) / norm)


@pytest.fixture(scope="module")
def radial_density():
    coords = radial(N, SPOKES, 2 * N)
    return coords, np.asarray(pipe_menon_density(coords, shape=(N, N)))


# --------------------------------------------------------------------------- scale and shape


@pytest.mark.parametrize("grid", [(32, 24), (12, 10, 8)])
def test_cartesian_grid_gets_one(grid):
    """On the full integer grid (a lattice of the NUFFT's periodic k-space) the fixed point is
    d = 1; measured max |d - 1| 7e-5 (2D) and 8e-5 (3D) at eps 1e-4, 1.5e-6 at eps 1e-6."""
    coords = cartesian(grid)
    d = np.asarray(pipe_menon_density(coords, shape=grid))
    assert d.shape == coords.shape[:-1] and d.dtype == np.float32
    np.testing.assert_allclose(d, 1, atol=5 * EPS)
    d = np.asarray(pipe_menon_density(coords, shape=(3, *grid), eps=1e-6))  # a coil axis
    np.testing.assert_allclose(d, 1, atol=1e-5)


def test_radial_follows_the_ramp(radial_density):
    """Away from the centre and the edge the density is the ramp pi |k| dk / spokes, in scale
    as well as shape: measured median ratio 0.99995, 5th to 95th percentile 0.9955 to 1.0048,
    correlation 0.998 for 2 <= |k| <= n/2 - 2."""
    coords, d = radial_density
    radius = np.linalg.norm(coords, axis=-1)
    ramp = np.pi * radius * (N / coords.shape[1]) / SPOKES
    band = (radius >= 2) & (radius <= N / 2 - 2)
    ratio = d[band] / ramp[band]
    assert abs(np.median(ratio) - 1) < 2e-3
    low, high = np.percentile(ratio, [5, 95])
    assert 0.99 < low and high < 1.01
    assert np.corrcoef(d[band], ramp[band])[0, 1] > 0.995
    # The centre sample (on every spoke) is much smaller than its neighbours along the spoke.
    centre = coords.shape[1] // 2
    assert np.all(d[:, centre] < 0.5 * d[:, centre + 1])


def test_radial_gridding_recovers_the_image(radial_density):
    """``NUFFT.H(d * NUFFT(x))`` is ``x`` at the right scale. The analytic ramp, with the centre
    sample weighted as the trapezoid rule's end correction (the ramp at dk / 6), gives a 0.57 %
    error on this image: the floor of a quadrature on these samples. Pipe-Menon measures
    0.41 % with a mean ratio of 1.0024; the bounds are 1 % and 0.5 % of scale, and no worse
    than 1.5 times the analytic ramp."""
    coords, d = radial_density
    image = phantom(N)
    error, mean_ratio, _ = errors(gridding(coords, d, image), image)
    radius = np.linalg.norm(coords, axis=-1)
    dk = N / coords.shape[1]
    ramp = np.pi * np.where(radius > 0, radius, dk / 6) * dk / SPOKES
    ramp_error, _, _ = errors(gridding(coords, ramp, image), image)
    assert error < 0.01
    assert abs(mean_ratio - 1) < 5e-3
    assert error < 1.5 * ramp_error
    # Without compensation the same image is off by orders of magnitude.
    assert errors(gridding(coords, np.ones_like(d), image), image)[0] > 10


def test_spiral_gridding_with_density_beats_without():
    """A variable-density spiral (16 interleaves, 8 turns, radius ~ t**1.6). After the best
    real scaling, gridding without compensation is off by 64 % (the dense centre blurs the
    image) and with it by 0.46 %; measured mean ratio 1.0018."""
    coords = spiral(N, 16, 400, 8, 1.6)
    image = phantom(N)
    d = np.asarray(pipe_menon_density(coords, shape=(N, N)))
    _, mean_ratio, error = errors(gridding(coords, d, image), image)
    _, _, plain = errors(gridding(coords, np.ones_like(d), image), image)
    assert error < 0.01 and plain > 0.5
    assert abs(mean_ratio - 1) < 5e-3


def test_kooshball_follows_the_squared_ramp():
    """3D radial (400 spokes, golden-spiral directions on the half sphere, 16**3 grid): the
    density is the ramp (2 pi / M) |k|**2 dk inside the well-sampled ball (measured median
    ratios 0.9997 to 1.0062 in shells 1 <= |k| < 5), and gridding a smooth ball recovers it
    to 0.69 % (the analytic ramp: 0.57 %)."""
    n, spokes, samples = 16, 400, 32
    i = np.arange(spokes) + 0.5
    z = i / spokes
    phi = np.pi * (1 + 5 ** 0.5) * i
    directions = np.stack([z, np.sqrt(1 - z ** 2) * np.cos(phi), np.sqrt(1 - z ** 2)
                           * np.sin(phi)], axis=-1)
    k = (np.arange(samples) - samples / 2) * n / samples
    coords = (directions[:, None, :] * k[None, :, None]).astype(np.float32)
    d = np.asarray(pipe_menon_density(coords, shape=(n, n, n)))
    radius = np.linalg.norm(coords, axis=-1)
    ramp = 2 * np.pi / spokes * radius ** 2 * (n / samples)
    for low in range(1, 5):
        shell = (radius >= low) & (radius < low + 1)
        assert abs(np.median(d[shell] / ramp[shell]) - 1) < 0.02, low
    grids = np.meshgrid(*[np.arange(n) - n / 2] * 3, indexing="ij")
    r = np.sqrt(grids[0] ** 2 + grids[1] ** 2 + (grids[2] / 0.8) ** 2)
    ball = (1 / (1 + np.exp(r - 5))).astype(np.complex64)
    error, mean_ratio, _ = errors(gridding(coords, d, ball), ball)
    assert error < 0.015 and abs(mean_ratio - 1) < 0.01


def test_matches_sigpy_up_to_scale(radial_density):
    """sigpy's ``pipe_menon_dcf`` (its gridding kernel: Kaiser-Bessel, width 4, beta 8) has no
    fixed scale (2e-14 to 7e-12 here) and a different kernel; up to scale the two agree for
    4 <= |k| <= n/2 - 4: measured correlation 0.9987, sigpy / mskjax within -1.6 % and +4.0 % of
    its median (5th to 95th percentile). Near the centre and the edge the kernels differ
    (correlation 0.86 over all samples)."""
    mri = pytest.importorskip("sigpy.mri")
    coords, d = radial_density
    reference = mri.pipe_menon_dcf(coords, img_shape=(N, N), show_pbar=False)
    radius = np.linalg.norm(coords, axis=-1)
    band = (radius >= 4) & (radius <= N / 2 - 4)
    assert np.corrcoef(d[band], reference[band])[0, 1] > 0.995
    ratio = reference[band] / d[band]
    low, high = np.percentile(ratio, [5, 95]) / np.median(ratio)
    assert 0.95 < low and high < 1.07


@pytest.mark.parametrize("width", [2.0, 2.5, 4.0])
def test_kernel_transform_is_the_kaiser_bessel_integral(width):
    """The closed form used for the convolution equals the numerical Fourier integral of the
    Kaiser-Bessel kernel ``I0(beta sqrt(1 - (2k / W)**2))`` on ``|k| <= W/2``, normalised to
    unit integral, inside and beyond its main lobe."""
    from mskjax.sampling._pipe_menon import kaiser_bessel_transform

    beta = 0.95 * np.pi * width
    k = np.linspace(-width / 2, width / 2, 20001)
    kernel = np.i0(beta * np.sqrt(np.clip(1 - (2 * k / width) ** 2, 0, None)))
    x = np.linspace(0, 1.5, 31)
    integral = np.trapezoid(kernel[None] * np.cos(2 * np.pi * x[:, None] * k[None]), k, axis=1)
    np.testing.assert_allclose(kaiser_bessel_transform(x, width), integral / integral[0],
                               atol=1e-7)


# --------------------------------------------------------------------------- JAX behaviour


def test_jit_equals_eager_and_traced_coordinates_work(radial_density):
    coords, d = radial_density
    jitted = jax.jit(lambda c: pipe_menon_density(c, shape=(N, N)))(jnp.asarray(coords))
    np.testing.assert_allclose(np.asarray(jitted), d, rtol=tol(np.float32), atol=0)


def test_iterations_trade_the_centre_against_the_rim(radial_density):
    """The crowded centre of a radial trajectory converges slowly: the gridding error of the
    smooth phantom falls from 3.8 % (5 iterations) to 1.6 % (10) and 0.41 % (30), while the
    bulk of the ramp stays flat (measured spread 0.1 % for 2 <= |k| <= n/2 - 6 at 30)."""
    coords, d30 = radial_density
    image = phantom(N)
    d5, d10 = (np.asarray(pipe_menon_density(coords, shape=(N, N), max_iter=i))
               for i in (5, 10))
    e5, e10, e30 = (errors(gridding(coords, d, image), image)[0] for d in (d5, d10, d30))
    assert e30 < 0.5 * e10 < 0.25 * e5
    radius = np.linalg.norm(coords, axis=-1)
    band = (radius >= 2) & (radius <= N / 2 - 6)
    ratio = d30[band] / (np.pi * radius[band] * 0.5 / SPOKES)
    assert np.std(ratio) / np.mean(ratio) < 0.005


def test_degenerate_trajectories_stay_finite():
    """Coincident samples share their area; one sample alone gets the kernel's inverse peak."""
    same = np.zeros((10, 2), np.float32)
    d = np.asarray(pipe_menon_density(same, shape=(16, 16)))
    assert np.all(np.isfinite(d)) and np.all(d > 0)
    np.testing.assert_allclose(d, d[0], rtol=1e-5)
    one = np.asarray(pipe_menon_density(same[:1], shape=(16, 16)))
    np.testing.assert_allclose(d.sum(), one.sum(), rtol=1e-3)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("coords, options, error, message", [
    (np.zeros((4, 2), np.complex64), {}, TypeError, "coords must be real"),
    (np.zeros((4, 4), np.float32), {}, ValueError, "ndim 1 to 3"),
    (np.zeros((4, 3), np.float32), {}, ValueError, "ndim 1 to 3"),
    (np.zeros((4,), np.float32), {}, ValueError, "ndim 1 to 3"),
    (np.full((4, 2), 9.0, np.float32), {}, ValueError, r"must lie in \[-8, 8\]"),
    (np.full((4, 2), np.nan, np.float32), {}, ValueError, "finite"),
    (np.zeros((0, 2), np.float32), {}, ValueError, "at least one point"),
    ("coords", {}, TypeError, "coords must be an array"),
    (np.zeros((4, 2), np.float32), {"max_iter": 0}, ValueError, "max_iter"),
    (np.zeros((4, 2), np.float32), {"max_iter": 2.5}, ValueError, "max_iter"),
    (np.zeros((4, 2), np.float32), {"kernel_width": 0.5}, ValueError, "kernel_width"),
    (np.zeros((4, 2), np.float32), {"kernel_width": 17}, ValueError, "kernel_width"),
    (np.zeros((4, 2), np.float32), {"eps": 1.0}, ValueError, "eps"),
    (np.zeros((4, 2), np.float32), {"shape": (0, 16)}, ValueError, "shape"),
    (np.zeros((4, 2), np.float32), {"shape": 16}, TypeError, "shape"),
])
def test_bad_input(coords, options, error, message):
    options = {"shape": (16, 16), **options}
    with pytest.raises(error, match=message) as info:
        pipe_menon_density(coords, **options)
    assert FUNC in str(info.value)
