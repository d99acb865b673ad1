"""Signed distance functions (SDFs) of simple solids and their smooth combinations.

All functions take the coordinates as separate arrays ``x, y, z`` (any broadcastable shapes, in
mm) and return the signed distance in mm: negative inside, zero on the surface, positive
outside. The ellipsoid and ellipse distances use the first-order approximation
``k0 (k0 - 1) / k1`` with ``k0 = |p / r|`` and ``k1 = |p / r**2|``, which is exact on the
surface and along the axes and accurate to a few per cent within a few mm of a smooth surface,
enough for cartilage shells of 1 to 4 mm around bones tens of mm across.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

#: A distance far outside everything, used instead of ``inf`` so that smooth minima stay finite.
FAR = 1.0e3


def smooth_min(a, b, k):
    """Polynomial smooth minimum of two distances with blend radius ``k`` (mm, ``> 0``)."""
    h = jnp.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smooth_max(a, b, k):
    """Smooth maximum (intersection) of two distances with blend radius ``k`` (mm)."""
    return -smooth_min(-a, -b, k)


def smooth_union(distances, k):
    """Smooth minimum of a sequence of distances, folded left to right."""
    out = distances[0]
    for d in distances[1:]:
        out = smooth_min(out, d, k)
    return out


def ellipse(u, v, ru, rv):
    """2D ellipse centred at the origin with semi-axes ``ru``, ``rv``."""
    qu, qv = u / ru, v / rv
    k0 = jnp.sqrt(qu * qu + qv * qv)
    k1 = jnp.sqrt((qu / ru) ** 2 + (qv / rv) ** 2)
    return k0 * (k0 - 1.0) / jnp.maximum(k1, 1e-9)


def ellipsoid(x, y, z, center, radii):
    """Ellipsoid with the given centre ``(3,)`` and semi-axes ``(3,)`` (axis aligned)."""
    qx = (x - center[0]) / radii[0]
    qy = (y - center[1]) / radii[1]
    qz = (z - center[2]) / radii[2]
    k0 = jnp.sqrt(qx * qx + qy * qy + qz * qz)
    k1 = jnp.sqrt((qx / radii[0]) ** 2 + (qy / radii[1]) ** 2 + (qz / radii[2]) ** 2)
    return k0 * (k0 - 1.0) / jnp.maximum(k1, 1e-9)


def extrude(d2, w):
    """Extrude a 2D distance ``d2`` along a third axis; ``w = |t| - half_length``."""
    return jnp.minimum(jnp.maximum(d2, w), 0.0) + jnp.sqrt(
        jnp.maximum(d2, 0.0) ** 2 + jnp.maximum(w, 0.0) ** 2)


def rounded_disc_x(x, y, z, center, half_width, ry, rz, rounding):
    """A slab of elliptical outline in the (y, z) plane, ``2 * half_width`` thick along x.

    Its outer semi-axes are ``ry`` and ``rz`` and its rims are rounded with radius ``rounding``
    (the shape of a femoral condyle: elliptical in sagittal section, flat and rounded-off in
    coronal section).
    """
    d2 = ellipse(y - center[1], z - center[2], ry - rounding, rz - rounding)
    return extrude(d2, jnp.abs(x - center[0]) - (half_width - rounding)) - rounding


def rounded_disc_y(x, y, z, center, half_height, rx, rz, rounding):
    """A slab of elliptical outline in the (x, z) plane, ``2 * half_height`` thick along y."""
    d2 = ellipse(x - center[0], z - center[2], rx - rounding, rz - rounding)
    return extrude(d2, jnp.abs(y - center[1]) - (half_height - rounding)) - rounding


def elliptic_cylinder_y(x, z, center_x, center_z, rx, rz):
    """Infinite cylinder along y with an elliptical cross-section in the (x, z) plane."""
    return ellipse(x - center_x, z - center_z, rx, rz)


def capsule(x, y, z, a, b, radius, *, x_scale=1.0):
    """Capsule of ``radius`` around the segment from ``a`` to ``b`` (each ``(3,)``).

    ``x_scale > 1`` flattens it into a band ``x_scale`` times wider along x (a tendon); the
    result is then a distance only along y and z.
    """
    px, py, pz = (x - a[0]) / x_scale, y - a[1], z - a[2]
    bx, by, bz = (b[0] - a[0]) / x_scale, b[1] - a[1], b[2] - a[2]
    t = jnp.clip((px * bx + py * by + pz * bz) / (bx * bx + by * by + bz * bz), 0.0, 1.0)
    return jnp.sqrt((px - t * bx) ** 2 + (py - t * by) ** 2 + (pz - t * bz) ** 2) - radius


def smoothstep(edge0, edge1, x):
    """Cubic Hermite step from 0 at ``edge0`` to 1 at ``edge1``."""
    t = jnp.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def rotation_matrix(angles_deg):
    """Rotation ``Rz @ Ry @ Rx`` for angles (degrees) about the x, y and z axes."""
    ax, ay, az = (jnp.deg2rad(a) for a in (angles_deg[0], angles_deg[1], angles_deg[2]))
    cx, sx, cy, sy, cz, sz = (jnp.cos(ax), jnp.sin(ax), jnp.cos(ay), jnp.sin(ay), jnp.cos(az),
                              jnp.sin(az))
    one, zero = jnp.ones_like(cx), jnp.zeros_like(cx)
    rx = jnp.array([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
    ry = jnp.array([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    rz = jnp.array([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
    return rz @ ry @ rx


@functools.cache
def fast_compile_options():
    """XLA options under which the phantom's long element-wise programs compile two to three
    times faster on CPU (at some cost in run time), or ``None`` where this XLA lacks them."""
    options = {"xla_cpu_use_fusion_emitters": False}
    try:
        jax.jit(lambda v: v + 1, compiler_options=options).lower(jnp.float32(0)).compile()
    except Exception:  # an XLA without the option: compile with the defaults
        return None
    return options


def jit(fun, **kwargs):
    """``jax.jit`` with :func:`fast_compile_options` where JAX accepts compiler options (a
    top-level call, or under ``vmap``); a plain ``jax.jit`` inside another ``jit``."""
    fast, plain = [], []

    @functools.wraps(fun)
    def wrapper(*args, **kw):
        if not plain:
            plain.append(jax.jit(fun, **kwargs))
            fast.append(jax.jit(fun, compiler_options=fast_compile_options(), **kwargs))
        try:
            return fast[0](*args, **kw)
        except ValueError as error:  # nested in another jit: options must come from the outside
            if "compiler_options" not in str(error):
                raise
            return plain[0](*args, **kw)

    return wrapper
