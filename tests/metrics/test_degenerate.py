"""Image metrics with an all-zero reference: a clear error, or NaN/inf under jit, never a
finite number passed off as a score."""

import jax
import numpy as np
import pytest

from mskjax.metrics import nmse, psnr, ssim, ssim_map

ZERO = np.zeros((2, 16, 16), np.float32)
PRED = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("metric, name", [(nmse, "nmse"), (psnr, "psnr"), (ssim, "ssim"),
                                          (ssim_map, "ssim_map")])
@pytest.mark.parametrize("pred", [ZERO, PRED], ids=["zero pred", "pred"])
def test_all_zero_reference_raises(metric, name, pred):
    with pytest.raises(ValueError, match=rf"mskjax\.metrics\.{name}: gt\b.*(zero|0)"):
        metric(ZERO, pred)


@pytest.mark.parametrize("metric", [nmse, psnr, ssim])
@pytest.mark.parametrize("pred", [ZERO, PRED], ids=["zero pred", "pred"])
def test_all_zero_reference_under_jit_is_not_finite(metric, pred):
    assert not np.isfinite(float(jax.jit(metric)(ZERO, pred)))


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_all_zero_reference_with_data_range_is_defined(metric):
    assert np.isfinite(float(metric(ZERO, PRED, data_range=1.0)))
    assert np.isfinite(float(metric(ZERO, ZERO + 0.5, data_range=1.0)))


def test_non_positive_reference_keeps_fastmri_ssim():
    """Only an all-zero reference is refused by SSIM; a non-positive one keeps the arithmetic."""
    gt = -PRED
    gt[0, 0, 0] = 0.0  # gt.max() == 0, not constant
    assert np.isfinite(float(ssim(gt, -PRED)))
    with pytest.raises(ValueError, match=r"mskjax\.metrics\.psnr: gt\.max\(\) is 0"):
        psnr(gt, -PRED)
