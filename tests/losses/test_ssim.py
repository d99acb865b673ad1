"""ssim_loss against fastmri.losses.SSIMLoss (values and autograd gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.losses import ssim_loss

torch = pytest.importorskip("torch")
fastmri_losses = pytest.importorskip("fastmri.losses")


def _structured(rng, shape, offset=0.0):
    """Blobs, an edge and a little texture, and a blurred noisy estimate (magnitudes)."""
    batch, h, w = shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    gt = np.empty(shape)
    for b in range(batch):
        centre = rng.uniform(0.3, 0.7, size=2)
        blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 0.05)
        edge = (xx + 0.3 * yy > rng.uniform(0.4, 0.8)).astype(float)
        gt[b] = blob + 0.5 * edge + 0.05 * rng.random((h, w)) + offset
    blurred = (gt + np.roll(gt, 1, axis=-1) + np.roll(gt, 1, axis=-2)) / 3
    pred = np.abs(0.7 * gt + 0.3 * blurred + 0.05 * rng.standard_normal(shape))
    return gt.astype(np.float32), pred.astype(np.float32)


def _torch_loss_and_grads(gt, pred, data_range):
    """fastMRI's loss and its gradients in float64 (the oracle), inputs (batch, H, W)."""
    x = torch.tensor(pred[:, None], dtype=torch.float64, requires_grad=True)
    y = torch.tensor(gt[:, None], dtype=torch.float64, requires_grad=True)
    loss = fastmri_losses.SSIMLoss().double()(x, y, torch.tensor(data_range, dtype=torch.float64))
    loss.backward()
    return loss.item(), y.grad[:, 0].numpy(), x.grad[:, 0].numpy()


CASES = [("random", (2, 16, 16), 0.0), ("random", (3, 7, 11), 0.0),
         ("structured", (2, 32, 28), 0.0), ("structured", (1, 24, 40), 5.0)]


@pytest.mark.parametrize("kind,shape,offset", CASES)
def test_value_and_gradients_match_fastmri(rng, kind, shape, offset):
    if kind == "random":
        gt = rng.random(shape).astype(np.float32) + offset
        pred = (gt + 0.2 * rng.standard_normal(shape)).astype(np.float32)
    else:
        gt, pred = _structured(rng, shape, offset)
    data_range = np.asarray(gt.reshape(len(gt), -1).max(axis=1), np.float32)
    expected, grad_gt, grad_pred = _torch_loss_and_grads(gt, pred, data_range)

    loss, grads = jax.value_and_grad(
        lambda g, p: ssim_loss(g, p, data_range=data_range), argnums=(0, 1))(gt, pred)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    # Float32 round-off of a mean of O(1) terms: absolute, since 1 - SSIM can be small.
    assert abs(float(loss) - expected) < 2e-6
    for ours, theirs in zip(grads, (grad_gt, grad_pred)):
        scale = np.abs(theirs).max()
        np.testing.assert_allclose(np.asarray(ours), theirs, rtol=0, atol=2e-4 * scale)
    # fastMRI's own float32 computation agrees to its round-off too.
    x = torch.tensor(pred[:, None])
    y = torch.tensor(gt[:, None])
    float32 = fastmri_losses.SSIMLoss()(x, y, torch.tensor(data_range)).item()
    assert abs(float(loss) - float32) < 1e-5


def test_scalar_data_range_single_image_and_symmetry(rng):
    gt, pred = _structured(rng, (3, 20, 20))
    expected, _, _ = _torch_loss_and_grads(gt, pred, np.full(3, 2.0))
    assert abs(float(ssim_loss(gt, pred, data_range=2.0)) - expected) < 2e-6
    assert abs(float(ssim_loss(gt, pred, data_range=jnp.float32(2.0))) - expected) < 2e-6
    assert abs(float(ssim_loss(pred, gt, data_range=2.0)) - expected) < 2e-6
    # One (H, W) image equals the batch of one.
    one, _, _ = _torch_loss_and_grads(gt[:1], pred[:1], np.full(1, 1.5))
    assert abs(float(ssim_loss(gt[0], pred[0], data_range=1.5)) - one) < 2e-6


def test_per_example_data_range_is_used(rng):
    gt, pred = _structured(rng, (2, 16, 16))
    a = ssim_loss(gt, pred, data_range=np.array([1.0, 1.0], np.float32))
    b = ssim_loss(gt, pred, data_range=np.array([1.0, 50.0], np.float32))
    expected, _, _ = _torch_loss_and_grads(gt, pred, np.array([1.0, 50.0]))
    assert float(a) != float(b)
    assert abs(float(b) - expected) < 2e-6


def test_perfect_estimate_and_jit(rng):
    gt, _ = _structured(rng, (2, 12, 12))
    assert abs(float(ssim_loss(gt, gt, data_range=1.0))) < 1e-6
    jitted = jax.jit(lambda g, p, r: ssim_loss(g, p, data_range=r))
    gt, pred = _structured(rng, (2, 12, 12))
    r = np.array([1.0, 2.0], np.float32)
    assert float(jitted(gt, pred, r)) == pytest.approx(float(ssim_loss(gt, pred, data_range=r)),
                                                       abs=1e-7)


def test_bad_input():
    img = np.ones((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"mskjax.losses.ssim_loss: gt and pred must have the "
                                         r"same shape, got \(2, 8, 8\) and \(2, 8, 9\)"):
        ssim_loss(img, np.ones((2, 8, 9), np.float32), data_range=1.0)
    with pytest.raises(TypeError, match="mskjax.losses.ssim_loss: pred must be real, got "
                                        "complex64"):
        ssim_loss(img, img.astype(np.complex64), data_range=1.0)
    with pytest.raises(TypeError, match="mskjax.losses.ssim_loss: gt must be floating point"):
        ssim_loss(img.astype(np.int32), img, data_range=1.0)
    with pytest.raises(ValueError, match=r"ssim_loss: gt must be \(batch, H, W\) or \(H, W\)"):
        ssim_loss(img[None], img[None], data_range=1.0)
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim_loss(img[:, :6], img[:, :6], data_range=1.0)
    with pytest.raises(ValueError, match=r"ssim_loss: data_range must be in \(0, inf\)"):
        ssim_loss(img, img, data_range=0.0)
    with pytest.raises(ValueError, match="data_range must be positive"):
        ssim_loss(img, img, data_range=np.array([1.0, -1.0], np.float32))
    with pytest.raises(ValueError, match=r"data_range must be a scalar or one value per "
                                         r"example, shape \(2,\), got shape \(3,\)"):
        ssim_loss(img, img, data_range=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"data_range must be a scalar for one \(H, W\) image"):
        ssim_loss(img[0], img[0], data_range=np.ones(2, np.float32))
