"""AP knee radiographs: Beer-Lambert projection, joint-space width falling with the grade."""

import jax
import numpy as np
import pytest

from mskjax import sim
from tests.sim.helpers import SHAPE

#: The small detector of these tests (and of the notebook at toy size).
SMALL = dict(shape=(96, 96), pixel_size=1.5, depth_samples=48)


@pytest.fixture(scope="module")
def series():
    """Three subjects at grades 0..4."""
    return [[sim.knee_radiograph(jax.random.key(seed), grade=g, **SMALL) for g in range(5)]
            for seed in range(3)]


def test_joint_space_width_falls_with_grade(series):
    widths = np.array([[float(r.minimum_joint_space_width) for r in row] for row in series])
    mean = widths.mean(axis=0)
    assert np.all(np.diff(mean) < 0), mean  # on average over subjects
    assert np.all(np.diff(widths, axis=1) < 0)  # and for every subject
    assert 3.0 < mean[0] < 7.0 and mean[4] < 1.5  # healthy about 3.5 to 6 mm; grade 4 bone on bone
    medial = np.array([[float(r.joint_space_width[0]) for r in row] for row in series])
    lateral = np.array([[float(r.joint_space_width[1]) for r in row] for row in series])
    assert np.all(medial[:, 4] < lateral[:, 4])  # medial compartment osteoarthritis


def test_measured_width_matches_the_anatomy(series):
    for row in series:
        for r in row:
            np.testing.assert_allclose(np.asarray(r.joint_space_width),
                                       np.asarray(r.anatomy.joint_space_width), atol=0.4)
            assert int(r.grade) == int(r.anatomy.kl_grade)


def test_projection_is_beer_lambert_with_bone_brightest(series):
    r = series[0][0]
    image = np.asarray(r.image)
    assert image.shape == (96, 96) and image.dtype == np.float32 and r.pixel_size == 1.5
    assert image.min() == 0.0  # rays that miss the limb
    soft = sim.ATTENUATION_PER_CM
    assert soft["cortical_bone"] > soft["femur"] > soft["muscle"] > soft["subcutaneous_fat"] > 0
    # A column through the femoral shaft attenuates more than one through soft tissue only.
    centre = image.shape[1] // 2
    assert image[5, centre] > image[5, centre + 25] > 0
    # The line integral through about 11 cm of soft tissue is about 2.3.
    assert 1.5 < image[:, centre + 25].max() < 4.0
    # Osteophytes, sclerosis and the femur sinking onto the tibia add bone: more attenuation.
    totals = [float(np.asarray(x.image).sum()) for x in series[0]]
    assert np.all(np.diff(totals) > 0)


def test_deterministic_drawn_grade_and_noise():
    key = jax.random.key(7)
    a = sim.knee_radiograph(key, **SMALL)
    b = sim.knee_radiograph(key, **SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    assert 0 <= int(a.grade) <= 4 and int(a.grade) == int(b.grade)
    grades = {int(sim.knee_radiograph(jax.random.key(s), **SMALL).grade) for s in range(6)}
    assert len(grades) >= 3
    noisy = sim.knee_radiograph(key, photons=1e4, **SMALL)
    difference = np.asarray(noisy.image) - np.asarray(a.image)
    inside = np.asarray(a.image) > 1.0
    assert 0.005 < difference[inside].std() < 0.2
    assert abs(difference[inside].mean()) < 0.01
    # The same subject as the MR phantom of the same key.
    phantom = sim.knee_phantom(key, shape=SHAPE, kl_grade=int(a.grade))
    np.testing.assert_allclose(a.anatomy.size_scale, phantom.anatomy.size_scale)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(grade=5), ValueError, "grade must be an int in 0..4"),
    (dict(shape=(96,)), ValueError, r"shape must be \(rows, cols\)"),
    (dict(pixel_size=0.0), ValueError, "pixel_size must be a finite number > 0"),
    (dict(depth_samples=2), ValueError, "depth_samples must be an integer >= 8"),
    (dict(photons=-1.0), ValueError, "photons must be None or a number > 0"),
    (dict(side="up"), ValueError, "side must be 'right' or 'left'"),
])
def test_bad_inputs_are_named(kwargs, error, message):
    with pytest.raises(error, match="mskjax.sim.knee_radiograph: " + message):
        sim.knee_radiograph(jax.random.key(0), **{**SMALL, **kwargs})
