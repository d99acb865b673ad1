"""ESPIRiT maps: against sigpy and BART on real brain data, the two-map case, and properties.

The ESPIRiT example files ``brain_8ch_espirit/{full,smallfov}.cfl`` are in BART's dimension
order ``(READ_DIM, PHS1_DIM, PHS2_DIM, COIL_DIM)``: ``full`` is ``(1, 230, 180, 8)``, a
singleton readout (the data are a 2D slice after the readout FFT), 230 x 180 phase encodes and
8 coils. ``read_cfl(..., squeeze=True)[0]`` drops the readout and ``np.moveaxis(., -1, 0)``
puts the coils first: ``(8, 230, 180)``, rows = PHS1 (anterior-posterior, the head upright),
columns = PHS2. The k-space is centred at index ``n // 2`` (BART's convention and mskjax's),
which :func:`test_cfl_axis_order` checks. ``smallfov`` is ``(1, 320, 168, 8)``: sampled at
every other PHS2 column (R = 2) outside 25 fully sampled central columns, with a field of view
too small along PHS2, so the head folds over left-right.

BART keeps singular values with ``s / s_max > sqrt(t)``: its ``ecalib -t t`` is mskjax's (and
sigpy's) ``thresh = sqrt(t)``; both pairings are checked.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.coils import birdcage_maps, espirit, rss
from mskjax.fourier import fftnc, ifftnc
from mskjax.io import read_cfl, write_cfl
from mskjax.linop import SoftSense

CALIB = dict(calib_width=24, kernel_width=6, thresh=0.02, crop=0.95)


# --------------------------------------------------------------------------- helpers


def _bart_kspace(shared_data, name):
    """The BART-ordered array ``(1, ny, nx, coils)`` of ``brain_8ch_espirit/<name>``."""
    return read_cfl(shared_data / "brain_8ch_espirit" / name, squeeze=True)


def _coils_first(bart_array):
    """``(1, ny, nx, coils[, maps])`` -> ``(coils, ny, nx)`` or ``(maps, coils, ny, nx)``."""
    array = np.asarray(bart_array)[0]
    if array.ndim == 4:
        return np.ascontiguousarray(np.moveaxis(array, (-1, -2), (0, 1)))
    return np.ascontiguousarray(np.moveaxis(array, -1, 0))


def _agreement(maps, reference):
    """Per-pixel coherence ``|<m, r>| / (||m|| ||r||)`` where both are non-zero, and the Dice
    coefficient of the two supports. Maps ``(coils, *spatial)``."""
    norm, ref_norm = np.linalg.norm(maps, axis=0), np.linalg.norm(reference, axis=0)
    both = (norm > 0) & (ref_norm > 0)
    coherence = (np.abs(np.sum(np.conj(maps) * reference, axis=0))[both]
                 / (norm * ref_norm)[both])
    dice = 2 * both.sum() / ((norm > 0).sum() + (ref_norm > 0).sum())
    return np.median(coherence), np.percentile(coherence, 5), dice


def _subspace_agreement(maps, reference, where):
    """``||M^H R||_F^2 / sets`` per pixel in ``where``: 1 when the maps span the same space.
    Maps ``(sets, coils, *spatial)`` with orthonormal sets at each pixel."""
    gram = np.einsum("icp,jcp->ijp", np.conj(maps[:, :, where]), reference[:, :, where])
    return np.sum(np.abs(gram) ** 2, axis=(0, 1)) / maps.shape[0]


def _bart_ecalib(tmp_path, bart_kspace, *flags):
    bart = shutil.which("bart")
    if bart is None:
        pytest.skip("the BART command line tool `bart` (Debian package bart) is not installed")
    write_cfl(tmp_path / "kspace", bart_kspace)
    subprocess.run([bart, "ecalib", *flags, "kspace", "maps"], cwd=tmp_path, check=True,
                   capture_output=True)
    return _coils_first(read_cfl(tmp_path / "maps", squeeze=True))


@pytest.fixture(scope="module")
def full(shared_data):
    """``(bart_array (1, 230, 180, 8), kspace (8, 230, 180), maps (8, 230, 180))``."""
    bart_kspace = _bart_kspace(shared_data, "full")
    kspace = _coils_first(bart_kspace)
    return bart_kspace, kspace, np.asarray(espirit(kspace, **CALIB))


@pytest.fixture(scope="module")
def smallfov(shared_data):
    """``(bart_array (1, 320, 168, 8), kspace (8, 320, 168), maps (2, 8, 320, 168))``."""
    bart_kspace = _bart_kspace(shared_data, "smallfov")
    kspace = _coils_first(bart_kspace)
    return bart_kspace, kspace, np.asarray(espirit(kspace, **CALIB, num_maps=2))


def _synthetic(shape, coils=8, noise=0.01, seed=0):
    """k-space of an elliptical object with a phase ramp under birdcage maps, plus noise."""
    maps = np.asarray(birdcage_maps((coils,) + shape))
    grids = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    inside = sum((g / (0.35 * n)) ** 2 for g, n in zip(grids, shape)) < 1
    image = inside * np.exp(1j * grids[-1] / shape[-1])
    rng = np.random.default_rng(seed)
    kspace = np.asarray(fftnc(maps * image, axes=tuple(range(1, len(shape) + 1))))
    kspace = kspace + noise * (rng.standard_normal(kspace.shape)
                               + 1j * rng.standard_normal(kspace.shape))
    return kspace.astype(np.complex64), maps, inside


# --------------------------------------------------------------------------- real data


def test_cfl_axis_order(full):
    bart_kspace, kspace, _ = full
    assert bart_kspace.shape == (1, 230, 180, 8)
    assert kspace.shape == (8, 230, 180)
    energy = np.sum(np.abs(kspace) ** 2, axis=0)
    peak = np.unravel_index(np.argmax(energy), energy.shape)
    assert all(abs(p - n // 2) <= 1 for p, n in zip(peak, energy.shape)), peak
    # Centred k-space gives the head in the middle of the field of view, not split at its edges.
    image = np.asarray(rss(ifftnc(kspace, axes=(1, 2))))
    border = np.concatenate([image[:5].ravel(), image[-5:].ravel(),
                             image[:, :5].ravel(), image[:, -5:].ravel()])
    assert border.mean() < 0.1 * image[90:140, 65:115].mean()


@pytest.mark.slow
def test_matches_sigpy(full):
    from sigpy.mri.app import EspiritCalib

    _, kspace, maps = full
    assert maps.shape == kspace.shape and maps.dtype == np.complex64
    reference = EspiritCalib(kspace, **CALIB, show_pbar=False).run()
    median, p5, dice = _agreement(maps, reference)
    assert median > 0.9999 and p5 > 0.999, (median, p5)
    assert dice > 0.99, dice
    assert 0.6 < np.mean(np.linalg.norm(maps, axis=0) > 0) < 0.8  # the head, not the background


@pytest.mark.parametrize("thresh, bart_t", [(0.02, "0.0004"), (math.sqrt(0.02), "0.02")])
def test_matches_bart(full, tmp_path, thresh, bart_t):
    bart_kspace, kspace, maps = full
    reference = _bart_ecalib(tmp_path, bart_kspace, "-r", "24", "-k", "6", "-t", bart_t,
                             "-c", "0.95", "-m", "1")
    assert reference.shape == maps.shape
    if thresh != CALIB["thresh"]:
        # BART's -t 0.02 keeps fewer kernels than thresh=0.02: a visibly smaller support.
        assert _agreement(maps, reference)[2] < 0.93
        maps = np.asarray(espirit(kspace, **{**CALIB, "thresh": thresh}))
    median, p5, dice = _agreement(maps, reference)
    assert median > 0.999 and p5 > 0.99, (median, p5)
    assert dice > 0.97, dice


def _soft_sense(maps, kspace, mask, iterations=30):
    """CG on the normal equations of soft-SENSE; returns the images and ``||A x - y|| / ||y||``."""
    op = SoftSense(maps, mask=mask)
    images, _ = jax.scipy.sparse.linalg.cg(op.N, op.H(kspace), maxiter=iterations)
    residual = jnp.linalg.norm(op(images) - kspace) / jnp.linalg.norm(kspace)
    return np.asarray(images), float(residual)


@pytest.mark.slow
def test_two_maps_remove_the_folding(smallfov):
    _, kspace, maps = smallfov
    assert maps.shape == (2,) + kspace.shape
    support = np.linalg.norm(maps, axis=1) > 0
    assert np.all(support[0][support[1]])  # the first eigenvalue is the larger
    assert 0.08 < support[1].mean() < 0.3  # the second map: only where the head folds over
    mask = np.sum(np.abs(kspace), axis=0) > 0
    assert 0.45 < mask.mean() < 0.55

    # The one-map result is the first of the two maps, although the two eigenvalues are nearly
    # equal where the head folds over (plain power iteration is far from converged there).
    single = np.asarray(espirit(kspace, **CALIB))
    median, p5, dice = _agreement(single, maps[0])
    assert median > 0.9999 and p5 > 0.999 and dice > 0.999, (median, p5, dice)

    one, residual_one = _soft_sense(single[None], kspace, mask)
    two, residual_two = _soft_sense(maps, kspace, mask)
    assert residual_two < 0.75 * residual_one, (residual_one, residual_two)

    # With one map the folded edges of the head alias into the middle of the image (shifted by
    # half the field of view by the R = 2 sampling); two maps resolve them.
    folded = support[1]
    alias = np.roll(folded, kspace.shape[-1] // 2, axis=-1) & ~folded
    difference = np.abs(one[0]) - np.sqrt(np.sum(np.abs(two) ** 2, axis=0))
    in_alias = np.mean(difference[alias] ** 2)
    elsewhere = np.mean(difference[~alias & ~folded] ** 2)
    assert in_alias > 10 * elsewhere, (in_alias, elsewhere)
    # The second image carries the folded-over part of the head.
    energy = np.abs(two) ** 2
    assert energy[1][folded].mean() > 0.03 * energy[0][folded].mean()


@pytest.mark.slow
def test_two_maps_match_bart(smallfov, tmp_path):
    bart_kspace, _, maps = smallfov
    reference = _bart_ecalib(tmp_path, bart_kspace, "-r", "24", "-k", "6", "-t", "0.0004",
                             "-c", "0.95", "-m", "2")
    assert reference.shape == maps.shape
    ours = np.linalg.norm(maps, axis=1) > 0
    theirs = np.linalg.norm(reference, axis=1) > 0
    for m in range(2):
        dice = 2 * (ours[m] & theirs[m]).sum() / (ours[m].sum() + theirs[m].sum())
        assert dice > 0.95, (m, dice)
    # Where there is one map it is the same; where there are two (eigenvalues nearly equal, so
    # each vector is free within their span) the two maps span the same space.
    one = ours[0] & theirs[0] & ~ours[1] & ~theirs[1]
    median, p5, _ = _agreement(np.where(one, maps[0], 0), np.where(one, reference[0], 0))
    assert median > 0.999 and p5 > 0.99, (median, p5)
    span = _subspace_agreement(maps, reference, ours[1] & theirs[1])
    assert np.median(span) > 0.999 and np.percentile(span, 5) > 0.99


# --------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def synthetic():
    kspace, truth, inside = _synthetic((48, 40))
    return kspace, truth, inside, np.asarray(espirit(kspace, calib_width=16, kernel_width=5))


def test_recovers_known_maps(synthetic):
    _, truth, inside, maps = synthetic
    kept = np.linalg.norm(maps, axis=0) > 0
    assert np.all(kept[inside])
    median, p5, _ = _agreement(np.where(inside, maps, 0), np.where(inside, truth, 0))
    assert median > 0.9999 and p5 > 0.999, (median, p5)


def test_unit_norm_and_phase_of_first_coil(synthetic):
    _, _, _, maps = synthetic
    norm = np.linalg.norm(maps, axis=0)
    kept = norm > 0
    np.testing.assert_allclose(norm[kept], 1, rtol=1e-5)
    assert np.all(maps[0][kept].real > 0)
    np.testing.assert_allclose(maps[0][kept].imag, 0, atol=1e-6)


def test_crop_sets_the_support(synthetic):
    kspace = synthetic[0]
    supports = [np.mean(np.linalg.norm(espirit(kspace, calib_width=16, kernel_width=5,
                                               crop=crop), axis=0) > 0)
                for crop in (0.0, 0.8, 0.95, 0.99)]
    assert supports[0] == 1.0
    assert supports[0] >= supports[1] >= supports[2] >= supports[3] > 0.2
    assert supports[1] > supports[3]


def test_jit_and_vmap():
    kspace, _, _ = _synthetic((24, 20), coils=4)
    func = functools.partial(espirit, calib_width=10, kernel_width=4)
    maps = np.asarray(func(kspace))
    assert np.mean(np.linalg.norm(maps, axis=0) > 0) > 0.3
    np.testing.assert_allclose(jax.jit(func)(kspace), maps, atol=1e-5)
    batch = np.stack([kspace, kspace[::-1]])
    np.testing.assert_allclose(jax.vmap(func)(batch)[1], func(batch[1]), atol=1e-5)


def test_per_axis_widths(synthetic):
    kspace, _, _, maps = synthetic
    np.testing.assert_allclose(espirit(kspace, calib_width=(16, 16), kernel_width=(5, 5)),
                               maps, atol=1e-6)
    other = np.asarray(espirit(kspace, calib_width=(20, 14), kernel_width=(5, 4)))
    median, _, dice = _agreement(other, maps)
    assert median > 0.999 and dice > 0.9


@pytest.mark.slow
def test_three_dimensional_matches_sigpy():
    from sigpy.mri.app import EspiritCalib

    kspace, truth, inside = _synthetic((16, 20, 18))
    settings = dict(calib_width=10, kernel_width=4, thresh=0.02, crop=0.9)
    maps = np.asarray(espirit(kspace, **settings))
    assert maps.shape == kspace.shape
    reference = EspiritCalib(kspace, **settings, show_pbar=False).run()
    median, p5, dice = _agreement(maps, reference)
    assert median > 0.9999 and p5 > 0.999 and dice > 0.99, (median, p5, dice)
    median, _, _ = _agreement(np.where(inside, maps, 0), np.where(inside, truth, 0))
    assert median > 0.999


def test_complex128_with_x64(synthetic):
    kspace, _, _, single = synthetic
    with jax.enable_x64(True):
        double = espirit(kspace.astype(np.complex128), calib_width=16, kernel_width=5)
        assert double.dtype == jnp.complex128
    np.testing.assert_allclose(np.asarray(double), single, atol=1e-4)


@pytest.mark.parametrize("kwargs, kind, message", [
    (dict(calib_width=64), ValueError, "larger than the data"),
    (dict(calib_width=(24, 48)), ValueError, "larger than the data"),
    (dict(kernel_width=24), ValueError, "kernel_width must be smaller than calib_width"),
    (dict(kernel_width=(6, 30)), ValueError, "kernel_width must be smaller"),
    (dict(calib_width=(24, 24, 24)), ValueError, "one per spatial axis"),
    (dict(kernel_width=0), ValueError, "positive integer"),
    (dict(thresh=1.5), ValueError, "thresh"),
    (dict(crop=-0.1), ValueError, "crop"),
    (dict(num_maps=9), ValueError, "at most the number of coils"),
    (dict(num_maps=0), ValueError, "num_maps"),
    (dict(max_iter=0), ValueError, "max_iter"),
])
def test_bad_settings(kwargs, kind, message):
    kspace = np.ones((8, 40, 36), np.complex64)
    with pytest.raises(kind, match=message) as info:
        espirit(kspace, **kwargs)
    assert "mskjax.coils.espirit" in str(info.value)


@pytest.mark.parametrize("kspace, kind, message", [
    (np.ones((8, 40, 36), np.float32), TypeError, "must be complex"),
    (np.full((8, 40, 36), np.nan, np.complex64), ValueError, "finite"),
    (np.ones((8, 40), np.complex64), ValueError, r"\(coils, ny, nx\)"),
    (np.ones((2, 8, 16, 40, 36), np.complex64), ValueError, r"\(coils, nz, ny, nx\)"),
    ("kspace", TypeError, "must be an array"),
])
def test_bad_kspace(kspace, kind, message):
    with pytest.raises(kind, match=message) as info:
        espirit(kspace)
    assert "mskjax.coils.espirit" in str(info.value)
