"""Segmentation metrics against brute force (all pairs of surface voxels), hand computations,
scipy's dense distance transform and medpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from mskjax import metrics
from mskjax.metrics import (assd, dice, hausdorff95, iou, mean_over_classes, segmentation_scores,
                            surface_distances, volume_overlap_error)

METRICS = (dice, iou, volume_overlap_error, hausdorff95, assd)


# --- the reference: every definition written out again, brute force ----------------------------


def brute_surface(mask):
    """Mask voxels with at least one face neighbour outside the mask (or outside the array)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    interior = mask.copy()
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            index = list(inner)
            index[axis] = slice(1 + shift, padded.shape[axis] - 1 + shift)
            interior &= padded[tuple(index)]
    return mask & ~interior


def brute_directed(a, b, spacing):
    """For each surface voxel of ``a``, the smallest distance to a surface voxel of ``b``."""
    pa = np.argwhere(brute_surface(a)) * np.asarray(spacing, np.float64)
    pb = np.argwhere(brute_surface(b)) * np.asarray(spacing, np.float64)
    return np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min(axis=1)


def brute_scores(pred, target, num_classes, spacing):
    out = {name: np.full(num_classes, np.nan) for name in
           ("dice", "iou", "volume_overlap_error", "hausdorff95", "assd")}
    for c in range(num_classes):
        p, t = pred == c, target == c
        if not p.any() and not t.any():
            continue
        inter, union = np.sum(p & t), np.sum(p | t)
        out["dice"][c] = 2 * inter / (p.sum() + t.sum())
        out["iou"][c] = inter / union
        out["volume_overlap_error"][c] = 1 - inter / union
        if not (p.any() and t.any()):
            out["hausdorff95"][c] = out["assd"][c] = np.inf
            continue
        d_pt, d_tp = brute_directed(p, t, spacing), brute_directed(t, p, spacing)
        out["hausdorff95"][c] = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
        out["assd"][c] = (d_pt.mean() + d_tp.mean()) / 2
    return out


def blobs(rng, shape, num_classes, sigma=1.5):
    """A random label map of smooth blobs (argmax of smoothed noise per class)."""
    noise = rng.standard_normal((num_classes,) + shape)
    smooth = np.stack([ndimage.gaussian_filter(n, sigma) for n in noise])
    return np.argmax(smooth, axis=0).astype(np.int32)


def perturbed(rng, labels, num_classes, fraction=0.08):
    """``labels`` with a fraction of voxels relabelled and one slab shifted by a voxel."""
    out = np.roll(labels, 1, axis=0)
    flip = rng.random(labels.shape) < fraction
    out[flip] = rng.integers(0, num_classes, size=int(flip.sum()))
    return out


def assert_scores(scores, expected):
    for name, value in expected.items():
        got = getattr(scores, name) if hasattr(scores, name) else scores[name]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(value), err_msg=name)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(value), err_msg=name)
        finite = np.isfinite(value)
        np.testing.assert_allclose(got[finite], value[finite], rtol=1e-12, atol=1e-12,
                                   err_msg=name)


# --- oracles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, spacing", [((23, 19), (0.7, 1.9)),
                                            ((9, 11, 8), (0.5, 0.8, 2.5))])
def test_random_label_maps_match_brute_force(rng, shape, spacing):
    num_classes = 6  # class 5 is in neither map, class 4 only in target (set below)
    target = blobs(rng, shape, 4)
    pred = perturbed(rng, target, 4)
    target.flat[rng.choice(target.size, 3, replace=False)] = 4
    expected = brute_scores(pred, target, num_classes, spacing)
    scores = segmentation_scores(pred, target, num_classes=num_classes, spacing=spacing)
    assert_scores(scores, expected)
    assert np.isnan(scores.hausdorff95[5]) and np.isinf(scores.assd[4])
    assert scores.dice[4] == 0 and scores.volume_overlap_error[4] == 1
    # Every public metric returns the same as segmentation_scores, float64 (num_classes,).
    for metric in METRICS:
        value = metric(pred, target, num_classes=num_classes, spacing=spacing)
        assert value.dtype == np.float64 and value.shape == (num_classes,)
        assert_scores({metric.__name__: value}, {metric.__name__: expected[metric.__name__]})
        # Symmetric in pred and target.
        swapped = metric(target, pred, num_classes=num_classes, spacing=spacing)
        np.testing.assert_allclose(swapped, value, rtol=1e-12)
    # The distances are not trivially small: the test covers a real range of values.
    assert np.nanmax(expected["hausdorff95"][np.isfinite(expected["hausdorff95"])]) > 2


def test_surface_distances_match_dense_distance_transform(rng):
    """Each distance is the exact EDT of the other surface at that voxel (scipy's dense
    transform over the whole array, no cropping), in np.argwhere order."""
    spacing = (0.6, 1.3, 0.9)
    target = blobs(rng, (14, 12, 10), 3) == 1
    pred = perturbed(rng, target.astype(np.int32), 2) == 1
    to_target, to_pred = surface_distances(pred, target, spacing=spacing)
    # The brute-force surface is the stated definition: the mask minus its face-connected
    # erosion with the outside of the array outside the mask.
    face = ndimage.generate_binary_structure(3, 1)
    for mask in (pred, target, np.ones((4, 1, 3), bool)):
        eroded = ndimage.binary_erosion(mask, structure=face, border_value=0)
        np.testing.assert_array_equal(brute_surface(mask), mask & ~eroded)
    for src, dst, got in ((pred, target, to_target), (target, pred, to_pred)):
        s_src, s_dst = brute_surface(src), brute_surface(dst)
        dense = ndimage.distance_transform_edt(~s_dst, sampling=spacing)
        np.testing.assert_allclose(got, dense[s_src], rtol=1e-12)
        assert got.shape == (int(s_src.sum()),)


def test_assd_and_hd95_against_medpy(rng):
    """ASSD is the mean of the two directed means (each medpy's ``asd``); medpy >= 0.5's own
    ``assd`` and ``hd95`` pool the two directions (mean and percentile of the concatenation),
    checked here through :func:`surface_distances`. HD95 is the larger directed percentile."""
    binary = pytest.importorskip("medpy.metric.binary")
    spacing = (0.4, 1.1, 2.0)
    for trial in range(3):
        target = blobs(rng, (16, 15, 9), 3) == 1
        pred = np.roll(target, 2, axis=1) | (blobs(rng, (16, 15, 9), 6) == 0)
        labels_p, labels_t = pred.astype(np.int32), target.astype(np.int32)
        ours = assd(labels_p, labels_t, num_classes=2, spacing=spacing)[1]
        directed = (binary.asd(pred, target, voxelspacing=spacing),
                    binary.asd(target, pred, voxelspacing=spacing))
        assert ours == pytest.approx(np.mean(directed), rel=1e-12)
        to_target, to_pred = surface_distances(pred, target, spacing=spacing)
        pooled = np.concatenate([to_target, to_pred])
        assert pooled.mean() == pytest.approx(binary.assd(pred, target, voxelspacing=spacing),
                                              rel=1e-12)
        assert np.percentile(pooled, 95) == pytest.approx(
            binary.hd95(pred, target, voxelspacing=spacing), rel=1e-12)
        hd = hausdorff95(labels_p, labels_t, num_classes=2, spacing=spacing)[1]
        assert hd == max(np.percentile(to_target, 95), np.percentile(to_pred, 95))
        assert hd >= np.percentile(pooled, 95)
        # The surfaces differ in size, so the two means differ: the test tells them apart.
        assert abs(ours - pooled.mean()) > 1e-3
    # A square, and the same square with a small far blob (4 of the 64 surface voxels of
    # target, 6.25 %, but 3.2 % of the pooled 124): only the directed percentile sees it.
    pred = np.zeros((30, 30), np.int32)
    pred[2:18, 2:18] = 1
    target = pred.copy()
    target[25:27, 25:27] = 1
    hd = hausdorff95(pred, target, num_classes=2)[1]
    # Sorted target->pred distances: 60 zeros, then sqrt(128), ...; np.percentile's linear
    # interpolation at rank 0.95 * 63 = 59.85.
    assert hd == pytest.approx(0.85 * np.sqrt(128), rel=1e-12)
    assert binary.hd95(pred.astype(bool), target.astype(bool)) == 0.0


# --- hand computations -------------------------------------------------------------------------


def test_one_dimensional_hand_computation():
    pred = np.array([0, 1, 1, 1, 0, 0])
    target = np.array([0, 0, 1, 1, 1, 0])
    # Surfaces: pred {1, 3}, target {2, 4}; every directed distance is one voxel (2.5 mm).
    np.testing.assert_allclose(dice(pred, target, num_classes=2), [4 / 6, 4 / 6])
    np.testing.assert_allclose(iou(pred, target, num_classes=2), [0.5, 0.5])
    np.testing.assert_allclose(volume_overlap_error(pred, target, num_classes=2), [0.5, 0.5])
    np.testing.assert_allclose(hausdorff95(pred, target, num_classes=2, spacing=2.5)[1], 2.5)
    np.testing.assert_allclose(assd(pred, target, num_classes=2, spacing=(2.5,))[1], 2.5)
    # The background {0, 4, 5} vs {0, 1, 5}: surfaces {0, 4, 5} (border voxels included) and
    # {0, 1, 5}; pred->target 0, 1, 0 and back 0, 1, 0 (voxel units).
    np.testing.assert_allclose(assd(pred, target, num_classes=2)[0], 1 / 3)
    np.testing.assert_allclose(hausdorff95(pred, target, num_classes=2)[0],
                               np.percentile([0, 1, 0], 95))


def test_border_voxels_are_on_the_surface():
    pred = np.array([1, 1, 1, 0])
    target = np.array([1, 1, 0, 0])
    # Surfaces {0, 2} and {0, 1}: pred->target 0, 1; target->pred 0, 1. (Were the border
    # inside the mask, the surfaces would be {2} and {1} and the ASSD 1.)
    assert assd(pred, target, num_classes=2)[1] == 0.5
    # A class filling the array has the array's border as its surface.
    full = np.ones((5, 6), np.int32)
    one_off = full.copy()
    one_off[2, 3] = 0  # a hole: new surface voxels around it in one map only
    d = surface_distances(full == 1, one_off == 1)
    assert d[0].size == 18 and d[1].size == 18 + 4
    np.testing.assert_array_equal(d[0], 0)  # the border is shared
    # The hole's rim (1, 3), (3, 3), (2, 4) and (2, 2) to the border of the 5x6 array.
    np.testing.assert_array_equal(np.sort(d[1])[-4:], [1.0, 1.0, 1.0, 2.0])


def test_shifted_square_with_anisotropic_spacing():
    pred = np.zeros((12, 12), np.int32)
    target = np.zeros((12, 12), np.int32)
    pred[3:8, 3:8] = 1
    target[4:9, 3:8] = 1  # shifted by one row (3 mm), columns 0.5 mm
    spacing = (3.0, 0.5)
    to_target, to_pred = surface_distances(pred == 1, target == 1, spacing=spacing)
    # pred's surface, 16 voxels: its top row (5) is one row (3 mm) above target's top row; its
    # sides on rows 4..7 (8) lie on target's surface; the inner voxels of its bottom row,
    # columns 4, 5, 6, are 1, 2, 1 columns from target's side walls (0.5, 1.0, 0.5 mm).
    assert to_target.size == 16
    assert np.sort(to_target).tolist() == [0.0] * 8 + [0.5, 0.5, 1.0] + [3.0] * 5
    np.testing.assert_array_equal(np.sort(to_pred), np.sort(to_target))  # mirror images
    assert hausdorff95(pred, target, num_classes=2, spacing=spacing)[1] == 3.0
    assert assd(pred, target, num_classes=2, spacing=spacing)[1] == pytest.approx(17 / 16)


# --- empty classes -----------------------------------------------------------------------------


def test_empty_classes_are_nan_or_infinite_never_silent_numbers():
    pred = np.zeros((6, 7), np.int32)
    target = np.zeros((6, 7), np.int32)
    pred[1:3, 1:3] = 1  # class 1 in pred only; class 2 in neither
    scores = segmentation_scores(pred, target, num_classes=3, spacing=(1.0, 2.0))
    assert scores.dice[1] == 0 and scores.iou[1] == 0 and scores.volume_overlap_error[1] == 1
    assert scores.hausdorff95[1] == np.inf and scores.assd[1] == np.inf
    for name in scores._fields:
        assert np.isnan(getattr(scores, name)[2]), name
    # The background is in both: finite.
    assert np.isfinite(scores.hausdorff95[0]) and 0 < scores.dice[0] < 1
    # Swapping the maps: class 1 in target only, same values.
    swapped = segmentation_scores(target, pred, num_classes=3, spacing=(1.0, 2.0))
    assert swapped.assd[1] == np.inf and swapped.dice[1] == 0


def test_mean_over_classes_leaves_out_nan_keeps_inf():
    assert mean_over_classes(np.array([0.9, 0.5, np.nan, 0.7])) == pytest.approx(0.6)
    assert mean_over_classes(np.array([0.9, 0.5, np.nan, 0.7]),
                             exclude_background=False) == pytest.approx(0.7)
    assert mean_over_classes(np.array([1.0, 2.0, np.inf])) == np.inf
    assert np.isnan(mean_over_classes(np.array([0.5, np.nan, np.nan])))
    with pytest.raises(ValueError, match=r"mean_over_classes: values must be \(num_classes,\)"):
        mean_over_classes(np.ones((2, 3)))


# --- inputs ------------------------------------------------------------------------------------


def test_boolean_jax_and_unsigned_inputs():
    rng = np.random.default_rng(0)
    target = blobs(rng, (10, 9), 3)
    pred = perturbed(rng, target, 3)
    expected = segmentation_scores(pred, target, num_classes=3)
    for p, t in ((jnp.asarray(pred), jnp.asarray(target)),
                 (pred.astype(np.uint8), target.astype(np.int64))):
        assert_scores(segmentation_scores(p, t, num_classes=3), expected._asdict())
    as_bool = dice(pred == 1, target == 1, num_classes=2)
    assert as_bool[1] == expected.dice[1]
    assert metrics.SegmentationScores is type(expected)


def test_bad_input():
    x = np.zeros((4, 5), np.int32)
    x[1, 1] = 2
    for metric in METRICS + (segmentation_scores,):
        name = metric.__name__
        with pytest.raises(ValueError, match=rf"mskjax.metrics.{name}: pred holds labels outside "
                                             r"0..1 \(num_classes=2\): 2"):
            metric(x, np.zeros_like(x), num_classes=2)
        with pytest.raises(ValueError, match=rf"{name}: target holds labels outside 0..2 "
                                             r"\(num_classes=3\): -1"):
            metric(x, -np.ones_like(x), num_classes=3)
        with pytest.raises(ValueError, match=rf"{name}: spacing must have one value per axis "
                                             r"\(2 for a 2-D label map\), got \(1.0, 1.0, 2.0\)"):
            metric(x, x, num_classes=3, spacing=(1.0, 1.0, 2.0))
        with pytest.raises(ValueError, match=rf"{name}: spacing must be finite and positive"):
            metric(x, x, num_classes=3, spacing=(1.0, -1.0))
        with pytest.raises(TypeError, match=rf"{name}: spacing must be None, a number"):
            metric(x, x, num_classes=3, spacing="1mm")
        with pytest.raises(TypeError, match=rf"{name}: pred must be an integer label map, got "
                                            "float32"):
            metric(x.astype(np.float32), x, num_classes=3)
        with pytest.raises(ValueError, match=rf"{name}: pred and target must have the same "
                                             r"shape, got \(4, 5\) and \(5, 4\)"):
            metric(x, x.T, num_classes=3)
        with pytest.raises(ValueError, match=rf"{name}: num_classes must be an integer >= 1"):
            metric(x, x, num_classes=0)
        with pytest.raises(ValueError, match=rf"{name}: pred and target must be non-empty"):
            metric(np.zeros((0, 3), int), np.zeros((0, 3), int), num_classes=2)
        with pytest.raises(TypeError, match=rf"{name}: pred must be a concrete array"):
            jax.jit(lambda p: metric(p, x, num_classes=3))(x)
    with pytest.raises(ValueError, match="surface_distances: target_mask is empty"):
        surface_distances(x == 2, x == 5)
    with pytest.raises(ValueError, match=r"surface_distances: pred_mask must be boolean \(or "
                                         r"0/1\), got values in 0..2"):
        surface_distances(x, x == 2)
