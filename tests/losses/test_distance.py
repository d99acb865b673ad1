"""l1_loss, l2_loss and nmse_loss against torch and mskjax.metrics."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mskjax import metrics
from mskjax.losses import l1_loss, l2_loss, nmse_loss

torch = pytest.importorskip("torch")


def test_l1_and_l2_match_torch(rng):
    gt = rng.standard_normal((3, 5, 4)).astype(np.float32)
    pred = rng.standard_normal((3, 5, 4)).astype(np.float32)
    for ours, theirs in [(l1_loss, torch.nn.functional.l1_loss),
                         (l2_loss, torch.nn.functional.mse_loss)]:
        p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
        expected = theirs(p, torch.tensor(gt, dtype=torch.float64))
        expected.backward()
        value, grad = jax.value_and_grad(ours, argnums=1)(gt, pred)
        assert float(value) == pytest.approx(expected.item(), rel=1e-6)
        np.testing.assert_allclose(np.asarray(grad), p.grad.numpy(), rtol=1e-5, atol=1e-8)


def test_nmse_matches_metric_on_one_example_and_averages_examples(rng):
    gt = rng.standard_normal((3, 6, 7)).astype(np.float32)
    pred = gt + 0.3 * rng.standard_normal((3, 6, 7)).astype(np.float32)
    for i in range(3):
        assert float(nmse_loss(gt[i:i + 1], pred[i:i + 1])) == pytest.approx(
            float(metrics.nmse(gt[i], pred[i])), rel=1e-6)
    # Each example weighs the same, whatever its scale: the mean of the per-example NMSEs,
    # which differs from the NMSE of the whole batch.
    gt[0] *= 100
    pred[0] *= 100
    per_example = [float(metrics.nmse(gt[i], pred[i])) for i in range(3)]
    assert float(nmse_loss(gt, pred)) == pytest.approx(np.mean(per_example), rel=1e-6)
    assert float(nmse_loss(gt, pred)) != pytest.approx(float(metrics.nmse(gt, pred)), rel=1e-2)
    # Gradient of (1/B) sum_i ||g_i - p_i||^2 / ||g_i||^2 with respect to p.
    grad = jax.grad(nmse_loss, argnums=1)(gt, pred)
    energy = (gt ** 2).sum(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(np.asarray(grad), 2 * (pred - gt) / energy / 3, rtol=1e-5)


def test_bad_input():
    x = np.ones((2, 4), np.float32)
    for loss in (l1_loss, l2_loss, nmse_loss):
        name = loss.__name__
        with pytest.raises(ValueError, match=rf"mskjax.losses.{name}: gt and pred must have the "
                                             r"same shape, got \(2, 4\) and \(4, 2\)"):
            loss(x, x.T)
        with pytest.raises(TypeError, match=rf"mskjax.losses.{name}: gt must be real, got "
                                            "complex64"):
            loss(x.astype(np.complex64), x)
        with pytest.raises(ValueError, match=rf"mskjax.losses.{name}: .*must not be empty"):
            loss(np.ones((0, 3), np.float32), np.ones((0, 3), np.float32))
    with pytest.raises(ValueError, match="nmse_loss: gt must be .batch, .shape. with a leading "
                                         r"batch axis, got shape \(4,\)"):
        nmse_loss(x[0], x[0])
    zero = x.copy()
    zero[1] = 0
    with pytest.raises(ValueError, match=r"nmse_loss: gt of example\(s\) \[1\] is all zeros"):
        nmse_loss(zero, x)
    # Under jit the value check is skipped and the undefined example shows as non-finite.
    assert not np.isfinite(float(jax.jit(nmse_loss)(zero, x)))
