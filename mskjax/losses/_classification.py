"""Classification losses: binary and softmax cross-entropy, the ordinal (CORAL) loss, regression
losses, and one entry point dispatching on the classifier's task.

Conventions: the reference (``labels`` or ``targets``, ``(batch,)``) comes first and the net's
outputs (``logits`` or ``predictions``, real floating point) second, as in every loss of the
package; options are keyword-only. The outputs are those of a :class:`mskjax.nets.ClassifierHead`
(see its table): ``binary`` one logit ``(batch,)`` or ``(batch, 1)``, ``multiclass`` logits
``(batch, K)``, ``ordinal`` cumulative logits ``logit P(y > k)`` ``(batch, K - 1)``,
``regression`` the value ``(batch,)`` or ``(batch, 1)``. Every loss is the mean over the batch
(weighted where its docstring says so) and returns a scalar of the outputs' dtype; pure
``jax.numpy``, differentiable with respect to the outputs and jittable.

Labels outside their range (classes outside ``0..K-1``, binary labels outside ``[0, 1]``,
non-finite regression targets) raise a ValueError on concrete arrays; under ``jit``, where the
values are unknown at trace time, they make the loss NaN (never a silently smaller loss), which
:func:`mskjax.train.make_train_step` skips and counts.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_interval
from ._segmentation import _check_weights, _nan_if_out_of_range

#: The kinds of target, as :data:`mskjax.nets.TASKS` (repeated here: the losses do not import
#: the nets, so that they need no flax).
TASKS = ("binary", "multiclass", "ordinal", "regression")

#: The kinds of :func:`regression_loss`.
REGRESSION_KINDS = ("l1", "l2", "huber")


def _floating(x, name, func):
    x = as_array(x, name, func)
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{func}: {name} must be real floating point, got {dtype}")
    if x.size == 0:
        raise ValueError(f"{func}: {name} must not be empty, got shape {tuple(x.shape)}")
    return jnp.asarray(x)


def _single_output(values, batch, name, func):
    """``(batch,)`` or ``(batch, 1)`` -> ``(batch,)``."""
    if values.shape == (batch, 1):
        return values[:, 0]
    if values.shape != (batch,):
        raise ValueError(f"{func}: {name} must be (batch,) or (batch, 1) with batch={batch} "
                         f"(the labels' length), got shape {tuple(values.shape)}")
    return values


def _check_vector(labels, name, func):
    labels = as_array(labels, name, func)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"{func}: {name} must be (batch,) with batch >= 1, got shape "
                         f"{tuple(labels.shape)}")
    return labels


def _class_labels(labels, num_classes, func):
    """Integer ``(batch,)`` class indices; ValueError for concrete ones outside the range."""
    labels = _check_vector(labels, "labels", func)
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"{func}: labels must be integers (class indices), got "
                        f"{jnp.result_type(labels)}")
    if _is_concrete(labels):
        values = np.asarray(labels)
        bad = np.unique(values[(values < 0) | (values >= num_classes)])
        if bad.size:
            raise ValueError(f"{func}: labels outside 0..{num_classes - 1} "
                             f"(num_classes={num_classes}): {bad[:8].tolist()}")
    return jnp.asarray(labels)


def binary_cross_entropy(labels: ArrayLike, logits: ArrayLike, *,
                         pos_weight: float | ArrayLike | None = None) -> jax.Array:
    """Binary cross-entropy of a logit, averaged over the batch.

    ``loss_i = -(pos_weight * y_i * log sigmoid(z_i) + (1 - y_i) * log sigmoid(-z_i))``, computed
    with ``jax.nn.log_sigmoid`` (finite for any finite logit), and the loss is ``mean_i loss_i``:
    ``torch.nn.functional.binary_cross_entropy_with_logits`` with ``reduction="mean"``.

    Args:
        labels: ``(batch,)`` in ``[0, 1]``: 0/1 (int, bool or float) or soft labels.
        logits: ``(batch,)`` or ``(batch, 1)`` (a binary head's outputs), real floating point.
        pos_weight: non-negative weight of the positive term (keyword-only), a number or a
            scalar array; e.g. ``negatives / positives`` to balance rare positives. ``None``
            is 1.

    Returns:
        Scalar of the logits' dtype.
    """
    func = "mskjax.losses.binary_cross_entropy"
    labels = _check_vector(labels, "labels", func)
    logits = _single_output(_floating(logits, "logits", func), labels.shape[0], "logits", func)
    dtype = logits.dtype
    if jnp.issubdtype(jnp.result_type(labels), jnp.complexfloating):
        raise TypeError(f"{func}: labels must be real, got {jnp.result_type(labels)}")
    if _is_concrete(labels):
        values = np.asarray(labels, np.float64)
        bad = ~((values >= 0) & (values <= 1))
        if bad.any():
            raise ValueError(f"{func}: labels must be in [0, 1] (0/1 or soft labels), got "
                             f"{np.unique(values[bad])[:8].tolist()}")
    if pos_weight is None:
        weight = jnp.ones((), dtype)
    else:
        if isinstance(pos_weight, numbers.Real):
            check_interval(pos_weight, "pos_weight", func, low=0, low_open=False)
        weight = as_array(pos_weight, "pos_weight", func)
        if np.shape(weight) != ():
            raise ValueError(f"{func}: pos_weight must be a scalar, got shape "
                             f"{np.shape(weight)}")
        if _is_concrete(weight) and not (np.isfinite(weight) and float(weight) >= 0):
            raise ValueError(f"{func}: pos_weight must be finite and non-negative, got "
                             f"{float(weight)}")
        weight = jnp.asarray(weight, dtype)
    y = jnp.asarray(labels, dtype)
    loss = -jnp.mean(weight * y * jax.nn.log_sigmoid(logits)
                     + (1 - y) * jax.nn.log_sigmoid(-logits))
    bad = jnp.any(~((y >= 0) & (y <= 1)))
    return jnp.where(bad, jnp.asarray(jnp.nan, dtype), loss)


def softmax_cross_entropy(labels: ArrayLike, logits: ArrayLike, *,
                          class_weights: ArrayLike | None = None,
                          label_smoothing: float = 0.0) -> jax.Array:
    """Softmax cross-entropy with class weights and label smoothing.

    With ``log p = log_softmax(logits)``, weights ``w`` and smoothing ``e`` over ``K`` classes::

        loss = sum_i [(1 - e) w_{y_i} (-log p_{i, y_i}) + (e / K) sum_c w_c (-log p_{i, c})]
               / sum_i w_{y_i}

    as ``torch.nn.functional.cross_entropy(logits, labels, weight=w, label_smoothing=e)``
    (``reduction="mean"``); without weights and smoothing the mean of ``-log p_{i, y_i}``.

    Args:
        labels: integer ``(batch,)`` class indices in ``0..K-1``.
        logits: ``(batch, K)``, ``K >= 2``.
        class_weights: ``(K,)`` finite, non-negative weights with a positive sum
            (keyword-only); ``None`` weighs every class 1. The weights of the classes present
            must not all be 0 (the loss is then NaN).
        label_smoothing: ``e`` in ``[0, 1]``.

    Returns:
        Scalar of the logits' dtype.
    """
    func = "mskjax.losses.softmax_cross_entropy"
    logits = _floating(logits, "logits", func)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"{func}: logits must be (batch, num_classes) with num_classes >= 2, "
                         f"got shape {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    labels = _class_labels(labels, num_classes, func)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{func}: labels must be (batch,) = ({logits.shape[0]},) to match "
                         f"logits, got shape {tuple(labels.shape)}")
    check_interval(label_smoothing, "label_smoothing", func, low=0, high=1, low_open=False,
                   high_open=False)
    weights = _check_weights(class_weights, num_classes, logits.dtype, func)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    index = jnp.clip(labels, 0, num_classes - 1)
    picked = jnp.take_along_axis(log_p, index[:, None], axis=-1)[:, 0]
    example_weights = weights[index]
    nll = -jnp.sum(example_weights * picked)
    smooth = -jnp.sum(log_p * weights) / num_classes
    e = jnp.asarray(label_smoothing, logits.dtype)
    loss = ((1 - e) * nll + e * smooth) / jnp.sum(example_weights)
    return _nan_if_out_of_range(loss, labels, num_classes)


def ordinal_loss(labels: ArrayLike, logits: ArrayLike) -> jax.Array:
    """The CORAL loss (Cao et al. 2020) of cumulative logits.

    For grades ``y`` in ``0..K-1`` and cumulative logits ``z_k = logit P(y > k)``,
    ``k = 0..K-2`` (an ordinal head's outputs), the mean over the batch and the ``K - 1``
    thresholds of the binary cross-entropy of ``z_k`` against ``[y > k]``:
    ``loss = -mean_{i,k} ([y_i > k] log sigmoid(z_ik) + [y_i <= k] log sigmoid(-z_ik))``
    (CORAL's loss with equal threshold weights, divided by ``K - 1``).

    Args:
        labels: integer ``(batch,)`` grades in ``0..K-1`` (e.g. Kellgren-Lawrence 0..4, K=5).
        logits: ``(batch, K - 1)``, ``K >= 2``.

    Returns:
        Scalar of the logits' dtype.
    """
    func = "mskjax.losses.ordinal_loss"
    logits = _floating(logits, "logits", func)
    if logits.ndim != 2:
        raise ValueError(f"{func}: logits must be (batch, num_classes - 1) cumulative logits, "
                         f"got shape {tuple(logits.shape)}")
    num_classes = logits.shape[1] + 1
    labels = _class_labels(labels, num_classes, func)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{func}: labels must be (batch,) = ({logits.shape[0]},) to match "
                         f"logits, got shape {tuple(labels.shape)}")
    above = (labels[:, None] > jnp.arange(num_classes - 1)).astype(logits.dtype)
    loss = -jnp.mean(above * jax.nn.log_sigmoid(logits)
                     + (1 - above) * jax.nn.log_sigmoid(-logits))
    return _nan_if_out_of_range(loss, labels, num_classes)


def regression_loss(targets: ArrayLike, predictions: ArrayLike, *, kind: str = "l1",
                    delta: float = 1.0) -> jax.Array:
    """Mean absolute error, mean squared error or Huber loss of a regression (bone age).

    With ``r = predictions - targets``: ``"l1"`` ``mean |r|``, ``"l2"`` ``mean r^2``,
    ``"huber"`` ``mean(0.5 r^2 if |r| < delta else delta (|r| - 0.5 delta))``, as torch's
    ``l1_loss``, ``mse_loss`` and ``huber_loss(delta=delta)`` with ``reduction="mean"``.

    Args:
        targets: ``(batch,)`` finite real values (e.g. bone age in months).
        predictions: ``(batch,)`` or ``(batch, 1)`` (a regression head's outputs), real
            floating point.
        kind: one of :data:`REGRESSION_KINDS` (keyword-only).
        delta: positive Huber threshold, in the targets' unit.

    Returns:
        Scalar of the predictions' dtype.
    """
    func = "mskjax.losses.regression_loss"
    targets = _check_vector(targets, "targets", func)
    predictions = _single_output(_floating(predictions, "predictions", func), targets.shape[0],
                                 "predictions", func)
    if kind not in REGRESSION_KINDS:
        raise ValueError(f"{func}: kind must be one of {REGRESSION_KINDS}, got {kind!r}")
    check_interval(delta, "delta", func, low=0)
    if not jnp.issubdtype(jnp.result_type(targets), jnp.integer) and not jnp.issubdtype(
            jnp.result_type(targets), jnp.floating):
        raise TypeError(f"{func}: targets must be real numbers, got {jnp.result_type(targets)}")
    if _is_concrete(targets):
        values = np.asarray(targets, np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{func}: targets must be finite, got "
                             f"{int(np.sum(~np.isfinite(values)))} NaN or infinite values")
    dtype = predictions.dtype
    residual = predictions - jnp.asarray(targets, dtype)
    size = jnp.abs(residual)
    if kind == "l1":
        loss = jnp.mean(size)
    elif kind == "l2":
        loss = jnp.mean(residual ** 2)
    else:
        d = jnp.asarray(delta, dtype)
        loss = jnp.mean(jnp.where(size < d, 0.5 * residual ** 2, d * (size - 0.5 * d)))
    bad = jnp.any(~jnp.isfinite(jnp.asarray(targets, dtype)))
    return jnp.where(bad, jnp.asarray(jnp.nan, dtype), loss)


_OPTIONS = {"binary": ("pos_weight",), "multiclass": ("class_weights", "label_smoothing"),
            "ordinal": (), "regression": ("kind", "delta")}


def classification_loss(labels: ArrayLike, outputs: ArrayLike, *, task: str,
                        **options) -> jax.Array:
    """The loss of a classifier head's outputs for its ``task``.

    ============== ================================ =========================================
    task           outputs                          loss (options)
    ============== ================================ =========================================
    ``binary``     ``(batch, 1)`` logit             :func:`binary_cross_entropy`
                                                    (``pos_weight``)
    ``multiclass`` ``(batch, K)`` logits            :func:`softmax_cross_entropy`
                                                    (``class_weights``, ``label_smoothing``)
    ``ordinal``    ``(batch, K-1)`` cumulative      :func:`ordinal_loss`
    ``regression`` ``(batch, 1)`` value             :func:`regression_loss` (``kind``,
                                                    ``delta``)
    ============== ================================ =========================================

    Args:
        labels: ``(batch,)``: class indices, 0/1 labels, grades or target values.
        outputs: the head's outputs (:class:`mskjax.nets.ClassifierHead`).
        task: one of :data:`TASKS` (keyword-only), the head's ``task``.
        **options: the keyword options of that task's loss; any other name is a TypeError.

    Returns:
        Scalar of the outputs' dtype.
    """
    func = "mskjax.losses.classification_loss"
    if task not in TASKS:
        raise ValueError(f"{func}: task must be one of {TASKS}, got {task!r}")
    unknown = sorted(set(options) - set(_OPTIONS[task]))
    if unknown:
        raise TypeError(f"{func}: the {task} loss takes the options {list(_OPTIONS[task])}, "
                        f"got {unknown}")
    if task == "binary":
        return binary_cross_entropy(labels, outputs, **options)
    if task == "multiclass":
        return softmax_cross_entropy(labels, outputs, **options)
    if task == "ordinal":
        return ordinal_loss(labels, outputs)
    return regression_loss(labels, outputs, **options)
