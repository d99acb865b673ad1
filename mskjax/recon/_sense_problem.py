"""The SENSE data-consistency problem shared by the iterative reconstructions.

``A = M F S``: coil maps ``S`` ``(coils, *spatial)``, the centred orthonormal FFT ``F`` over
the spatial axes and a mask ``M`` broadcasting to the k-space. Without a mask, the sampled
locations are those where any coil's k-space is nonzero (the rule of sigpy's ``SenseRecon``).
With several sets of maps ``(sets, coils, *spatial)`` (ESPIRiT's soft-SENSE,
:class:`mskjax.linop.SoftSense`) the image is ``(sets, *spatial)`` and the sets' coil images
add up.

The solvers keep the image centred and use plain (uncentred) FFTs. With ``P = ifftshift``
over the spatial axes, ``F_c = fftshift(fftn(ifftshift(.)))`` equals ``P^-1 diag(psi) F`` where
``psi_k = exp(2 pi i k (n // 2) / n)`` per axis (the shift theorem; ``(-1)^k`` for even ``n``),
and the data term ``||M (F_c S x - y)||`` equals ``||P M (F S x - conj(psi) P y)||`` because ``P``
is a permutation and ``|psi| = 1``. So the k-space is permuted and modulated once, the mask
permuted once, and no iteration shifts anything, for odd sizes as well.

The normal operator ``A^H A = S^H F^H M F S`` needs no FFT along a spatial axis on which the
mask is constant (a fastMRI mask, a ``(cols,)`` vector, is constant along the readout): there
``F_a^H`` and ``F_a`` meet and cancel. :meth:`ShiftedSense.normal` transforms only the axes on
which the mask varies, which halves the FFT work of CG-SENSE and FISTA for 1D undersampling.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import (as_array, check_complex, check_finite, check_interval, check_ndim,
                       check_positive_int, check_shape)
from ..linop._mri import _mask_normal, apply_mask, check_mask


class ShiftedSense(NamedTuple):
    """``A`` with plain FFTs: the k-space and mask permuted (and modulated) once."""

    kspace: jax.Array  # (coils, *spatial) conj(psi) P M y
    maps: jax.Array  # (coils, *spatial) or (sets, coils, *spatial), unchanged
    mask: jax.Array  # broadcasts to (coils, *spatial), P M
    axes: tuple  # the spatial axes of the k-space
    sets: bool  # several sets of maps
    normal_axes: tuple  # the spatial axes along which the mask varies

    @property
    def image_shape(self) -> tuple:
        return self.maps.shape[:1] + self.maps.shape[2:] if self.sets else self.maps.shape[1:]

    @property
    def image_axes(self) -> tuple:
        """The spatial axes of the image, counted from the end."""
        return tuple(range(-len(self.axes), 0))

    def _coil_images(self, x):
        return jnp.sum(self.maps * x[:, None], axis=0) if self.sets else self.maps * x

    def _combine(self, coil_images):
        if self.sets:
            return jnp.sum(jnp.conj(self.maps) * coil_images[None], axis=1)
        return jnp.sum(jnp.conj(self.maps) * coil_images, axis=0)

    def forward(self, x):
        k = jnp.fft.fftn(self._coil_images(x), axes=self.axes, norm="ortho")
        return apply_mask(self.mask, k)

    def adjoint(self, y):
        coil_images = jnp.fft.ifftn(apply_mask(self.mask, y), axes=self.axes, norm="ortho")
        return self._combine(coil_images)

    def normal(self, x):
        coil_images = self._coil_images(x)
        if not self.normal_axes:  # the mask is constant over the image: F^H M F = M
            return self._combine(_mask_normal(self.mask, coil_images))
        k = jnp.fft.fftn(coil_images, axes=self.normal_axes, norm="ortho")
        k = _mask_normal(self.mask, k)
        return self._combine(jnp.fft.ifftn(k, axes=self.normal_axes, norm="ortho"))


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
    sets = maps.ndim == kspace.ndim + 1
    if sets:
        check_shape(maps, (maps.shape[0], *kspace.shape), "maps", func,
                    layout="(sets, *kspace.shape)")
    else:
        check_shape(maps, kspace.shape, "maps", func,
                    layout="(the k-space shape, or (sets, *kspace.shape))")
    check_finite(maps, "maps", func)
    kspace, maps = jnp.asarray(kspace), jnp.asarray(maps).astype(kspace.dtype)
    if mask is None:
        mask = jnp.any(kspace != 0, axis=0)
    else:
        mask = check_mask(mask, kspace.shape, func)
    axes = tuple(range(1, kspace.ndim))
    offset = kspace.ndim - mask.ndim
    mask_axes = tuple(j for j in range(mask.ndim) if j + offset >= 1)
    normal_axes = tuple(j + offset for j in mask_axes if mask.shape[j] > 1)
    psi = jnp.ones((), kspace.dtype)
    for axis in axes:
        n = kspace.shape[axis]
        phase = jnp.exp(2j * jnp.pi * jnp.arange(n) * (n // 2) / n).astype(kspace.dtype)
        psi = psi * phase.reshape((n,) + (1,) * (kspace.ndim - 1 - axis))
    return ShiftedSense(
        kspace=jnp.conj(psi) * jnp.fft.ifftshift(apply_mask(mask, kspace), axes=axes),
        maps=maps,
        mask=jnp.fft.ifftshift(mask, axes=mask_axes),
        axes=axes,
        sets=sets,
        normal_axes=normal_axes,
    )


def power_iteration(operator, x0, num_iter):
    """Largest eigenvalue of a self-adjoint positive semi-definite ``operator`` (``num_iter``)."""

    def step(x, _):
        y = operator(x)
        return y / jnp.maximum(jnp.linalg.norm(y), 1e-30), None

    x, _ = jax.lax.scan(step, x0 / jnp.linalg.norm(x0), None, length=num_iter)
    return jnp.real(jnp.vdot(x, operator(x))) / jnp.real(jnp.vdot(x, x))


class Regularised(NamedTuple):
    """What a regularised solver (FISTA, primal-dual) needs besides its regulariser."""

    problem: ShiftedSense
    lamda: jax.Array  # real scalar
    lipschitz: jax.Array  # ||A||^2 by power iteration
    adjoint_data: jax.Array  # A^H y, the image shape
    data_norm2: jax.Array  # ||y||^2

    def half_residual_norm2(self, x, normal_x):
        """``1/2 ||A x - y||^2 = 1/2 (<x, N x> - 2 Re<x, A^H y> + ||y||^2)`` from ``N x``."""
        return 0.5 * (jnp.real(jnp.vdot(x, normal_x))
                      - 2 * jnp.real(jnp.vdot(x, self.adjoint_data)) + self.data_norm2)


def regularised_problem(kspace, maps, mask, *, lamda, max_iter, power_iter, func) -> Regularised:
    """Validate the arguments of a regularised solver and set up its SENSE problem."""
    check_positive_int(max_iter, "max_iter", func)
    check_positive_int(power_iter, "power_iter", func)
    if not isinstance(lamda, jax.core.Tracer):
        check_interval(lamda, "lamda", func, low=0, low_open=False)
    problem = sense_problem(kspace, maps, mask, func)
    y = problem.kspace
    real = jnp.finfo(y.dtype).dtype
    start = jax.random.normal(jax.random.key(0), problem.image_shape, y.dtype)
    return Regularised(problem=problem, lamda=jnp.asarray(lamda, real),
                       lipschitz=power_iteration(problem.normal, start, power_iter),
                       adjoint_data=problem.adjoint(y), data_norm2=jnp.real(jnp.vdot(y, y)))
