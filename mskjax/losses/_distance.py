"""Pixel-wise losses: mean absolute error, mean squared error, normalised squared error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, check_ndim
from ._inputs import real_pair


def l1_loss(gt: ArrayLike, pred: ArrayLike) -> jax.Array:
    """Mean absolute error ``mean(|gt - pred|)`` over every element.

    Args:
        gt: reference, any shape (a batch of images ``(batch, ...)`` or one image), real.
        pred: estimate, same shape.

    Returns:
        Scalar of the inputs' dtype. The mean over all elements, so the batch size does not
        change the scale (as ``torch.nn.functional.l1_loss`` with ``reduction="mean"``).
    """
    gt, pred = real_pair(gt, pred, "mskjax.losses.l1_loss")
    return jnp.mean(jnp.abs(gt - pred))


def l2_loss(gt: ArrayLike, pred: ArrayLike) -> jax.Array:
    """Mean squared error ``mean((gt - pred)^2)`` over every element.

    Args:
        gt: reference, any shape, real.
        pred: estimate, same shape.

    Returns:
        Scalar of the inputs' dtype (as ``torch.nn.functional.mse_loss`` with
        ``reduction="mean"``).
    """
    gt, pred = real_pair(gt, pred, "mskjax.losses.l2_loss")
    return jnp.mean((gt - pred) ** 2)


def nmse_loss(gt: ArrayLike, pred: ArrayLike) -> jax.Array:
    """Normalised mean squared error of each example, averaged over the batch.

    For each example ``i`` (index of the leading axis), ``||gt[i] - pred[i]||^2 / ||gt[i]||^2``
    over all its other axes (fastMRI's NMSE, ``fastmri.evaluate.nmse``, of one example); the
    loss is the mean of these over the batch, so every example weighs the same whatever its
    intensity scale.

    Args:
        gt: reference ``(batch, *shape)``, real, with a leading batch axis even for one example
            (``gt[None]``).
        pred: estimate, same shape.

    Returns:
        Scalar of the inputs' dtype.

    Raises:
        ValueError: when a concrete ``gt`` has an example of all zeros (its NMSE is undefined).
            Under ``jit`` the check is skipped and such an example gives ``inf`` or ``NaN``,
            which :func:`mskjax.train.make_train_step` does not apply.
    """
    func = "mskjax.losses.nmse_loss"
    gt, pred = real_pair(gt, pred, func)
    check_ndim(gt, "gt", func, min_ndim=2, layout="(batch, *shape) with a leading batch axis")
    axes = tuple(range(1, gt.ndim))
    energy = jnp.sum(gt ** 2, axis=axes)
    if _is_concrete(energy):
        zero = np.flatnonzero(np.asarray(energy) == 0)
        if zero.size:
            raise ValueError(f"{func}: gt of example(s) {zero.tolist()} is all zeros; the NMSE "
                             "is undefined for them")
    return jnp.mean(jnp.sum((gt - pred) ** 2, axis=axes) / energy)
