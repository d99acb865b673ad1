"""Errors of a pseudo-CT in HU: MAE per tissue and in the body, bone Dice at a threshold, against
hand computations and an independent loop, and bad input."""

import numpy as np
import pytest

from mskjax import metrics

TRUE = np.array([[-1000.0, -1000.0, -120.0, -120.0],
                 [24.0, 0.0, 366.0, 1780.0]])
PRED = np.array([[-900.0, -1000.0, -100.0, -150.0],
                 [40.0, 10.0, 150.0, 1500.0]])
CLASSES = np.array([[0, 0, 1, 1],
                    [2, 2, 3, 3]])


def test_mae_per_tissue_by_hand():
    out = metrics.hounsfield_mae_per_tissue(TRUE, PRED, CLASSES)
    # air: (100 + 0) / 2, fat: (20 + 30) / 2, soft tissue: (16 + 10) / 2,
    # bone: (216 + 280) / 2; body: (20 + 30 + 16 + 10 + 216 + 280) / 6.
    np.testing.assert_allclose(out.per_class, [50.0, 25.0, 13.0, 248.0])
    assert out.body == pytest.approx(572.0 / 6)
    np.testing.assert_array_equal(out.voxels, [2, 2, 2, 2])
    assert out.per_class.dtype == np.float64


def test_mae_per_tissue_against_a_loop():
    rng = np.random.default_rng(1)
    true = rng.uniform(-1000, 1800, (3, 9, 11)).astype(np.float32)
    pred = true + rng.normal(0, 80, true.shape).astype(np.float32)
    classes = rng.integers(0, 4, true.shape)
    out = metrics.hounsfield_mae_per_tissue(true, pred, classes)
    for c in range(4):
        errors = [abs(float(p) - float(t)) for p, t, k in
                  zip(pred.ravel(), true.ravel(), classes.ravel()) if k == c]
        assert out.per_class[c] == pytest.approx(sum(errors) / len(errors), rel=1e-9)
        assert out.voxels[c] == len(errors)
    body = np.abs(pred.astype(np.float64) - true)[classes > 0].mean()
    assert out.body == pytest.approx(body, rel=1e-9)
    # Air's error does not enter the body's.
    worse = pred.copy()
    air = classes == 0
    worse[air] = true[air] + np.abs(pred - true)[air] + 500  # each air error 500 HU larger
    again = metrics.hounsfield_mae_per_tissue(true, worse, classes)
    assert again.body == pytest.approx(out.body)
    assert again.per_class[0] == pytest.approx(out.per_class[0] + 500, rel=1e-5)


def test_missing_class_is_nan_with_zero_voxels():
    out = metrics.hounsfield_mae_per_tissue(TRUE, PRED, np.where(CLASSES == 1, 2, CLASSES))
    assert np.isnan(out.per_class[1]) and out.voxels[1] == 0
    assert out.per_class[2] == pytest.approx((20 + 30 + 16 + 10) / 4)
    only_air = metrics.hounsfield_mae_per_tissue(TRUE, PRED, np.zeros_like(CLASSES))
    assert np.isnan(only_air.body) and only_air.per_class[0] == pytest.approx(
        np.abs(PRED - TRUE).mean())


def test_bone_dice_by_hand():
    # Bone (>= 200 HU): true {366, 1780}; pred {1500} and nothing else: 2 * 1 / (2 + 1).
    assert metrics.bone_dice(TRUE, PRED) == pytest.approx(2 / 3)
    assert metrics.BONE_THRESHOLD_HU == 200.0
    # At 100 HU the 150 HU voxel counts: 2 * 2 / (2 + 2).
    assert metrics.bone_dice(TRUE, PRED, threshold=100) == pytest.approx(1.0)
    # The threshold is inclusive.
    assert metrics.bone_dice(np.array([200.0, 0.0]), np.array([200.0, 199.9])) == 1.0
    assert metrics.bone_dice(np.array([300.0, 0.0]), np.array([0.0, 0.0])) == 0.0
    assert np.isnan(metrics.bone_dice(np.zeros(3), np.zeros(3)))


def test_bone_dice_against_sets():
    rng = np.random.default_rng(2)
    true = rng.uniform(-1000, 1500, (40, 40))
    pred = true + rng.normal(0, 300, true.shape)
    a = {i for i, v in enumerate(true.ravel()) if v >= 200}
    b = {i for i, v in enumerate(pred.ravel()) if v >= 200}
    assert metrics.bone_dice(true, pred) == pytest.approx(2 * len(a & b) / (len(a) + len(b)))


def test_bad_input():
    f = "mskjax.metrics.hounsfield_mae_per_tissue"
    with pytest.raises(ValueError, match=f"{f}: ct_true, ct_pred and classes must have one"):
        metrics.hounsfield_mae_per_tissue(TRUE, PRED[:, :3], CLASSES)
    with pytest.raises(ValueError, match=f"{f}: ct_true, ct_pred and classes must have one"):
        metrics.hounsfield_mae_per_tissue(TRUE, PRED, CLASSES[0])
    with pytest.raises(ValueError, match=f"{f}: ct_pred holds NaN"):
        metrics.hounsfield_mae_per_tissue(TRUE, np.where(CLASSES == 3, np.nan, PRED), CLASSES)
    with pytest.raises(ValueError, match=f"{f}: classes must lie in 0..3"):
        metrics.hounsfield_mae_per_tissue(TRUE, PRED, CLASSES + 1)
    with pytest.raises(TypeError, match=f"{f}: classes must be an integer"):
        metrics.hounsfield_mae_per_tissue(TRUE, PRED, CLASSES.astype(float))
    with pytest.raises(TypeError, match=f"{f}: ct_true must be a real"):
        metrics.hounsfield_mae_per_tissue(TRUE + 0j, PRED, CLASSES)
    with pytest.raises(ValueError, match=f"{f}: the arrays are empty"):
        metrics.hounsfield_mae_per_tissue(np.zeros(0), np.zeros(0), np.zeros(0, int))
    with pytest.raises(ValueError, match=f"{f}: num_classes must be an int >= 2"):
        metrics.hounsfield_mae_per_tissue(TRUE, PRED, CLASSES, num_classes=1)
    g = "mskjax.metrics.bone_dice"
    with pytest.raises(ValueError, match=f"{g}: ct_true and ct_pred must have one shape"):
        metrics.bone_dice(TRUE, PRED.T)
    with pytest.raises(ValueError, match=f"{g}: ct_true holds NaN"):
        metrics.bone_dice(np.array([np.inf, 0.0]), np.zeros(2))
    for threshold in (float("nan"), True, "200"):
        with pytest.raises(ValueError, match=f"{g}: threshold must be a finite number"):
            metrics.bone_dice(TRUE, PRED, threshold=threshold)


@pytest.mark.parametrize("func", ["hounsfield_mae_per_tissue", "bone_dice"])
def test_ragged_input_is_a_clean_type_error(func):
    # regression: numpy's "inhomogeneous shape" ValueError without the function's name
    args = ([[1.0], [1.0, 2.0]], np.zeros(2))
    if func == "hounsfield_mae_per_tissue":
        args = (*args, np.zeros(2, np.int32))
    with pytest.raises(TypeError, match=f"^mskjax.metrics.{func}:"):
        getattr(metrics, func)(*args)
