import numpy as np
import pytest

from mskjax.sim import TISSUE_INTENSITY, knee_section


def test_knee_section_anatomy_and_scale():
    image = np.asarray(knee_section((320, 256)))
    assert image.shape == (320, 256) and image.dtype == np.float32
    assert image.min() == 0 and image.max() == 1.0
    values = set(np.unique(image).tolist())
    assert values <= {np.float32(v) for v in TISSUE_INTENSITY.values()}
    # Corners are background; beside the notch is femoral marrow.
    assert image[0, 0] == 0 and image[160, 90] == np.float32(TISSUE_INTENSITY["bone_marrow"])
    assert np.mean(image > 0) > 0.4


def test_knee_section_is_resolution_independent():
    small = np.asarray(knee_section((80, 64)))
    large = np.asarray(knee_section((320, 256)))[::4, ::4]
    assert np.mean(small == large) > 0.95


def test_knee_section_bad_shape():
    with pytest.raises(ValueError, match="mskjax.sim.knee_section: shape must be a"):
        knee_section((4, 4, 4))
    with pytest.raises(ValueError, match="each size in shape must be an integer >= 8"):
        knee_section((4, 64))
