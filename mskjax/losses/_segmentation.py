"""Segmentation losses: soft Dice, cross-entropy and their weighted sum, with class weights.

Conventions: ``labels`` (the reference, integer ``(batch, *spatial)``) come first and the net's
``logits`` (channels-last, ``(batch, *spatial, num_classes)``, real floating point) second, as
``gt`` and ``pred`` in every loss of the package. Each loss returns a scalar of the logits'
dtype and is pure ``jax.numpy``: differentiable with respect to the logits and jittable.

Labels outside ``0..num_classes - 1`` raise a ValueError on concrete arrays; under ``jit``,
where the values are unknown at trace time, they make the loss NaN (never a silently smaller
loss), which :func:`mskjax.train.make_train_step` skips and counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_interval, check_positive_int

#: Default additive smoothing of the soft Dice, in the numerator and the denominator
#: (MONAI's ``smooth_nr`` and ``smooth_dr``).
SMOOTH = 1e-5


def _check_pair(labels, logits, num_classes, func, *, name="logits"):
    labels = as_array(labels, "labels", func)
    logits = as_array(logits, name, func)
    check_positive_int(num_classes, "num_classes", func, minimum=2)
    dtype = jnp.result_type(logits)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{func}: {name} must be real floating point, got {dtype}")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"{func}: labels must be integers (class indices), got "
                        f"{jnp.result_type(labels)}")
    if logits.ndim < 2 or logits.shape[-1] != num_classes:
        raise ValueError(f"{func}: {name} must be (batch, *spatial, num_classes) with "
                         f"num_classes={num_classes} channels last, got shape {logits.shape}")
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"{func}: labels must be (batch, *spatial) = {logits.shape[:-1]} to "
                         f"match {name}, got shape {tuple(labels.shape)}")
    if logits.size == 0:
        raise ValueError(f"{func}: {name} must not be empty, got shape {logits.shape}")
    if _is_concrete(labels):
        values = np.asarray(labels)
        if values.min() < 0 or values.max() >= num_classes:
            bad = np.unique(values[(values < 0) | (values >= num_classes)])
            raise ValueError(f"{func}: labels outside 0..{num_classes - 1} "
                             f"(num_classes={num_classes}): {bad[:8].tolist()}")
    return jnp.asarray(labels), jnp.asarray(logits)


def _check_weights(class_weights, num_classes, dtype, func):
    """``None`` (every class weighs 1) or ``(num_classes,)`` finite, non-negative, not all 0."""
    if class_weights is None:
        return jnp.ones(num_classes, dtype)
    weights = as_array(class_weights, "class_weights", func)
    if tuple(np.shape(weights)) != (num_classes,):
        raise ValueError(f"{func}: class_weights must be (num_classes,) = ({num_classes},), "
                         f"got shape {tuple(np.shape(weights))}")
    if _is_concrete(weights):
        values = np.asarray(weights, np.float64)
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.sum() <= 0:
            raise ValueError(f"{func}: class_weights must be finite and non-negative, with a "
                             f"positive sum, got {values.tolist()}")
    return jnp.asarray(weights, dtype)


def _nan_if_out_of_range(loss, labels, num_classes):
    """``loss``, or NaN when any label is outside ``0..num_classes - 1`` (for traced labels)."""
    bad = jnp.any((labels < 0) | (labels >= num_classes))
    return jnp.where(bad, jnp.asarray(jnp.nan, loss.dtype), loss)


def _soft_dice(labels, probs, weights, smooth):
    axes = tuple(range(probs.ndim - 1))
    one_hot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
    intersection = jnp.sum(probs * one_hot, axis=axes)
    total = jnp.sum(probs, axis=axes) + jnp.sum(one_hot, axis=axes)
    dice = (2 * intersection + smooth) / (total + smooth)
    return jnp.sum(weights * (1 - dice)) / jnp.sum(weights)


def _cross_entropy(labels, logits, weights):
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.clip(labels, 0, logits.shape[-1] - 1)[..., None],
                                 axis=-1)[..., 0]
    voxel_weights = weights[jnp.clip(labels, 0, logits.shape[-1] - 1)]
    return -jnp.sum(voxel_weights * picked) / jnp.sum(voxel_weights)


def soft_dice_loss(labels: ArrayLike, logits_or_probs: ArrayLike, *, num_classes: int,
                   class_weights: ArrayLike | None = None, from_logits: bool = True,
                   smooth: float = SMOOTH) -> jax.Array:
    """Soft Dice loss: the weighted mean over classes of ``1 - Dice_c``.

    With ``p`` the softmax of the logits (or the given probabilities) and ``g`` the one-hot
    labels, sums running over the batch and every voxel (the Dice of the whole batch):

        ``Dice_c = (2 sum(p_c g_c) + smooth) / (sum(p_c) + sum(g_c) + smooth)``,
        ``loss = sum_c w_c (1 - Dice_c) / sum_c w_c``.

    A class absent from the labels scores by its predicted volume alone (``Dice_c`` near 1
    when it is predicted nowhere, thanks to ``smooth``).

    Args:
        labels: integer ``(batch, *spatial)`` class indices in ``0..num_classes - 1``.
        logits_or_probs: ``(batch, *spatial, num_classes)`` logits, or probabilities over the
            last axis when ``from_logits=False``.
        num_classes: number of classes (keyword-only, >= 2).
        class_weights: ``(num_classes,)`` non-negative weights ``w``; ``None`` weighs every
            class 1 (0 leaves a class out, e.g. the background).
        from_logits: whether the second argument holds logits (softmax applied here).
        smooth: positive smoothing added to numerator and denominator.

    Returns:
        Scalar in ``[0, 1]`` of the logits' dtype; 0 for a perfect one-hot prediction.
    """
    func = "mskjax.losses.soft_dice_loss"
    labels, values = _check_pair(labels, logits_or_probs, num_classes, func,
                                 name="logits_or_probs")
    check_interval(smooth, "smooth", func, low=0)
    weights = _check_weights(class_weights, num_classes, values.dtype, func)
    probs = jax.nn.softmax(values, axis=-1) if from_logits else values
    loss = _soft_dice(labels, probs, weights, jnp.asarray(smooth, values.dtype))
    return _nan_if_out_of_range(loss, labels, num_classes)


def cross_entropy_loss(labels: ArrayLike, logits: ArrayLike, *, num_classes: int,
                       class_weights: ArrayLike | None = None) -> jax.Array:
    """Softmax cross-entropy, averaged over voxels with the weights of their true classes.

    ``loss = -sum_i w_{y_i} log softmax(logits_i)[y_i] / sum_i w_{y_i}`` over every voxel ``i``
    of the batch, as ``torch.nn.functional.cross_entropy(..., weight=w)``; without weights the
    mean of ``optax.softmax_cross_entropy_with_integer_labels``.

    Args:
        labels: integer ``(batch, *spatial)`` class indices in ``0..num_classes - 1``.
        logits: ``(batch, *spatial, num_classes)``.
        num_classes: number of classes (keyword-only, >= 2).
        class_weights: ``(num_classes,)`` non-negative weights; ``None`` weighs every class 1.
            The weights of the classes present must not all be 0 (the loss is then NaN).

    Returns:
        Scalar of the logits' dtype.
    """
    func = "mskjax.losses.cross_entropy_loss"
    labels, logits = _check_pair(labels, logits, num_classes, func)
    weights = _check_weights(class_weights, num_classes, logits.dtype, func)
    return _nan_if_out_of_range(_cross_entropy(labels, logits, weights), labels, num_classes)


def dice_ce_loss(labels: ArrayLike, logits: ArrayLike, *, num_classes: int,
                 dice_weight: float = 1.0, ce_weight: float = 1.0,
                 class_weights: ArrayLike | None = None, smooth: float = SMOOTH) -> jax.Array:
    """``dice_weight * soft_dice_loss + ce_weight * cross_entropy_loss`` (nnU-Net's loss).

    Args:
        labels: integer ``(batch, *spatial)`` class indices in ``0..num_classes - 1``.
        logits: ``(batch, *spatial, num_classes)``.
        num_classes: number of classes (keyword-only, >= 2).
        dice_weight, ce_weight: non-negative weights of the two terms.
        class_weights: ``(num_classes,)``, passed to both terms.
        smooth: the soft Dice's smoothing.

    Returns:
        Scalar of the logits' dtype.
    """
    func = "mskjax.losses.dice_ce_loss"
    labels, logits = _check_pair(labels, logits, num_classes, func)
    check_interval(dice_weight, "dice_weight", func, low=0, low_open=False)
    check_interval(ce_weight, "ce_weight", func, low=0, low_open=False)
    check_interval(smooth, "smooth", func, low=0)
    weights = _check_weights(class_weights, num_classes, logits.dtype, func)
    dice = _soft_dice(labels, jax.nn.softmax(logits, axis=-1), weights,
                      jnp.asarray(smooth, logits.dtype))
    loss = dice_weight * dice + ce_weight * _cross_entropy(labels, logits, weights)
    return _nan_if_out_of_range(loss, labels, num_classes)
