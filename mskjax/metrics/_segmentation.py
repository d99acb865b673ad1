"""Segmentation metrics of integer label maps, one value per class: overlap (Dice, IoU, volume
overlap error) and surface distances (95th-percentile Hausdorff distance, average symmetric
surface distance).

Definitions (for class ``c``, ``P = pred == c`` and ``T = target == c``):

- ``dice = 2 |P & T| / (|P| + |T|)``, ``iou = |P & T| / |P | T|``,
  ``volume_overlap_error = 1 - iou``.
- The *surface* of a mask is the mask minus its binary erosion with the face-connected
  structuring element (``scipy.ndimage.generate_binary_structure(ndim, 1)``), voxels outside
  the array counting as outside the mask (``border_value=0``): a mask touching the border of
  the array has its border voxels on its surface. This holds for the background class too.
- Distances are Euclidean between surface voxel centres, each axis scaled by ``spacing`` (mm).
  The directed distances from ``P`` to ``T`` are, for every surface voxel of ``P``, the
  distance to the nearest surface voxel of ``T``.
- ``hausdorff95`` is the larger of the two directed 95th percentiles, as MONAI's
  ``compute_hausdorff_distance(..., percentile=95)`` computes it (``np.percentile``'s default
  linear interpolation). This is not medpy's ``hd95``, the percentile of the two directions
  pooled.
- ``assd`` is the mean of the two directed mean distances, as ``medpy.metric.binary.assd``.

Empty masks are reported, never turned into numbers: when class ``c`` is in neither map, every
metric is NaN (leave it out of means with :func:`mean_over_classes` or ``np.nanmean``); when it
is in only one, Dice and IoU are 0, the volume overlap error 1 and both distances ``inf``.

Conventions: ``pred`` and ``target`` are integer (or boolean) arrays of one shape, of any
dimension, holding labels ``0..num_classes - 1``; every metric is symmetric in them. The metrics
run on the host with numpy and scipy (they are evaluation tools, not traced by ``jit``; for a
differentiable Dice see :func:`mskjax.losses.soft_dice_loss`) and return float64 numpy arrays
of shape ``(num_classes,)``, index = label, background (label 0) included. ``spacing`` is
accepted by every metric so that all share one signature; the overlap metrics do not depend on
it.

Exactness and speed. The distances are exact: each one is the value of the Euclidean distance
transform of the other surface (``scipy.ndimage.distance_transform_edt(~surface,
sampling=spacing)``) at that voxel, computed only where it is needed: a surface voxel shared by
both surfaces is at distance 0, and the others are exact nearest-neighbour queries
(``scipy.spatial.cKDTree``, no approximation) among the other surface's voxel centres in mm.
Each class is cropped to the bounding box of the union of its two masks first.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.typing import ArrayLike
from scipy import ndimage
from scipy.spatial import cKDTree

from .._checks import as_array, check_positive_int, check_spacing

#: Percentile of :func:`hausdorff95`.
PERCENTILE = 95.0


class SegmentationScores(NamedTuple):
    """Every metric of :func:`segmentation_scores`, each float64 ``(num_classes,)``."""

    dice: np.ndarray
    iou: np.ndarray
    volume_overlap_error: np.ndarray
    hausdorff95: np.ndarray
    assd: np.ndarray


def _label_map(x, name, func):
    x = as_array(x, name, func)
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"{func}: {name} must be a concrete array; the segmentation metrics run "
                        "on the host and cannot be traced by jit or vmap")
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{func}: {name} must be an integer label map, got {x.dtype}; convert "
                        "it explicitly (e.g. np.argmax over the class axis, or np.rint and "
                        "astype(np.int32))")
    return x


def _check_inputs(pred, target, num_classes, spacing, func):
    """``pred``, ``target`` as validated numpy label maps and ``spacing`` as a float tuple."""
    pred = _label_map(pred, "pred", func)
    target = _label_map(target, "target", func)
    if pred.shape != target.shape:
        raise ValueError(f"{func}: pred and target must have the same shape, got {pred.shape} "
                         f"and {target.shape}")
    if pred.ndim == 0 or pred.size == 0:
        raise ValueError(f"{func}: pred and target must be non-empty arrays of at least one "
                         f"dimension, got shape {pred.shape}")
    check_positive_int(num_classes, "num_classes", func)
    for name, x in (("pred", pred), ("target", target)):
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= num_classes:
            values = np.unique(x)
            bad = values[(values < 0) | (values >= num_classes)]
            shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
            raise ValueError(f"{func}: {name} holds labels outside 0..{num_classes - 1} "
                             f"(num_classes={num_classes}): {shown}")
    return pred, target, check_spacing(spacing, pred.ndim, func, what="label map")


# --- overlap -----------------------------------------------------------------------------------


def _overlap(pred, target, num_classes):
    """``(intersection, |pred == c|, |target == c|)`` per class, from one confusion matrix."""
    index = target.reshape(-1).astype(np.intp) * num_classes + pred.reshape(-1)
    confusion = np.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)
    return (np.diag(confusion).astype(np.float64), confusion.sum(axis=0).astype(np.float64),
            confusion.sum(axis=1).astype(np.float64))


def _ratio(numerator, denominator):
    """``numerator / denominator``, NaN where the denominator is 0 (both masks empty)."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _dice(pred, target, num_classes):
    inter, n_pred, n_target = _overlap(pred, target, num_classes)
    return _ratio(2 * inter, n_pred + n_target)


def _iou(pred, target, num_classes):
    inter, n_pred, n_target = _overlap(pred, target, num_classes)
    return _ratio(inter, n_pred + n_target - inter)


# --- surface distances -------------------------------------------------------------------------


def surface(mask: np.ndarray) -> np.ndarray:
    """The surface of a boolean mask: the mask minus its face-connected erosion, voxels outside
    the array counting as outside the mask (``scipy.ndimage.binary_erosion`` with
    ``generate_binary_structure(ndim, 1)`` and ``border_value=0``, written with slices)."""
    interior = mask.copy()
    for axis in range(mask.ndim):
        n = mask.shape[axis]
        low = (slice(None),) * axis + (slice(0, n - 1),)
        high = (slice(None),) * axis + (slice(1, n),)
        interior[low] &= mask[high]
        interior[high] &= mask[low]
        interior[(slice(None),) * axis + (0,)] = False
        interior[(slice(None),) * axis + (n - 1,)] = False
    return mask & ~interior


def _boxes(labels, num_classes):
    """Bounding box (a tuple of slices, or None when absent) of every label 1..num_classes-1."""
    if num_classes == 1:
        return []
    return ndimage.find_objects(labels, max_label=num_classes - 1)


def _bounding_box(mask):
    """Bounding box of a boolean mask as a tuple of slices, None if it is empty."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _to_target(source, other, other_surface, scale):
    """Distances (mm) from the surface voxels ``source`` (``(n, ndim)`` indices) to the nearest
    voxel of the surface ``other`` (its ``(m, ndim)`` indices; ``other_surface`` its boolean
    map): 0 at voxels shared by both surfaces, exact nearest-neighbour queries (Euclidean,
    voxel centres scaled by ``scale``) in a k-d tree of ``other`` at the others."""
    distances = np.zeros(len(source))
    apart = ~other_surface[tuple(source.T)]
    if apart.any():
        # An unbalanced tree without compacted nodes builds about twice as fast; the queries
        # stay exact (eps=0).
        tree = cKDTree(other * scale, balanced_tree=False, compact_nodes=False)
        distances[apart], _ = tree.query(source[apart] * scale, k=1, eps=0.0, p=2.0,
                                         workers=-1)
    return distances


def surface_distances(pred_mask: ArrayLike, target_mask: ArrayLike, *,
                      spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """The two directed surface distances (mm) of two non-empty boolean masks.

    Args:
        pred_mask: boolean mask, any shape (any dimension).
        target_mask: boolean mask, same shape.
        spacing: voxel size in mm, one number per axis or one for all; ``None`` means 1.

    Returns:
        ``(to_target, to_pred)``, float64 1D arrays: the distance from each surface voxel of
        ``pred_mask`` (in ``np.argwhere`` order) to the nearest surface voxel of
        ``target_mask``, and the other way round. :func:`hausdorff95` is the larger of their
        95th percentiles, :func:`assd` the mean of their means.

    Raises:
        ValueError: when a mask is empty (its distances are undefined; the per-class metrics
            report ``inf`` or NaN for it).
    """
    func = "mskjax.metrics.surface_distances"
    masks = []
    for name, x in (("pred_mask", pred_mask), ("target_mask", target_mask)):
        x = _label_map(x, name, func)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{func}: {name} must be boolean (or 0/1), got values in "
                             f"{x.min()}..{x.max()}")
        masks.append(x.astype(bool))
    pred_mask, target_mask = masks
    if pred_mask.shape != target_mask.shape or pred_mask.ndim == 0:
        raise ValueError(f"{func}: pred_mask and target_mask must have one shape of at least one "
                         f"dimension, got {pred_mask.shape} and {target_mask.shape}")
    for name, x in (("pred_mask", pred_mask), ("target_mask", target_mask)):
        if not x.any():
            raise ValueError(f"{func}: {name} is empty; surface distances need two non-empty "
                             "masks")
    spacing = check_spacing(spacing, pred_mask.ndim, func, what="label map")
    # Cropping to the bounding box of the union changes no distance: every voxel of either
    # mask, so every surface voxel, lies inside the box; the erosion that defines the surfaces
    # treats voxels outside the box as outside the masks, which they are; and the nearest
    # surface voxel of one mask to a surface voxel of the other is a surface voxel, so inside.
    box = _union(_bounding_box(pred_mask), _bounding_box(target_mask))
    return _directed_cropped(pred_mask[box], target_mask[box], spacing)


def _directed_cropped(pred_mask, target_mask, spacing):
    surface_pred, surface_target = surface(pred_mask), surface(target_mask)
    points_pred, points_target = np.argwhere(surface_pred), np.argwhere(surface_target)
    scale = np.asarray(spacing, np.float64)
    return (_to_target(points_pred, points_target, surface_target, scale),
            _to_target(points_target, points_pred, surface_pred, scale))


def _distances(pred, target, num_classes, spacing):
    """``(hausdorff95, assd)`` per class."""
    hd95 = np.full(num_classes, np.nan)
    assd = np.full(num_classes, np.nan)
    # One pass over each map for the boxes of labels >= 1; the background's is computed apart.
    # Each class is cropped to the box of the union of its masks, as in surface_distances.
    boxes_pred, boxes_target = _boxes(pred, num_classes), _boxes(target, num_classes)
    for c in range(num_classes):
        if c == 0:
            box = _union(_bounding_box(pred == 0), _bounding_box(target == 0))
            present = (box is not None and bool(np.any(pred[box] == 0)),
                       box is not None and bool(np.any(target[box] == 0)))
        else:
            a, b = boxes_pred[c - 1], boxes_target[c - 1]
            box, present = _union(a, b), (a is not None, b is not None)
        if not any(present):
            continue  # NaN: the class is in neither map
        if not all(present):
            hd95[c] = assd[c] = np.inf
            continue
        to_target, to_pred = _directed_cropped(pred[box] == c, target[box] == c, spacing)
        hd95[c] = max(np.percentile(to_target, PERCENTILE), np.percentile(to_pred, PERCENTILE))
        assd[c] = 0.5 * (to_target.mean() + to_pred.mean())
    return hd95, assd


# --- public metrics ----------------------------------------------------------------------------


def dice(pred: ArrayLike, target: ArrayLike, *, num_classes: int,
         spacing=None) -> np.ndarray:
    """Dice coefficient of every class, ``2 |P & T| / (|P| + |T|)``.

    Args:
        pred: predicted integer label map, any shape (any dimension).
        target: reference label map, same shape. Labels in ``0..num_classes - 1``.
        num_classes: number of classes (keyword-only).
        spacing: voxel size in mm per axis (validated, unused: Dice counts voxels).

    Returns:
        float64 ``(num_classes,)``, index = label: NaN where the class is in neither map, 0
        where it is in one only.
    """
    pred, target, _ = _check_inputs(pred, target, num_classes, spacing, "mskjax.metrics.dice")
    return _dice(pred, target, num_classes)


def iou(pred: ArrayLike, target: ArrayLike, *, num_classes: int, spacing=None) -> np.ndarray:
    """Intersection over union (Jaccard index) of every class, ``|P & T| / |P | T|``.

    Args and empty masks as :func:`dice`.

    Returns:
        float64 ``(num_classes,)``.
    """
    pred, target, _ = _check_inputs(pred, target, num_classes, spacing, "mskjax.metrics.iou")
    return _iou(pred, target, num_classes)


def volume_overlap_error(pred: ArrayLike, target: ArrayLike, *, num_classes: int,
                         spacing=None) -> np.ndarray:
    """Volume overlap error of every class, ``1 - |P & T| / |P | T|`` (1 - IoU).

    Args as :func:`dice`.

    Returns:
        float64 ``(num_classes,)``: NaN where the class is in neither map, 1 where it is in one
        only.
    """
    pred, target, _ = _check_inputs(pred, target, num_classes, spacing,
                                    "mskjax.metrics.volume_overlap_error")
    return 1.0 - _iou(pred, target, num_classes)


def hausdorff95(pred: ArrayLike, target: ArrayLike, *, num_classes: int,
                spacing=None) -> np.ndarray:
    """95th-percentile Hausdorff distance of every class, in mm.

    The larger of the two directed 95th percentiles (``np.percentile``, linear interpolation)
    of the surface distances, as MONAI's ``compute_hausdorff_distance(..., percentile=95)``;
    see the module docstring for the surfaces and distances.

    Args:
        pred: predicted integer label map, any shape (any dimension).
        target: reference label map, same shape. Labels in ``0..num_classes - 1``.
        num_classes: number of classes (keyword-only).
        spacing: voxel size in mm, one number per axis or one for all; ``None`` means 1 (the
            distances are then in voxels).

    Returns:
        float64 ``(num_classes,)``, index = label: NaN where the class is in neither map,
        ``inf`` where it is in one only.
    """
    pred, target, spacing = _check_inputs(pred, target, num_classes, spacing,
                                          "mskjax.metrics.hausdorff95")
    return _distances(pred, target, num_classes, spacing)[0]


def assd(pred: ArrayLike, target: ArrayLike, *, num_classes: int, spacing=None) -> np.ndarray:
    """Average symmetric surface distance of every class, in mm.

    The mean of the two directed mean surface distances, as ``medpy.metric.binary.assd``; see
    the module docstring for the surfaces and distances.

    Args and empty masks as :func:`hausdorff95`.

    Returns:
        float64 ``(num_classes,)``.
    """
    pred, target, spacing = _check_inputs(pred, target, num_classes, spacing,
                                          "mskjax.metrics.assd")
    return _distances(pred, target, num_classes, spacing)[1]


def segmentation_scores(pred: ArrayLike, target: ArrayLike, *, num_classes: int,
                        spacing=None) -> SegmentationScores:
    """Every segmentation metric at once (the surfaces are computed once for both distances).

    Args as :func:`hausdorff95`.

    Returns:
        :class:`SegmentationScores` of float64 ``(num_classes,)`` arrays, equal to what
        :func:`dice`, :func:`iou`, :func:`volume_overlap_error`, :func:`hausdorff95` and
        :func:`assd` return.
    """
    pred, target, spacing = _check_inputs(pred, target, num_classes, spacing,
                                          "mskjax.metrics.segmentation_scores")
    inter, n_pred, n_target = _overlap(pred, target, num_classes)
    overlap = _ratio(inter, n_pred + n_target - inter)
    hd95, mean_distance = _distances(pred, target, num_classes, spacing)
    return SegmentationScores(dice=_ratio(2 * inter, n_pred + n_target), iou=overlap,
                              volume_overlap_error=1.0 - overlap, hausdorff95=hd95,
                              assd=mean_distance)


def mean_over_classes(values: ArrayLike, *, exclude_background: bool = True) -> float:
    """Mean of a per-class metric over the classes present in either map.

    NaN entries (classes in neither map) are left out; ``inf`` (a class in one map only) is
    kept, so the mean of distances is ``inf`` when a class was missed. The background (index 0)
    is left out unless ``exclude_background=False``.

    Args:
        values: ``(num_classes,)`` as returned by the metrics.
        exclude_background: leave out index 0 (keyword-only, default True).

    Returns:
        The mean as a Python float; NaN when no class is left (say so when reporting it).
    """
    func = "mskjax.metrics.mean_over_classes"
    values = np.asarray(as_array(values, "values", func), dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{func}: values must be (num_classes,), got shape {values.shape}")
    if exclude_background:
        values = values[1:]
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")
