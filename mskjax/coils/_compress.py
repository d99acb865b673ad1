"""SVD coil compression (virtual coils)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array, check_complex, check_finite, check_ndim, check_positive_int


def _check(kspace, num_virtual, func):
    kspace = as_array(kspace, "kspace", func)
    check_ndim(kspace, "kspace", func, min_ndim=2, layout="(coils, *spatial)")
    check_complex(kspace, "kspace", func)
    check_positive_int(num_virtual, "num_virtual", func)
    coils = kspace.shape[0]
    if num_virtual > coils:
        raise ValueError(
            f"{func}: num_virtual must be at most the number of coils ({coils}), got {num_virtual}"
        )
    check_finite(kspace, "kspace", func)
    return jnp.asarray(kspace)


@functools.partial(jax.jit, static_argnums=1)
def _matrix(data, num_virtual):
    """Conjugated leading left singular vectors of ``data`` (coils, samples) as rows."""
    # data^H = Q R, so data = R^H Q^H has the left singular vectors of the small R^H; this
    # avoids forming the Gram matrix data @ data^H (which would square the condition number).
    r = jnp.linalg.qr(data.conj().T, mode="r")
    u, _, _ = jnp.linalg.svd(r.conj().T, full_matrices=True)
    u = u[:, :num_virtual]
    # Fix each vector's free phase: its largest-magnitude entry is made real and positive.
    pivot = jnp.take_along_axis(u, jnp.argmax(jnp.abs(u), axis=0)[None], axis=0)
    u = u * (jnp.conj(pivot) / jnp.abs(pivot))
    return u.conj().T


def coil_compression_matrix(kspace: ArrayLike, *, num_virtual: int) -> jax.Array:
    """The SVD coil-compression matrix of ``kspace``.

    With the data matrix ``D = kspace.reshape(coils, -1)`` and its SVD ``D = U diag(s) V^H``
    (singular values in decreasing order), the matrix is ``U[:, :num_virtual]^H``: its rows are
    the conjugated leading left singular vectors, orthonormal, each with its largest-magnitude
    entry real and positive (which fixes the otherwise free phase). Compressed data
    ``matrix @ D`` keep the energy ``sum(s[:num_virtual] ** 2)`` of the total
    ``sum(s ** 2) == ||kspace||^2``; the rest is discarded. With ``num_virtual == coils`` the
    matrix is unitary.

    Args:
        kspace: complex k-space (or coil images) ``(coils, *spatial)``; the compression is the
            same for either domain since the FFT is applied per coil.
        num_virtual: number of virtual coils, ``1 <= num_virtual <= coils`` (keyword-only,
            static under ``jit``).

    Returns:
        Complex matrix ``(num_virtual, coils)``.
    """
    func = "mskjax.coils.coil_compression_matrix"
    kspace = _check(kspace, num_virtual, func)
    return _matrix(kspace.reshape(kspace.shape[0], -1), num_virtual)


def coil_compress(kspace: ArrayLike, *, num_virtual: int) -> jax.Array:
    """Compress ``(coils, *spatial)`` k-space to ``num_virtual`` virtual coils by SVD.

    ``compressed = coil_compression_matrix(kspace, num_virtual=k) @ kspace.reshape(coils, -1)``,
    reshaped to ``(k, *spatial)``. Virtual coil ``j`` carries the energy ``s[j] ** 2`` (the
    squared ``j``-th singular value of the coil-by-samples matrix), so the result keeps
    ``sum(s[:k] ** 2)`` of the total ``||kspace||^2``, the most any ``k`` orthonormal coil
    combinations can keep. Compress coil images the same way; sensitivity maps estimated from
    compressed data are the maps of the virtual coils.

    Args:
        kspace: complex k-space ``(coils, *spatial)``.
        num_virtual: number of virtual coils, ``1 <= num_virtual <= coils`` (keyword-only,
            static under ``jit``).

    Returns:
        Complex array ``(num_virtual, *spatial)`` of ``kspace``'s dtype.
    """
    func = "mskjax.coils.coil_compress"
    kspace = _check(kspace, num_virtual, func)
    return _compress(kspace, num_virtual)


@functools.partial(jax.jit, static_argnums=1)
def _compress(kspace, num_virtual):
    data = kspace.reshape(kspace.shape[0], -1)
    out = jnp.matmul(_matrix(data, num_virtual), data, precision=jax.lax.Precision.HIGHEST)
    return out.reshape((num_virtual,) + kspace.shape[1:])
