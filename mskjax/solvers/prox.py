"""Proximal maps: ``prox(v, step) = argmin_x g(x) + ||x - v||^2 / (2 step)``.

A proximal map is any callable ``prox(v, step)``. The ones here are :class:`Prox` objects that
also know the value ``g(x)`` (so that :func:`~mskjax.solvers.fista` and
:func:`~mskjax.solvers.primal_dual` can report the objective) and, where it has a closed form,
the proximal map of the convex conjugate ``g*`` (used by the dual step of the primal-dual
method; otherwise it follows from Moreau's identity). Complex arrays are treated as real
vector spaces of twice the size, and the l1 norm of a complex array sums magnitudes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._checks import check_interval
from ..linop import LinearOperator

__all__ = ["Prox", "soft_threshold", "l1", "l2_squared", "zero", "nonnegative", "conjugate"]


@dataclasses.dataclass(frozen=True)
class Prox:
    """A proximal map with its function value and (optionally) its conjugate's proximal map.

    Attributes:
        apply: ``(v, step) -> prox_{step g}(v)``.
        value: ``x -> g(x)`` (a real scalar), or None when unknown.
        apply_conjugate: ``(v, step) -> prox_{step g*}(v)``, or None (Moreau's identity
            ``prox_{s g*}(v) = v - s prox_{g / s}(v / s)`` is used then).
    """

    apply: Callable
    value: Callable | None = None
    apply_conjugate: Callable | None = None

    def __call__(self, v, step):
        return self.apply(v, step)


def conjugate(prox, v, step):
    """``prox_{step g*}(v)`` of the convex conjugate, in closed form or by Moreau's identity."""
    closed = getattr(prox, "apply_conjugate", None)
    if closed is not None:
        return closed(v, step)
    return v - step * prox(v / step, 1 / step)


def soft_threshold(x: jax.Array, threshold) -> jax.Array:
    """``x * max(0, 1 - threshold / |x|)`` (complex soft thresholding; 0 where ``x == 0``)."""
    magnitude = jnp.abs(x)
    scale = jnp.maximum(0, 1 - threshold / jnp.where(magnitude > 0, magnitude, 1))
    return (x * scale.astype(x.dtype)).astype(x.dtype)


def _check_lamda(lamda, func):
    if not isinstance(lamda, jax.core.Tracer):
        check_interval(lamda, "lamda", func, low=0, low_open=False)


def l1(transform: LinearOperator | None, lamda) -> Prox:
    """``g(x) = lamda ||T x||_1``; without a transform (``None``) ``lamda ||x||_1``.

    ``prox(v, step) = T^H soft(T v, step * lamda)``, exact when ``T`` is unitary (an
    orthonormal wavelet on a size it need not pad); for a transform that pads
    (:class:`~mskjax.linop.Wavelet` on sizes that are not multiples of ``2**levels``) it is the
    usual approximation, exact on the padded image. The conjugate's proximal map (without a
    transform) is the projection onto the ball ``|v_i| <= lamda``.

    Args:
        transform: a :class:`~mskjax.linop.LinearOperator` with ``T.H @ T = I``, or None.
        lamda: the weight ``>= 0`` (may be traced, e.g. learned).
    """
    func = "mskjax.solvers.prox.l1"
    if transform is not None and not isinstance(transform, LinearOperator):
        raise TypeError(f"{func}: transform must be a LinearOperator or None, got "
                        f"{type(transform).__name__}")
    _check_lamda(lamda, func)

    if transform is None:
        def apply(v, step):
            return soft_threshold(v, step * lamda)

        def value(x):
            return lamda * jnp.sum(jnp.abs(x))

        def apply_conjugate(v, step):
            real = jnp.finfo(v.dtype).dtype
            lam = jnp.asarray(lamda, real)
            safe = jnp.where(lam > 0, lam, 1)
            return (v / jnp.maximum(1, jnp.abs(v) / safe) * (lam > 0)).astype(v.dtype)

        return Prox(apply, value, apply_conjugate)

    def apply_transformed(v, step):
        return transform.H(soft_threshold(transform(v), step * lamda))

    def value_transformed(x):
        return lamda * jnp.sum(jnp.abs(transform(x)))

    return Prox(apply_transformed, value_transformed)


def l2_squared(lamda) -> Prox:
    """``g(x) = lamda / 2 ||x||^2`` (Tikhonov): ``prox(v, step) = v / (1 + step lamda)``."""
    _check_lamda(lamda, "mskjax.solvers.prox.l2_squared")

    def apply(v, step):
        return (v / (1 + step * lamda)).astype(v.dtype)

    def value(x):
        return 0.5 * lamda * jnp.real(jnp.vdot(x, x))

    def apply_conjugate(v, step):  # g*(u) = ||u||^2 / (2 lamda)
        return (v * lamda / (lamda + step)).astype(v.dtype)

    return Prox(apply, value, apply_conjugate)


def zero() -> Prox:
    """``g = 0``: the identity map (FISTA becomes Nesterov-accelerated gradient descent)."""
    return Prox(lambda v, step: v, lambda x: jnp.zeros((), jnp.finfo(x.dtype).dtype))


def nonnegative() -> Prox:
    """The indicator of ``x >= 0`` for real arrays (projection ``max(v, 0)``)."""

    def apply(v, step):
        if jnp.iscomplexobj(v):
            raise TypeError("mskjax.solvers.prox.nonnegative: needs real arrays, got "
                            f"{v.dtype}")
        return jnp.maximum(v, 0)

    def value(x):
        return jnp.where(jnp.all(x >= 0), 0.0, jnp.inf).astype(jnp.finfo(x.dtype).dtype)

    return Prox(apply, value)
