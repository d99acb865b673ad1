"""Fuzzing the image metrics: finite scores, clean errors, NaN kept visible under jit."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mskjax import metrics

from .conftest import outcome

METRICS = {"nmse": metrics.nmse, "psnr": metrics.psnr, "ssim": metrics.ssim}
JITTED = {k: jax.jit(f) for k, f in METRICS.items()}
# 2D images (ssim needs room for its 7x7 window) with a few fixed shapes, so jit compiles once each.
SHAPES = st.sampled_from([(8, 8), (12, 16), (16, 16)])
VALUES = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def pair(shape):
    return st.tuples(hnp.arrays(np.float32, shape, elements=VALUES),
                     hnp.arrays(np.float32, shape, elements=VALUES))


@pytest.mark.parametrize("name", sorted(METRICS))
@given(data=st.data())
def test_finite_input_gives_a_finite_score_or_a_clean_error(name, data):
    shape = data.draw(SHAPES)
    gt, pred = data.draw(pair(shape))
    full = f"mskjax.metrics.{name}"
    out = outcome(full, METRICS[name], gt, pred)
    if out is None:
        # The only refusal a finite pair may get is a degenerate reference.
        assert np.ptp(gt) == 0 or not np.any(gt)
        return
    value = float(out)
    if np.ptp(gt) > 0:
        if name == "psnr" and np.array_equal(gt, pred):
            assert value == np.inf
        else:
            assert np.isfinite(value), f"{full} gave {value} for a finite, non-constant reference"
    if name == "nmse" and np.ptp(gt) > 0:
        assert value >= 0
    if name == "ssim" and np.ptp(gt) > 0:
        assert -1 - 1e-4 <= value <= 1 + 1e-4


@pytest.mark.parametrize("name", sorted(METRICS))
@given(shape=SHAPES, bad=st.sampled_from([np.nan, np.inf, -np.inf]), where=st.integers(0, 63),
       in_gt=st.booleans())
def test_nonfinite_input_is_refused_eagerly_and_stays_visible_under_jit(name, shape, bad, where,
                                                                         in_gt):
    rng = np.random.default_rng(where)
    gt = rng.random(shape, dtype=np.float32)
    pred = gt + 0.1 * rng.random(shape, dtype=np.float32)
    target = gt if in_gt else pred
    target.flat[where % target.size] = bad
    full = f"mskjax.metrics.{name}"
    with pytest.raises(ValueError, match=f"^{full}:"):
        METRICS[name](gt, pred)
    assert not np.isfinite(float(JITTED[name](gt, pred))), f"{full} hid a non-finite input under jit"


@pytest.mark.parametrize("name", sorted(METRICS))
@given(a=st.sampled_from([(8, 8), (0, 8), (8,), (8, 8, 8, 8, 8)]),
       b=st.sampled_from([(8, 8), (4, 4), (0, 8), (8,)]))
def test_bad_shapes_give_a_clean_error(name, a, b):
    full = f"mskjax.metrics.{name}"
    out = outcome(full, METRICS[name], np.ones(a, np.float32) + np.arange(np.prod(a)).reshape(a),
                  np.ones(b, np.float32))
    if out is not None:
        assert a == b and 0 not in a


RAGGED = [[1, 2], [3]]


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("bad", ["image", None, {"a": 1}, object(), RAGGED])
def test_wrong_types_give_a_clean_error(name, bad):
    full = f"mskjax.metrics.{name}"
    ok = np.ones((8, 8), np.float32)
    for args in ((bad, ok), (ok, bad)):
        with pytest.raises((TypeError, ValueError), match=f"^{full}:"):
            METRICS[name](*args)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_all_zero_reference_is_refused_or_finite(name):
    gt = np.zeros((8, 8), np.float32)
    for pred in (np.zeros_like(gt), np.ones_like(gt)):
        out = outcome(f"mskjax.metrics.{name}", METRICS[name], gt, pred)
        if out is not None:
            assert np.isfinite(float(out)), f"{name} of an all-zero reference gave {float(out)}"
