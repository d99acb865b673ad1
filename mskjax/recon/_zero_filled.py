"""Zero-filled reconstruction: the adjoint of the acquisition, the baseline of every method."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array, check_complex, check_finite, check_ndim, check_shape
from ..coils import rss
from ..fourier import ifftnc


def zero_filled(kspace: ArrayLike, *, maps: ArrayLike | None = None) -> jax.Array:
    """Zero-filled reconstruction of (undersampled) multi-coil k-space.

    Unsampled entries are taken as zero. Without ``maps`` the coil images are combined by
    root-sum-of-squares (the fastMRI convention, a real image); with ``maps`` by the SENSE
    adjoint ``sum_c conj(S_c) F^H y_c`` (a complex image, equal to the coil-combined image
    when the maps are normalised so that ``sum_c |S_c|^2 = 1``).

    Args:
        kspace: complex ``(coils, *spatial)`` k-space, centred, with at least two spatial
            axes: a 2D array is refused, since ``(coils, n)`` cannot be told from single-coil
            ``(rows, cols)`` k-space (give the latter a coil axis, ``kspace[None]``).
        maps: complex ``(coils, *spatial)`` sensitivity maps (keyword-only), optional.

    Returns:
        ``(*spatial)`` image: float (root-sum-of-squares) without maps, complex with maps.

    Raises:
        TypeError: real or non-array ``kspace`` or ``maps``.
        ValueError: a 1D or 2D ``kspace``, ``maps`` of another shape, or (on concrete arrays)
            NaN or infinity in ``kspace`` or ``maps``.
    """
    func = "mskjax.recon.zero_filled"
    kspace = as_array(kspace, "kspace", func)
    check_ndim(kspace, "kspace", func, min_ndim=2, layout="(coils, *spatial)")
    if kspace.ndim == 2:
        raise ValueError(f"{func}: kspace must be (coils, *spatial) with 2 or 3 spatial axes, "
                         f"got shape {tuple(kspace.shape)}, which reads as {kspace.shape[0]} "
                         "coils of 1D k-space; for single-coil 2D k-space add a coil axis: "
                         "kspace[None]")
    check_complex(kspace, "kspace", func)
    check_finite(kspace, "kspace", func)
    spatial = tuple(range(1, kspace.ndim))
    return combine_coils(ifftnc(kspace, axes=spatial), maps, func, "(the k-space shape)")


def combine_coils(coil_images, maps, func: str, layout: str) -> jax.Array:
    """Root-sum-of-squares of ``(coils, *spatial)`` coil images without ``maps``; with maps
    (validated against the images' shape, ``layout`` naming it) ``sum_c conj(S_c) x_c``."""
    if maps is None:
        return rss(coil_images, axis=0)
    maps = as_array(maps, "maps", func)
    check_complex(maps, "maps", func)
    check_shape(maps, coil_images.shape, "maps", func, layout=layout)
    check_finite(maps, "maps", func)
    return jnp.sum(jnp.conj(jnp.asarray(maps)) * coil_images, axis=0)
