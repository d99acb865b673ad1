"""The 2D parallel-beam Radon transform (CT projection) as a linear operator.

Geometry, the same as ``skimage.transform.radon`` (whose sinogram is this one transposed):

- the image is ``(rows, cols)``; the rotation centre is the pixel ``(rows // 2, cols // 2)``
  (the centre of the library's centred FFTs);
- the sinogram is ``(angles, detectors)``, one projection per row; detector ``j`` lies at
  ``t = j - num_detectors // 2`` pixels from the centre;
- angles are in **radians**. At angle ``theta`` the rays run along the unit vector
  ``(cos theta, sin theta)`` in ``(row, col)`` coordinates and the detector axis along
  ``(-sin theta, cos theta)``: at ``theta = 0`` a projection sums the image over its rows
  (axis 0) and detector ``t`` sees column ``cols // 2 + t``. A pixel at ``(row, col)``
  projects onto ``t = (col - cols // 2) cos theta - (row - rows // 2) sin theta``.

Each line integral is ray-driven: the image is sampled by bilinear interpolation (zero outside
the image) at unit steps along the ray, ``s = k - num_samples // 2``, and the samples are
summed and multiplied by ``pixel_size``. So with an attenuation map in 1/cm and
``pixel_size`` in cm the sinogram is the dimensionless ``integral mu ds`` of Beer-Lambert; with
the default ``pixel_size=1`` it is in pixel units. This is exactly what scikit-image computes
by rotating the image with bilinear interpolation and summing.

The adjoint (``.H``, the back-projection) is the exact transpose, derived by JAX (a scatter-add
of each detector value onto the four pixels around every sample). The operator is linear in
the image only: the angles are a pytree leaf (operators of the same shapes share compiled
code, and a net can vmap over angle sets), but the projection is not linear in them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_finite, check_interval, check_positive_int
from ._base import LinearOperator, _check_shape_tuple, static_field

_FUNC = "mskjax.linop.Radon"


def default_num_detectors(shape: Sequence[int]) -> int:
    """Detectors that see every ray touching a ``(rows, cols)`` image at any angle: an odd
    number covering the distance from the rotation centre to the farthest pixel corner plus
    the one pixel of bilinear support."""
    rows, cols = shape
    reach_r = max(rows // 2, rows - 1 - rows // 2) + 1
    reach_c = max(cols // 2, cols - 1 - cols // 2) + 1
    return 2 * math.ceil(math.hypot(reach_r, reach_c)) + 1


class Radon(LinearOperator):
    """Parallel-beam projection ``(rows, cols) -> (angles, detectors)`` (module docstring).

    Args:
        shape: the image shape ``(rows, cols)``.
        angles: projection angles in radians, 1D (e.g. ``np.linspace(0, np.pi, 180,
            endpoint=False)``), finite.
        num_detectors: detector bins (keyword-only); default :func:`default_num_detectors`,
            enough for every ray through the image. ``skimage.transform.radon(...,
            circle=True)`` of a square ``n x n`` image corresponds to ``num_detectors=n``.
        pixel_size: the side of a pixel (keyword-only; default 1: line integrals in pixels),
            in the length unit whose inverse the image is in (cm for attenuation in 1/cm).

    Works on real and complex images (the weights are real); float64 with JAX x64.
    """

    angles: jax.Array
    pixel_size: float = static_field()
    num_samples: int = static_field()

    def __init__(self, shape: Sequence[int], angles: ArrayLike, *,
                 num_detectors: int | None = None, pixel_size: float = 1.0):
        func = _FUNC
        shape = _check_shape_tuple(shape, func)
        if len(shape) != 2:
            raise ValueError(f"{func}: shape must be (rows, cols), got {shape}")
        angles = as_array(angles, "angles", func)
        if np.ndim(angles) != 1 or np.shape(angles)[0] < 1:
            raise ValueError(f"{func}: angles must be a non-empty 1D array (radians), got shape "
                             f"{tuple(np.shape(angles))}")
        if not (jnp.issubdtype(angles.dtype, jnp.floating)
                or jnp.issubdtype(angles.dtype, jnp.integer)):
            raise TypeError(f"{func}: angles must be real (radians), got {angles.dtype}")
        check_finite(angles, "angles", func)
        if num_detectors is None:
            num_detectors = default_num_detectors(shape)
        check_positive_int(num_detectors, "num_detectors", func)
        check_interval(pixel_size, "pixel_size", func, low=0)
        angles = jnp.asarray(angles)
        if not jnp.issubdtype(angles.dtype, jnp.floating):
            angles = angles.astype(jnp.float32)
        self._set(angles=angles, pixel_size=float(pixel_size),
                  num_samples=default_num_detectors(shape),
                  ishape=shape, oshape=(int(angles.shape[0]), int(num_detectors)))

    @property
    def num_detectors(self) -> int:
        return self.oshape[1]

    @property
    def hermitian(self) -> bool:
        return False

    def sample_points(self) -> tuple[jax.Array, jax.Array]:
        """``(row, col)`` coordinates of every sample, each ``(angles, detectors, samples)``."""
        rows, cols = self.ishape
        dtype = self.angles.dtype
        theta = self.angles[:, None, None]
        t = (jnp.arange(self.num_detectors) - self.num_detectors // 2).astype(dtype)
        s = (jnp.arange(self.num_samples) - self.num_samples // 2).astype(dtype)
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        row = rows // 2 - t[None, :, None] * sin + s[None, None, :] * cos
        col = cols // 2 + t[None, :, None] * cos + s[None, None, :] * sin
        return row, col

    def _apply(self, x):
        rows, cols = self.ishape
        row, col = self.sample_points()
        r0, c0 = jnp.floor(row), jnp.floor(col)
        fr, fc = (row - r0).astype(x.real.dtype), (col - c0).astype(x.real.dtype)
        # One pixel of zeros around the image; indices beyond it clip onto the zeros.
        padded = jnp.pad(x, 1).reshape(-1)
        r0 = r0.astype(jnp.int32) + 1
        c0 = c0.astype(jnp.int32) + 1

        def pick(r, c):
            r = jnp.clip(r, 0, rows + 1)
            c = jnp.clip(c, 0, cols + 1)
            return padded[r * (cols + 2) + c]

        value = ((1 - fr) * (1 - fc) * pick(r0, c0) + (1 - fr) * fc * pick(r0, c0 + 1)
                 + fr * (1 - fc) * pick(r0 + 1, c0) + fr * fc * pick(r0 + 1, c0 + 1))
        return (self.pixel_size * jnp.sum(value, axis=-1)).astype(x.dtype)
