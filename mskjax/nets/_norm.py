"""Normalisation layers of the classifier backbones: batch, instance or group normalisation.

Every norm acts on ``(batch, *spatial, channels)`` float32 feature maps, per channel, with a
learned scale (initialised to 1) and offset (initialised to 0), ``eps = 1e-5`` added to the
biased variance, as PyTorch's ``BatchNorm2d``, ``InstanceNorm2d(affine=True)`` and
``GroupNorm``:

- ``"batch"`` (:class:`flax.nnx.BatchNorm`): statistics over the batch and the spatial axes.
  In training mode (``model.train()``, the default after construction) each call normalises
  with the batch's statistics and updates the running averages, ``running = 0.9 * running +
  0.1 * batch`` (PyTorch's ``momentum=0.1``); in evaluation mode (``model.eval()``) it
  normalises with the running averages and updates nothing. One difference from PyTorch:
  flax folds the biased batch variance into the running variance, PyTorch the unbiased one
  (larger by ``n / (n - 1)``, ``n`` the values per channel in the batch; a relative 1e-4 for
  a batch of 8 maps of 32 x 32). The paper layouts use it, and it is the norm to load
  published weights into; but the prediction for one image depends on the rest of the batch
  in training mode, the running averages must come from batches like the ones evaluated, and
  a batch of one example with a 1 x 1 map has no spread to normalise by.
- ``"instance"``: statistics per example and channel over the spatial axes; no running state,
  the same in training and evaluation, any batch size (one slice at a time in a pipeline),
  but the mean intensity of each map is removed (contrast between images is partly lost).
- ``"group"`` (Wu and He 2018): statistics per example over the spatial axes and a group of
  channels: the largest divisor of ``channels`` not above 32 groups (32 groups of ``C / 32``
  channels for the paper widths; 16 groups of one channel for 16 channels). Like instance
  norm independent of the batch; in Wu and He's ImageNet experiments close to batch norm at
  large batches and better at small ones.
"""

from __future__ import annotations

from flax import nnx

#: The normalisations a backbone offers.
NORMS = ("batch", "instance", "group")

#: The most groups of ``"group"`` normalisation.
MAX_GROUPS = 32

#: Flax's momentum (the weight of the old running average): PyTorch's 0.1.
BATCH_MOMENTUM = 0.9

EPS = 1e-5


def check_norm(norm, func: str) -> str:
    """``norm`` if it is one of :data:`NORMS`; ValueError naming ``func`` otherwise."""
    if norm not in NORMS:
        raise ValueError(f"{func}: norm must be one of {NORMS}, got {norm!r}")
    return norm


def num_groups(channels: int) -> int:
    """Groups of ``"group"`` normalisation for ``channels``: the largest divisor of
    ``channels`` not above :data:`MAX_GROUPS`."""
    return max(g for g in range(1, min(MAX_GROUPS, channels) + 1) if channels % g == 0)


class CheckedGroupNorm(nnx.GroupNorm):
    """``nnx.GroupNorm`` that refuses a map where a group holds a single value (one channel per
    group on a 1 x ... x 1 map: instance norm of the last feature map of a too-small input),
    which it would normalise to zeros, silently killing the features and every gradient."""

    def __call__(self, x, *args, **kwargs):
        spatial = 1
        for n in x.shape[1:-1]:
            spatial *= n
        if spatial * (x.shape[-1] // self.num_groups) < 2:
            raise ValueError(
                f"mskjax.nets: group/instance normalisation of a {tuple(x.shape[1:-1])} map "
                f"with {x.shape[-1] // self.num_groups} channel per group normalises single "
                "values to 0; give a larger input or use norm='batch'")
        return super().__call__(x, *args, **kwargs)


def make_norm(norm: str, channels: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """A normalisation layer for ``channels`` channels (see the module docstring).

    Args:
        norm: ``"batch"``, ``"instance"`` or ``"group"``.
        channels: the channels (last axis) of the maps it normalises.
        rngs: ``nnx.Rngs``, which flax's norms take (they draw nothing).

    Returns:
        ``nnx.BatchNorm`` (params ``scale``, ``bias``; running averages ``mean``, ``var`` as
        ``nnx.BatchStat``) or ``nnx.GroupNorm`` (``scale``, ``bias``; instance norm is group
        norm with one channel per group).
    """
    if norm == "batch":
        return nnx.BatchNorm(channels, momentum=BATCH_MOMENTUM, epsilon=EPS,
                             use_fast_variance=False, rngs=rngs)
    groups = channels if norm == "instance" else num_groups(channels)
    return CheckedGroupNorm(channels, num_groups=groups, epsilon=EPS, use_fast_variance=False,
                            rngs=rngs)
