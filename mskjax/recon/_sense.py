"""Validation of ``(kspace, maps, mask)`` and the SENSE operator for the iterative methods.

``A = M F S`` is :class:`mskjax.linop.Sense` (one set of maps ``(coils, *spatial)``) or
:class:`mskjax.linop.SoftSense` (``(sets, coils, *spatial)``, ESPIRiT's soft-SENSE; the image
is then ``(sets, *spatial)``). Without a mask the sampled locations are those where any coil's
k-space is nonzero (the rule of sigpy's ``SenseRecon``). The data term is
``||M (F S x - y)||^2``: the k-space is masked once here, so real-valued weights act as in
sigpy (squared in the normal operator).

Non-Cartesian k-space ``(coils, *trajectory)`` on ``coords`` ``(*trajectory, ndim)`` (cycles per
field of view, :class:`mskjax.linop.NUFFT`) uses :class:`mskjax.linop.NufftSense` instead, with
maps ``(coils, *spatial)`` giving the image grid. An optional density compensation ``d`` (one
value per trajectory point, sigpy's ``weights``) weighs the data term as
``||sqrt(d) (F S x - y)||^2``: the operator carries ``sqrt(d)`` and so does the data here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (as_array, check_complex, check_finite, check_interval, check_ndim,
                       check_positive_int, check_shape)
from ..linop import (NufftSense, Sense, SoftSense, apply_mask, check_coords,
                     check_kspace_on_coords, check_mask, check_weights)


def sense_operator(kspace, maps, mask, func, *, lamda=0.0, max_iter=1, power_iter=1,
                   coords=None, density=None, eps=1e-6):
    """Validate the inputs (and the solver settings); return ``(A, y)``, ``y`` masked (or
    weighted by ``sqrt(density)`` for non-Cartesian k-space on ``coords``)."""
    check_positive_int(max_iter, "max_iter", func)
    check_positive_int(power_iter, "power_iter", func)
    if not isinstance(lamda, jax.core.Tracer):
        check_interval(lamda, "lamda", func, low=0, low_open=False)
    if coords is not None:
        return _nufft_sense_operator(kspace, maps, mask, func, coords, density, eps)
    if density is not None:
        raise ValueError(f"{func}: density applies to non-Cartesian k-space only (with "
                         "coords); for Cartesian k-space pass real weights as mask")
    kspace = as_array(kspace, "kspace", func)
    check_ndim(kspace, "kspace", func, min_ndim=2, layout="(coils, *spatial)")
    if kspace.ndim > 4:
        raise ValueError(f"{func}: kspace must have 1 to 3 spatial axes, got shape "
                         f"{tuple(kspace.shape)}")
    check_complex(kspace, "kspace", func)
    check_finite(kspace, "kspace", func)
    maps = as_array(maps, "maps", func)
    check_complex(maps, "maps", func)
    sets = maps.ndim == kspace.ndim + 1
    if sets and kspace.ndim == 2:
        raise ValueError(f"{func}: kspace of shape {tuple(kspace.shape)} with maps of shape "
                         f"{tuple(maps.shape)} reads as {kspace.shape[0]} coils of 1D k-space "
                         "with soft-SENSE maps, which is refused as ambiguous: kspace must be "
                         "(coils, *spatial) with the maps' coil axis (is the coil axis "
                         "missing?); soft-SENSE maps need 2 or 3 spatial axes")
    if sets:
        check_shape(maps, (maps.shape[0], *kspace.shape), "maps", func,
                    layout="(sets, *kspace.shape)")
    else:
        check_shape(maps, kspace.shape, "maps", func,
                    layout="(the k-space shape, or (sets, *kspace.shape))")
    check_finite(maps, "maps", func)
    if mask is None and not isinstance(kspace, jax.core.Tracer):
        # On the host, so that the mask stays concrete (and is reduced to the axes on which
        # it varies) even when this runs while jit traces a function closing over the k-space.
        mask = np.any(np.asarray(kspace) != 0, axis=0)
    kspace, maps = jnp.asarray(kspace), jnp.asarray(maps).astype(kspace.dtype)
    if mask is None:
        mask = jnp.any(kspace != 0, axis=0)
    else:  # validated here for the error message; the operator keeps (and reduces) the original
        check_mask(mask, kspace.shape, func)
    operator = SoftSense(maps, mask=mask) if sets else Sense(maps, mask=mask)
    return operator, apply_mask(operator.mask, kspace)


def _nufft_sense_operator(kspace, maps, mask, func, coords, density, eps):
    if mask is not None:
        raise ValueError(f"{func}: give either mask (Cartesian k-space) or coords "
                         "(non-Cartesian), not both")
    maps = as_array(maps, "maps", func)
    check_complex(maps, "maps", func)
    check_ndim(maps, "maps", func, ndim=(3, 4),
               layout="(coils, *spatial) with 2 or 3 spatial axes (one set of maps)")
    coords = check_coords(coords, maps.shape[1:], func)
    kspace = check_kspace_on_coords(kspace, coords, func)
    if maps.shape[0] != kspace.shape[0]:
        raise ValueError(f"{func}: maps and kspace must have the same number of coils, got "
                         f"{maps.shape[0]} and {kspace.shape[0]}")
    check_finite(maps, "maps", func)
    weights = None
    if density is not None:
        weights = jnp.sqrt(check_weights(density, coords.shape[:-1], func, "density"))
    operator = NufftSense(jnp.asarray(maps).astype(kspace.dtype), coords, weights=weights,
                          eps=eps)
    y = kspace if weights is None else kspace * weights.astype(jnp.finfo(kspace.dtype).dtype)
    return operator, y


def spatial_axes(operator) -> tuple:
    """The spatial axes of the operator's image (the leading set axis excluded)."""
    if isinstance(operator, NufftSense):
        return tuple(range(len(operator.ishape)))
    return tuple(range(len(operator.ishape) - len(operator.axes), len(operator.ishape)))
