"""The MRI operators: centred FFT, sampling mask, coil sensitivities and SENSE.

Conventions:

- One example at a time. Coil data are ``(coils, *spatial)``, an image is ``(*spatial)``;
  spatial axes are last (1 to 3 of them for ``Sense``, any number for ``FFT``).
- The FFT is centred and orthonormal (:mod:`mskjax.fourier`), so ``FFT.H`` is its inverse.
- A mask is boolean (sampled or not) or real non-negative weights, and broadcasts to the
  k-space shape: a ``(cols,)`` phase-encode vector, a ``(rows, cols)`` pattern, or a full
  ``(coils, rows, cols)`` array. Masked entries are exactly +0.0, never -0.0.
- Coil maps are complex ``(coils, *spatial)``.
- The normal operators of :class:`Sense` and :class:`SoftSense` use plain (uncentred) FFTs, and
  only along the spatial axes on which the mask varies. With ``P = ifftshift``, the centred
  ``F_c^H M F_c`` equals ``F^H (P M) F`` because ``F^H D F`` is a circular convolution, which
  commutes with the circular shift ``P``; along an axis where the mask is constant ``F_a^H``
  and ``F_a`` meet and cancel. A fastMRI ``(cols,)`` mask therefore costs one 1D FFT pair per
  coil image instead of a 2D one. A concrete mask is stored with length 1 along every axis on
  which it is constant (``Sense(maps, mask=m).mask`` broadcasts like ``m`` but may be
  smaller), so a 2D array holding a 1D pattern keeps the fast path; a mask traced under
  ``jit`` keeps its shape, so pass the 1D vector where the pattern is 1D.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_complex, check_finite, check_ndim, normalize_axes
from ..fourier import fftnc, ifftnc
from ._base import LinearOperator, _check_shape_tuple, static_field


def apply_mask(mask: jax.Array | None, x: jax.Array) -> jax.Array:
    """Multiply ``x`` by a boolean or real ``mask``; masked entries are +0.0 (never -0.0)."""
    if mask is None:
        return x
    if mask.dtype == jnp.bool_:
        return jnp.where(mask, x, jnp.zeros((), x.dtype))
    return jnp.where(mask != 0, x * mask, jnp.zeros((), x.dtype))


def _mask_normal(mask, x):
    if mask is None or mask.dtype == jnp.bool_:
        return apply_mask(mask, x)
    return apply_mask(mask * mask, x)


def reduce_mask(mask: ArrayLike) -> jax.Array:
    """A concrete mask with length 1 along every axis on which it is constant.

    The result broadcasts to whatever ``mask`` broadcasts to. Traced masks are returned
    unchanged (their values are unknown at trace time).
    """
    if isinstance(mask, jax.core.Tracer):
        return mask
    values = np.asarray(mask)
    for axis in range(values.ndim):
        first = np.take(values, [0], axis=axis)
        if values.shape[axis] > 1 and np.array_equal(values, np.broadcast_to(first, values.shape)):
            values = first
    return jnp.asarray(values)


def _normal_axes(mask, ndim):
    """The spatial axes of ``(coils, *spatial)`` data (``ndim`` axes) along which ``mask``
    varies, and the same axes counted in the mask's own dimensions."""
    offset = ndim - mask.ndim
    axes = tuple(a for a in range(max(offset, 1), ndim) if mask.shape[a - offset] > 1)
    return axes, tuple(a - offset for a in axes)


def _shift_mask(mask, ndim):
    """The mask as the plain FFT sees it: ``ifftshift`` along the axes on which it varies."""
    _, mask_axes = _normal_axes(mask, ndim)
    return jnp.fft.ifftshift(mask, axes=mask_axes) if mask_axes else mask


def _fast_normal(shifted, coil_images):
    """``F_c^H M F_c`` (centred, orthonormal) of ``(coils, *spatial)`` coil images, given the
    shifted mask: plain FFTs, only along the axes on which the mask varies (module docstring).
    """
    axes, _ = _normal_axes(shifted, coil_images.ndim)
    if not axes:
        return _mask_normal(shifted, coil_images)
    k = jnp.fft.fftn(coil_images, axes=axes, norm="ortho")
    return jnp.fft.ifftn(_mask_normal(shifted, k), axes=axes, norm="ortho")


def check_mask(mask: ArrayLike, kspace_shape: Sequence[int], func: str) -> jax.Array:
    """Validate a mask against a k-space shape; return it as a bool or real array."""
    mask = as_array(mask, "mask", func)
    if jnp.issubdtype(mask.dtype, jnp.complexfloating):
        raise TypeError(f"{func}: mask must be boolean or real weights, got {mask.dtype}")
    if not (mask.dtype == np.bool_ or jnp.issubdtype(mask.dtype, jnp.floating)):
        # An integer mask of 0s and 1s is a boolean mask, other integers are weights. A traced
        # one cannot be looked at: it becomes float weights (0 and 1 act as the boolean would).
        if isinstance(mask, jax.core.Tracer):
            mask = mask.astype(jnp.float32)
        else:
            mask = mask.astype(bool) if set(np.unique(np.asarray(mask)).tolist()) <= {0, 1} \
                else mask.astype(np.float32)
    if mask.ndim > len(kspace_shape):
        raise ValueError(
            f"{func}: mask must broadcast to the k-space shape {tuple(kspace_shape)}, got "
            f"shape {mask.shape}"
        )
    try:
        broadcast = np.broadcast_shapes(mask.shape, tuple(kspace_shape))
    except ValueError:
        broadcast = None
    if broadcast != tuple(kspace_shape):
        raise ValueError(
            f"{func}: mask must broadcast to the k-space shape {tuple(kspace_shape)}, got "
            f"shape {mask.shape}"
        )
    if mask.dtype != np.bool_:
        check_finite(mask, "mask", func)
    return jnp.asarray(mask)


def _reduced_mask(mask, kspace_shape, func):
    """Validate ``mask``; when its values are known, reduce it on the host (:func:`reduce_mask`),
    which also works while jit traces a function that closes over a concrete mask."""
    checked = check_mask(mask, kspace_shape, func)
    if isinstance(mask, jax.core.Tracer):
        return checked
    return reduce_mask(np.asarray(mask).astype(checked.dtype))


def check_maps(maps: ArrayLike, func: str) -> jax.Array:
    """Validate coil sensitivity maps ``(coils, *spatial)``; return them as a JAX array."""
    maps = as_array(maps, "maps", func)
    check_ndim(maps, "maps", func, min_ndim=2, layout="(coils, *spatial)")
    if 0 in maps.shape:
        raise ValueError(f"{func}: maps must not be empty, got shape {tuple(maps.shape)}")
    check_complex(maps, "maps", func)
    check_finite(maps, "maps", func)
    return jnp.asarray(maps)


class FFT(LinearOperator):
    """Centred orthonormal FFT over ``axes`` of arrays of ``shape``.

    Args:
        shape: the array shape, e.g. ``(rows, cols)`` or ``(coils, rows, cols)``.
        axes: axes to transform (keyword-only); default all axes.
    """

    axes: tuple = static_field()

    def __init__(self, shape: Sequence[int], *, axes: int | Sequence[int] | None = None):
        shape = _check_shape_tuple(shape, "mskjax.linop.FFT")
        axes = tuple(range(len(shape))) if axes is None else axes
        axes = normalize_axes(axes, len(shape), "axes", "mskjax.linop.FFT")
        self._set(axes=axes, ishape=shape, oshape=shape)

    def _apply(self, x):
        return fftnc(x, axes=self.axes)

    def _adjoint(self, y):
        return ifftnc(y, axes=self.axes)

    def _normal(self, x):
        return x


class Mask(LinearOperator):
    """Multiplication by a sampling mask (boolean, or real weights) broadcast to ``shape``.

    Args:
        mask: boolean or real array that broadcasts to ``shape``.
        shape: the k-space shape (keyword-only); default ``mask.shape``.
    """

    mask: jax.Array

    def __init__(self, mask: ArrayLike, *, shape: Sequence[int] | None = None):
        func = "mskjax.linop.Mask"
        mask = as_array(mask, "mask", func)
        if 0 in np.shape(mask):
            raise ValueError(f"{func}: mask must not be empty, got shape {tuple(mask.shape)}")
        shape = tuple(mask.shape) if shape is None else _check_shape_tuple(shape, func)
        mask = check_mask(mask, shape, func)
        self._set(mask=mask, ishape=shape, oshape=shape)

    def _apply(self, x):
        return apply_mask(self.mask, x)

    def _adjoint(self, y):
        return apply_mask(self.mask, y)

    def _normal(self, x):
        return _mask_normal(self.mask, x)

    @property
    def hermitian(self) -> bool:
        return True


class Coils(LinearOperator):
    """Multiplication by coil sensitivity maps: image ``(*spatial)`` -> ``(coils, *spatial)``.

    Args:
        maps: complex ``(coils, *spatial)`` sensitivity maps.
    """

    maps: jax.Array

    def __init__(self, maps: ArrayLike):
        maps = check_maps(maps, "mskjax.linop.Coils")
        self._set(maps=maps, ishape=maps.shape[1:], oshape=maps.shape)

    def _apply(self, x):
        return self.maps * x

    def _adjoint(self, y):
        return jnp.sum(jnp.conj(self.maps) * y, axis=0)

    def _normal(self, x):
        return jnp.sum(jnp.abs(self.maps) ** 2, axis=0).astype(x.dtype) * x


class Sense(LinearOperator):
    """The SENSE forward model ``Mask @ FFT @ Coils``: image ``(*spatial)`` -> k-space.

    ``A(x) = M F (S x)`` with coil maps ``S`` ``(coils, *spatial)``, the centred orthonormal
    FFT ``F`` over the spatial axes, and an optional mask ``M`` that broadcasts to
    ``(coils, *spatial)``. The adjoint and normal operators are closed-form and fused:
    ``A.N(x) = sum_c conj(S_c) F^H M F (S_c x)`` (``sum_c |S_c|^2 x`` without a mask), with
    FFTs only along the axes on which the mask varies (see the module docstring).
    Equals ``sigpy.mri.linop.Sense(maps, weights=mask)`` for a 0/1 mask.

    Args:
        maps: complex ``(coils, *spatial)`` sensitivity maps, 2D or 3D spatial.
        mask: boolean or real weights broadcasting to ``(coils, *spatial)`` (keyword-only).
    """

    maps: jax.Array
    mask: jax.Array | None
    axes: tuple = static_field()

    def __init__(self, maps: ArrayLike, *, mask: ArrayLike | None = None):
        func = "mskjax.linop.Sense"
        maps = check_maps(maps, func)
        if mask is not None:
            mask = _reduced_mask(mask, maps.shape, func)
        self._set(maps=maps, mask=mask, axes=tuple(range(1, maps.ndim)),
                  ishape=maps.shape[1:], oshape=maps.shape)

    def _apply(self, x):
        return apply_mask(self.mask, fftnc(self.maps * x, axes=self.axes))

    def _adjoint(self, y):
        coil_images = ifftnc(apply_mask(self.mask, y), axes=self.axes)
        return jnp.sum(jnp.conj(self.maps) * coil_images, axis=0)

    def _normal(self, x):
        return self.N._apply(x)

    @property
    def N(self) -> SenseNormal:
        """``A.H @ A`` with the mask shifted once, here (see :class:`SenseNormal`)."""
        return SenseNormal._of(self.maps, self.mask, sets=False, ishape=self.ishape)


class SoftSense(LinearOperator):
    """SENSE with several sets of maps (soft-SENSE, as with ESPIRiT's two sets of maps).

    ``A(x) = M F (sum_m S_m x_m)`` for an image ``x`` of shape ``(sets, *spatial)`` and maps
    ``S`` of shape ``(sets, coils, *spatial)``: each set of maps multiplies its own image and the
    coil images add up. With one set it equals :class:`Sense` on ``x[0]``.

    Args:
        maps: complex ``(sets, coils, *spatial)`` sensitivity maps.
        mask: boolean or real weights broadcasting to ``(coils, *spatial)`` (keyword-only).
    """

    maps: jax.Array
    mask: jax.Array | None
    axes: tuple = static_field()

    def __init__(self, maps: ArrayLike, *, mask: ArrayLike | None = None):
        func = "mskjax.linop.SoftSense"
        maps = as_array(maps, "maps", func)
        check_ndim(maps, "maps", func, min_ndim=3, layout="(sets, coils, *spatial)")
        maps = check_maps(maps, func)
        if mask is not None:
            mask = _reduced_mask(mask, maps.shape[1:], func)
        self._set(maps=maps, mask=mask, axes=tuple(range(1, maps.ndim - 1)),
                  ishape=(maps.shape[0], *maps.shape[2:]), oshape=maps.shape[1:])

    def _apply(self, x):
        coil_images = jnp.sum(self.maps * x[:, None], axis=0)
        return apply_mask(self.mask, fftnc(coil_images, axes=self.axes))

    def _adjoint(self, y):
        coil_images = ifftnc(apply_mask(self.mask, y), axes=self.axes)
        return jnp.sum(jnp.conj(self.maps) * coil_images[None], axis=1)

    def _normal(self, x):
        return self.N._apply(x)

    @property
    def N(self) -> SenseNormal:
        """``A.H @ A`` with the mask shifted once, here (see :class:`SenseNormal`)."""
        return SenseNormal._of(self.maps, self.mask, sets=True, ishape=self.ishape)


class SenseNormal(LinearOperator):
    """The normal operator ``A.H @ A`` of :class:`Sense` or :class:`SoftSense`: ``Sense(...).N``.

    ``sum_c conj(S_c) F_c^H M F_c (S_c x)`` computed with plain FFTs on the ``ifftshift``-ed
    mask, only along the axes on which the mask varies (see the module docstring). The mask is
    shifted once, when ``A.N`` is taken, so a solver that takes ``A.N`` before its loop shifts
    nothing per iteration; gradients flow to the original mask through the shift. Without a
    mask (one set of maps) it is the pointwise ``sum_c |S_c|^2 x``. Self-adjoint.
    """

    maps: jax.Array
    mask: jax.Array | None  # shifted: ifftshift along the axes on which it varies
    sets: bool = static_field()

    @classmethod
    def _of(cls, maps, mask, *, sets, ishape):
        op = object.__new__(cls)
        ndim = maps.ndim - 1 if sets else maps.ndim
        shifted = None if mask is None else _shift_mask(mask, ndim)
        op._set(maps=maps, mask=shifted, sets=sets, ishape=ishape, oshape=ishape)
        return op

    def _apply(self, x):
        if not self.sets:
            if self.mask is None:
                return jnp.sum(jnp.abs(self.maps) ** 2, axis=0).astype(x.dtype) * x
            coil_images = _fast_normal(self.mask, self.maps * x)
            return jnp.sum(jnp.conj(self.maps) * coil_images, axis=0)
        coil_images = jnp.sum(self.maps * x[:, None], axis=0)
        if self.mask is not None:
            coil_images = _fast_normal(self.mask, coil_images)
        return jnp.sum(jnp.conj(self.maps) * coil_images[None], axis=1)

    def _adjoint(self, y):
        return self._apply(y)

    @property
    def H(self) -> SenseNormal:
        return self

    @property
    def hermitian(self) -> bool:
        return True
