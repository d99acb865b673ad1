"""A user's forward (and adjoint) functions wrapped as a linear operator.

Anything a user can write as a linear JAX function becomes a :class:`LinearOperator`, with the
algebra (``.H``, ``.N``, ``@``, ``+``, ``*``) and every solver of :mod:`mskjax.solvers`::

    blur = linop.FunctionOperator(lambda x: jnp.convolve(x, kernel, mode="same"),
                                  ishape=(n,), oshape=(n,))
    solvers.cg(blur.N + 0.1 * linop.Identity((n,)), blur.H(y))

The functions are static: two operators wrapping the same function objects share compiled
code, while arrays they close over are constants of that code (to vary them per call, write a
:class:`LinearOperator` subclass whose arrays are fields). Without ``adjoint`` the adjoint is
derived by ``jax.linear_transpose``, which needs the input and output to share a dtype (real to
complex maps must give their adjoint).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from ._base import LinearOperator, _check_shape_tuple, static_field


class FunctionOperator(LinearOperator):
    """A linear operator from functions: ``forward: ishape -> oshape``.

    Args:
        forward: a linear function of one array of shape ``ishape``.
        ishape, oshape: input and output shapes (keyword-only).
        adjoint: the adjoint function ``oshape -> ishape`` (keyword-only); default derived by
            ``jax.linear_transpose`` of ``forward``.
        normal: ``ishape -> ishape``, a fast ``adjoint(forward(x))`` (keyword-only), optional.
        hermitian: True when ``forward`` is self-adjoint (keyword-only); default unknown
            (solvers that need it probe the operator).
    """

    forward: Callable = static_field()
    adjoint: Callable | None = static_field()
    normal: Callable | None = static_field()
    self_adjoint: bool | None = static_field()

    def __init__(self, forward: Callable, *, ishape, oshape, adjoint: Callable | None = None,
                 normal: Callable | None = None, hermitian: bool | None = None):
        func = "mskjax.linop.FunctionOperator"
        for name, value in (("forward", forward), ("adjoint", adjoint), ("normal", normal)):
            if value is not None and not callable(value):
                raise TypeError(f"{func}: {name} must be callable, got {type(value).__name__}")
        if forward is None:
            raise TypeError(f"{func}: forward must be callable, got None")
        if hermitian not in (None, True, False):
            raise TypeError(f"{func}: hermitian must be None, True or False, got {hermitian!r}")
        ishape = _check_shape_tuple(ishape, func)
        oshape = _check_shape_tuple(oshape, func)
        if hermitian and ishape != oshape:
            raise ValueError(f"{func}: a self-adjoint operator needs ishape == oshape, got "
                             f"{ishape} -> {oshape}")
        self._set(forward=forward, adjoint=adjoint, normal=normal,
                  self_adjoint=False if ishape != oshape else hermitian,
                  ishape=ishape, oshape=oshape)

    def _apply(self, x):
        return _checked(self.forward(x), self.oshape, "forward")

    def _adjoint(self, y):
        if self.adjoint is None:
            return super()._adjoint(y)
        return _checked(self.adjoint(y), self.ishape, "adjoint")

    def _normal(self, x):
        if self.normal is None:
            return self._adjoint(self._apply(x))
        return _checked(self.normal(x), self.ishape, "normal")

    @property
    def hermitian(self) -> bool | None:
        return self.self_adjoint


def _checked(out, shape, which):
    if not isinstance(out, (jax.Array, jax.core.Tracer)) or out.shape != shape:
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"mskjax.linop.FunctionOperator: {which} must return an array of "
                         f"shape {shape}, got {got}")
    return out
