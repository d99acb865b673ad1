"""Validation of the (gt, pred) pair shared by every loss."""

from __future__ import annotations

import jax.numpy as jnp

from .._checks import as_array


def _check_real(x, name, func):
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{func}: {name} must be real, got {dtype}; take jnp.abs of complex images or put "
            "their real and imaginary parts in channels first"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{func}: {name} must be floating point, got {dtype}; convert it explicitly, e.g. "
            "x.astype(jnp.float32)"
        )


def real_pair(gt, pred, func: str):
    """``gt`` and ``pred`` as arrays of one real floating dtype and the same, non-empty shape."""
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
    dtype = jnp.result_type(gt, pred)
    return jnp.asarray(gt, dtype), jnp.asarray(pred, dtype)
