import jax
import numpy as np
import pytest
import sigpy
import sigpy.mri

from mskjax.recon import total_variation


def objective(kspace, maps, lamda, x):
    mask = (sigpy.rss(kspace, axes=(0,)) > 0).astype(np.float32)
    A = sigpy.mri.linop.Sense(maps, weights=mask)
    G = sigpy.linop.FiniteDifference(A.ishape)
    r = A * x - kspace * mask
    return 0.5 * np.vdot(r, r).real + lamda * np.abs(G * x).sum()


def test_objective_no_higher_than_sigpy_on_real_brain(brain_sigpy):
    kspace, maps = brain_sigpy
    lamda, iters = 0.005, 40
    ref = sigpy.mri.app.TotalVariationRecon(kspace, maps, lamda=lamda, max_iter=iters,
                                            show_pbar=False).run()
    out = total_variation(kspace, maps, lamda=lamda, max_iter=iters)
    ours, theirs = objective(kspace, maps, lamda, np.asarray(out.image)), \
        objective(kspace, maps, lamda, ref)
    assert ours <= theirs, (ours, theirs)
    # The explicit gradient step on the data term converges much faster than sigpy's primal-dual
    # hybrid gradient: after a quarter of the iterations it is already below sigpy's objective.
    early = total_variation(kspace, maps, lamda=lamda, max_iter=iters // 4)
    assert objective(kspace, maps, lamda, np.asarray(early.image)) < theirs
    assert abs(float(out.history[-1]) - ours) <= 1e-4 * ours
    history = np.asarray(out.history)
    assert history[-1] < history[0]


def test_tv_removes_noise_on_a_piecewise_constant_image():
    from mskjax.coils import birdcage_maps, normalize_maps
    from mskjax.linop import Sense
    from mskjax.sim import knee_section

    image = knee_section((48, 40)).astype(np.complex64)
    maps = normalize_maps(birdcage_maps((4, 48, 40)))
    rng = np.random.default_rng(0)
    kspace = np.asarray(Sense(maps)(image))
    kspace = kspace + 0.05 * (rng.standard_normal(kspace.shape)
                              + 1j * rng.standard_normal(kspace.shape)).astype(np.complex64)
    plain = total_variation(kspace, maps, lamda=0.0, max_iter=60).image
    tv = total_variation(kspace, maps, lamda=0.02, max_iter=60).image
    error = lambda x: np.linalg.norm(np.asarray(x) - np.asarray(image))
    assert error(tv) < 0.7 * error(plain)
    jitted = jax.jit(lambda k, m: total_variation(k, m, lamda=0.02, max_iter=60).image)(kspace, maps)
    np.testing.assert_allclose(jitted, tv, atol=1e-4)


def test_bad_input():
    k = np.ones((2, 8, 8), np.complex64)
    with pytest.raises(ValueError, match="mskjax.recon.total_variation: lamda must be in"):
        total_variation(k, k, lamda=-1.0)
    with pytest.raises(ValueError, match="mskjax.recon.total_variation: kspace must be finite"):
        total_variation(np.full((2, 8, 8), np.inf, np.complex64), k, lamda=0.1)
    with pytest.raises(ValueError, match=r"maps must have shape \(2, 8, 8\)"):
        total_variation(k, k[:1], lamda=0.1)
