"""Validation shared by the mask functions, and the calibration-box convention."""

from __future__ import annotations

import math
import numbers

import jax

from .._checks import _scalar, _static_error


def check_shape(shape, func: str, *, ndim: int | None = None) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of positive ints (of rank ``ndim`` if given, else >= 1)."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise TypeError(f"{func}: shape must be a tuple of ints, got {shape!r}")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{func}: shape must be a tuple of ints, got {tuple(shape)!r}")
    out = tuple(int(s) for s in shape)
    if ndim is not None and len(out) != ndim:
        raise ValueError(f"{func}: shape must have {ndim} axes, got {out}")
    if len(out) < 1:
        raise ValueError(f"{func}: shape must have at least one axis, got {out}")
    if any(s < 1 for s in out):
        raise ValueError(f"{func}: shape must have positive sizes, got {out}")
    return out


def check_calib(calib, shape: tuple[int, ...], func: str, *, strictly_inside: bool):
    """Return ``calib`` (an int for every axis, or one int per axis) as a tuple of ints.

    Each size must be in ``[0, n]`` (``[0, n)`` with ``strictly_inside``) for the axis size n.
    """
    if isinstance(calib, numbers.Integral) and not isinstance(calib, bool):
        calib = (calib,) * len(shape)
    if isinstance(calib, (str, bytes)) or not hasattr(calib, "__len__") or not all(
        isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in calib
    ):
        raise TypeError(f"{func}: calib must be an int or a tuple of ints, got {calib!r}")
    out = tuple(int(c) for c in calib)
    if len(out) != len(shape):
        raise ValueError(
            f"{func}: calib must have one size per axis of shape {shape}, got {out}"
        )
    too_big = (lambda c, n: c >= n) if strictly_inside else (lambda c, n: c > n)
    if any(c < 0 or too_big(c, n) for c, n in zip(out, shape)):
        bound = "smaller than" if strictly_inside else "at most"
        raise ValueError(
            f"{func}: calib sizes must be non-negative and {bound} shape {shape}, got {out}"
        )
    return out


def calibration_slices(shape: tuple[int, ...], calib: tuple[int, ...]) -> tuple[slice, ...]:
    """The calibration box: ``c`` indices per axis starting at ``n // 2 - c // 2``.

    The box holds the k-space centre ``n // 2`` (the DC sample of the centred FFT); it is
    symmetric about it for odd ``c`` and has one more index below it for even ``c``.
    """
    return tuple(slice(n // 2 - c // 2, n // 2 - c // 2 + c) for n, c in zip(shape, calib))


def sample_budget(shape: tuple[int, ...], acceleration: float) -> int:
    """``round(prod(shape) / acceleration)``, the number of samples an acceleration allows."""
    return int(round(math.prod(shape) / acceleration))


def check_seed_int(seed, func: str) -> int | None:
    """Return ``seed`` (an int, also given as a concrete 0-d integer array) if it is None or in
    ``[0, 2**32)``; ValueError otherwise, saying so when the seed is traced under jit."""
    if seed is None:
        return None
    value = seed_value(seed, func)
    if value is None or not 0 <= value < 2**32:
        raise ValueError(f"{func}: seed must be None or an int in [0, 2**32), got {seed!r}")
    return value


def seed_value(seed, func: str) -> int | None:
    """``seed`` as a Python int (a number or a concrete 0-d integer array), ``None`` when it is
    not an integer; ValueError for a traced seed (the masks are drawn on the host)."""
    if isinstance(seed, jax.core.Tracer):
        raise _static_error(seed, "seed", func, "an int in [0, 2**32)")
    return _scalar(seed, "int")
