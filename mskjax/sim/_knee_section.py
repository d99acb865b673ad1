"""A deterministic 2D axial knee cross-section built from ellipses, for demos and tests.

The geometry is in normalised coordinates, ``y`` (rows, anterior at the top) and ``x``
(columns), each spanning ``[-1, 1)`` over the field of view, so any matrix size gives the same
anatomy. Intensities are proton-density-like on a 0 to 1 scale: subcutaneous fat and fatty bone
marrow bright, muscle intermediate, cartilage between, cortical bone and tendon dark, joint
fluid brightest.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._checks import check_ndim, check_positive_int

#: Tissue name -> intensity. Painted in the order of ``_ELLIPSES``; later ones overwrite.
TISSUE_INTENSITY = {
    "background": 0.0,
    "subcutaneous_fat": 0.9,
    "muscle": 0.35,
    "cortical_bone": 0.05,
    "bone_marrow": 0.7,
    "cartilage": 0.55,
    "joint_fluid": 1.0,
    "vessel": 0.12,
    "tendon": 0.06,
}

# (tissue, centre y, centre x, radius y, radius x, rotation in degrees)
_ELLIPSES = (
    ("subcutaneous_fat", 0.02, 0.0, 0.86, 0.80, 0.0),
    ("muscle", 0.06, 0.0, 0.76, 0.71, 0.0),
    ("joint_fluid", -0.30, 0.0, 0.30, 0.50, 0.0),
    ("cartilage", -0.02, 0.0, 0.46, 0.58, 0.0),
    ("cortical_bone", 0.0, 0.0, 0.42, 0.54, 0.0),
    ("bone_marrow", 0.0, 0.0, 0.385, 0.505, 0.0),
    ("cortical_bone", 0.10, 0.0, 0.18, 0.05, 0.0),  # intercondylar notch
    ("cartilage", -0.58, 0.0, 0.15, 0.30, 0.0),
    ("cortical_bone", -0.63, 0.0, 0.13, 0.27, 0.0),  # patella
    ("bone_marrow", -0.635, 0.0, 0.105, 0.24, 0.0),
    ("tendon", -0.80, 0.0, 0.035, 0.22, 0.0),  # quadriceps / patellar tendon
    ("vessel", 0.55, 0.05, 0.045, 0.045, 0.0),  # popliteal artery
    ("vessel", 0.57, -0.06, 0.05, 0.06, 0.0),  # popliteal vein
    ("tendon", 0.40, 0.55, 0.05, 0.08, 30.0),
    ("tendon", 0.40, -0.55, 0.05, 0.08, -30.0),
)


def knee_section(shape: Sequence[int] = (320, 256), *,
                 dtype: DTypeLike = jnp.float32) -> jax.Array:
    """An axial knee cross-section at the femoral condyles (a real, non-negative image).

    Args:
        shape: ``(rows, cols)`` of the image.
        dtype: a real dtype (keyword-only).

    Returns:
        ``(rows, cols)`` image with values in ``[0, 1]`` (see :data:`TISSUE_INTENSITY`).
    """
    func = "mskjax.sim.knee_section"
    shape = tuple(shape)
    check_ndim(shape, "shape", func, ndim=1, layout="a (rows, cols) pair")
    if len(shape) != 2:
        raise ValueError(f"{func}: shape must be a (rows, cols) pair, got {shape}")
    for n in shape:
        check_positive_int(n, "each size in shape", func, minimum=8)
    rows, cols = shape
    y = (jnp.arange(rows) - rows / 2) / (rows / 2)
    x = (jnp.arange(cols) - cols / 2) / (cols / 2)
    y, x = jnp.meshgrid(y, x, indexing="ij")
    image = jnp.zeros(shape, dtype)
    for tissue, cy, cx, ry, rx, angle in _ELLIPSES:
        theta = jnp.deg2rad(angle)
        dy, dx = y - cy, x - cx
        u = dy * jnp.cos(theta) + dx * jnp.sin(theta)
        v = -dy * jnp.sin(theta) + dx * jnp.cos(theta)
        inside = (u / ry) ** 2 + (v / rx) ** 2 <= 1
        image = jnp.where(inside, jnp.asarray(TISSUE_INTENSITY[tissue], dtype), image)
    return image
