"""Connected components and the largest-component clean-up, against ``scipy.ndimage.label``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from mskjax import refine


def blobs(shape, num_classes, seed):
    """A random label map with many components of every class (a median-filtered noise)."""
    labels = np.random.default_rng(seed).integers(0, num_classes, shape)
    return ndimage.median_filter(labels, 2).astype(np.int32)


def scipy_largest(labels, num_classes, connectivity):
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    out = labels.copy()
    for c in range(1, num_classes):
        components, n = ndimage.label(labels == c, structure)
        if n:
            sizes = np.bincount(components.ravel())[1:]
            out[(labels == c) & (components != np.argmax(sizes) + 1)] = 0
    return out


@pytest.mark.parametrize("shape,connectivity", [((33, 30), 1), ((33, 30), 2),
                                                ((11, 12, 10), 1), ((11, 12, 10), 2),
                                                ((11, 12, 10), 3)])
def test_largest_component_matches_scipy(shape, connectivity):
    labels = blobs(shape, 4, seed=len(shape) + connectivity)
    structure = ndimage.generate_binary_structure(len(shape), connectivity)
    assert max(ndimage.label(labels == c, structure)[1] for c in (1, 2, 3)) > 1  # work to do
    out = refine.largest_component(labels, num_classes=4, connectivity=connectivity)
    assert out.dtype == jnp.int32 and out.shape == labels.shape
    np.testing.assert_array_equal(out, scipy_largest(labels, 4, connectivity))


@pytest.mark.parametrize("connectivity", [1, 2])
def test_components_partition_equals_scipy_labelling(connectivity):
    labels = blobs((25, 27), 3, seed=7)
    roots = np.asarray(refine.connected_components(labels, connectivity=connectivity))
    structure = ndimage.generate_binary_structure(2, connectivity)
    for c in range(3):
        components, n = ndimage.label(labels == c, structure)
        ours = roots[labels == c]
        theirs = components[labels == c]
        # the same partition: a one-to-one map between our roots and scipy's numbers
        assert len(np.unique(ours)) == n
        assert len(np.unique(np.stack([ours, theirs]), axis=1)[0]) == n
        # each root is the first voxel (raster order) of its component
        for value in np.unique(ours)[:5]:
            assert value == np.flatnonzero((roots == value).ravel())[0]


def test_a_long_snake_is_one_component():
    # A path of 15 * 31 + 15 voxels back and forth: many rounds of plain propagation.
    snake = np.zeros((31, 31), np.int32)
    snake[::2] = 1
    for i in range(1, 31, 2):
        snake[i, 30 if (i // 2) % 2 == 0 else 0] = 1
    snake[0, 0] = 0
    roots = np.asarray(refine.connected_components(snake))
    assert len(np.unique(roots[snake == 1])) == 1
    assert roots[0, 1] == 1  # the first snake voxel in raster order
    # cut it: two components, and the larger one is kept
    cut = snake.copy()
    cut[10, :] = 0
    kept = np.asarray(refine.largest_component(cut, num_classes=2))
    np.testing.assert_array_equal(kept, scipy_largest(cut, 2, 1))
    assert kept[20:].sum() > 0 and kept[:10].sum() == 0


def test_ties_keep_the_first_component_and_absent_classes_stay_absent():
    labels = np.zeros((6, 9), np.int32)
    labels[1:3, 5:7] = 1  # 4 voxels, first in raster order
    labels[4:6, 1:3] = 1  # 4 voxels
    out = np.asarray(refine.largest_component(labels, num_classes=3))
    assert out[1:3, 5:7].all() and not out[4:6, 1:3].any()
    assert not (out == 2).any()


def test_removed_voxels_take_the_next_most_likely_class():
    labels = np.zeros((5, 12), np.int32)
    labels[:, :6] = 1
    labels[2, 9] = 1  # an island of class 1
    labels[:, 10:] = 2
    probabilities = np.full((5, 12, 3), 0.1, np.float32)
    probabilities[..., 1] = 0.5
    probabilities[2, 9] = [0.2, 0.5, 0.3]  # next most likely: class 2
    out = np.asarray(refine.largest_component(labels, num_classes=3,
                                              probabilities=probabilities))
    assert out[2, 9] == 2
    assert out[2, 9] == 2 and (out[:, :6] == 1).all() and (out[:, 10:] == 2).all()
    plain = np.asarray(refine.largest_component(labels, num_classes=3))
    assert plain[2, 9] == 0


def test_jit_and_vmap():
    batch = np.stack([blobs((20, 18), 3, seed=s) for s in range(3)])
    fn = jax.jit(jax.vmap(lambda x: refine.largest_component(x, num_classes=3)))
    out = np.asarray(fn(batch))
    for labels, got in zip(batch, out):
        np.testing.assert_array_equal(got, scipy_largest(labels, 3, 1))


def test_bad_input():
    labels = np.zeros((4, 4), np.int32)
    with pytest.raises(TypeError, match="mskjax.refine.largest_component: labels must be an "
                                        "integer"):
        refine.largest_component(labels.astype(np.float32), num_classes=2)
    with pytest.raises(ValueError, match=r"labels must lie in 0..1 .* got values in 0..2"):
        refine.largest_component(labels + 2 * (np.arange(4) == 1), num_classes=2)
    with pytest.raises(ValueError, match="connectivity must be an integer in 1..2"):
        refine.largest_component(labels, num_classes=2, connectivity=3)
    with pytest.raises(ValueError, match="num_classes"):
        refine.largest_component(labels, num_classes=0)
    with pytest.raises(ValueError, match=r"probabilities must be \(\*spatial, num_classes\)"):
        refine.largest_component(labels, num_classes=2, probabilities=np.ones((4, 4, 3)))
    with pytest.raises(ValueError, match="must not be empty"):
        refine.connected_components(np.zeros((0, 3), np.int32))
