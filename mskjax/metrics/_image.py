"""Image-quality metrics with the definitions of the fastMRI evaluation (``fastmri.evaluate``)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_finite, check_interval, check_ndim

#: SSIM parameters of fastMRI (scikit-image defaults): 7x7 uniform window, sample covariance.
WIN_SIZE = 7
K1 = 0.01
K2 = 0.03


def _check_real(x, name, func):
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{func}: {name} must be a real (magnitude) image, got {dtype}; take jnp.abs of "
            "complex images first"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{func}: {name} must be floating point, got {dtype}; convert it explicitly, e.g. "
            "x.astype(jnp.float32)"
        )


def _pair(gt, pred, func):
    gt = as_array(gt, "gt", func)
    pred = as_array(pred, "pred", func)
    _check_real(gt, "gt", func)
    _check_real(pred, "pred", func)
    if tuple(gt.shape) != tuple(pred.shape):
        raise ValueError(
            f"{func}: gt and pred must have the same shape, got {tuple(gt.shape)} and "
            f"{tuple(pred.shape)}"
        )
    if gt.size == 0:
        raise ValueError(f"{func}: gt and pred must not be empty, got shape {tuple(gt.shape)}")
    check_finite(gt, "gt", func)
    check_finite(pred, "pred", func)
    dtype = jnp.result_type(gt, pred)
    return jnp.asarray(gt, dtype), jnp.asarray(pred, dtype)


def _data_range(data_range, gt, func):
    """``None`` (meaning ``gt.max()``, as fastMRI) or a validated positive scalar."""
    if data_range is None:
        return None
    if isinstance(data_range, numbers.Real):
        check_interval(data_range, "data_range", func, low=0)
        return jnp.asarray(data_range, gt.dtype)
    data_range = as_array(data_range, "data_range", func)
    if not jnp.issubdtype(jnp.result_type(data_range), jnp.floating):
        raise TypeError(f"{func}: data_range must be a real floating-point scalar, got "
                        f"{jnp.result_type(data_range)}")
    if np.shape(data_range) != ():
        raise ValueError(f"{func}: data_range must be a scalar, got shape "
                         f"{tuple(np.shape(data_range))}")
    if _is_concrete(data_range):
        value = float(np.asarray(data_range))
        check_interval(value, "data_range", func, low=0)
    return jnp.asarray(data_range, gt.dtype)


def _check_zero_peak(gt, data_range, func, *, all_zero=False):
    """Refuse a concrete ``gt`` whose maximum, the default ``data_range``, is 0 (with
    ``all_zero``: only a ``gt`` that is all zeros)."""
    if data_range is None and _is_concrete(gt) and (
            not np.any(np.asarray(gt)) if all_zero else float(np.max(np.asarray(gt))) == 0):
        raise ValueError(f"{func}: gt.max() is 0 (an all-zero or non-positive reference), so "
                         "the default data_range (gt.max(), as in fastMRI) is 0 and the metric "
                         "is undefined; pass data_range explicitly")


def nmse(gt: ArrayLike, pred: ArrayLike) -> jax.Array:
    """Normalised mean squared error ``||gt - pred||^2 / ||gt||^2`` (``fastmri.evaluate.nmse``).

    Args:
        gt: reference image or volume, any shape, real floating point.
        pred: estimate, same shape.

    Returns:
        Scalar of the inputs' dtype (0 for a perfect estimate).

    Raises:
        ValueError: (besides bad shapes and non-finite values) an all-zero ``gt``, for which
            the ratio is undefined; the check runs on concrete arrays only, and under ``jit``
            such a ``gt`` gives NaN or infinity (fastMRI's arithmetic), never a finite value.
    """
    func = "mskjax.metrics.nmse"
    gt, pred = _pair(gt, pred, func)
    if _is_concrete(gt) and not np.any(np.asarray(gt) != 0):
        raise ValueError(f"{func}: gt is all zeros, so ||gt - pred||^2 / ||gt||^2 is undefined "
                         "(fastMRI would return NaN or infinity)")
    return _nmse(gt, pred)


@jax.jit
def _nmse(gt, pred):
    return jnp.sum((gt - pred) ** 2) / jnp.sum(gt ** 2)


def psnr(gt: ArrayLike, pred: ArrayLike, *, data_range: ArrayLike | None = None) -> jax.Array:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / mean((gt - pred)^2))``.

    Matches ``fastmri.evaluate.psnr`` (scikit-image's ``peak_signal_noise_ratio``).

    Args:
        gt: reference image or volume, any shape, real floating point.
        pred: estimate, same shape.
        data_range: the peak value (keyword-only); ``None`` (default) uses ``gt.max()`` over
            the whole array, as fastMRI does.

    Returns:
        Scalar of the inputs' dtype (infinite for a perfect estimate).

    Raises:
        ValueError: (besides bad shapes, values and ``data_range``) ``data_range=None`` with
            ``gt.max() == 0`` (e.g. an all-zero reference): the peak is 0 and the ratio
            undefined. The check runs on concrete arrays; under ``jit`` the result is then
            ``-inf`` or NaN (fastMRI's arithmetic), never a finite value.
    """
    func = "mskjax.metrics.psnr"
    gt, pred = _pair(gt, pred, func)
    _check_zero_peak(gt, data_range, func)
    return _psnr(gt, pred, _data_range(data_range, gt, func))


@jax.jit
def _psnr(gt, pred, peak):
    peak = jnp.max(gt) if peak is None else peak
    return 10 * jnp.log10(peak ** 2 / jnp.mean((gt - pred) ** 2))


def _uniform_filter(x, size):
    """Mean over a ``size x size`` window of the last two axes, ``scipy.ndimage`` ``reflect``
    boundary (the edge sample is repeated: ``d c b a | a b c d | d c b a``)."""
    half = size // 2
    for axis in (x.ndim - 2, x.ndim - 1):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (half, half)
        window = [1] * x.ndim
        window[axis] = size
        padded = jnp.pad(x, widths, mode="symmetric")
        x = jax.lax.reduce_window(padded, jnp.zeros((), x.dtype), jax.lax.add, tuple(window),
                                  (1,) * x.ndim, "VALID") / size
    return x


def _checked_ssim_map(gt, pred, data_range, func):
    gt, pred = _pair(gt, pred, func)
    _check_zero_peak(gt, data_range, func, all_zero=True)
    check_ndim(gt, "gt", func, ndim=(2, 3), layout="(H, W) or (slices, H, W)")
    if min(gt.shape[-2:]) < WIN_SIZE:
        raise ValueError(
            f"{func}: each slice must be at least {WIN_SIZE}x{WIN_SIZE} (the SSIM window), got "
            f"shape {tuple(gt.shape)}"
        )
    return _ssim_map(gt, pred, _data_range(data_range, gt, func))


@jax.jit
def _ssim_map(gt, pred, peak):
    peak = jnp.max(gt) if peak is None else peak
    # The (co)variances are invariant to a constant shift; removing the mean first limits the
    # cancellation in E[x^2] - E[x]^2 for images with a large offset.
    offset = jnp.mean(gt)
    x, y = gt - offset, pred - offset
    ux, uy, uxx, uyy, uxy = _uniform_filter(jnp.stack([x, y, x * x, y * y, x * y]), WIN_SIZE)
    count = WIN_SIZE ** 2
    cov_norm = count / (count - 1)  # sample covariance
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    mx, my = ux + offset, uy + offset
    c1 = (K1 * peak) ** 2
    c2 = (K2 * peak) ** 2
    local = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    # A zero peak with an all-zero gt leaves SSIM undefined: NaN, not 0.
    undefined = (peak == 0) & jnp.all(gt == 0)
    return jnp.where(undefined, jnp.asarray(jnp.nan, local.dtype), local)


def ssim_map(gt: ArrayLike, pred: ArrayLike, *,
             data_range: ArrayLike | None = None) -> jax.Array:
    """The local SSIM of every pixel (scikit-image ``structural_similarity(..., full=True)``).

    Per slice: 7x7 uniform window with ``scipy.ndimage`` ``reflect`` boundaries, ``K1 = 0.01``,
    ``K2 = 0.03``, sample covariance. The border of 3 pixels, where the window leaves the
    image, is included here and excluded by :func:`ssim`.

    Args:
        gt: reference ``(H, W)`` image or ``(slices, H, W)`` volume, real, ``H, W >= 7``.
        pred: estimate, same shape.
        data_range: the peak value (keyword-only); ``None`` uses ``gt.max()`` over the whole
            array (one value for all slices), as fastMRI does.

    Returns:
        Array of the input shape.

    Raises:
        ValueError: (besides bad shapes, values and ``data_range``) ``data_range=None`` with
            an all-zero ``gt``: the constants ``(K data_range)^2`` vanish and SSIM is 0/0. The check runs on concrete arrays; under ``jit`` the result
            is then NaN (where fastMRI's arithmetic would give NaN or a meaningless 0).
    """
    return _checked_ssim_map(gt, pred, data_range, "mskjax.metrics.ssim_map")


def ssim(gt: ArrayLike, pred: ArrayLike, *, data_range: ArrayLike | None = None) -> jax.Array:
    """Structural similarity as in ``fastmri.evaluate.ssim``: the mean over slices of
    scikit-image's ``structural_similarity`` with ``data_range=gt.max()`` of the whole volume.

    Per slice: 7x7 uniform window with ``scipy.ndimage`` ``reflect`` boundaries, ``K1 = 0.01``,
    ``K2 = 0.03``, sample covariance (``N / (N - 1)``), and the mean of the local SSIM over the
    slice without its 3-pixel border. All slices have the same size, so this is the mean of
    ``ssim_map(...)[:, 3:-3, 3:-3]``.

    Args:
        gt: reference ``(slices, H, W)`` volume or ``(H, W)`` image (one slice), real floating
            point, ``H, W >= 7``.
        pred: estimate, same shape.
        data_range: the peak value (keyword-only); ``None`` uses ``gt.max()`` over the whole
            array, as fastMRI does.

    Returns:
        Scalar of the inputs' dtype (1 for a perfect estimate).

    Raises:
        ValueError: (besides bad shapes, values and ``data_range``) ``data_range=None`` with
            an all-zero ``gt``: the constants ``(K data_range)^2`` vanish and SSIM is 0/0. The check runs on concrete arrays; under ``jit`` the result
            is then NaN (where fastMRI's arithmetic would give NaN or a meaningless 0).
    """
    return _crop_mean(_checked_ssim_map(gt, pred, data_range, "mskjax.metrics.ssim"))


@jax.jit
def _crop_mean(local):
    pad = (WIN_SIZE - 1) // 2
    return jnp.mean(local[..., pad:-pad, pad:-pad])
