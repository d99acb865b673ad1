"""Checks of what the solvers are given: operators, right-hand sides and proximal maps.

Shapes and signatures are checked at trace time. Whether an operator of unknown structure is
linear and self-adjoint is probed on random vectors when that is cheap: the right-hand side is
concrete (not traced) and holds at most ``PROBE_MAX_SIZE`` numbers. Under ``jit`` the probe
cannot run and the caller is responsible (as documented by each solver).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ..linop import LinearOperator
from . import _tree

#: Largest right-hand side (number of entries) for which an operator of unknown structure is
#: probed for linearity and self-adjointness (three extra operator applications).
PROBE_MAX_SIZE = 1 << 22

_PROBE_TOL = 1e-3


def _is_traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def _describe(tree) -> str:
    shapes = [f"{leaf.dtype}{list(leaf.shape)}" for leaf in jax.tree_util.tree_leaves(tree)]
    return shapes[0] if len(shapes) == 1 else "(" + ", ".join(shapes) + ")"


def check_vector(b, name: str, func: str):
    """``b`` as a pytree of floating-point or complex JAX arrays; TypeError otherwise."""
    if isinstance(b, np.ndarray):
        b = jnp.asarray(b)
    leaves = jax.tree_util.tree_leaves(b)
    if not leaves:
        raise TypeError(f"{func}: {name} must be an array or a pytree of arrays, got {b!r}")
    for leaf in leaves:
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            got = getattr(leaf, "dtype", type(leaf).__name__)
            raise TypeError(f"{func}: {name} must hold floating point or complex arrays, "
                            f"got {got}")
    return jax.tree_util.tree_map(jnp.asarray, b)


def hermitian_matvec(operator, b, func: str):
    """Validate a self-adjoint operator for ``A x = b`` and return its matvec."""
    if isinstance(operator, LinearOperator):
        if operator.ishape != operator.oshape:
            raise ValueError(
                f"{func}: the operator must be square and self-adjoint, got {operator.name} "
                f"{operator.ishape} -> {operator.oshape}; for least squares pass A.N and "
                "A.H(y)")
        if not isinstance(b, jax.Array) or b.shape != operator.ishape:
            raise ValueError(f"{func}: b must have the operator's shape {operator.ishape}, got "
                             f"{_describe(b)}")
        if operator.hermitian is False:
            raise ValueError(
                f"{func}: the operator must be self-adjoint, got {operator.name}, which is not; "
                "pass its normal operator A.N (with A.H(y) as b)")
        matvec = operator._apply
        if operator.hermitian is None:
            probe(matvec, b, func, hermitian=True)
        return matvec
    if not callable(operator):
        raise TypeError(f"{func}: operator must be a mskjax.linop.LinearOperator or a linear "
                        f"function, got {type(operator).__name__}")
    try:
        out = jax.eval_shape(operator, b)
    except Exception as error:  # report what the user's function did with b
        raise TypeError(f"{func}: the operator failed on b {_describe(b)}: "
                        f"{type(error).__name__}: {error}") from error
    same = (jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(b) and all(
        o.shape == i.shape and o.dtype == i.dtype
        for o, i in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(b))))
    if not same:
        raise ValueError(f"{func}: the operator must map b to the same shapes and dtypes (it "
                         f"must be square), got {_describe(b)} -> {_describe(out)}")
    probe(operator, b, func, hermitian=True)
    return operator


def probe(matvec, b, func: str, *, hermitian: bool):
    """Check linearity (and self-adjointness) of ``matvec`` on random vectors, when cheap."""
    size = sum(leaf.size for leaf in jax.tree_util.tree_leaves(b))
    if _is_traced(b) or size > PROBE_MAX_SIZE:
        return
    rng = np.random.default_rng(0)

    def random_like(leaf):
        shape, dtype = leaf.shape, leaf.dtype
        v = rng.standard_normal(shape)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            v = v + 1j * rng.standard_normal(shape)
        return jnp.asarray(v, dtype)

    x = jax.tree_util.tree_map(random_like, b)
    y = jax.tree_util.tree_map(random_like, b)
    ax = matvec(x)
    if _is_traced(ax):  # the operator closes over traced values: cannot be probed here
        return
    ay = matvec(y)
    complex_ = any(jnp.iscomplexobj(leaf) for leaf in jax.tree_util.tree_leaves(b))
    a = (2.0 - 1.0j) if complex_ else 2.0
    combined = matvec(_tree.axpy(a, x, y))
    expected = _tree.axpy(a, ax, ay)
    scale = abs(a) * float(jnp.sqrt(_tree.norm2(ax))) + float(jnp.sqrt(_tree.norm2(ay)))
    error = float(jnp.sqrt(_tree.norm2(_tree.sub(combined, expected))))
    if error > _PROBE_TOL * max(scale, 1e-30):
        raise ValueError(f"{func}: the operator is not linear: A(a x + y) differs from "
                         f"a A(x) + A(y) by {error / max(scale, 1e-30):.1e} (relative) on a "
                         "random probe")
    if hermitian:
        lhs, rhs = _tree.vdot(ax, y), _tree.vdot(x, ay)
        scale = float(jnp.sqrt(_tree.norm2(ax) * _tree.norm2(y)))
        if abs(float(lhs - rhs)) > _PROBE_TOL * max(scale, 1e-30):
            raise ValueError(
                f"{func}: the operator must be self-adjoint, but <A x, y> != <x, A y> on a "
                f"random probe ({float(lhs):.4g} vs {float(rhs):.4g}); for least squares pass "
                "A.N and A.H(y)")


def linear_operator(operator, y, func: str, *, name: str = "y"):
    """Validate a :class:`LinearOperator` and data ``y`` of its output shape."""
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"{func}: operator must be a mskjax.linop.LinearOperator, got "
                        f"{type(operator).__name__}; wrap functions with "
                        "mskjax.linop.FunctionOperator")
    y = check_vector(y, name, func)
    if not isinstance(y, jax.Array) or y.shape != operator.oshape:
        raise ValueError(f"{func}: {name} must have the operator's output shape "
                         f"{operator.oshape}, got {_describe(y)}")
    return y


def check_prox(prox, x, func: str, *, name: str = "prox"):
    """Validate ``prox(v, step) -> array like v``."""
    if not callable(prox):
        raise TypeError(f"{func}: {name} must be callable as {name}(v, step), got "
                        f"{type(prox).__name__}")
    target = prox.__call__ if not inspect.isfunction(prox) and hasattr(prox, "__call__") \
        else prox
    try:
        inspect.signature(target).bind(x, 1.0)
    except TypeError as error:
        raise TypeError(f"{func}: {name} must be callable as {name}(v, step) (the point and the "
                        f"step size), but its signature does not accept that: {error}") from None
    except ValueError:  # builtins without a signature: rely on the shape check below
        pass
    try:
        out = jax.eval_shape(prox, x, jnp.ones((), jnp.finfo(x.dtype).dtype))
    except Exception as error:
        raise TypeError(f"{func}: {name}(v, step) failed on v {_describe(x)}: "
                        f"{type(error).__name__}: {error}") from error
    if getattr(out, "shape", None) != x.shape or out.dtype != x.dtype:
        raise ValueError(f"{func}: {name}(v, step) must return an array like v "
                         f"({_describe(x)}), got {out}")
