"""More degenerate input to the reconstructions: empty calibration, zero operators, NaN maps,
k-space without a coil axis. Zeros in give zeros out or a clear error; NaN is never hidden."""

import functools

import jax
import numpy as np
import pytest

from mskjax import linop, recon, solvers
from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.solvers import Status

from .test_grappa import centre, lattice_mask, simulated

MAPS = np.asarray(normalize_maps(birdcage_maps((4, 16, 16))))


# -- grappa ------------------------------------------------------------------------------------

def _grappa_input():
    shape = (31, 24)
    full = simulated(shape)
    return full * lattice_mask(shape, (2, 1), (1, 0)), full[centre(shape, (16, 16))]


def test_grappa_zero_calibration_raises():
    kspace, calib = _grappa_input()
    with pytest.raises(ValueError, match=r"mskjax\.recon\.grappa: .*calib holds no signal"):
        recon.grappa(kspace, np.zeros_like(calib))


def test_grappa_zero_calibration_under_jit_is_nan_where_filled():
    kspace, calib = _grappa_input()
    run = jax.jit(functools.partial(recon.grappa, acceleration=(2, 1)))
    out = np.asarray(run(kspace, np.zeros_like(calib)))
    acquired = np.any(kspace != 0, axis=0)
    np.testing.assert_array_equal(out[:, acquired], kspace[:, acquired])
    assert np.isnan(out[:, ~acquired]).all()
    # with signal, the same call is finite
    assert np.isfinite(np.asarray(run(kspace, calib))).all()


# -- l1_wavelet / total_variation: zero operators, default mask, non-Cartesian --------------

METHODS = {
    "l1_wavelet": functools.partial(recon.l1_wavelet, lamda=0.01, max_iter=5),
    "total_variation": functools.partial(recon.total_variation, lamda=0.01, max_iter=5),
}


def _check_zero(out):
    np.testing.assert_array_equal(np.asarray(out.image), 0)
    assert int(out.status) in (Status.CONVERGED, Status.MAX_ITERATIONS)


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("zero", ["kspace", "maps"])
def test_zero_input_default_mask(name, zero):
    kspace = np.zeros((4, 16, 16), np.complex64) if zero == "kspace" else \
        np.ones((4, 16, 16), np.complex64)
    maps = np.zeros_like(MAPS) if zero == "maps" else MAPS
    _check_zero(METHODS[name](kspace, maps))
    _check_zero(jax.jit(METHODS[name])(kspace, maps))


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("zero", ["kspace", "maps"])
def test_zero_input_noncartesian(name, zero):
    coords = np.random.default_rng(0).uniform(-8, 8, (64, 2)).astype(np.float32)
    kspace = np.zeros((4, 64), np.complex64) if zero == "kspace" else \
        np.ones((4, 64), np.complex64)
    maps = np.zeros_like(MAPS) if zero == "maps" else MAPS
    run = functools.partial(METHODS[name], coords=coords)
    _check_zero(run(kspace, maps))
    _check_zero(jax.jit(run)(kspace, maps))


def test_solvers_on_the_zero_operator():
    zero = linop.Matrix(np.zeros((6, 5), np.float32))
    y = np.ones(6, np.float32)
    for solve in (lambda: solvers.fista(zero, y, solvers.prox.l1(None, 0.1), max_iter=5),
                  lambda: solvers.primal_dual(zero, y, linop.Identity((5,)),
                                              solvers.prox.l1(None, 0.1), max_iter=5)):
        for result in (solve(), jax.jit(solve)()):
            np.testing.assert_array_equal(np.asarray(result.x), 0)
            assert int(result.status) in (Status.CONVERGED, Status.MAX_ITERATIONS)

