"""Finite differences with periodic boundaries, the gradient of total variation.

``FiniteDifference(shape, axes=...)(x)[i] = x - roll(x, 1, axis=axes[i])``: a backward
difference with circular boundary, stacked on a new leading axis of length ``len(axes)``.
This is the convention of ``sigpy.linop.FiniteDifference``; the adjoint is
``sum_i (y_i - roll(y_i, -1, axis=axes[i]))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from .._checks import normalize_axes
from ._base import LinearOperator, _check_shape_tuple, static_field


class FiniteDifference(LinearOperator):
    """Periodic finite differences: ``(*shape) -> (len(axes), *shape)``.

    Args:
        shape: the image shape.
        axes: axes to difference along (keyword-only); default all axes.
    """

    axes: tuple = static_field()

    def __init__(self, shape: Sequence[int], *, axes: int | Sequence[int] | None = None):
        func = "mskjax.linop.FiniteDifference"
        shape = _check_shape_tuple(shape, func)
        axes = tuple(range(len(shape))) if axes is None else axes
        axes = normalize_axes(axes, len(shape), "axes", func)
        self._set(axes=axes, ishape=shape, oshape=(len(axes), *shape))

    def _apply(self, x):
        return jnp.stack([x - jnp.roll(x, 1, axis=a) for a in self.axes])

    def _adjoint(self, y):
        out = y[0] - jnp.roll(y[0], -1, axis=self.axes[0])
        for i, a in enumerate(self.axes[1:], start=1):
            out = out + (y[i] - jnp.roll(y[i], -1, axis=a))
        return out
