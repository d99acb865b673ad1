"""Training losses for reconstruction nets: SSIM (fastMRI's), L1, L2, NMSE; for segmentation
nets: soft Dice, cross-entropy and their sum.

Conventions:

- Real inputs (float32, or float64 with 64-bit JAX): ``gt`` the reference, ``pred`` the
  estimate, of the same shape; complex images are rejected (take ``jnp.abs`` or split real
  and imaginary parts into channels first). ``gt`` and ``pred`` are the first two arguments of
  every loss, options are keyword-only.
- Every loss returns a scalar, reduced as its docstring says: :func:`l1_loss` and
  :func:`l2_loss` average over every element, :func:`nmse_loss` over the examples of the
  leading batch axis, :func:`ssim_loss` over the windows of every image.
- Segmentation losses (:func:`soft_dice_loss`, :func:`cross_entropy_loss`,
  :func:`dice_ce_loss`) keep the order: integer ``labels`` ``(batch, *spatial)`` (the
  reference) first, channels-last ``logits`` ``(batch, *spatial, num_classes)`` second, and
  reduce over the batch and every voxel.
- Classification losses (:func:`binary_cross_entropy`, :func:`softmax_cross_entropy`,
  :func:`ordinal_loss`, :func:`regression_loss`, and :func:`classification_loss` choosing by
  the head's task) take ``(batch,)`` labels first and a classifier head's outputs second.
- Pure ``jax.numpy``: differentiable, jittable, no flax or optax needed.
"""

from ._adversarial import cycle_consistency_loss, lsgan_discriminator_loss, lsgan_generator_loss
from ._classification import (binary_cross_entropy, classification_loss, ordinal_loss,
                              regression_loss, softmax_cross_entropy)
from ._distance import l1_loss, l2_loss, nmse_loss
from ._segmentation import cross_entropy_loss, dice_ce_loss, soft_dice_loss
from ._ssim import ssim_loss

__all__ = ["ssim_loss", "l1_loss", "l2_loss", "nmse_loss", "lsgan_generator_loss",
           "lsgan_discriminator_loss", "cycle_consistency_loss", "soft_dice_loss",
           "cross_entropy_loss", "dice_ce_loss", "binary_cross_entropy", "softmax_cross_entropy",
           "ordinal_loss", "regression_loss", "classification_loss"]
