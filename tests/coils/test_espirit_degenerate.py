"""ESPIRiT on a calibration region without signal: an error on concrete data, NaN under jit."""

import jax
import numpy as np
import pytest

from mskjax import recon
from mskjax.coils import espirit
from mskjax.solvers import Status


def _kspace():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((4, 32, 32)) + 1j * rng.standard_normal((4, 32, 32))) \
        .astype(np.complex64)


def test_zero_calibration_region_raises():
    kspace = _kspace()
    kspace[:, 8:24, 8:24] = 0  # the centre (calib_width 12) is empty, the rest is not
    with pytest.raises(ValueError, match=r"mskjax\.coils\.espirit: .*calibration region.*"
                                         r"no signal"):
        espirit(kspace, calib_width=12, kernel_width=4)
    with pytest.raises(ValueError, match=r"mskjax\.coils\.espirit: .*no signal"):
        espirit(np.zeros((4, 32, 32), np.complex64), calib_width=12, kernel_width=4)


def test_zero_calibration_region_under_jit_is_nan_not_zero():
    run = jax.jit(lambda k: espirit(k, calib_width=12, kernel_width=4, max_iter=5))
    maps = np.asarray(run(np.zeros((4, 32, 32), np.complex64)))
    assert np.isnan(maps).all()
    # ... and a reconstruction with them says so instead of returning a zero image.
    out = jax.jit(lambda k, m: recon.l1_wavelet(k, m, lamda=0.01, max_iter=3))(_kspace(), maps)
    assert int(out.status) == Status.NONFINITE
    # eager, the reconstruction refuses the maps
    with pytest.raises(ValueError, match=r"mskjax\.recon\.l1_wavelet: maps must be finite"):
        recon.l1_wavelet(_kspace(), maps, lamda=0.01, max_iter=3)


def test_calibration_with_signal_still_finite_under_jit():
    run = jax.jit(lambda k: espirit(k, calib_width=12, kernel_width=4, max_iter=5))
    assert np.isfinite(np.asarray(run(_kspace()))).all()


def test_noise_only_calibration_raises_instead_of_zero_maps():
    noise = (np.random.default_rng(592).standard_normal((4, 16, 16)) * 1e-3).astype(np.complex64)
    with pytest.raises(ValueError, match=r"mskjax\.coils\.espirit: no pixel has an eigenvalue "
                                         r"above crop"):
        espirit(noise, calib_width=8, kernel_width=4)
    maps = np.asarray(jax.jit(lambda k: espirit(k, calib_width=8, kernel_width=4))(noise))
    assert np.isnan(maps).all()
    # a lower crop keeps maps
    assert np.isfinite(np.asarray(espirit(noise, calib_width=8, kernel_width=4, crop=0.0))).all()
