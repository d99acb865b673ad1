"""Ready-made stages: undersampling, zero-filled reconstruction, and wrappers for functions."""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.typing import ArrayLike

from ..linop import apply_mask, check_mask
from ..recon import zero_filled as _zero_filled
from ._sample import SAMPLE_FIELDS
from ._stage import Stage, stateless


def _require(sample, field, func):
    value = getattr(sample, field)
    if value is None:
        raise ValueError(f"{func}: the sample has no {field}; an earlier stage or the input "
                         f"sample must set it")
    return value


def identity() -> Stage:
    """A stage that returns the sample unchanged."""
    return stateless(lambda sample, **extra: sample)


def undersample(
    mask: ArrayLike | Callable[[jax.Array, tuple[int, ...]], ArrayLike] | None = None,
) -> Stage:
    """Apply a sampling mask to ``sample.kspace`` and record it in ``sample.mask``.

    Args:
        mask: a boolean (or real-weight) array broadcasting to the k-space; or a function
            ``mask(key, kspace_shape) -> mask`` drawn afresh on every call from the ``key``
            passed to ``apply`` (e.g. ``functools.partial(sampling.variable_density, ...)``);
            or None to apply the mask the sample already carries.
    """
    func = "mskjax.pipeline.undersample"

    def fn(sample, *, key=None, **extra):
        kspace = _require(sample, "kspace", func)
        if mask is None:
            m = _require(sample, "mask", func)
        elif callable(mask):
            if key is None:
                raise ValueError(f"{func}: a mask function needs a key: call apply(..., key=key)")
            m = mask(key, kspace.shape)
        else:
            m = mask
        m = check_mask(m, kspace.shape, func)
        return sample.replace(kspace=apply_mask(m, kspace), mask=m)

    return stateless(fn)


def zero_filled() -> Stage:
    """Zero-filled reconstruction of ``sample.kspace`` into ``sample.image``.

    Uses ``sample.maps`` (SENSE adjoint, complex image) when present, else root-sum-of-squares.
    Cartesian k-space only: a sample with ``coords`` is refused (use :func:`gridding`).
    """
    func = "mskjax.pipeline.zero_filled"

    def fn(sample, **extra):
        kspace = _require(sample, "kspace", func)
        if sample.coords is not None:
            raise ValueError(f"{func}: the sample has coords (non-Cartesian k-space); the "
                             "zero-filled inverse FFT is for Cartesian k-space: use "
                             "pipeline.gridding()")
        return sample.replace(image=_zero_filled(kspace, maps=sample.maps))

    return stateless(fn)


def map_field(fn: Callable[[Any], Any], *, source: str, target: str | None = None) -> Stage:
    """A stateless stage computing ``sample.<target> = fn(sample.<source>)``.

    Args:
        fn: a pure function of one array (or pytree).
        source: the field read (keyword-only).
        target: the field written; default ``source``.
    """
    func = "mskjax.pipeline.map_field"
    target = source if target is None else target
    for name in (source, target):
        if name not in SAMPLE_FIELDS:
            raise ValueError(f"{func}: {name!r} is not a Sample field; fields are "
                             f"{list(SAMPLE_FIELDS)}")
    if not callable(fn):
        raise TypeError(f"{func}: fn must be callable, got {type(fn).__name__}")

    def apply(sample, **extra):
        return sample.replace(**{target: fn(_require(sample, source, func))})

    return stateless(apply)
