import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sigpy.mri

from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.linop import Sense
from mskjax.recon import cg_sense
from mskjax.sim import knee_section
from tests.conftest import fft_ranks


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.mark.parametrize("lamda", [0.0, 0.01])
def test_matches_sigpy_sense_recon_on_real_brain(brain_sigpy, lamda):
    kspace, maps = brain_sigpy
    ref = sigpy.mri.app.SenseRecon(kspace, maps, lamda=lamda, max_iter=30,
                                   show_pbar=False).run()
    out = cg_sense(kspace, maps, lamda=lamda, max_iter=30)
    assert rel(out.image, ref) < 1e-3
    assert int(out.iterations) == 30 and not bool(out.converged)
    assert np.all(np.diff(np.asarray(out.history)[[0, 10, 29]]) < 0)


def synthetic(shape=(40, 33), coils=6, mask_every=2):
    image = knee_section(shape).astype(jnp.complex64) * jnp.exp(0.3j)
    maps = normalize_maps(birdcage_maps((coils, *shape)))
    mask = np.zeros(shape[-1], bool)
    mask[::mask_every] = True
    mask[shape[-1] // 2 - 3:shape[-1] // 2 + 3] = True
    return np.asarray(Sense(maps, mask=mask)(image)), maps, mask, image


def test_recovers_noise_free_image_and_stops_at_tolerance():
    kspace, maps, mask, image = synthetic()
    out = cg_sense(kspace, maps, mask=mask, max_iter=200, tol=1e-6)
    assert bool(out.converged) and int(out.iterations) < 200
    assert rel(out.image, image) < 1e-3
    history = np.asarray(out.history)
    assert np.all(np.isnan(history[int(out.iterations):]))
    assert history[int(out.iterations) - 1] <= 1e-6
    # An inferred mask (nonzero k-space) gives the same answer.
    np.testing.assert_allclose(cg_sense(kspace, maps, max_iter=20).image,
                               cg_sense(kspace, maps, mask=mask, max_iter=20).image, atol=1e-5)


def test_3d_and_vmap_over_slices():
    image = jnp.ones((6, 8, 10), jnp.complex64)
    maps = normalize_maps(birdcage_maps((4, 6, 8, 10)))
    kspace = Sense(maps)(image)
    out = cg_sense(kspace, maps, max_iter=10)
    assert out.image.shape == (6, 8, 10) and rel(out.image, image) < 1e-4
    ks, ms = [], []
    for s in range(3):
        k, m, mask, _ = synthetic(mask_every=2 + s % 2)
        ks.append(k)
        ms.append(m)
    batched = jax.jit(jax.vmap(lambda k, m: cg_sense(k, m, max_iter=15).image))(
        np.stack(ks), np.stack(ms))
    for k, m, b in zip(ks, ms, batched):
        np.testing.assert_allclose(b, cg_sense(k, m, max_iter=15).image, atol=1e-4)


def test_tikhonov_shrinks_and_gradients_flow():
    kspace, maps, mask, _ = synthetic()
    small = cg_sense(kspace, maps, lamda=0.0, max_iter=20).image
    large = cg_sense(kspace, maps, lamda=1.0, max_iter=20).image
    assert np.linalg.norm(large) < np.linalg.norm(small)

    def energy(lam, max_iter=5):
        return jnp.sum(jnp.abs(cg_sense(kspace, maps, lamda=lam, max_iter=max_iter).image) ** 2)

    # Implicit gradient = derivative of the exact solution: compare with central differences
    # of a converged solve (the energy decreases with lamda).
    grad = float(jax.grad(lambda lam: energy(lam, 60))(0.1))
    h = 1e-2
    reference = (float(energy(0.1 + h, 60)) - float(energy(0.1 - h, 60))) / (2 * h)
    assert grad < 0 and abs(grad - reference) <= 2e-2 * abs(reference)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(maps=np.ones((2, 8, 8), np.complex64)), ValueError,
     r"maps must have shape \(4, 8, 8\)"),
    (dict(kspace=np.ones((4, 8, 8), np.float32)), TypeError, "kspace must be complex"),
    (dict(kspace=np.full((4, 8, 8), np.nan, np.complex64)), ValueError, "kspace must be finite"),
    (dict(mask=np.ones(5, bool)), ValueError, "mask must broadcast"),
    (dict(lamda=-1.0), ValueError, "lamda must be in"),
    (dict(max_iter=0), ValueError, "max_iter must be an integer >= 1"),
    (dict(kspace=np.ones(8, np.complex64)), ValueError, r"kspace must be \(coils, \*spatial\)"),
])
def test_bad_input(kwargs, error, message):
    args = dict(kspace=np.ones((4, 8, 8), np.complex64), maps=np.ones((4, 8, 8), np.complex64))
    args.update(kwargs)
    with pytest.raises(error, match=f"mskjax.recon.cg_sense: {message}"):
        cg_sense(args.pop("kspace"), args.pop("maps"), **args)


def test_inferred_1d_mask_keeps_the_fast_normal_when_the_kspace_is_concrete():
    """mask=None on k-space sampled along columns: with the k-space known (eager, or closed
    over under jit) the inferred mask is reduced to 1D and the iterations use 1D FFTs; with
    a traced k-space it stays 2D (documented cost)."""
    kspace, maps, mask, _ = synthetic()
    closed = fft_ranks(lambda m: cg_sense(kspace, m, max_iter=3).image, maps)
    traced = fft_ranks(lambda k, m: cg_sense(k, m, max_iter=3).image, kspace, maps)
    # the adjoint A^H y is a 2D inverse FFT either way; the normal operator's pairs differ
    assert closed.count(1) >= 2 and closed.count(2) == 1
    assert traced.count(1) == 0 and traced.count(2) >= 3
