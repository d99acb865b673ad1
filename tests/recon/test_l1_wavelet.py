import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
import sigpy
import sigpy.mri

from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.linop import Sense, Wavelet
from mskjax.recon import cg_sense, l1_wavelet
from mskjax.solvers.prox import soft_threshold
from mskjax.sim import knee_section


class PeriodicWaveletL1(sigpy.prox.Prox):
    """sigpy's prox interface around PyWavelets' periodized db4: the objective mskjax uses."""

    def __init__(self, shape, lamda):
        self.lamda = lamda
        super().__init__(shape)

    def _prox(self, alpha, x):
        coefficients, slices = pywt.coeffs_to_array(pywt.wavedecn(x, "db4", mode="periodization"))
        coefficients = sigpy.thresh.soft_thresh(self.lamda * alpha, coefficients)
        return pywt.waverecn(pywt.array_to_coeffs(coefficients, slices, output_format="wavedecn"),
                             "db4", mode="periodization").astype(x.dtype)


def test_objective_no_higher_than_sigpy_on_real_brain(brain_sigpy):
    kspace, maps = brain_sigpy
    lamda, iters = 0.005, 30
    mask = (sigpy.rss(kspace, axes=(0,)) > 0).astype(np.float32)
    A = sigpy.mri.linop.Sense(maps, weights=mask)
    W = Wavelet(A.ishape, wavelet="db4")

    def objective(x):
        r = A * x - kspace * mask
        return 0.5 * np.vdot(r, r).real + lamda * np.abs(np.asarray(W(jnp.asarray(x)))).sum()

    # sigpy's accelerated proximal gradient on the same objective (periodized db4).
    ref = sigpy.app.LinearLeastSquares(A, kspace * mask, proxg=PeriodicWaveletL1(A.ishape, lamda),
                                       max_iter=iters, show_pbar=False).run()
    out = l1_wavelet(kspace, maps, lamda=lamda, max_iter=iters)
    ours, theirs = objective(np.asarray(out.image)), objective(ref)
    assert ours <= theirs, (ours, theirs)
    assert abs(float(out.history[-1]) - ours) <= 1e-4 * ours
    # The l1 term does its job: fewer large wavelet coefficients than least squares.
    plain = cg_sense(kspace, maps, max_iter=iters).image
    small = lambda x: np.mean(np.abs(np.asarray(W(jnp.asarray(x)))) < 1e-3)
    assert small(out.image) > small(plain) + 0.1


def test_sparse_recovery_beats_zero_filled_and_least_squares():
    image = knee_section((64, 48)).astype(jnp.complex64)
    maps = normalize_maps(birdcage_maps((4, 64, 48)))
    rng = np.random.default_rng(0)
    mask = rng.random((64, 48)) < 0.3
    mask[28:36, 20:28] = True
    kspace = np.asarray(Sense(maps, mask=mask)(image))
    error = lambda x: float(np.linalg.norm(np.asarray(x) - np.asarray(image)) /
                            np.linalg.norm(np.asarray(image)))
    cs = l1_wavelet(kspace, maps, mask=mask, lamda=0.002, max_iter=100, wavelet="db1")
    ls = cg_sense(kspace, maps, mask=mask, max_iter=100)
    assert error(cs.image) < 0.8 * error(ls.image)
    history = np.asarray(cs.history)
    assert history[-1] < history[9] < history[0]
    jitted = jax.jit(lambda k: l1_wavelet(k, maps, mask=mask, lamda=0.002, max_iter=100,
                                          wavelet="db1").image)(kspace)
    np.testing.assert_allclose(jitted, cs.image, atol=1e-4)


def test_two_sets_of_maps_give_two_images():
    image = knee_section((32, 24)).astype(jnp.complex64)
    maps = normalize_maps(birdcage_maps((4, 32, 24)))
    two = jnp.stack([maps, 0.1 * maps])
    kspace = Sense(maps)(image)
    out = l1_wavelet(kspace, two, lamda=0.0, max_iter=50)
    assert out.image.shape == (2, 32, 24)
    combined = out.image[0] + 0.1 * out.image[1]
    assert np.linalg.norm(combined - image) / np.linalg.norm(image) < 1e-2


def test_soft_threshold():
    x = jnp.asarray([3 + 4j, 0.3 + 0.4j, 0j], jnp.complex64)
    np.testing.assert_allclose(soft_threshold(x, 1.0), [2.4 + 3.2j, 0, 0], atol=1e-6)


def test_bad_input():
    k = np.ones((2, 8, 8), np.complex64)
    with pytest.raises(ValueError, match="mskjax.recon.l1_wavelet: lamda must be in"):
        l1_wavelet(k, k, lamda=-0.1)
    with pytest.raises(ValueError, match="mskjax.linop.Wavelet"):
        l1_wavelet(k, k, lamda=0.1, wavelet="sym9")
    with pytest.raises(ValueError, match=r"maps must have shape"):
        l1_wavelet(k, k[:1], lamda=0.1)
