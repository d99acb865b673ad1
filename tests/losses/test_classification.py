"""Classification losses against torch and direct float64 computations."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import losses
from mskjax.losses import (binary_cross_entropy, classification_loss, ordinal_loss,
                           regression_loss, softmax_cross_entropy)

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t64(x):
    return torch.tensor(np.asarray(x, np.float64))


def test_binary_cross_entropy_matches_torch(rng):
    logits = (rng.standard_normal(9) * 4).astype(np.float32)
    logits[0], logits[1] = 60.0, -60.0  # log(1 - sigmoid) would overflow a naive formula
    labels = rng.integers(0, 2, 9)
    labels[0], labels[1] = 0, 1
    expected = F.binary_cross_entropy_with_logits(t64(logits), t64(labels)).item()
    assert float(binary_cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-6)
    # (batch, 1) outputs of a binary head, soft labels, a positive weight; and the gradient.
    soft = rng.uniform(0, 1, 9)
    t_logits = t64(logits).requires_grad_()
    t_loss = F.binary_cross_entropy_with_logits(t_logits, t64(soft), pos_weight=t64(3.0))
    t_loss.backward()
    value, grad = jax.value_and_grad(binary_cross_entropy, argnums=1)(
        soft.astype(np.float32), logits[:, None], pos_weight=3.0)
    assert grad.shape == (9, 1)
    assert float(value) == pytest.approx(t_loss.item(), rel=1e-5)
    np.testing.assert_allclose(np.asarray(grad)[:, 0], t_logits.grad.numpy(), rtol=1e-4,
                               atol=1e-7)
    assert np.isfinite(float(value))


def test_softmax_cross_entropy_matches_torch(rng):
    logits = rng.standard_normal((7, 4)).astype(np.float32) * 2
    labels = np.array([0, 1, 2, 3, 1, 1, 0])
    weights = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    for smoothing in (0.0, 0.2):
        for w in (None, weights):
            t_logits = t64(logits).requires_grad_()
            t_loss = F.cross_entropy(t_logits, torch.tensor(labels),
                                     weight=None if w is None else t64(w),
                                     label_smoothing=smoothing)
            t_loss.backward()
            value, grad = jax.value_and_grad(softmax_cross_entropy, argnums=1)(
                labels, logits, class_weights=w, label_smoothing=smoothing)
            assert float(value) == pytest.approx(t_loss.item(), rel=1e-6), (smoothing, w)
            np.testing.assert_allclose(np.asarray(grad), t_logits.grad.numpy(), rtol=1e-5,
                                       atol=1e-7)


def coral_by_hand(labels, logits):
    """The docstring's formula with explicit loops, in float64."""
    total = 0.0
    logits = np.asarray(logits, np.float64)
    for i, y in enumerate(labels):
        for k in range(logits.shape[1]):
            p = 1 / (1 + np.exp(-logits[i, k]))
            total -= np.log(p) if y > k else np.log(1 - p)
    return total / logits.size


def test_ordinal_loss_direct_and_minimised_by_the_right_grade(rng):
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 2])
    assert float(ordinal_loss(labels, logits)) == pytest.approx(coral_by_hand(labels, logits),
                                                                rel=1e-6)
    # Cumulative logits made for grade g: +3 for thresholds below g, -3 from g on. For each true
    # grade the loss is smallest for the prediction made for that grade.
    made = np.array([[3.0 if k < g else -3.0 for k in range(4)] for g in range(5)], np.float32)
    for y in range(5):
        scores = [float(ordinal_loss(np.array([y]), made[g][None])) for g in range(5)]
        assert int(np.argmin(scores)) == y
        # and it grows with the distance between the grades (the ordering is rewarded)
        assert all(np.diff(scores[y:]) > 0) and all(np.diff(scores[:y + 1]) < 0)
    # Among every permutation of a set of thresholds, the decreasing (consistent) one is best.
    values = np.array([2.0, 0.5, -0.5, -2.0], np.float32)
    label = np.array([2])
    best = min(itertools.permutations(values),
               key=lambda v: float(ordinal_loss(label, np.array(v, np.float32)[None])))
    np.testing.assert_array_equal(best, values)


@pytest.mark.parametrize("kind", ["l1", "l2", "huber"])
def test_regression_loss_matches_torch(rng, kind):
    targets = rng.uniform(20, 200, 8)  # bone age in months
    predictions = (targets + rng.standard_normal(8) * 3).astype(np.float32)
    predictions[0] = targets[0] + 0.3  # inside the Huber quadratic zone
    oracle = {"l1": F.l1_loss, "l2": F.mse_loss,
              "huber": lambda a, b: F.huber_loss(a, b, delta=2.0)}[kind]
    expected = oracle(t64(predictions), t64(targets.astype(np.float32))).item()
    value = regression_loss(targets.astype(np.float32), predictions[:, None], kind=kind,
                            delta=2.0)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_classification_loss_dispatches_and_task_names_match_nets(rng):
    from mskjax.nets import TASKS

    assert losses._classification.TASKS == TASKS
    labels = np.array([0, 2, 1, 2])
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    assert float(classification_loss(labels, logits, task="multiclass", label_smoothing=0.1)) \
        == float(softmax_cross_entropy(labels, logits, label_smoothing=0.1))
    assert float(classification_loss(labels, logits[:, :2], task="ordinal")) \
        == float(ordinal_loss(labels, logits[:, :2]))
    assert float(classification_loss(labels % 2, logits[:, :1], task="binary", pos_weight=2.0)) \
        == float(binary_cross_entropy(labels % 2, logits[:, 0], pos_weight=2.0))
    assert float(classification_loss(labels * 1.0, logits[:, :1], task="regression",
                                     kind="l2")) == float(regression_loss(labels * 1.0,
                                                                          logits[:, 0], kind="l2"))
    with pytest.raises(TypeError, match="classification_loss: the ordinal loss takes"):
        classification_loss(labels, logits, task="ordinal", class_weights=None)
    with pytest.raises(ValueError, match="task must be one of"):
        classification_loss(labels, logits, task="segmentation")


def test_labels_out_of_range_raise_or_give_nan():
    logits = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels outside 0\.\.3.*\[4\]"):
        softmax_cross_entropy(np.array([0, 4, 1]), logits)
    with pytest.raises(ValueError, match=r"ordinal_loss: labels outside 0\.\.4.*\[-1\]"):
        ordinal_loss(np.array([0, -1, 1]), logits)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: labels must be in \[0, 1\]"):
        binary_cross_entropy(np.array([0, 2, 1]), logits[:, 0])
    with pytest.raises(ValueError, match="regression_loss: targets must be finite"):
        regression_loss(np.array([1.0, np.nan, 2.0]), logits[:, 0])
    bad = jnp.array([0, 5, 1])
    assert np.isnan(jax.jit(softmax_cross_entropy)(bad, logits))
    assert np.isnan(jax.jit(ordinal_loss)(bad, logits))
    assert np.isnan(jax.jit(binary_cross_entropy)(bad.astype(jnp.float32), logits[:, 0]))
    assert np.isnan(jax.jit(regression_loss)(jnp.array([1.0, jnp.inf, 2.0]), logits[:, 0]))
    good = jnp.array([0, 3, 1])
    assert np.isfinite(jax.jit(softmax_cross_entropy)(good, logits))


def test_shape_and_type_errors():
    with pytest.raises(ValueError, match=r"binary_cross_entropy: logits must be \(batch,\) or "
                                         r"\(batch, 1\) with batch=3"):
        binary_cross_entropy(np.array([0, 1, 1]), jnp.zeros((3, 2)))
    with pytest.raises(TypeError, match="softmax_cross_entropy: labels must be integers"):
        softmax_cross_entropy(np.array([0.0, 1.0]), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be \(batch,\) = "
                                         r"\(2,\)"):
        softmax_cross_entropy(np.array([0, 1, 1]), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="regression_loss: kind must be one of"):
        regression_loss(np.ones(2), jnp.zeros(2), kind="l3")
    with pytest.raises(ValueError, match="class_weights must be"):
        softmax_cross_entropy(np.array([0, 1]), jnp.zeros((2, 3)), class_weights=[1.0, 2.0])
