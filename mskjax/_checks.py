"""Input validation shared by the public functions.

Every error names the public function, what it expected and what it got, e.g.
``mskjax.linop.Sense: maps must be (coils, *spatial), got shape (8,)``. Shape and dtype checks
are static (they run at build or trace time); value checks such as finiteness only run on
concrete arrays, never on tracers, so they never force a device sync inside ``jit``.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def as_array(x, name: str, func: str):
    """Return ``x`` as an array (numpy or jax, unchanged if already one); TypeError otherwise."""
    if isinstance(x, (jax.Array, np.ndarray, jax.core.Tracer)):
        return x
    if isinstance(x, (list, tuple, numbers.Number)):
        try:
            return np.asarray(x)
        except ValueError as err:  # a ragged nested list
            raise TypeError(f"{func}: {name} must be an array (a nested list of one shape), "
                            f"got a {type(x).__name__} that numpy cannot stack ({err})") from None
    raise TypeError(f"{func}: {name} must be an array, got {type(x).__name__}")


def check_ndim(x, name: str, func: str, *, ndim=None, min_ndim=None, max_ndim=None, layout=""):
    """Raise ValueError unless ``x.ndim`` is ``ndim`` (an int or a tuple of allowed ints)."""
    shape = tuple(np.shape(x))
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    bad = (
        (allowed is not None and len(shape) not in allowed)
        or (min_ndim is not None and len(shape) < min_ndim)
        or (max_ndim is not None and len(shape) > max_ndim)
    )
    if bad:
        what = layout or (
            f"{'/'.join(map(str, allowed))}-dimensional" if allowed is not None
            else f"at least {min_ndim}-dimensional" if max_ndim is None
            else f"{min_ndim}- to {max_ndim}-dimensional"
        )
        raise ValueError(f"{func}: {name} must be {what}, got shape {shape}")


def check_complex(x, name: str, func: str):
    """Raise TypeError unless ``x`` has a complex dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{func}: {name} must be complex (complex64 or complex128), got {dtype}; "
            "convert real data explicitly, e.g. x.astype(jnp.complex64)"
        )


def check_inexact(x, name: str, func: str):
    """Raise TypeError unless ``x`` is floating point or complex."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{func}: {name} must be floating point or complex, got {dtype}")


def check_finite(x, name: str, func: str):
    """Raise ValueError if a concrete ``x`` holds NaN or infinity (skipped for tracers)."""
    if _is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
        raise ValueError(f"{func}: {name} must be finite, got {bad} NaN or infinite values")


def check_shape(x, expected, name: str, func: str, *, layout=""):
    """Raise ValueError unless ``x.shape == expected``."""
    shape = tuple(np.shape(x))
    if shape != tuple(expected):
        what = f" {layout}" if layout else ""
        raise ValueError(f"{func}: {name} must have shape {tuple(expected)}{what}, got {shape}")


def _scalar(value, kind):
    """A Python number for a real (``kind`` "real") or integer (``kind`` "int") scalar given as
    a number or a concrete 0-d numpy/JAX array; ``None`` for anything else (tracers included)."""
    if isinstance(value, bool) or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        if np.ndim(value) != 0:
            return None
        dtype = np.dtype(value.dtype)
        if kind == "int":
            return int(value) if np.issubdtype(dtype, np.integer) else None
        if np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
            return float(value)
        return None
    if kind == "int":
        return value if isinstance(value, numbers.Integral) else None
    return value if isinstance(value, numbers.Real) else None


def _static_error(value, name: str, func: str, what: str):
    """ValueError for a traced ``value`` of an argument that must be known when jit traces."""
    return ValueError(f"{func}: {name} must be static under jit ({what}: a Python number or a "
                      f"concrete array, not a traced value), got {value!r}")


def check_interval(value, name: str, func: str, *, low=None, high=None, low_open=True,
                   high_open=True):
    """Raise ValueError unless ``value`` is a finite real number inside the interval.

    A concrete 0-d numpy or JAX array (``jnp.asarray(0.01)``) counts as the number it holds; a
    traced value is refused with a message saying the argument must be static under jit (callers
    for which a traced value is valid skip this check for tracers)."""
    if isinstance(value, jax.core.Tracer):
        raise _static_error(value, name, func, "a finite real number")
    number = _scalar(value, "real")
    if number is None or not np.isfinite(number):
        raise ValueError(f"{func}: {name} must be a finite real number, got {value!r}")
    lo_bad = low is not None and (number <= low if low_open else number < low)
    hi_bad = high is not None and (number >= high if high_open else number > high)
    if lo_bad or hi_bad:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{func}: {name} must be in {lb}{lo}, {hi}{hb}, got {value!r}")


def check_spacing(spacing, ndim: int, func: str, *, what: str = "array",
                  optional: bool = True) -> tuple[float, ...]:
    """``spacing`` (mm per voxel) as ``ndim`` floats: one number for every axis or one per
    axis, finite and positive; ``None`` means 1 mm when ``optional``. ``what`` names the array
    in the message (``"label map"``, ``"mask"``, ``"image"``)."""
    if spacing is None and optional:
        return (1.0,) * ndim
    if any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(spacing)):
        raise ValueError(f"{func}: spacing must be static under jit (numbers or a concrete "
                         f"array, not a traced value), got {spacing!r}")
    values = None
    if not isinstance(spacing, (bool, str, bytes)):
        try:
            values = np.asarray(spacing, dtype=np.float64)
        except (TypeError, ValueError):
            values = None
    if values is None:
        allowed = "None, a number" if optional else "a number"
        raise TypeError(f"{func}: spacing must be {allowed} or a sequence of {ndim} numbers "
                        f"(mm), got {spacing!r}")
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    elif values.shape != (ndim,):
        raise ValueError(f"{func}: spacing must have one value per axis ({ndim} for a "
                         f"{ndim}-D {what}), got {spacing!r}")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"{func}: spacing must be finite and positive (mm), got {spacing!r}")
    return tuple(float(v) for v in values)


def check_positive_int(value, name: str, func: str, *, minimum: int = 1):
    """Raise ValueError unless ``value`` is an integer >= ``minimum`` (a Python or numpy int, or
    a concrete 0-d integer array; a traced value is refused: the argument must be static)."""
    if isinstance(value, jax.core.Tracer):
        raise _static_error(value, name, func, f"an integer >= {minimum}")
    number = _scalar(value, "int")
    if number is None or number < minimum:
        raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")


def normalize_axes(axes, ndim: int, name: str, func: str) -> tuple[int, ...]:
    """Return ``axes`` as a tuple of distinct non-negative ints, validated against ``ndim``."""
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(axes)):
        raise _static_error(axes, name, func, "an int or a sequence of ints")
    if isinstance(axes, numbers.Integral) or _scalar(axes, "int") is not None:
        axes = (axes,)
    if isinstance(axes, (str, bytes)) or not all(
            _scalar(a, "int") is not None
            for a in (axes if hasattr(axes, "__iter__") else [None])):
        raise TypeError(f"{func}: {name} must be an int or a sequence of ints, got {axes!r}")
    out = tuple(_scalar(a, "int") for a in axes)
    for a in out:
        if not -ndim <= a < ndim:
            raise ValueError(f"{func}: {name} {axes!r} out of range for an array of rank {ndim}")
    out = tuple(a % ndim for a in out)
    if len(set(out)) != len(out):
        raise ValueError(f"{func}: {name} must be distinct, got {axes!r}")
    return out
