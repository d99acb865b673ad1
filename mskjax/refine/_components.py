"""Connected components of a label map, and the largest-component clean-up of a segmentation.

Labels are integer ``(*spatial)`` arrays, ``0`` the background and ``1 .. num_classes - 1`` the
foreground classes. Two voxels are neighbours when they differ by at most one along every axis
and along at most ``connectivity`` axes (``scipy.ndimage.generate_binary_structure(ndim,
connectivity)``: 1 gives the 4/6-neighbourhood in 2D/3D, ``ndim`` the 8/26-neighbourhood).

The components are found in JAX, so the functions jit and vmap (and run inside a pipeline):
every voxel points to a voxel of its component, starting with itself; each round the smallest
pointer among a voxel's same-class neighbours is hooked onto the voxel's own target (a
scatter-min) and the pointers are then shortened by pointer jumping (``p = p[p]``), which
takes a number of rounds that grows with the logarithm of the component's extent rather than
with its length, until nothing changes. Pointers only decrease and always name a voxel of the
same component, so at the end every voxel points to the first voxel of its component in
row-major (raster) order, the order in which ``scipy.ndimage.label`` numbers components.
"""

from __future__ import annotations

import functools
import itertools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_finite


def _check_labels(labels, num_classes, connectivity, func):
    labels = as_array(labels, "labels", func)
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"{func}: labels must be an integer array, got {jnp.result_type(labels)}")
    if labels.ndim < 1:
        raise ValueError(f"{func}: labels must be (*spatial) with at least one axis, got shape "
                         f"{tuple(labels.shape)}")
    if labels.size == 0:
        raise ValueError(f"{func}: labels must not be empty, got shape {tuple(labels.shape)}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(
            num_classes, numbers.Integral) or num_classes < 1):
        raise ValueError(f"{func}: num_classes must be an integer >= 1 (background included), "
                         f"got {num_classes!r}")
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral) \
            or not 1 <= connectivity <= labels.ndim:
        raise ValueError(f"{func}: connectivity must be an integer in 1..{labels.ndim} (the "
                         f"number of spatial axes), got {connectivity!r}")
    if num_classes is not None and _is_concrete(labels):
        values = np.asarray(labels)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"{func}: labels must lie in 0..{num_classes - 1} (num_classes="
                             f"{num_classes}), got values in {low}..{high}")
    return jnp.asarray(labels)


def _offsets(ndim, connectivity):
    return [d for d in itertools.product((-1, 0, 1), repeat=ndim)
            if any(d) and sum(map(abs, d)) <= connectivity]


def _shift(x, offset, fill):
    """``out[i] = x[i + offset]``, ``fill`` outside the array."""
    pads, index = [], []
    for d, n in zip(offset, x.shape):
        pads.append((max(-d, 0), max(d, 0)))
        index.append(slice(max(d, 0), max(d, 0) + n))
    return jnp.pad(x, pads, constant_values=fill)[tuple(index)]


@functools.partial(jax.jit, static_argnames="connectivity")
def _component_roots(labels, connectivity):
    """For each voxel the flat index of the first voxel (raster order) of its component
    (same label, connected); every voxel, background included, belongs to a component."""
    shape, size = labels.shape, labels.size
    big = jnp.iinfo(jnp.int32).max
    flat = jnp.arange(size, dtype=jnp.int32)
    offsets = _offsets(labels.ndim, connectivity)
    same = [(_shift(labels, d, -1) == labels).reshape(-1) for d in offsets]

    def neighbour_min(parent):
        grid = parent.reshape(shape)
        best = jnp.full((size,), big, jnp.int32)
        for d, ok in zip(offsets, same):
            best = jnp.minimum(best, jnp.where(ok, _shift(grid, d, big).reshape(-1), big))
        return best

    def jump(parent):
        return parent[parent]

    def round_(state):
        parent, _ = state
        candidate = jnp.minimum(parent, neighbour_min(parent))
        hooked = parent.at[parent].min(candidate)
        new = jump(jump(jnp.minimum(hooked, candidate)))
        new = jump(new)
        return new, jnp.any(new != parent)

    parent, _ = jax.lax.while_loop(lambda s: s[1], round_, (flat, jnp.asarray(True)))
    return parent


def connected_components(labels: ArrayLike, *, connectivity: int = 1) -> jax.Array:
    """Connected components of every label value (background included).

    Args:
        labels: integer ``(*spatial)`` label map.
        connectivity: neighbourhood, 1..ndim (keyword-only; see the module docstring).

    Returns:
        int32 ``(*spatial)``: for each voxel, the flat (row-major) index of the first voxel of
        its component, so equal values mean one component. Restricted to one label value the
        components are those of ``scipy.ndimage.label(labels == value, structure)``.
    """
    func = "mskjax.refine.connected_components"
    labels = _check_labels(labels, None, connectivity, func)
    return _component_roots(labels, connectivity).reshape(labels.shape)


def largest_component(labels: ArrayLike, *, num_classes: int, connectivity: int = 1,
                      probabilities: ArrayLike | None = None) -> jax.Array:
    """Keep the largest connected component of each foreground class.

    Args:
        labels: integer ``(*spatial)`` segmentation with values ``0 .. num_classes - 1``
            (0 the background, which is left as it is).
        num_classes: number of classes, background included (keyword-only; static).
        connectivity: neighbourhood, 1..ndim (see the module docstring).
        probabilities: optional ``(*spatial, num_classes)`` class scores (probabilities or
            logits; only their order matters). Without them a removed voxel becomes background,
            as in nnU-Net's post-processing; with them it takes its most likely class other
            than the one it was removed from (which may be the background). The result is not
            cleaned again: a voxel moved to another class may lie outside that class's largest
            component; call again if that matters.

    Returns:
        int32 ``(*spatial)`` labels. Among components of equal size the first in raster
        order is kept (``scipy.ndimage.label`` numbering). A class that is absent stays absent.
    """
    func = "mskjax.refine.largest_component"
    labels = _check_labels(labels, num_classes, connectivity, func).astype(jnp.int32)
    if probabilities is not None:
        probabilities = as_array(probabilities, "probabilities", func)
        if tuple(probabilities.shape) != (*labels.shape, num_classes):
            raise ValueError(f"{func}: probabilities must be (*spatial, num_classes) = "
                             f"{(*labels.shape, num_classes)}, got {tuple(probabilities.shape)}")
        if not jnp.issubdtype(jnp.result_type(probabilities), jnp.floating):
            raise TypeError(f"{func}: probabilities must be floating point, got "
                            f"{jnp.result_type(probabilities)}")
        check_finite(probabilities, "probabilities", func)
    return _largest(labels, probabilities, num_classes, connectivity)


@functools.partial(jax.jit, static_argnames=("num_classes", "connectivity"))
def _largest(labels, probabilities, num_classes, connectivity):
    roots = _component_roots(labels, connectivity)
    flat = labels.reshape(-1)
    foreground = flat > 0
    sizes = jnp.zeros(flat.shape, jnp.int32).at[roots].add(foreground.astype(jnp.int32))
    is_root = (roots == jnp.arange(flat.size, dtype=jnp.int32)) & foreground
    root_sizes = jnp.where(is_root, sizes, -1)
    best = jax.ops.segment_max(root_sizes, flat, num_segments=num_classes)
    big = jnp.iinfo(jnp.int32).max
    chosen = jax.ops.segment_min(
        jnp.where(is_root & (root_sizes == best[flat]), jnp.arange(flat.size, dtype=jnp.int32),
                  big), flat, num_segments=num_classes)
    keep = ~foreground | (roots == chosen[flat])
    if probabilities is None:
        replacement = jnp.zeros_like(flat)
    else:
        scores = probabilities.reshape(flat.size, num_classes)
        own = jax.nn.one_hot(flat, num_classes, dtype=bool)
        replacement = jnp.argmax(jnp.where(own, -jnp.inf, scores), axis=-1).astype(jnp.int32)
    return jnp.where(keep, flat, replacement).reshape(labels.shape)
