"""Vector-space operations on pytrees of arrays (the unknowns of the solvers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def vdot(a, b) -> jax.Array:
    """Real part of the inner product ``sum conj(a) * b`` over all leaves."""
    leaves = [jnp.real(jnp.vdot(x, y)) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                        jax.tree_util.tree_leaves(b))]
    return sum(leaves[1:], leaves[0])


def norm2(a) -> jax.Array:
    """Squared Euclidean norm over all leaves."""
    leaves = [jnp.sum(jnp.real(x) ** 2 + jnp.imag(x) ** 2) if jnp.iscomplexobj(x)
              else jnp.sum(x * x) for x in jax.tree_util.tree_leaves(a)]
    return sum(leaves[1:], leaves[0])


def axpy(alpha, x, y):
    """``alpha * x + y`` leaf by leaf, keeping each leaf's dtype."""
    return jax.tree_util.tree_map(lambda u, v: (alpha * u + v).astype(v.dtype), x, y)


def sub(x, y):
    return jax.tree_util.tree_map(lambda u, v: u - v, x, y)


def add(x, y):
    return jax.tree_util.tree_map(lambda u, v: u + v, x, y)


def zeros_like(x):
    return jax.tree_util.tree_map(jnp.zeros_like, x)


def real_dtype(x):
    """The real dtype matching the first leaf of ``x`` (float32 for complex64)."""
    leaf = jax.tree_util.tree_leaves(x)[0]
    return jnp.finfo(leaf.dtype).dtype


def all_finite(x) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf))
                              for leaf in jax.tree_util.tree_leaves(x)]))
