"""SENSE for non-Cartesian k-space: coil maps, then the NUFFT (:mod:`mskjax.linop._nufft`).

``A(x) = W F_nu (S x)``: an image ``(*spatial)`` to k-space ``(coils, *trajectory)``, with coil
maps ``S`` ``(coils, *spatial)``, the NUFFT ``F_nu`` over the spatial axes on ``coords``
``(*trajectory, ndim)`` (cycles per field of view) and optional per-sample weights ``W``. The
normal operator ``A.N = sum_c conj(S_c) F^H W**2 F S_c`` applies the Toeplitz embedding to
each coil image (two FFTs on a grid twice the size, no interpolation). It is the model of
``sigpy.mri.linop.Sense(maps, coord=coords)``; sigpy's ``weights`` ``d`` enter as ``sqrt(d)``,
so ``NufftSense(maps, coords, weights=sqrt(d))`` is sigpy's ``Sense(maps, coord, weights=d)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array, check_ndim
from ._base import LinearOperator, static_field
from ._mri import check_maps
from ._nufft import (ToeplitzNormal, check_coords, check_eps, check_weights, nufft_adjoint,
                     nufft_forward, toeplitz_apply, toeplitz_kernel, weigh)


class NufftSense(LinearOperator):
    """Multi-coil non-Cartesian SENSE: image ``(*spatial)`` -> k-space ``(coils, *trajectory)``.

    Args:
        maps: complex ``(coils, *spatial)`` sensitivity maps, 2 or 3 spatial axes.
        coords: ``(*trajectory, ndim)`` k-space coordinates in cycles per field of view,
            ``ndim`` the number of spatial axes (see :class:`NUFFT`).
        weights: optional real non-negative weights per trajectory point (keyword-only);
            ``A = diag(w) F S``.
        eps: FINUFFT's relative accuracy (keyword-only).
        toeplitz: whether ``A.N`` is the Toeplitz embedding (default) or ``A.H @ A``.
    """

    maps: jax.Array
    coords: jax.Array
    weights: jax.Array | None
    eps: float = static_field()
    toeplitz: bool = static_field()

    def __init__(self, maps: ArrayLike, coords: ArrayLike, *, weights: ArrayLike | None = None,
                 eps: float = 1e-6, toeplitz: bool = True):
        func = "mskjax.linop.NufftSense"
        maps = as_array(maps, "maps", func)
        check_ndim(maps, "maps", func, ndim=(3, 4), layout="(coils, *spatial) with 2 or 3 "
                   "spatial axes")
        maps = check_maps(maps, func)
        coords = check_coords(coords, maps.shape[1:], func)
        if weights is not None:
            weights = check_weights(weights, coords.shape[:-1], func)
        self._set(maps=maps, coords=coords, weights=weights, eps=check_eps(eps, func),
                  toeplitz=bool(toeplitz), ishape=maps.shape[1:],
                  oshape=(maps.shape[0], *coords.shape[:-1]))

    @property
    def grid(self) -> tuple:
        return tuple(self.ishape)

    @property
    def trajectory(self) -> tuple:
        return tuple(self.coords.shape[:-1])

    def _apply(self, x):
        return weigh(self.weights, nufft_forward(self.maps * x, self.coords, self.grid, self.eps))

    def _adjoint(self, y):
        coil_images = nufft_adjoint(weigh(self.weights, y), self.coords, self.grid, self.eps)
        return jnp.sum(jnp.conj(self.maps) * coil_images, axis=0)

    def _normal(self, x):
        # As NUFFT._normal: the Toeplitz kernel only where A.N is taken once and reused.
        return self._adjoint(self._apply(x))

    @property
    def N(self) -> LinearOperator:
        """``A.H @ A`` with the Toeplitz kernel computed here, once (:class:`NufftSenseNormal`)."""
        if not self.toeplitz:
            return super().N
        kernel = toeplitz_kernel(self.coords, self.grid, self.eps, self.weights,
                                 dtype=self.coords.dtype)
        return NufftSenseNormal._of(self.maps, kernel, self.grid)


class NufftSenseNormal(LinearOperator):
    """``A.H @ A`` of :class:`NufftSense`: ``sum_c conj(S_c) T (S_c x)`` with ``T`` the
    Toeplitz embedding of ``F^H W**2 F`` (:class:`ToeplitzNormal`). Self-adjoint."""

    maps: jax.Array
    kernel: jax.Array
    grid: tuple = static_field()

    @classmethod
    def _of(cls, maps, kernel, grid):
        op = object.__new__(cls)
        op._set(maps=maps, kernel=kernel, grid=tuple(grid), ishape=maps.shape[1:],
                oshape=maps.shape[1:])
        return op

    def _apply(self, x):
        kernel = self.kernel.astype(jnp.finfo(x.dtype).dtype)
        coil_images = toeplitz_apply(kernel, self.maps * x, self.grid)
        return jnp.sum(jnp.conj(self.maps) * coil_images, axis=0)

    def _adjoint(self, y):
        return self._apply(y)

    @property
    def H(self) -> NufftSenseNormal:
        return self

    @property
    def hermitian(self) -> bool:
        return True

    @property
    def toeplitz(self) -> ToeplitzNormal:
        """The single-coil Toeplitz operator on ``(coils, *spatial)`` coil images."""
        return ToeplitzNormal._of(self.kernel, self.grid, self.maps.shape)
