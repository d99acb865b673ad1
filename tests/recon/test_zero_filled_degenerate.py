"""zero_filled on quiet edge cases: NaN maps, 2D k-space without a coil axis."""

import jax
import numpy as np
import pytest

from mskjax import recon
from mskjax.coils import birdcage_maps, normalize_maps

MAPS = np.asarray(normalize_maps(birdcage_maps((4, 16, 16))))


# -- zero_filled -------------------------------------------------------------------------------

def test_zero_filled_refuses_nan_maps():
    kspace = np.ones((4, 16, 16), np.complex64)
    maps = MAPS.copy()
    maps[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"mskjax\.recon\.zero_filled: maps must be finite"):
        recon.zero_filled(kspace, maps=maps)
    # under jit the NaN stays in the image
    assert np.isnan(np.asarray(jax.jit(recon.zero_filled)(kspace, maps=maps))).any()


def test_zero_filled_refuses_2d_kspace_without_coil_axis():
    kspace = np.ones((16, 16), np.complex64)
    with pytest.raises(ValueError, match=r"mskjax\.recon\.zero_filled: kspace must be .*"
                                         r"add a coil axis: kspace\[None\]"):
        recon.zero_filled(kspace)
    with pytest.raises(ValueError, match=r"kspace\[None\]"):
        jax.jit(recon.zero_filled)(kspace)
    assert recon.zero_filled(kspace[None]).shape == (16, 16)


@pytest.mark.parametrize("method", ["cg_sense", "l1_wavelet", "total_variation"])
def test_iterative_refuse_kspace_without_coil_axis(method):
    """(16, 16) k-space with (4, 16, 16) maps was read as 16 coils of 1D soft-SENSE data."""
    kw = {} if method == "cg_sense" else {"lamda": 0.01}
    with pytest.raises(ValueError, match=rf"mskjax\.recon\.{method}: kspace of shape \(16, 16\) "
                                         r".*coil axis"):
        getattr(recon, method)(np.ones((16, 16), np.complex64), MAPS, max_iter=2, **kw)
