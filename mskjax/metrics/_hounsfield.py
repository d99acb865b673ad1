"""Errors of a (pseudo-)CT in Hounsfield units: mean absolute error per tissue class and the
Dice of bone above a HU threshold.

Conventions: ``ct_true`` (the reference) and ``ct_pred`` are real arrays of one shape, any
dimension, in HU; ``classes`` an integer map of the same shape, the reference's tissue class of
each voxel, with index 0 the air outside the body and ``1..num_classes - 1`` the tissues (the
order of :data:`mskjax.sim.CT_TISSUE_CLASSES`: air, fat, soft tissue, bone). Computed on the host
with numpy in float64, like the segmentation metrics; not traced by ``jit``. A class without
voxels gives NaN with a count of 0 (as a class in neither map does in :func:`dice`); NaN or
infinite HU are errors, never averaged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array
from ._segmentation import dice

#: Bone threshold of :func:`bone_dice` (HU): between soft tissue (about +24 HU in the
#: simulated knee, up to about +100 HU in real muscle and tendon) and cancellous bone (about
#: +370 HU in the simulated knee, +200 to +800 HU in real trabecular bone).
BONE_THRESHOLD_HU = 200.0


class HounsfieldErrors(NamedTuple):
    """The result of :func:`hounsfield_mae_per_tissue`.

    Attributes:
        per_class: float64 ``(num_classes,)``, MAE in HU over the voxels of each reference class
            (index = class; NaN for a class without voxels).
        body: MAE in HU over every voxel whose class is not air (index 0).
        voxels: int64 ``(num_classes,)``, the voxels of each class.
    """

    per_class: np.ndarray
    body: float
    voxels: np.ndarray


def _real(x, name, func):
    x = np.asarray(as_array(x, name, func))
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating)
                               or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{func}: {name} must be a real array of HU, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{func}: {name} holds NaN or infinite values")
    return x.astype(np.float64)


def hounsfield_mae_per_tissue(ct_true: ArrayLike, ct_pred: ArrayLike, classes: ArrayLike, *,
                              num_classes: int = 4) -> HounsfieldErrors:
    """Mean absolute error ``mean |ct_pred - ct_true|`` in HU per tissue class and in the body.

    Args:
        ct_true: reference CT in HU, real, any shape.
        ct_pred: estimated CT in HU, same shape.
        classes: integer class of each voxel of the reference, same shape, in
            ``0..num_classes - 1``; 0 is air (outside the body).
        num_classes: number of classes (keyword-only), 4 for air, fat, soft tissue, bone.

    Returns:
        :class:`HounsfieldErrors` ``(per_class, body, voxels)``.

    Raises:
        ValueError: shapes differ, the arrays are empty, a value is NaN or infinite, or a class
            index is out of range. TypeError: a non-real CT or non-integer classes.
    """
    func = "mskjax.metrics.hounsfield_mae_per_tissue"
    true = _real(ct_true, "ct_true", func)
    pred = _real(ct_pred, "ct_pred", func)
    cls = np.asarray(as_array(classes, "classes", func))
    if cls.dtype == bool or not np.issubdtype(cls.dtype, np.integer):
        raise TypeError(f"{func}: classes must be an integer class map, got {cls.dtype}")
    if not (true.shape == pred.shape == cls.shape):
        raise ValueError(f"{func}: ct_true, ct_pred and classes must have one shape, got "
                         f"{true.shape}, {pred.shape} and {cls.shape}")
    if true.size == 0:
        raise ValueError(f"{func}: the arrays are empty (shape {true.shape})")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{func}: num_classes must be an int >= 2 (air and at least one "
                         f"tissue), got {num_classes!r}")
    if cls.min() < 0 or cls.max() >= num_classes:
        raise ValueError(f"{func}: classes must lie in 0..{num_classes - 1}, got "
                         f"{int(cls.min())}..{int(cls.max())}")
    error = np.abs(pred - true).ravel()
    flat = cls.ravel().astype(np.intp)
    voxels = np.bincount(flat, minlength=num_classes)
    sums = np.bincount(flat, weights=error, minlength=num_classes)
    per_class = np.full(num_classes, np.nan)
    np.divide(sums, voxels, out=per_class, where=voxels > 0)
    inside = voxels[1:].sum()
    body = float(sums[1:].sum() / inside) if inside else float("nan")
    return HounsfieldErrors(per_class=per_class, body=body, voxels=voxels.astype(np.int64))


def bone_dice(ct_true: ArrayLike, ct_pred: ArrayLike, *,
              threshold: float = BONE_THRESHOLD_HU) -> float:
    """Dice of the bone masks ``ct >= threshold`` of the reference and the estimate.

    Args:
        ct_true: reference CT in HU, real, any shape.
        ct_pred: estimated CT in HU, same shape.
        threshold: HU at and above which a voxel is bone (keyword-only), default
            :data:`BONE_THRESHOLD_HU` (200 HU).

    Returns:
        ``2 |B_pred & B_true| / (|B_pred| + |B_true|)`` by :func:`mskjax.metrics.dice`: 0 when
        only one has bone, NaN when neither has any.
    """
    func = "mskjax.metrics.bone_dice"
    true = _real(ct_true, "ct_true", func)
    pred = _real(ct_pred, "ct_pred", func)
    if true.shape != pred.shape:
        raise ValueError(f"{func}: ct_true and ct_pred must have one shape, got {true.shape} "
                         f"and {pred.shape}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(
            threshold):
        raise ValueError(f"{func}: threshold must be a finite number of HU, got {threshold!r}")
    if true.size == 0:
        raise ValueError(f"{func}: the arrays are empty (shape {true.shape})")
    return float(dice((pred >= threshold).astype(np.int32), (true >= threshold).astype(np.int32),
                      num_classes=2)[1])
