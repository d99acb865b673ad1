"""Image-quality metrics (NMSE, PSNR and SSIM with the fastMRI definitions), segmentation
metrics of label maps (Dice, IoU, volume overlap error, HD95, ASSD), and the errors of a
pseudo-CT in Hounsfield units (MAE per tissue, bone Dice above a threshold;
``mskjax.metrics._hounsfield``).

Conventions of the image metrics (``mskjax.metrics._image``):

- Inputs are real magnitude images (float32, or float64 with 64-bit JAX): ``gt`` the
  reference, ``pred`` the estimate, of the same shape. Complex images are rejected; take
  ``jnp.abs`` first.
- :func:`nmse` and :func:`psnr` accept any shape and reduce over all of it. :func:`ssim` takes a
  ``(slices, H, W)`` volume (fastMRI) or an ``(H, W)`` image and averages over slices.
- ``data_range=None`` means ``gt.max()`` over the whole input, as in ``fastmri.evaluate``.
- Every image metric returns a scalar and is pure ``jax.numpy``: it runs under ``jit`` and
  batches over examples with ``jax.vmap``.

Sharpness (``mskjax.metrics._sharpness``): :func:`high_frequency_energy` (the share of spectral
energy above a cutoff frequency), :func:`high_frequency_energy_ratio` (that of an image over
the reference's) and :func:`gradient_entropy` (lower is sharper), for real images
``(..., rows, cols)``.

Conventions of the segmentation metrics (``mskjax.metrics._segmentation``, where the surfaces,
distances and percentiles are defined):

- ``metric(pred, target, *, num_classes, spacing=None)`` on integer label maps of one shape, of
  any dimension, with labels ``0..num_classes - 1``; ``spacing`` is the voxel size in mm.
- Each returns a float64 numpy array ``(num_classes,)``, index = label, background included.
  A class in neither map gives NaN (left out by :func:`mean_over_classes`), a class in one map
  only gives Dice 0 and infinite distances.
- They run on the host (numpy and scipy), not under ``jit``; the distances are exact.

Conventions of the clinical statistics (``mskjax.metrics._clinical``, where each definition is
stated):

- ``metric(y_true, score_or_pred)`` on 1-D arrays (numpy, jax or lists) of one length, one
  entry per example, computed on the host in float64 and returned as Python floats (curves as
  float64 numpy arrays). Binary targets hold 0 and 1, ``score >= threshold`` is positive;
  labels and ratings are integers (floats are rejected, never rounded).
- :func:`roc_curve` and :func:`roc_auc` match scikit-learn (one ROC point per distinct score,
  AUC as the Mann-Whitney U with mid-ranks); :func:`cohen_kappa` and :func:`balanced_accuracy`
  match scikit-learn too.
- Undefined statistics are errors, never numbers: a single class in ``y_true`` for the AUC,
  NaN or infinite scores, empty input; :func:`bootstrap` reports a resample on which the
  metric is undefined rather than dropping it.
- :func:`froc` takes per-subject ``(scores, lesion_index)`` candidates (``-1`` = false
  positive); a second hit on a lesion is ignored, neither true nor false positive.
"""

from ._clinical import (FROC_FP_RATES, BootstrapResult, FROCResult, accuracy, balanced_accuracy,
                        bootstrap, cohen_kappa, detections_from_maps, froc, mae, rmse, roc_auc,
                        roc_curve, sensitivity_specificity, youden)
from ._hounsfield import BONE_THRESHOLD_HU, HounsfieldErrors, bone_dice, hounsfield_mae_per_tissue
from ._image import nmse, psnr, ssim, ssim_map
from ._sharpness import gradient_entropy, high_frequency_energy, high_frequency_energy_ratio
from ._segmentation import (SegmentationScores, assd, dice, hausdorff95, iou, mean_over_classes,
                            segmentation_scores, surface_distances, volume_overlap_error)

__all__ = ["nmse", "psnr", "ssim", "ssim_map", "high_frequency_energy",
           "high_frequency_energy_ratio", "gradient_entropy", "dice", "iou", "volume_overlap_error",
           "hausdorff95", "assd", "segmentation_scores", "SegmentationScores",
           "surface_distances", "mean_over_classes",
           "roc_curve", "roc_auc", "youden", "sensitivity_specificity", "cohen_kappa",
           "accuracy", "balanced_accuracy", "rmse", "mae", "froc", "FROCResult", "FROC_FP_RATES",
           "detections_from_maps", "bootstrap", "BootstrapResult",
           "hounsfield_mae_per_tissue", "HounsfieldErrors", "bone_dice", "BONE_THRESHOLD_HU"]
