"""Soft Dice, cross-entropy and Dice + CE against hand computations, optax and torch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mskjax.losses import cross_entropy_loss, dice_ce_loss, soft_dice_loss

torch = pytest.importorskip("torch")

C = 4


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_soft_dice(labels, probs, weights, smooth=1e-5):
    """The docstring's formula, class by class, in float64."""
    losses = []
    for c in range(probs.shape[-1]):
        p, g = probs[..., c].astype(np.float64), (labels == c).astype(np.float64)
        losses.append(1 - (2 * np.sum(p * g) + smooth) / (p.sum() + g.sum() + smooth))
    weights = np.asarray(weights, np.float64)
    return float(np.sum(weights * np.array(losses)) / weights.sum())


@pytest.fixture
def batch(rng):
    labels = rng.integers(0, C, size=(2, 5, 6))
    labels[labels == 3] = 2  # class 3 absent from the labels
    logits = rng.standard_normal((2, 5, 6, C)).astype(np.float32)
    return labels.astype(np.int32), logits


def test_cross_entropy_matches_optax_and_torch(batch):
    labels, logits = batch
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    assert float(cross_entropy_loss(labels, logits, num_classes=C)) == pytest.approx(
        float(expected), rel=1e-6)
    weights = np.array([0.2, 1.0, 3.0, 5.0], np.float32)
    t_logits = torch.tensor(np.moveaxis(logits, -1, 1), dtype=torch.float64, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(labels, dtype=torch.long),
                                               weight=torch.tensor(weights, dtype=torch.float64))
    t_loss.backward()
    value, grad = jax.value_and_grad(cross_entropy_loss, argnums=1)(
        labels, logits, num_classes=C, class_weights=weights)
    assert float(value) == pytest.approx(t_loss.item(), rel=1e-6)
    np.testing.assert_allclose(np.asarray(grad), np.moveaxis(t_logits.grad.numpy(), 1, -1),
                               rtol=1e-5, atol=1e-8)
    # By hand: the weighted mean of -log p over voxels, with the weights of their classes.
    nll = -np.log(np.take_along_axis(softmax(logits.astype(np.float64)), labels[..., None],
                                     -1)[..., 0])
    w = weights[labels]
    assert float(value) == pytest.approx(np.sum(w * nll) / np.sum(w), rel=1e-6)
    assert float(value) != pytest.approx(float(expected), rel=1e-2)


def test_soft_dice_by_hand_and_against_torch_gradients(batch):
    labels, logits = batch
    probs = softmax(logits.astype(np.float64))
    ones = np.ones(C)
    loss = soft_dice_loss(labels, logits, num_classes=C)
    assert float(loss) == pytest.approx(numpy_soft_dice(labels, probs, ones), rel=1e-5)
    # Probabilities in directly.
    assert float(soft_dice_loss(labels, probs.astype(np.float32), num_classes=C,
                                from_logits=False)) == pytest.approx(float(loss), rel=1e-6)
    # Class weights: a weighted mean of the per-class losses.
    weights = np.array([0.0, 1.0, 2.0, 0.5])
    weighted = float(soft_dice_loss(labels, logits, num_classes=C, class_weights=weights))
    assert weighted == pytest.approx(numpy_soft_dice(labels, probs, weights), rel=1e-5)
    assert weighted != pytest.approx(float(loss), rel=1e-2)
    # Gradient against torch autograd of the same formula.
    t_logits = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(t_logits, -1)
    g = torch.nn.functional.one_hot(torch.tensor(labels, dtype=torch.long), C).double()
    dice = (2 * (p * g).sum((0, 1, 2)) + 1e-5) / (p.sum((0, 1, 2)) + g.sum((0, 1, 2)) + 1e-5)
    t_w = torch.tensor(weights)
    ((t_w * (1 - dice)).sum() / t_w.sum()).backward()
    grad = jax.grad(soft_dice_loss, argnums=1)(labels, logits, num_classes=C,
                                              class_weights=weights)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(np.asarray(grad), t_logits.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_perfect_prediction(batch):
    labels, _ = batch
    one_hot = np.eye(C, dtype=np.float32)[labels]
    assert float(soft_dice_loss(labels, one_hot, num_classes=C, from_logits=False)) \
        == pytest.approx(0.0, abs=1e-6)
    confident = 30.0 * one_hot  # softmax within 1e-12 of one-hot
    assert float(soft_dice_loss(labels, confident, num_classes=C)) < 1e-6
    assert float(cross_entropy_loss(labels, confident, num_classes=C)) < 1e-6
    assert float(dice_ce_loss(labels, confident, num_classes=C)) < 1e-6
    # A wrong confident prediction is near the maximum (every class present is missed).
    wrong = 30.0 * np.eye(C, dtype=np.float32)[(labels + 1) % C]
    assert float(soft_dice_loss(labels, wrong, num_classes=C)) > 0.99


def test_dice_ce_is_the_weighted_sum_and_jits(batch):
    labels, logits = batch
    weights = jnp.array([1.0, 2.0, 0.5, 1.0])
    dice = soft_dice_loss(labels, logits, num_classes=C, class_weights=weights)
    ce = cross_entropy_loss(labels, logits, num_classes=C, class_weights=weights)
    combined = dice_ce_loss(labels, logits, num_classes=C, dice_weight=0.3, ce_weight=2.0,
                            class_weights=weights)
    assert float(combined) == pytest.approx(0.3 * float(dice) + 2.0 * float(ce), rel=1e-6)
    jitted = jax.jit(lambda y, x: dice_ce_loss(y, x, num_classes=C, class_weights=weights))
    assert float(jitted(labels, logits)) == pytest.approx(
        float(dice_ce_loss(labels, logits, num_classes=C, class_weights=weights)), rel=1e-6)
    grad = jax.jit(jax.grad(lambda x: dice_ce_loss(labels, x, num_classes=C)))(logits)
    assert grad.shape == logits.shape and np.all(np.isfinite(np.asarray(grad)))
    # 3-D volumes with a batch axis work the same.
    vol_labels = np.zeros((1, 3, 4, 5), np.int32)
    vol_labels[0, 1:, 1:3, 2:] = 1
    vol_logits = np.zeros((1, 3, 4, 5, 2), np.float32)
    expected = numpy_soft_dice(vol_labels, np.full((1, 3, 4, 5, 2), 0.5), np.ones(2))
    assert float(soft_dice_loss(vol_labels, vol_logits, num_classes=2)) == pytest.approx(
        expected, rel=1e-5)
    assert float(cross_entropy_loss(vol_labels, vol_logits, num_classes=2)) == pytest.approx(
        np.log(2), rel=1e-6)


def test_bad_input(batch):
    labels, logits = batch
    for loss in (soft_dice_loss, cross_entropy_loss, dice_ce_loss):
        name = loss.__name__
        with pytest.raises(ValueError, match=rf"mskjax.losses.{name}: .* must be \(batch, "
                                             r"\*spatial, num_classes\) with num_classes=3"):
            loss(labels, logits, num_classes=3)
        with pytest.raises(ValueError, match=rf"{name}: labels must be \(batch, \*spatial\)"):
            loss(labels[:, :4], logits, num_classes=C)
        with pytest.raises(TypeError, match=rf"{name}: labels must be integers"):
            loss(labels.astype(np.float32), logits, num_classes=C)
        with pytest.raises(TypeError, match=rf"{name}: .* must be real floating point"):
            loss(labels, logits.astype(np.complex64), num_classes=C)
        bad = labels.copy()
        bad[0, 0, 0] = C
        with pytest.raises(ValueError, match=rf"{name}: labels outside 0..3 \(num_classes=4\): "
                                             r"\[4\]"):
            loss(bad, logits, num_classes=C)
        # Under jit the values are unknown at trace time: the loss is NaN, never smaller.
        assert np.isnan(float(jax.jit(lambda y: loss(y, logits, num_classes=C))(bad)))
        with pytest.raises(ValueError, match=rf"{name}: class_weights must be \(num_classes,\) "
                                             r"= \(4,\), got shape \(3,\)"):
            loss(labels, logits, num_classes=C, class_weights=np.ones(3))
        with pytest.raises(ValueError, match=rf"{name}: class_weights must be finite and "
                                             "non-negative"):
            loss(labels, logits, num_classes=C, class_weights=np.array([1.0, -1.0, 1.0, 1.0]))
        with pytest.raises(ValueError, match=rf"{name}: class_weights must be finite"):
            loss(labels, logits, num_classes=C, class_weights=np.zeros(C))
        with pytest.raises(ValueError, match=rf"{name}: num_classes must be an integer >= 2"):
            loss(labels, logits[..., :1], num_classes=1)
    with pytest.raises(ValueError, match="soft_dice_loss: smooth must be in"):
        soft_dice_loss(labels, logits, num_classes=C, smooth=0.0)
    with pytest.raises(ValueError, match="dice_ce_loss: ce_weight must be in"):
        dice_ce_loss(labels, logits, num_classes=C, ce_weight=-1.0)
