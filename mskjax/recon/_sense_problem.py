"""The SENSE data-consistency problem shared by the iterative reconstructions.

``A = M F S``: coil maps ``S`` ``(coils, *spatial)``, the centred orthonormal FFT ``F`` over
the spatial axes and a mask ``M`` broadcasting to the k-space. Without a mask, the sampled
locations are those where any coil's k-space is nonzero (the rule of sigpy's ``SenseRecon``).

The solvers iterate in the *shifted* domain: with ``P = ifftshift`` over the spatial axes,
``P A P^-1`` uses plain (uncentred) FFTs, the shifted maps ``P S`` and the shifted mask ``P M``,
because ``fftshift(fftn(ifftshift(.)))`` is a permutation on either side of an FFT. The
permutations are applied once to the data and once to the result instead of four times per
iteration; for odd sizes too, since only ``P`` and its inverse appear.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import as_array, check_complex, check_finite, check_ndim, check_shape
from ..linop._mri import _mask_normal, apply_mask, check_mask


class ShiftedSense(NamedTuple):
    """``A`` in the shifted domain; all arrays already ``ifftshift``-ed over the spatial axes."""

    kspace: jax.Array  # (coils, *spatial) P M y
    maps: jax.Array  # (coils, *spatial) P S
    mask: jax.Array  # broadcasts to (coils, *spatial), P M
    axes: tuple

    def forward(self, x):
        return apply_mask(self.mask, jnp.fft.fftn(self.maps * x, axes=self.axes, norm="ortho"))

    def adjoint(self, y):
        coil_images = jnp.fft.ifftn(apply_mask(self.mask, y), axes=self.axes, norm="ortho")
        return jnp.sum(jnp.conj(self.maps) * coil_images, axis=0)

    def normal(self, x):
        k = _mask_normal(self.mask, jnp.fft.fftn(self.maps * x, axes=self.axes, norm="ortho"))
        return jnp.sum(jnp.conj(self.maps) * jnp.fft.ifftn(k, axes=self.axes, norm="ortho"),
                       axis=0)

    def unshift(self, x):
        """Back from the shifted image domain: ``(*spatial)`` centred image."""
        return jnp.fft.fftshift(x, axes=tuple(a - 1 for a in self.axes))


def sense_problem(kspace, maps, mask, func) -> ShiftedSense:
    """Validate ``(kspace, maps, mask)`` and return the shifted SENSE problem."""
    kspace = as_array(kspace, "kspace", func)
    check_ndim(kspace, "kspace", func, min_ndim=2, layout="(coils, *spatial)")
    if kspace.ndim > 4:
        raise ValueError(f"{func}: kspace must have 1 to 3 spatial axes, got shape "
                         f"{tuple(kspace.shape)}")
    check_complex(kspace, "kspace", func)
    check_finite(kspace, "kspace", func)
    maps = as_array(maps, "maps", func)
    check_complex(maps, "maps", func)
    check_shape(maps, kspace.shape, "maps", func, layout="(the k-space shape)")
    check_finite(maps, "maps", func)
    kspace, maps = jnp.asarray(kspace), jnp.asarray(maps).astype(kspace.dtype)
    if mask is None:
        mask = jnp.any(kspace != 0, axis=0)
    else:
        mask = check_mask(mask, kspace.shape, func)
    axes = tuple(range(1, kspace.ndim))
    offset = kspace.ndim - mask.ndim
    mask_axes = tuple(j for j in range(mask.ndim) if j + offset >= 1)
    return ShiftedSense(
        kspace=jnp.fft.ifftshift(apply_mask(mask, kspace), axes=axes),
        maps=jnp.fft.ifftshift(maps, axes=axes),
        mask=jnp.fft.ifftshift(mask, axes=mask_axes),
        axes=axes,
    )


def power_iteration(operator, x0, num_iter):
    """Largest eigenvalue of a self-adjoint positive semi-definite ``operator`` (``num_iter``)."""

    def step(x, _):
        y = operator(x)
        return y / jnp.maximum(jnp.linalg.norm(y), 1e-30), None

    x, _ = jax.lax.scan(step, x0 / jnp.linalg.norm(x0), None, length=num_iter)
    return jnp.real(jnp.vdot(x, operator(x))) / jnp.real(jnp.vdot(x, x))
