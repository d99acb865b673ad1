"""NMSE, PSNR and SSIM against fastmri.evaluate (and scikit-image for maps and 2D images)."""

from __future__ import annotations

import functools

import fastmri.evaluate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mskjax.metrics import nmse, psnr, ssim, ssim_map

SHAPES = [(3, 32, 32), (2, 37, 29), (1, 7, 7), (4, 48, 41), (2, 7, 19)]
RTOL = 1e-4


def _pair(rng, shape, offset=0.0):
    """A structured magnitude volume (blobs and an edge) and a noisy, slightly blurred estimate."""
    slices, h, w = shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    gt = np.empty(shape)
    for s in range(slices):
        centre = rng.uniform(0.3, 0.7, size=2)
        blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 0.05)
        edge = (xx + 0.3 * yy > rng.uniform(0.4, 0.8)).astype(float)
        gt[s] = blob + 0.5 * edge + 0.05 * rng.random((h, w)) + offset
    blurred = (gt + np.roll(gt, 1, axis=-1) + np.roll(gt, 1, axis=-2)) / 3
    pred = 0.7 * gt + 0.3 * blurred + 0.05 * rng.standard_normal(shape)
    return gt.astype(np.float32), np.abs(pred).astype(np.float32)


def _rel(a, b):
    a, b = float(np.asarray(a).ravel()[0]), float(np.asarray(b).ravel()[0])
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("shape", SHAPES)
def test_match_fastmri(rng, shape):
    gt, pred = _pair(rng, shape)
    for ours, theirs in [(nmse, fastmri.evaluate.nmse), (psnr, fastmri.evaluate.psnr),
                         (ssim, fastmri.evaluate.ssim)]:
        value = ours(gt, pred)
        assert value.shape == () and value.dtype == jnp.float32
        assert _rel(value, theirs(gt, pred)) < RTOL, ours.__name__


@pytest.mark.parametrize("maxval", [1.0, 3.5])
def test_match_fastmri_with_data_range(rng, maxval):
    gt, pred = _pair(rng, (2, 30, 26), offset=0.8)
    assert _rel(psnr(gt, pred, data_range=maxval),
                fastmri.evaluate.psnr(gt, pred, maxval=maxval)) < RTOL
    assert _rel(ssim(gt, pred, data_range=maxval),
                fastmri.evaluate.ssim(gt, pred, maxval=maxval)) < RTOL
    # A scalar array works too.
    assert _rel(ssim(gt, pred, data_range=np.float32(maxval)),
                fastmri.evaluate.ssim(gt, pred, maxval=maxval)) < RTOL


def test_data_range_is_max_of_whole_volume(rng):
    gt, pred = _pair(rng, (3, 20, 20))
    gt[1] *= 3.0  # slices with different peaks: one data_range for all of them
    assert _rel(ssim(gt, pred), fastmri.evaluate.ssim(gt, pred)) < RTOL
    per_slice_peak = np.mean([structural_similarity(g, p, data_range=g.max())
                              for g, p in zip(gt, pred)])
    assert abs(float(ssim(gt, pred)) - per_slice_peak) > 1e-3


def test_ssim_2d_image_and_map(rng):
    gt, pred = _pair(rng, (1, 33, 40))
    expected, full = structural_similarity(gt[0], pred[0], data_range=gt.max(), full=True)
    assert _rel(ssim(gt[0], pred[0]), expected) < RTOL
    np.testing.assert_allclose(ssim(gt[0], pred[0]), ssim(gt, pred), rtol=1e-6)
    local = ssim_map(gt[0], pred[0])
    assert local.shape == (33, 40)
    np.testing.assert_allclose(local, full, atol=1e-4)  # borders included
    np.testing.assert_allclose(ssim_map(gt, pred)[0], local, rtol=1e-6, atol=1e-7)


def test_identical_images(rng):
    gt, _ = _pair(rng, (2, 16, 16))
    np.testing.assert_allclose(ssim(gt, gt), 1.0, rtol=1e-6)
    assert float(nmse(gt, gt)) == 0.0
    assert np.isinf(float(psnr(gt, gt)))


def test_jit_equals_eager_and_vmap(rng):
    pairs = [_pair(rng, (2, 24, 21)) for _ in range(3)]
    gts = np.stack([g for g, _ in pairs])
    preds = np.stack([p for _, p in pairs])
    for metric in (nmse, psnr, ssim):
        eager = np.array([metric(g, p) for g, p in pairs])
        np.testing.assert_allclose(jax.jit(metric)(gts[0], preds[0]), eager[0], rtol=1e-6)
        np.testing.assert_allclose(jax.vmap(metric)(gts, preds), eager, rtol=1e-5)
    # A traced data_range.
    jitted = jax.jit(lambda g, p, r: ssim(g, p, data_range=r))
    np.testing.assert_allclose(jitted(gts[0], preds[0], 2.0),
                               ssim(gts[0], preds[0], data_range=2.0), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(functools.partial(psnr, data_range=2.0))(gts[0], preds[0]),
                               psnr(gts[0], preds[0], data_range=2.0), rtol=1e-6)


@pytest.mark.parametrize("metric", [nmse, psnr, ssim, ssim_map])
def test_errors(rng, metric):
    name = f"mskjax.metrics.{metric.__name__}"
    gt, pred = _pair(rng, (2, 9, 10))
    with pytest.raises(ValueError, match=rf"{name}: gt and pred must have the same shape, "
                                         rf"got \(2, 9, 10\) and \(2, 9, 9\)"):
        metric(gt, pred[..., :9])
    with pytest.raises(TypeError, match=f"{name}: pred must be a real \\(magnitude\\) image"):
        metric(gt, pred.astype(np.complex64))
    with pytest.raises(TypeError, match=f"{name}: gt must be floating point, got int32"):
        metric(gt.astype(np.int32), pred)
    bad = pred.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=f"{name}: pred must be finite"):
        metric(gt, bad)


@pytest.mark.parametrize("metric", [ssim, ssim_map])
def test_ssim_shape_errors(rng, metric):
    name = f"mskjax.metrics.{metric.__name__}"
    gt, pred = _pair(rng, (2, 9, 10))
    with pytest.raises(ValueError, match=rf"{name}: gt must be \(H, W\) or \(slices, H, W\)"):
        metric(gt[None], pred[None])
    with pytest.raises(ValueError, match=rf"{name}: gt must be \(H, W\) or \(slices, H, W\)"):
        metric(gt[0, 0], pred[0, 0])
    with pytest.raises(ValueError, match=f"{name}: each slice must be at least 7x7"):
        metric(gt[:, :6], pred[:, :6])
    with pytest.raises(ValueError, match=f"{name}: data_range must be in"):
        metric(gt, pred, data_range=0.0)
    with pytest.raises(ValueError, match=f"{name}: data_range must be a scalar"):
        metric(gt, pred, data_range=np.ones(2, np.float32))
