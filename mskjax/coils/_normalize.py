"""ESPIRiT-style normalisation of coil sensitivity maps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array, check_complex, check_finite, check_interval, check_ndim
from ._rss import safe_sqrt, squared_magnitude


def normalize_maps(maps: ArrayLike, *, eps: float = 0.0) -> jax.Array:
    """Scale coil maps so that ``sum_c |S_c|^2 == 1`` at every pixel where they are not zero.

    Each pixel is divided by its root-sum-of-squares over coils, which keeps every coil's phase
    and the ratios between coils. Pixels whose root-sum-of-squares is ``<= eps`` are set to 0
    (so a support mask, as from ESPIRiT, is kept).

    Args:
        maps: complex coil sensitivities ``(coils, *spatial)``.
        eps: threshold on the root-sum-of-squares (keyword-only, ``>= 0``); default 0, i.e.
            only pixels where every coil is exactly zero stay zero.

    Returns:
        Normalised maps, same shape and dtype. Safe under ``jit``, ``vmap`` and ``grad``.
    """
    func = "mskjax.coils.normalize_maps"
    maps = as_array(maps, "maps", func)
    check_ndim(maps, "maps", func, min_ndim=2, layout="(coils, *spatial)")
    check_complex(maps, "maps", func)
    check_finite(maps, "maps", func)
    check_interval(eps, "eps", func, low=0, low_open=False)
    return _normalize(jnp.asarray(maps), eps)


@jax.jit
def _normalize(maps, eps):
    norm = safe_sqrt(jnp.sum(squared_magnitude(maps), axis=0))
    keep = norm > eps
    scale = jnp.where(keep, 1 / jnp.where(keep, norm, 1), 0)
    return maps * scale.astype(maps.dtype)
