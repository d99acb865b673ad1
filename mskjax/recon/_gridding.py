"""Gridding reconstruction of non-Cartesian k-space: the density-compensated adjoint NUFFT."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import check_positive_int
from ..linop import NUFFT, check_coords, check_kspace_on_coords, check_weights
from ._zero_filled import combine_coils


def gridding(kspace: ArrayLike, coords: ArrayLike, *, shape: Sequence[int],
             density: ArrayLike | None = None, maps: ArrayLike | None = None,
             eps: float = 1e-6) -> jax.Array:
    """Gridding reconstruction ``F^H (d y)`` of multi-coil non-Cartesian k-space.

    The adjoint :class:`mskjax.linop.NUFFT` of the density-compensated samples, the
    non-Cartesian counterpart of :func:`zero_filled`: without ``maps`` the coil images are
    combined by root-sum-of-squares (a real image), with ``maps`` by ``sum_c conj(S_c) x_c`` (a
    complex image). With ``d`` in mskjax's scale (``F^H d F x ~= x`` for a smooth ``x``, as
    :func:`mskjax.sampling.pipe_menon_density` returns) the image has the scale of the object.
    Without ``density`` every sample counts once: the image is then blurred by the sampling
    density (bright centre of k-space), the plain adjoint.

    Args:
        kspace: complex ``(coils, *trajectory)`` k-space.
        coords: ``(*trajectory, ndim)`` coordinates in cycles per field of view (ndim 2 or 3).
        shape: the image grid ``(*spatial)`` (keyword-only), ``ndim`` axes.
        density: real non-negative ``(*trajectory)`` density compensation, optional.
        maps: complex ``(coils, *shape)`` sensitivity maps, optional.
        eps: FINUFFT's relative accuracy.

    Returns:
        ``(*shape)`` image: float without maps, complex with maps.
    """
    func = "mskjax.recon.gridding"
    if not isinstance(shape, (tuple, list)) or not 2 <= len(shape) <= 3:
        raise ValueError(f"{func}: shape must be the image grid, 2 or 3 ints, got {shape!r}")
    for n in shape:
        check_positive_int(n, "shape", func)
    shape = tuple(int(n) for n in shape)
    coords = check_coords(coords, shape, func)
    kspace = check_kspace_on_coords(kspace, coords, func)
    if density is not None:
        density = check_weights(density, coords.shape[:-1], func, "density")
        kspace = kspace * density.astype(jnp.finfo(kspace.dtype).dtype)
    operator = NUFFT(coords, shape=(kspace.shape[0], *shape), eps=eps)
    return combine_coils(operator.H(kspace), maps, func, "(coils, *shape)")
