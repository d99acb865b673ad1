"""SSIM loss with the definition of fastMRI's training loss (``fastmri.losses.SSIMLoss``)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_interval, check_ndim
from ._inputs import real_pair

#: fastMRI's SSIMLoss defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03.
WIN_SIZE = 7
K1 = 0.01
K2 = 0.03


def _window_mean(x):
    """Mean over every ``7 x 7`` window inside the last two axes (no padding):
    ``(..., H, W) -> (..., H - 6, W - 6)``."""
    window = (1,) * (x.ndim - 2) + (WIN_SIZE, WIN_SIZE)
    total = jax.lax.reduce_window(x, np.array(0, x.dtype), jax.lax.add, window,
                                  (1,) * x.ndim, "VALID")
    return total / WIN_SIZE ** 2


@jax.jit
def _ssim_loss(gt, pred, peak):
    """``1 - mean SSIM`` of ``(batch, H, W)`` images with one peak value per example."""
    # The (co)variances do not change when both images are shifted by one constant; removing
    # the mean of each reference first limits the cancellation in E[x^2] - E[x]^2. The shift
    # is a constant for differentiation (the value does not depend on it).
    offset = jax.lax.stop_gradient(jnp.mean(gt, axis=(-2, -1), keepdims=True))
    x, y = gt - offset, pred - offset
    ux, uy, uxx, uyy, uxy = _window_mean(jnp.stack([x, y, x * x, y * y, x * y]))
    count = WIN_SIZE ** 2
    cov_norm = count / (count - 1)  # unbiased (sample) covariance
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    mx, my = ux + offset, uy + offset
    peak = peak[:, None, None]
    c1 = (K1 * peak) ** 2
    c2 = (K2 * peak) ** 2
    local = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return 1 - jnp.mean(local)


def _peak(data_range, batch, dtype, batched, func):
    """``data_range`` as a ``(batch,)`` array: a positive scalar or one value per example."""
    if isinstance(data_range, numbers.Real) and not isinstance(data_range, bool):
        check_interval(float(data_range), "data_range", func, low=0)
        return jnp.full((batch,), data_range, dtype)
    data_range = as_array(data_range, "data_range", func)
    if not jnp.issubdtype(jnp.result_type(data_range), jnp.floating):
        raise TypeError(f"{func}: data_range must be real floating point, got "
                        f"{jnp.result_type(data_range)}")
    shape = tuple(np.shape(data_range))
    allowed = [(), (batch,)] if batched else [()]
    if shape not in allowed:
        what = "a scalar or one value per example, shape " + str((batch,)) if batched \
            else "a scalar for one (H, W) image"
        raise ValueError(f"{func}: data_range must be {what}, got shape {shape}")
    if _is_concrete(data_range) and not bool(np.all(np.asarray(data_range) > 0)):
        raise ValueError(f"{func}: data_range must be positive, got {np.asarray(data_range)}")
    return jnp.broadcast_to(jnp.asarray(data_range, dtype), (batch,))


def ssim_loss(gt: ArrayLike, pred: ArrayLike, *, data_range: ArrayLike) -> jax.Array:
    """``1 - SSIM``, the SSIM of ``fastmri.losses.SSIMLoss`` used to train fastMRI's nets.

    Per image: means, variances and covariance over every ``7 x 7`` window that lies inside
    the image (no padding: the local SSIM map is ``(H - 6, W - 6)``), uniform weights,
    unbiased covariance (``49 / 48``), ``C1 = (0.01 data_range)^2``,
    ``C2 = (0.03 data_range)^2``. The loss is one minus the mean of the local SSIM over all
    windows of all images. This differs from :func:`mskjax.metrics.ssim` (scikit-image's
    reflected borders, one ``data_range`` for a volume); it is the training loss. SSIM is
    symmetric in its two images, so the order of ``gt`` and ``pred`` does not matter.

    Args:
        gt: reference images ``(batch, H, W)`` or one image ``(H, W)``, real, ``H, W >= 7``.
        pred: estimates, same shape.
        data_range: the peak value (keyword-only), positive: a scalar, or one per example
            ``(batch,)`` (fastMRI passes each volume's maximum).

    Returns:
        Scalar of the inputs' dtype: 0 when ``pred == gt``; differentiable in both images.
    """
    func = "mskjax.losses.ssim_loss"
    gt, pred = real_pair(gt, pred, func)
    check_ndim(gt, "gt", func, ndim=(2, 3), layout="(batch, H, W) or (H, W)")
    if min(gt.shape[-2:]) < WIN_SIZE:
        raise ValueError(f"{func}: images must be at least {WIN_SIZE}x{WIN_SIZE} (the SSIM "
                         f"window), got shape {tuple(gt.shape)}")
    batched = gt.ndim == 3
    if not batched:
        gt, pred = gt[None], pred[None]
    peak = _peak(data_range, gt.shape[0], gt.dtype, batched, func)
    return _ssim_loss(gt, pred, peak)
