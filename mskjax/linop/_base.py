"""The ``LinearOperator`` base and its algebra: adjoint, normal, composition, sum, scaling.

An operator is a frozen dataclass registered as a JAX pytree. Its arrays (coil maps, masks,
scales, sub-operators) are pytree leaves; its shapes and axes are static fields. An operator
can therefore be passed to a jitted function as an argument, vmapped over per-example maps,
and differentiated, and a second operator of the same shapes reuses the compiled code.

``A(x)`` (or ``A @ x``) applies the operator to one example of shape ``A.ishape`` and returns
``A.oshape``; ``A.H`` is the adjoint, ``A.N`` the normal operator ``A.H @ A``; ``A @ B``
composes, ``a * A`` scales and ``A + B`` adds. The default adjoint is derived with
``jax.linear_transpose`` (for operators whose input and output share a dtype); an operator with
a closed form overrides ``_adjoint`` (and ``_normal`` where ``A.H @ A`` simplifies).

Writing a new operator::

    class Diagonal(LinearOperator):
        weights: jax.Array

        def __init__(self, weights):
            self._set(weights=weights, ishape=weights.shape, oshape=weights.shape)

        def _apply(self, x):
            return self.weights * x

Shapes are validated in ``__init__`` (the public factory); JAX rebuilds operators from their
leaves without calling ``__init__``, so tracers never reach the checks.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def static_field():
    """A dataclass field that is static pytree metadata (shapes, axes, flags)."""
    return dataclasses.field(metadata={"static": True})


def _describe(value) -> str:
    if isinstance(value, (jax.Array, np.ndarray)):
        return f"{value.dtype}[{','.join(map(str, value.shape))}]"
    if isinstance(value, jax.core.Tracer):
        return f"traced[{','.join(map(str, value.shape))}]"
    return repr(value)


def _register(cls):
    cls = dataclasses.dataclass(frozen=True, eq=False, init=False, repr=False)(cls)
    fields = dataclasses.fields(cls)
    data = tuple(f.name for f in fields if not f.metadata.get("static", False))
    meta = tuple(f.name for f in fields if f.metadata.get("static", False))

    def flatten_with_keys(op):
        children = tuple((jax.tree_util.GetAttrKey(n), getattr(op, n)) for n in data)
        return children, tuple(getattr(op, n) for n in meta)

    def flatten(op):
        return tuple(getattr(op, n) for n in data), tuple(getattr(op, n) for n in meta)

    def unflatten(aux, children):
        op = object.__new__(cls)
        for name, value in zip(meta, aux):
            object.__setattr__(op, name, value)
        for name, value in zip(data, children):
            object.__setattr__(op, name, value)
        return op

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


class LinearOperator:
    """Base class of linear operators ``A: ishape -> oshape`` (see the module docstring).

    Subclasses declare their array fields as plain annotations and their static fields with
    :func:`static_field`; they become frozen dataclasses registered as pytrees automatically.
    They implement ``_apply`` and may override ``_adjoint`` and ``_normal``.
    """

    ishape: tuple = static_field()
    oshape: tuple = static_field()

    # Make numpy defer to our __rmul__ instead of broadcasting over the operator as an object.
    __array_ufunc__ = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _register(cls)

    # -- construction helpers -------------------------------------------------------------
    def _set(self, **values):
        for name, value in values.items():
            if name in ("ishape", "oshape"):
                value = tuple(int(n) for n in value)
            object.__setattr__(self, name, value)

    @property
    def name(self) -> str:
        return f"mskjax.linop.{type(self).__name__}"

    @property
    def hermitian(self) -> bool | None:
        """Whether ``A.H == A``, known from the operator's structure alone.

        True for normal operators ``A.N``, the identity, masks and real scalings and sums of
        these; False for an operator whose input and output shapes differ or whose structure
        rules self-adjointness out (an FFT, SENSE); None when it depends on the values (a
        matrix, a user's function, a sum of non-self-adjoint parts). Solvers that need a
        self-adjoint operator (:func:`mskjax.solvers.cg`) reject False and probe None.
        """
        return False if self.ishape != self.oshape else None

    # -- the three maps subclasses define --------------------------------------------------
    def _apply(self, x):
        raise NotImplementedError(f"{self.name} does not implement _apply")

    def _adjoint(self, y):
        primal = jax.ShapeDtypeStruct(self.ishape, y.dtype)
        (xt,) = jax.linear_transpose(self._apply, primal)(jnp.conj(y))
        return jnp.conj(xt)

    def _normal(self, x):
        return self._adjoint(self._apply(x))

    # -- public interface ------------------------------------------------------------------
    def __call__(self, x):
        """Apply the operator to ``x`` of shape ``ishape``; returns shape ``oshape``."""
        x = jnp.asarray(x)
        if x.shape != self.ishape:
            raise ValueError(
                f"{self.name}: input must have shape {self.ishape}, got {x.shape} "
                "(one example at a time; batch with jax.vmap)"
            )
        return self._apply(x)

    @property
    def H(self) -> LinearOperator:
        """The adjoint operator ``oshape -> ishape``."""
        return Adjoint(self)

    @property
    def N(self) -> LinearOperator:
        """The normal operator ``A.H @ A``: ``ishape -> ishape``."""
        return Normal(self)

    def __matmul__(self, other):
        if isinstance(other, LinearOperator):
            return Compose(self, other)
        return self(other)

    def __mul__(self, scale):
        if isinstance(scale, LinearOperator):
            raise TypeError(f"{self.name}: use A @ B to compose operators, not A * B")
        return Scaled(self, scale)

    __rmul__ = __mul__

    def __neg__(self):
        return Scaled(self, -1.0)

    def __add__(self, other):
        return Sum(self, other)

    def __sub__(self, other):
        return Sum(self, -other)

    def __repr__(self) -> str:
        parts = [f"{f.name}={_describe(getattr(self, f.name))}" for f in dataclasses.fields(self)]
        return f"{type(self).__name__}({', '.join(parts)})"


# The base is a dataclass too, so that every operator inherits the static shape fields.
dataclasses.dataclass(frozen=True, eq=False, init=False, repr=False)(LinearOperator)


class Adjoint(LinearOperator):
    """The adjoint ``A.H`` of an operator ``A``; ``Adjoint(A).H is A``."""

    op: LinearOperator

    def __init__(self, op: LinearOperator):
        _check_operator(op, "mskjax.linop.Adjoint")
        self._set(op=op, ishape=op.oshape, oshape=op.ishape)

    def _apply(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._apply(y)

    def _normal(self, x):
        return self.op._apply(self.op._adjoint(x))

    @property
    def H(self) -> LinearOperator:
        return self.op

    @property
    def hermitian(self) -> bool | None:
        return self.op.hermitian


class Normal(LinearOperator):
    """The normal operator ``A.H @ A`` of ``A``, using ``A``'s closed form where it has one."""

    op: LinearOperator

    def __init__(self, op: LinearOperator):
        _check_operator(op, "mskjax.linop.Normal")
        self._set(op=op, ishape=op.ishape, oshape=op.ishape)

    def _apply(self, x):
        return self.op._normal(x)

    def _adjoint(self, y):
        return self.op._normal(y)

    @property
    def H(self) -> LinearOperator:
        return self

    @property
    def hermitian(self) -> bool:
        return True


class Identity(LinearOperator):
    """The identity on arrays of ``shape``."""

    def __init__(self, shape: Sequence[int]):
        shape = _check_shape_tuple(shape, "mskjax.linop.Identity")
        self._set(ishape=shape, oshape=shape)

    def _apply(self, x):
        return x

    def _adjoint(self, y):
        return y

    def _normal(self, x):
        return x

    @property
    def hermitian(self) -> bool:
        return True


class Compose(LinearOperator):
    """``Compose(A, B, C)(x) == A(B(C(x)))``; built by ``A @ B @ C``."""

    ops: tuple

    def __init__(self, *ops: LinearOperator):
        flat = []
        for op in ops:
            _check_operator(op, "mskjax.linop.Compose")
            flat.extend(op.ops if isinstance(op, Compose) else (op,))
        if not flat:
            raise ValueError("mskjax.linop.Compose: needs at least one operator")
        for left, right in zip(flat[:-1], flat[1:]):
            if left.ishape != right.oshape:
                raise ValueError(
                    f"mskjax.linop.Compose: cannot compose {type(left).__name__} (input "
                    f"{left.ishape}) after {type(right).__name__} (output {right.oshape})"
                )
        self._set(ops=tuple(flat), ishape=flat[-1].ishape, oshape=flat[0].oshape)

    def _apply(self, x):
        for op in reversed(self.ops):
            x = op._apply(x)
        return x

    def _adjoint(self, y):
        for op in self.ops:
            y = op._adjoint(y)
        return y

    @property
    def hermitian(self) -> bool | None:
        if self.ishape != self.oshape:
            return False
        if len(self.ops) == 1:
            return self.ops[0].hermitian
        # B.H @ B, possibly around a self-adjoint middle: B.H @ M @ B.
        first, last = self.ops[0], self.ops[-1]
        middle = self.ops[1:-1]
        if isinstance(first, Adjoint) and first.op is last and all(
                op.hermitian for op in middle):
            return True
        return None


class Sum(LinearOperator):
    """``Sum(A, B)(x) == A(x) + B(x)``; built by ``A + B``."""

    ops: tuple

    def __init__(self, *ops: LinearOperator):
        flat = []
        for op in ops:
            _check_operator(op, "mskjax.linop.Sum")
            flat.extend(op.ops if isinstance(op, Sum) else (op,))
        shapes = {(op.ishape, op.oshape) for op in flat}
        if len(shapes) != 1:
            raise ValueError(
                "mskjax.linop.Sum: operators must share input and output shapes, got "
                + ", ".join(f"{op.ishape}->{op.oshape}" for op in flat)
            )
        self._set(ops=tuple(flat), ishape=flat[0].ishape, oshape=flat[0].oshape)

    def _apply(self, x):
        out = self.ops[0]._apply(x)
        for op in self.ops[1:]:
            out = out + op._apply(x)
        return out

    def _adjoint(self, y):
        out = self.ops[0]._adjoint(y)
        for op in self.ops[1:]:
            out = out + op._adjoint(y)
        return out

    @property
    def hermitian(self) -> bool | None:
        if self.ishape != self.oshape:
            return False
        return True if all(op.hermitian for op in self.ops) else None


class Scaled(LinearOperator):
    """``Scaled(A, a)(x) == a * A(x)`` for a scalar ``a`` (real or complex); built by ``a * A``."""

    op: LinearOperator
    scale: jax.Array

    def __init__(self, op: LinearOperator, scale: complex | ArrayLike):
        _check_operator(op, "mskjax.linop.Scaled")
        if not (isinstance(scale, numbers.Number) or np.ndim(scale) == 0):
            raise TypeError(f"mskjax.linop.Scaled: scale must be a scalar, got {_describe(scale)}")
        if isinstance(scale, numbers.Number) and not np.isfinite(scale):
            raise ValueError(f"mskjax.linop.Scaled: scale must be finite, got {scale!r}")
        scale = jnp.asarray(scale)
        if not jnp.issubdtype(scale.dtype, jnp.inexact):
            scale = scale.astype(jnp.float32)
        self._set(op=op, scale=scale, ishape=op.ishape, oshape=op.oshape)

    def _apply(self, x):
        y = self.op._apply(x)
        return (self.scale * y).astype(y.dtype) if _keeps(y, self.scale) else self.scale * y

    def _adjoint(self, y):
        x = self.op._adjoint(y)
        s = jnp.conj(self.scale)
        return (s * x).astype(x.dtype) if _keeps(x, s) else s * x

    def _normal(self, x):
        y = self.op._normal(x)
        s = jnp.abs(self.scale) ** 2
        return (s * y).astype(y.dtype) if _keeps(y, s) else s * y

    @property
    def hermitian(self) -> bool | None:
        # A complex scale may turn an anti-Hermitian operator into a Hermitian one.
        return None if jnp.iscomplexobj(self.scale) else self.op.hermitian


def _keeps(y, scale) -> bool:
    """True when scaling ``y`` by ``scale`` must not change ``y``'s dtype.

    A float32 scale must not promote complex64 data, nor a complex64 scale a complex128 one.
    Only a complex scale applied to real data changes the dtype.
    """
    return not (jnp.iscomplexobj(scale) and not jnp.iscomplexobj(y))


def _check_operator(op, func):
    if not isinstance(op, LinearOperator):
        raise TypeError(f"{func}: expected a LinearOperator, got {type(op).__name__}")


def _check_shape_tuple(shape, func) -> tuple:
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"{func}: shape must be a tuple of ints, got {shape!r}")
    shape = tuple(shape)
    if not all(isinstance(n, (numbers.Integral, np.integer)) and not isinstance(n, bool)
               for n in shape):
        raise TypeError(f"{func}: shape must be a tuple of ints, got {shape!r}")
    shape = tuple(int(n) for n in shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"{func}: shape must be a non-empty tuple of positive ints, got {shape}")
    return shape
