"""Fuzzing the Cartesian sampling masks: the acceleration asked for, or a clean error."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mskjax import sampling

from .conftest import outcome

SHAPES = st.sampled_from([(16, 16), (8, 32), (4, 16), (16, 8)])
ACCEL = st.one_of(st.sampled_from([0, -1, 1, 1.5, float("nan"), float("inf"), 1e9, "4", None]),
                  st.integers(2, 8), st.floats(1.0, 8.0))
FRACTION = st.one_of(st.sampled_from([0.0, 1.0, -0.1, float("nan"), "0.1"]),
                     st.floats(0.05, 0.5))


@pytest.mark.parametrize("name", ["random_mask", "equispaced_mask"])
@given(shape=SHAPES, accel=ACCEL, fraction=FRACTION, seed=st.integers(0, 2**16))
def test_line_masks_answer_or_refuse(name, shape, accel, fraction, seed):
    out = outcome(f"mskjax.sampling.{name}", getattr(sampling, name), shape,
                  center_fraction=fraction, acceleration=accel, seed=seed)
    if out is None:
        return
    mask, low = out
    mask = np.asarray(mask)
    assert mask.shape == (shape[-1],)
    assert np.all((mask == 0) | (mask == 1))
    assert 0 < low <= shape[-1]
    assert mask.sum() >= low and mask.sum() >= 1, f"{name} sampled no line"
    assert isinstance(accel, (int, float)) and 1 <= accel < np.inf


@pytest.mark.parametrize("shape", [(16, 0), (0,), (), "ab", None, (16.5, 16)], ids=repr)
@pytest.mark.parametrize("name", ["random_mask", "equispaced_mask"])
def test_line_masks_bad_shape_gives_a_clean_error(name, shape):
    with pytest.raises((ValueError, TypeError), match=f"^mskjax.sampling.{name}:"):
        getattr(sampling, name)(shape, center_fraction=0.1, acceleration=4, seed=0)


@given(shape=st.sampled_from([(16, 16), (16, 24)]),
       accel=st.one_of(st.sampled_from([0, 1, float("nan"), -2, "4"]), st.floats(1.5, 4.0)),
       seed=st.integers(0, 2**16))
def test_poisson_disc_answers_or_refuses(shape, accel, seed):
    out = outcome("mskjax.sampling.poisson_disc", sampling.poisson_disc, shape,
                  acceleration=accel, seed=seed)
    if out is None:
        return
    mask = np.asarray(out)
    assert mask.shape == shape and mask.any()
    assert np.all((mask == 0) | (mask == 1))


VD = jax.jit(lambda key, accel: sampling.variable_density(key, (16, 16), acceleration=accel))


@given(accel=st.one_of(st.sampled_from([0.0, 1.0, -2.0, float("nan"), float("inf")]),
                       st.floats(1.5, 8.0)), seed=st.integers(0, 2**16))
def test_variable_density_answers_or_refuses(accel, seed):
    key = jax.random.PRNGKey(seed)
    out = outcome("mskjax.sampling.variable_density", sampling.variable_density, key, (16, 16),
                  acceleration=accel)
    if out is None:
        return
    mask = np.asarray(out)
    assert mask.shape == (16, 16) and mask.any()
    assert np.isfinite(accel) and accel >= 1


@pytest.mark.parametrize("key", [0, "key", None, np.ones(3)], ids=repr)
def test_variable_density_bad_key_gives_a_clean_error(key):
    with pytest.raises((ValueError, TypeError), match="^mskjax.sampling.variable_density:"):
        sampling.variable_density(key, (16, 16), acceleration=4.0)


def test_poisson_disc_unreachable_acceleration_returns_promptly():
    code = ("from mskjax import sampling\n"
            "try:\n    sampling.poisson_disc((16, 16), acceleration=20, seed=0)\n"
            "except ValueError as e:\n    assert str(e).startswith('mskjax.sampling.poisson_disc:')\n")
    subprocess.run([sys.executable, "-c", code], timeout=8, check=True)
