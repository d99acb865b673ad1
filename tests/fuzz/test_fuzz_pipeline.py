"""Fuzzing the pipeline stages: jitted chains keep corrupted data visible, bad samples are refused."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mskjax import coils, pipeline

MAPS = np.asarray(coils.gaussian_maps((4, 8, 8)))
MASK = np.zeros((8, 8), bool)
MASK[:, ::2] = True
MASK[:, 3:5] = True
STAGE = pipeline.chain(pipeline.undersample(MASK), pipeline.zero_filled())
PARAMS = STAGE.init(jax.random.PRNGKey(0), pipeline.Sample(kspace=np.ones((4, 8, 8), np.complex64)))
APPLY = jax.jit(lambda k: STAGE.apply(PARAMS, pipeline.Sample(kspace=k)).image)
APPLY_MAPS = jax.jit(lambda k, m: STAGE.apply(PARAMS, pipeline.Sample(kspace=k, maps=m)).image)


NAMES = re.compile(r"^mskjax\.(pipeline|recon)\.zero_filled:")


def kspace_of(kind, seed):
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((4, 8, 8)) + 1j * rng.standard_normal((4, 8, 8))).astype(np.complex64)
    if kind == "zeros":
        k[:] = 0
    elif kind in ("nan", "inf"):
        k[seed % 4, seed % 8, 2 * (seed % 4)] = np.nan if kind == "nan" else np.inf  # sampled column
    return k


@given(kind=st.sampled_from(["random", "zeros", "nan", "inf"]), seed=st.integers(0, 2**16),
       with_maps=st.booleans())
def test_jitted_zero_filled_chain_keeps_corruption_visible(kind, seed, with_maps):
    k = kspace_of(kind, seed)
    image = np.asarray(APPLY_MAPS(k, MAPS) if with_maps else APPLY(k))
    assert image.shape == (8, 8)
    if kind in ("nan", "inf"):
        assert not np.all(np.isfinite(image)), "the zero-filled stage under jit hid corrupted k-space"
    else:
        assert np.all(np.isfinite(image))
        assert np.any(image) == (kind == "random"), "zeros where there was data, or the reverse"


@given(kind=st.sampled_from(["random", "nan"]), seed=st.integers(0, 2**16))
def test_eager_zero_filled_chain_answers_or_refuses(kind, seed):
    k = kspace_of(kind, seed)
    # The stage's errors may name the stage or the reconstruction it runs.
    try:
        out = STAGE.apply(PARAMS, pipeline.Sample(kspace=k))
    except ValueError as err:
        assert NAMES.match(str(err)), f"not naming the function: {err}"
        return
    if kind == "nan":
        assert not np.all(np.isfinite(np.asarray(out.image))), "NaN k-space gave a finite image"
    else:
        assert np.all(np.isfinite(np.asarray(out.image)))


@pytest.mark.parametrize("sample", [
    pipeline.Sample(), pipeline.Sample(kspace="k"),
    pipeline.Sample(kspace=np.ones((4, 8), np.complex64)),
    pipeline.Sample(kspace=np.ones((4, 8, 8), np.complex64), coords=np.zeros((10, 2), np.float32)),
], ids=["empty", "string", "1D", "coords"])
def test_zero_filled_stage_refuses_bad_samples_by_name(sample):
    stage = pipeline.zero_filled()
    params = None
    with pytest.raises((ValueError, TypeError), match=NAMES):
        params = stage.init(jax.random.PRNGKey(0), sample)
        stage.apply(params, sample)
