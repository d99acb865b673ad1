"""Deformable refinement of class probabilities towards image edges (a geodesic Potts model).

The model. Liu et al. (2018, Magn Reson Med 79:2379) refine a network's segmentation of the
knee by deforming a simplex mesh towards image edges under a smoothness constraint. This module
plays the same role, but on the probability maps instead of a mesh, and as a convex problem
with one global minimum instead of a local mesh evolution::

    min_u  sum_x sum_k u_k(x) f_k(x)  +  smoothness * sum_k sum_x g(x) |grad u_k(x)|
    s.t.   u(x) in the probability simplex at every voxel x,

the convex relaxation of the multi-label Potts model (Zach et al. 2008; Chambolle, Cremers and
Pock 2012) with the data term ``f_k = -log p_k`` of the given probabilities ``p`` and the total
variation weighted by the edge indicator of geodesic active contours (Caselles, Kimmel and
Sapiro 1997) ``g = 1 / (1 + |grad G_s * I|^2 / edge_scale^2)``, ``G_s * I`` the image smoothed by
a Gaussian. For two classes it is exactly the convex (Chan-Esedoglu-Nikolova / Bresson et al.
2007) form of the geodesic active contour energy.

Why this model. A boundary costs ``smoothness * g`` per unit of its length (area in 3D): little
where the image has an edge, much in flat regions. Where the prediction is unsure (``p`` near
0.5, as at a blurred or misplaced boundary) the data term barely resists, so the boundary moves
to the nearest strong edge, and small spurious pieces, whose whole outline is expensive, are
removed; where the prediction is confident it stays. That is what the mesh step does, without
a mesh: no topology to fix, any number of classes at once, 2D and 3D alike, and every step a
jittable, differentiable array operation.

The solver. The first-order primal-dual method of Chambolle and Pock (2011, Algorithm 1) with
``tau = sigma = 1 / ||grad||`` (``||grad||^2 <= sum_a 4 / spacing_a^2``), in a ``lax.scan``:
the dual variable is projected onto the balls ``|xi_k(x)| <= smoothness * g(x)`` and the primal
onto the simplex (Michelot 1986). The generic :func:`mskjax.solvers.primal_dual`
does not fit: its data term is a least-squares term taken by gradient steps, this one is linear
with a simplex constraint, taken by its proximal map.

Conventions: probabilities are channels-last ``(*spatial, classes)`` (the layout of
``pipeline.Sample.segmentation`` scores and of the nets' outputs after a softmax), the image is
``(*spatial)`` real; ``spacing`` (mm per voxel along each spatial axis) makes lengths physical:
gradients are per mm and ``edge_smoothing`` is in mm. Forward differences with Neumann
(zero-flux) boundaries. float32 in, float32 out (float64 with 64-bit JAX).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import (_is_concrete, as_array, check_finite, check_interval, check_positive_int,
                       check_spacing)

#: Probabilities are clipped below at this value before the logarithm of the data term.
PROBABILITY_FLOOR = 1e-6


def _check_image(image, func):
    image = as_array(image, "image", func)
    dtype = jnp.result_type(image)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{func}: image must be real floating point, got {dtype}; take jnp.abs "
                        "of a complex image, convert integers explicitly")
    if image.ndim < 1 or image.size == 0:
        raise ValueError(f"{func}: image must be a non-empty (*spatial) array, got shape "
                         f"{tuple(image.shape)}")
    check_finite(image, "image", func)
    return jnp.asarray(image)


def gradient(u: jax.Array, spacing: tuple[float, ...]) -> jax.Array:
    """Forward differences per mm along the first ``len(spacing)`` axes, zero at the last index.

    ``(*spatial, ...)`` -> ``(len(spacing), *spatial, ...)``.
    """
    parts = []
    for axis, h in enumerate(spacing):
        ahead = jnp.concatenate([jax.lax.slice_in_dim(u, 1, None, axis=axis),
                                 jax.lax.slice_in_dim(u, -1, None, axis=axis)], axis=axis)
        parts.append((ahead - u) / h)
    return jnp.stack(parts)


def divergence(p: jax.Array, spacing: tuple[float, ...]) -> jax.Array:
    """The negative adjoint of :func:`gradient`: ``(ndim, *spatial, ...)`` -> ``(*spatial, ...)``."""
    out = 0
    for axis, h in enumerate(spacing):
        q = p[axis]
        n = q.shape[axis]
        q = jnp.concatenate([jax.lax.slice_in_dim(q, 0, n - 1, axis=axis),
                             jnp.zeros_like(jax.lax.slice_in_dim(q, 0, 1, axis=axis))], axis=axis)
        behind = jnp.concatenate([jnp.zeros_like(jax.lax.slice_in_dim(q, 0, 1, axis=axis)),
                                  jax.lax.slice_in_dim(q, 0, n - 1, axis=axis)], axis=axis)
        out = out + (q - behind) / h
    return out


def _gaussian_smooth(image, sigmas):
    """Separable Gaussian filter (``sigmas`` in voxels, per axis; 0 skips the axis), nearest
    (edge-replicating) boundaries, kernels truncated at 3 sigma and normalised."""
    for axis, s in enumerate(sigmas):
        if s <= 0:
            continue
        radius = max(1, int(math.ceil(3 * s)))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / s) ** 2)
        taps = taps / taps.sum()
        pads = [(0, 0)] * image.ndim
        pads[axis] = (radius, radius)
        padded = jnp.pad(image, pads, mode="edge")
        n = image.shape[axis]
        image = sum(float(t) * jax.lax.slice_in_dim(padded, i, i + n, axis=axis)
                    for i, t in enumerate(taps))
    return image


def edge_weight(image: ArrayLike, *, spacing=None, edge_scale: float | None = None,
                edge_smoothing: float = 0.5) -> jax.Array:
    """The edge indicator ``g = 1 / (1 + |grad G * I|^2 / edge_scale^2)`` of an image.

    Args:
        image: real ``(*spatial)``.
        spacing: mm per voxel, a number or one per axis; default 1 (keyword-only).
        edge_scale: the gradient magnitude (image units per mm) at which ``g = 1/2``; default
            the 90th percentile of the image's gradient magnitude (so that roughly the
            steepest tenth of the voxels count as edges).
        edge_smoothing: standard deviation (mm) of the Gaussian applied to the image before
            the gradient is taken, against noise; 0 for none.

    Returns:
        ``(*spatial)`` weights in ``(0, 1]``, 1 in flat regions. A constant image gives 1
        everywhere (for any ``edge_scale``).
    """
    func = "mskjax.refine.edge_weight"
    image = _check_image(image, func)
    spacing = check_spacing(spacing, image.ndim, func, what="image")
    check_interval(edge_smoothing, "edge_smoothing", func, low=0, low_open=False)
    if edge_scale is not None:
        check_interval(edge_scale, "edge_scale", func, low=0)
    return _edge_weight(image, spacing, edge_scale, float(edge_smoothing))


@functools.partial(jax.jit, static_argnames=("spacing", "edge_smoothing"))
def _edge_weight(image, spacing, edge_scale, edge_smoothing):
    smooth = _gaussian_smooth(image, [edge_smoothing / h for h in spacing])
    magnitude2 = jnp.sum(gradient(smooth, spacing) ** 2, axis=0)
    if edge_scale is None:
        scale2 = jnp.quantile(magnitude2, 0.9)
        # A flat image has no edges: any positive scale gives g = 1.
        scale2 = jnp.where(scale2 > 0, scale2, 1.0)
    else:
        scale2 = jnp.asarray(edge_scale, magnitude2.dtype) ** 2
    return 1.0 / (1.0 + magnitude2 / scale2)


def project_simplex(v: jax.Array) -> jax.Array:
    """Euclidean projection of each ``v[..., :]`` onto the probability simplex.

    Michelot's (1986) iteration: the threshold ``theta = (sum of the kept entries - 1) /
    (their number)`` rises as entries at or below it are dropped, and is exact once the kept set
    stops changing (after at most ``classes`` rounds; usually two or three). Without sorting,
    which is slow on XLA's CPU backend. Returns ``max(v - theta, 0)``.
    """
    k = v.shape[-1]
    columns = [v[..., j] for j in range(k)]

    def threshold(kept):
        # sums over the (short) class axis written out: XLA's CPU reductions over a minor
        # axis of a few entries are several times slower
        count = sum(kept[..., j].astype(v.dtype) for j in range(k))
        total = sum(jnp.where(kept[..., j], columns[j], 0) for j in range(k))
        return ((total - 1) / jnp.maximum(count, 1))[..., None]

    def body(state):
        kept, _, i = state
        new = v > threshold(kept)
        return new, jnp.any(new != kept), i + 1

    kept = jnp.ones(v.shape, bool)
    kept, _, _ = jax.lax.while_loop(lambda s: s[1] & (s[2] < k), body,
                                    (kept, jnp.asarray(True), 0))
    return jnp.maximum(v - threshold(kept), 0)


def _check_probabilities(probabilities, spatial, func):
    probabilities = as_array(probabilities, "probabilities", func)
    dtype = jnp.result_type(probabilities)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{func}: probabilities must be floating point, got {dtype}")
    if tuple(probabilities.shape[:-1]) != tuple(spatial) or probabilities.ndim != len(spatial) + 1 \
            or probabilities.shape[-1] < 2:
        raise ValueError(f"{func}: probabilities must be (*spatial, classes) with the image's "
                         f"spatial shape {tuple(spatial)} and at least 2 classes, got shape "
                         f"{tuple(probabilities.shape)}")
    check_finite(probabilities, "probabilities", func)
    if _is_concrete(probabilities):
        values = np.asarray(probabilities, np.float64)
        worst = float(np.abs(values.sum(-1) - 1).max())
        if values.min() < 0 or worst > 1e-3:
            raise ValueError(f"{func}: probabilities must be non-negative and sum to 1 over "
                             f"the last axis (apply a softmax to logits), got minimum "
                             f"{values.min():.3g} and sums off by up to {worst:.3g}")
    return jnp.asarray(probabilities)


def refine_probabilities(probabilities: ArrayLike, image: ArrayLike, *, spacing=None,
                         smoothness: float = 1.0, edge_scale: float | None = None,
                         edge_smoothing: float = 0.5, num_iter: int = 200) -> jax.Array:
    """Refine class probabilities towards image edges (geodesic Potts model; module docstring).

    Args:
        probabilities: ``(*spatial, classes)``, non-negative, summing to 1 over the last axis
            (a softmax of a net's logits), at least 2 classes.
        image: real ``(*spatial)`` image whose edges attract the boundaries.
        spacing: mm per voxel, a number or one per spatial axis; default 1 (keyword-only).
        smoothness: weight of the edge-weighted boundary length (per mm of boundary, against
            the data term's nats per voxel): larger values move boundaries further and remove
            larger pieces. Boundaries shorter than about ``area / (smoothness * g)`` cost more
            than their data term and disappear.
        edge_scale, edge_smoothing: of the edge indicator, see :func:`edge_weight`.
        num_iter: primal-dual iterations (static); 200 settle a 2D slice, more suit large
            3D volumes with large ``smoothness``.

    Returns:
        ``(*spatial, classes)`` refined probabilities (each voxel on the simplex; the relaxed
        labelling, nearly one-hot away from boundaries), the dtype of the input. Take
        ``argmax`` over the last axis for labels. Jits, vmaps and differentiates.
    """
    func = "mskjax.refine.refine_probabilities"
    image = _check_image(image, func)
    probabilities = _check_probabilities(probabilities, image.shape, func)
    spacing = check_spacing(spacing, image.ndim, func, what="image")
    check_interval(smoothness, "smoothness", func, low=0, low_open=False)
    check_interval(edge_smoothing, "edge_smoothing", func, low=0, low_open=False)
    if edge_scale is not None:
        check_interval(edge_scale, "edge_scale", func, low=0)
    check_positive_int(num_iter, "num_iter", func)
    dtype = jnp.result_type(probabilities, image)
    return _refine(probabilities.astype(dtype), image.astype(dtype), jnp.asarray(smoothness, dtype),
                   None if edge_scale is None else jnp.asarray(edge_scale, dtype),
                   spacing=spacing, edge_smoothing=float(edge_smoothing), num_iter=num_iter)


@functools.partial(jax.jit, static_argnames=("spacing", "edge_smoothing", "num_iter"))
def _refine(probabilities, image, smoothness, edge_scale, *, spacing, edge_smoothing, num_iter):
    dtype = probabilities.dtype
    weight = _edge_weight(image, spacing, edge_scale, edge_smoothing)
    bound = (smoothness * weight)[..., None]  # per voxel, shared by the classes
    cost = -jnp.log(jnp.maximum(probabilities, PROBABILITY_FLOOR))
    step = 1.0 / math.sqrt(sum(4.0 / h ** 2 for h in spacing))
    tiny = jnp.finfo(dtype).tiny

    def body(state, _):
        u, u_bar, xi = state
        xi = xi + step * gradient(u_bar, spacing)
        norm2 = sum(xi[a] * xi[a] for a in range(len(spacing)))
        xi = xi * jnp.minimum(1.0, bound * jax.lax.rsqrt(jnp.maximum(norm2, tiny)))
        u_new = project_simplex(u + step * (divergence(xi, spacing) - cost))
        return (u_new, 2 * u_new - u, xi), None

    xi0 = jnp.zeros((image.ndim, *probabilities.shape), dtype)
    (u, _, _), _ = jax.lax.scan(body, (probabilities, probabilities, xi0), None, length=num_iter)
    return u
