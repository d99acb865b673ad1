"""linop.Radon against scikit-image, analytic projections and its stated geometry.

The operator contract (adjoint, normal, jit, vmap, gradients) is in test_contract.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.transform import radon

from mskjax import linop


def _smooth_phantom(n):
    """Two Gaussians off centre, zero outside the inscribed circle (skimage's circle=True)."""
    r, c = np.mgrid[:n, :n] - n // 2
    img = (np.exp(-((r - 5) ** 2 / (2 * 8.0 ** 2) + (c + 3) ** 2 / (2 * 5.0 ** 2)))
           + 0.5 * np.exp(-((r + 9) ** 2 + (c - 7) ** 2) / (2 * 3.0 ** 2)))
    img[r ** 2 + c ** 2 > (n // 2 - 2) ** 2] = 0
    return img


@pytest.mark.parametrize("n", [48, 45])
def test_matches_skimage_radon(n):
    # Same geometry (centre n // 2, angle origin and direction, detector n // 2) and the same
    # bilinear sampling at unit steps: equal to float32 round-off (2e-7 of the peak measured).
    img = _smooth_phantom(n)
    degrees = np.linspace(0.0, 180.0, 37, endpoint=False) + 3.3
    reference = radon(img, degrees, circle=True).T  # skimage: (detectors, angles)
    A = linop.Radon((n, n), np.deg2rad(degrees), num_detectors=n)
    out = np.asarray(A(img.astype(np.float32)))
    assert out.shape == reference.shape == (37, n)
    assert np.max(np.abs(out - reference)) <= 2e-6 * np.max(reference)


def test_gaussian_line_integrals_and_pixel_size():
    # The projection of exp(-r^2 / 2 s^2) is sqrt(2 pi) s exp(-t^2 / 2 s^2) at every angle.
    n, sigma = 64, 6.0
    r, c = np.mgrid[:n, :n] - n // 2
    img = np.exp(-(r ** 2 + c ** 2) / (2 * sigma ** 2)).astype(np.float32)
    angles = np.linspace(0, np.pi, 12, endpoint=False)
    A = linop.Radon((n, n), angles, pixel_size=0.1)
    t = np.arange(A.num_detectors) - A.num_detectors // 2
    analytic = 0.1 * np.sqrt(2 * np.pi) * sigma * np.exp(-t ** 2 / (2 * sigma ** 2))
    out = np.asarray(A(img))
    # Bilinear sampling of a Gaussian of width 6 pixels: below 0.5 % of the peak.
    assert np.max(np.abs(out - analytic[None])) <= 5e-3 * analytic.max()


def test_geometry_conventions_non_square():
    # theta = 0 sums over rows: detector t sees column cols // 2 + t; theta = pi / 2 sums over
    # columns and detector t sees row rows // 2 - t.
    rows, cols = 9, 14
    img = np.random.default_rng(0).random((rows, cols)).astype(np.float32)
    A = linop.Radon((rows, cols), np.array([0.0, np.pi / 2]))
    D = A.num_detectors
    out = np.asarray(A(img))
    t = np.arange(D) - D // 2
    column_sums = np.zeros(D, np.float32)
    inside = (cols // 2 + t >= 0) & (cols // 2 + t < cols)
    column_sums[inside] = img.sum(0)[cols // 2 + t[inside]]
    row_sums = np.zeros(D, np.float32)
    inside = (rows // 2 - t >= 0) & (rows // 2 - t < rows)
    row_sums[inside] = img.sum(1)[rows // 2 - t[inside]]
    np.testing.assert_allclose(out[0], column_sums, atol=1e-5)
    np.testing.assert_allclose(out[1], row_sums, atol=1e-5)


def test_default_detectors_catch_every_ray():
    # The total mass sum_t p(theta, t) equals the image's sum at every angle when the
    # detectors cover every ray (bilinear sampling conserves mass on the unit lattice to
    # interpolation error only, so compare against a smooth image).
    n = 40
    r, c = np.mgrid[:n, :n] - n // 2
    img = np.exp(-(r ** 2 + c ** 2) / (2 * 7.0 ** 2)).astype(np.float32)
    A = linop.Radon((n, n), np.linspace(0, np.pi, 17, endpoint=False))
    totals = np.asarray(A(img)).sum(1)
    np.testing.assert_allclose(totals, img.sum(), rtol=2e-3)
    # Too few detectors lose mass.
    narrow = linop.Radon((n, n), np.linspace(0, np.pi, 17, endpoint=False), num_detectors=9)
    assert np.all(np.asarray(narrow(img)).sum(1) < 0.9 * img.sum())


@pytest.mark.slow
def test_vmap_over_angle_sets_and_gradient_in_angle():
    n = 24
    r, c = np.mgrid[:n, :n] - n // 2
    img = jnp.asarray(np.exp(-((r - 3) ** 2 + (c + 2) ** 2) / (2 * 4.0 ** 2)), jnp.float32)
    sets = jnp.asarray([[0.1, 0.7], [1.2, 2.5]], jnp.float32)

    def project(angles):
        return linop.Radon((n, n), angles)(img)

    batched = jax.vmap(project)(sets)
    np.testing.assert_allclose(batched, np.stack([project(a) for a in sets]), atol=1e-6)

    # d/dtheta of a weighted projection: JAX's derivative against a central difference.
    weights = jnp.linspace(-1.0, 1.0, linop.Radon((n, n), [0.0]).num_detectors)

    def f(theta):
        return jnp.sum(project(jnp.stack([theta]))[0] * weights)

    derivative = float(jax.grad(f)(0.4))
    h = 1e-2
    central = (float(f(0.4 + h)) - float(f(0.4 - h))) / (2 * h)
    assert np.isfinite(derivative)
    assert abs(derivative - central) <= 0.02 * abs(central)


@pytest.mark.parametrize("args, kwargs, error, match", [
    (((4, 4, 4), [0.0]), {}, ValueError, r"Radon: shape must be \(rows, cols\)"),
    (((4, 4), [[0.0, 1.0]]), {}, ValueError, "angles must be a non-empty 1D"),
    (((4, 4), []), {}, ValueError, "angles must be a non-empty 1D"),
    (((4, 4), [0.0, np.nan]), {}, ValueError, "angles must be finite"),
    (((4, 4), np.array([1j])), {}, TypeError, "angles must be real"),
    (((4, 4), [0.0]), {"num_detectors": 0}, ValueError, "num_detectors must be an integer"),
    (((4, 4), [0.0]), {"pixel_size": -1.0}, ValueError, "pixel_size must be in"),
    (((4, 4), "abc"), {}, TypeError, "angles must be an array"),
])
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        linop.Radon(*args, **kwargs)


def test_wrong_image_shape_names_the_operator():
    A = linop.Radon((6, 6), [0.0, 1.0])
    with pytest.raises(ValueError, match=r"mskjax.linop.Radon: input must have shape \(6, 6\)"):
        A(np.zeros((6, 7), np.float32))
