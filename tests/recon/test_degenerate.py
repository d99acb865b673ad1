"""Degenerate input to the iterative reconstructions: zeros in, zeros out, NaN never hidden."""

import jax
import numpy as np
import pytest

from mskjax import recon
from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.solvers import Status

MAPS = np.asarray(normalize_maps(birdcage_maps((4, 16, 16))))
MASK = np.arange(16) % 2 == 0

METHODS = {
    "cg_sense": lambda k, m, **kw: recon.cg_sense(k, m, max_iter=5, **kw),
    "l1_wavelet": lambda k, m, **kw: recon.l1_wavelet(k, m, lamda=0.01, max_iter=5, **kw),
    "total_variation": lambda k, m, **kw: recon.total_variation(k, m, lamda=0.01, max_iter=5,
                                                                **kw),
}


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("zero", ["kspace", "maps"])
def test_all_zero_input_gives_zeros_not_nan(name, zero):
    """||A||^2 = 0 (zero maps) or y = 0: the step size must not become 1/0."""
    kspace = np.zeros((4, 16, 16), np.complex64) if zero == "kspace" else \
        np.ones((4, 16, 16), np.complex64)
    maps = np.zeros_like(MAPS) if zero == "maps" else MAPS
    for out in (METHODS[name](kspace, maps, mask=MASK),
                jax.jit(lambda k, m: METHODS[name](k, m, mask=MASK))(kspace, maps)):
        np.testing.assert_array_equal(np.asarray(out.image), 0)
        assert int(out.status) in (Status.CONVERGED, Status.MAX_ITERATIONS)


@pytest.mark.parametrize("name", list(METHODS))
def test_nan_in_kspace_under_jit_is_visible(name):
    kspace = np.ones((4, 16, 16), np.complex64)
    kspace[0, 3, 4] = np.nan
    out = jax.jit(lambda k: METHODS[name](k, MAPS, mask=MASK))(kspace)
    assert int(out.status) == Status.NONFINITE
    assert np.isnan(np.asarray(out.image)).any()
