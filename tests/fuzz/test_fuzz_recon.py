"""Fuzzing the reconstructions: degenerate k-space, maps and masks, eager and jitted.

Every call returns a finite image with an ordinary status, or a status that says why not
(breakdown, non-finite), or raises a ValueError/TypeError naming the function. Non-finite input
is refused eagerly and stays visible (NaN in the image or a NONFINITE status) under jit; an
all-zero image is an answer only when the sampled data or the maps are all zero.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mskjax import coils, recon

from .conftest import outcome

SHAPE = (16, 16)
COILS = 4
MAPS = np.asarray(coils.gaussian_maps((COILS, *SHAPE)))
KW = {
    "cg_sense": {"max_iter": 5},
    "l1_wavelet": {"lamda": 0.01, "max_iter": 5, "power_iter": 5},
    "total_variation": {"lamda": 0.01, "max_iter": 5, "power_iter": 5},
}
METHODS = sorted(KW)


def kspace_of(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((COILS, *SHAPE)) + 1j * rng.standard_normal((COILS, *SHAPE)))
    k = k.astype(np.complex64)
    if kind == "zeros":
        k[:] = 0
    elif kind == "nan":
        k.flat[seed % k.size] = np.nan
    elif kind == "inf":
        k.flat[seed % k.size] = np.inf
    elif kind == "huge":
        k *= np.float32(1e18)
    elif kind == "tiny":
        k *= np.float32(1e-30)
    return k


def maps_of(kind: str, seed: int) -> np.ndarray:
    m = MAPS.copy()
    if kind == "zeros":
        m[:] = 0
    elif kind == "nan":
        m.flat[seed % m.size] = np.nan
    elif kind == "one coil":
        m[1:] = 0
    return m


def mask_of(kind: str, seed: int):
    if kind == "none":
        return None
    mask = np.zeros(SHAPE, bool)
    if kind == "ones":
        mask[:] = True
    elif kind == "columns":
        rng = np.random.default_rng(seed)
        mask[:, rng.random(SHAPE[1]) < 0.4] = True
        mask[:, SHAPE[1] // 2 - 2:SHAPE[1] // 2 + 2] = True
    return mask


@functools.cache
def jitted(method: str, with_mask: bool):
    f = getattr(recon, method)
    if with_mask:
        return jax.jit(lambda k, m, mask: f(k, m, mask=mask, **KW[method]))
    return jax.jit(lambda k, m: f(k, m, **KW[method]))


KSPACE = st.sampled_from(["random", "zeros", "nan", "inf", "huge", "tiny"])
MAPKIND = st.sampled_from(["gaussian", "zeros", "nan", "one coil"])
MASKKIND = st.sampled_from(["none", "ones", "columns", "zeros"])


def check_answer(name, out, k, maps, mask, *, jit: bool):
    image = np.asarray(out.image)
    status = int(out.status)
    bad_input = not (np.all(np.isfinite(k)) and np.all(np.isfinite(maps)))
    if bad_input:
        assert jit, f"{name} accepted non-finite input eagerly"
        if mask is not None and np.all(np.isfinite(maps)) and np.all(np.isfinite(k[:, mask])):
            return  # the non-finite samples lie outside the mask: never acquired, never read
        assert status == 3 or not np.all(np.isfinite(image)), (
            f"{name} under jit turned non-finite input into a finite answer (status {status})")
        return
    assert status in (0, 1, 2, 3), f"{name}: unknown status {status}"
    if status in (0, 1):
        assert np.all(np.isfinite(image)), f"{name} returned NaN with status {status}"
        sampled = k if mask is None else k * mask
        if np.any(np.abs(sampled) > 1e-20) and np.any(maps) and status == 1:
            assert np.any(image), f"{name} returned an all-zero image for nonzero data"


@pytest.mark.parametrize("method", METHODS)
@given(kk=KSPACE, mk=MAPKIND, maskk=MASKKIND, seed=st.integers(0, 2**16))
def test_jitted_reconstruction_never_hides_a_failure(method, kk, mk, maskk, seed):
    k, maps, mask = kspace_of(kk, seed), maps_of(mk, seed), mask_of(maskk, seed)
    name = f"mskjax.recon.{method}"
    if mask is None:
        out = outcome(name, jitted(method, False), k, maps)
    else:
        out = outcome(name, jitted(method, True), k, maps, mask)
    if out is not None:
        check_answer(name, out, k, maps, mask, jit=True)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=3)
@given(kk=KSPACE, mk=MAPKIND, maskk=MASKKIND, seed=st.integers(0, 2**16))
def test_eager_reconstruction_answers_or_refuses(method, kk, mk, maskk, seed):
    k, maps, mask = kspace_of(kk, seed), maps_of(mk, seed), mask_of(maskk, seed)
    name = f"mskjax.recon.{method}"
    out = outcome(name, getattr(recon, method), k, maps, mask=mask, **KW[method])
    if out is not None:
        check_answer(name, out, k, maps, mask, jit=False)


@pytest.mark.parametrize("method", METHODS)
@given(kk=st.sampled_from(["nan", "inf"]), seed=st.integers(0, 2**16),
       where=st.sampled_from(["kspace", "maps"]))
def test_eager_reconstruction_refuses_nonfinite_input(method, kk, seed, where):
    k = kspace_of(kk if where == "kspace" else "random", seed)
    maps = maps_of("nan", seed) if where == "maps" else MAPS
    name = f"mskjax.recon.{method}"
    with pytest.raises(ValueError, match=f"^{name}:"):
        getattr(recon, method)(k, maps, **KW[method])


BAD_SHAPES = [(COILS, 16), (16, 16), (COILS, 8, 16), (COILS + 1, 16, 16), (0, 16, 16),
              (COILS, 0, 16)]
CASES = [(m, s) for m in METHODS + ["zero_filled"] for s in BAD_SHAPES]


@pytest.mark.parametrize(("method", "kshape"), CASES)
def test_mismatched_shapes_give_a_clean_error(method, kshape):
    name = f"mskjax.recon.{method}"
    k = np.ones(kshape, np.complex64)
    if method == "zero_filled":
        out = outcome(name, recon.zero_filled, k, maps=MAPS)
    else:
        out = outcome(name, getattr(recon, method), k, MAPS, **KW[method])
    assert out is None, f"{name} accepted k-space of shape {kshape} with maps {MAPS.shape}"


BAD_LAMDA = ["0.01", None, -1.0, float("nan"), float("inf"), [0.01], 1j]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lamda", BAD_LAMDA, ids=repr)
def test_bad_lamda_gives_a_clean_error(method, lamda):
    name = f"mskjax.recon.{method}"
    kw = dict(KW[method], lamda=lamda)
    with pytest.raises((ValueError, TypeError), match=f"^{name}:"):
        getattr(recon, method)(kspace_of("random", 0), MAPS, **kw)


@pytest.mark.parametrize("method", ["l1_wavelet", "total_variation"])
def test_concrete_jax_lamda_is_accepted(method):
    kw = dict(KW[method], lamda=jnp.asarray(0.01))
    out = getattr(recon, method)(kspace_of("random", 0), MAPS, **kw)
    assert np.all(np.isfinite(np.asarray(out.image)))


ZF = jax.jit(recon.zero_filled)
ZF_MAPS = jax.jit(lambda k, m: recon.zero_filled(k, maps=m))


@given(kk=KSPACE, mk=MAPKIND, seed=st.integers(0, 2**16), use_maps=st.booleans())
def test_zero_filled_jitted_keeps_nonfinite_visible(kk, mk, seed, use_maps):
    k = kspace_of(kk, seed)
    maps = maps_of(mk, seed)
    out = np.asarray(ZF_MAPS(k, maps) if use_maps else ZF(k))
    bad = not np.all(np.isfinite(k)) or (use_maps and not np.all(np.isfinite(maps)))
    if bad:
        assert not np.all(np.isfinite(out)), "zero_filled under jit hid non-finite input"
    elif kk != "huge":
        assert np.all(np.isfinite(out))
        if kk == "random" and (not use_maps or mk != "zeros"):
            assert np.any(out), "zero_filled returned zeros for nonzero k-space"


@given(kk=st.sampled_from(["nan", "inf"]), seed=st.integers(0, 2**16))
def test_zero_filled_eager_refuses_nonfinite_kspace(kk, seed):
    with pytest.raises(ValueError, match="^mskjax.recon.zero_filled:"):
        recon.zero_filled(kspace_of(kk, seed))


def test_zero_filled_eager_refuses_nonfinite_maps():
    with pytest.raises(ValueError, match="^mskjax.recon.zero_filled:"):
        recon.zero_filled(kspace_of("random", 0), maps=maps_of("nan", 3))


CALIB = slice(4, 12)


@settings(max_examples=6)
@given(kk=KSPACE, ck=st.sampled_from(["random", "zeros", "nan", "from kspace"]),
       seed=st.integers(0, 2**16))
def test_grappa_answers_or_refuses(kk, ck, seed):
    k = kspace_of(kk, seed)
    mask = np.zeros(SHAPE, bool)
    mask[:, ::2] = True
    mask[:, CALIB] = True
    k = k * mask
    calib = k[:, :, CALIB] if ck == "from kspace" else kspace_of(ck, seed + 1)[:, :, CALIB]
    name = "mskjax.recon.grappa"
    out = outcome(name, recon.grappa, k, calib, kernel_size=(3, 3))
    if out is None:
        return
    assert np.all(np.isfinite(k)) and np.all(np.isfinite(calib)), (
        "grappa accepted non-finite input")
    out = np.asarray(out)
    assert out.shape == k.shape
    assert np.all(np.isfinite(out)) or kk == "huge", "grappa returned NaN for finite input"
