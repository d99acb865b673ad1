"""Realistic knee radiographs: within-grade variation, positioning, blur, scatter, exposure and
the radiograph set, against scipy and the stated models; the defaults stay as they were."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import fft as sfft
from scipy import ndimage

from mskjax import sim
from mskjax.sim._radiograph import _radiograph_core
from mskjax.sim._radiograph_realism import check_realism, realism_arrays

#: The detector of the reference images, made before the realism options existed.
SMALL = dict(shape=(96, 96), pixel_size=1.5, depth_samples=48)
#: The detector of the other tests (one compilation of the realistic radiograph serves all).
GRID = dict(shape=(48, 48), pixel_size=3.0, depth_samples=24)
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: SHA-256 of the float32 bytes of knee_radiograph's default outputs before the realism options
#: existed (the clean image and widths of key 3, grade 2; the noisy ones of key 4, left knee,
#: 1e4 photons; SMALL grid): the defaults must keep giving exactly these images.
REFERENCE = {
    "clean": "409722c4ca022c3a2c1d0f808a0771a55be8e133ef91bb5c961e69fc8870c896",
    "clean_widths": "452aa5844b9203423763d87c8f4eb99890fee79db45201170735944ff3f758bd",
    "noisy": "151173a6fcded3afbbe4f8095ddf9b6747d5dc6b148a03238185767d76a21cfb",
    "noisy_widths": "97811e0fad3f29cb6fbfdef9e28048cc1c82101b32fc3639a000ab08ad82dfc4",
}
NOISY_GRADE = 1


def _digest(x):
    return hashlib.sha256(np.ascontiguousarray(np.asarray(x, np.float32)).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def clean():
    """A subject through the realistic path with nothing that changes its image (the window
    only changes the recorded display window)."""
    r = sim.knee_radiograph(jax.random.key(11), grade=2, window=0.5, **GRID)
    return r, np.asarray(r.image, np.float64)


@pytest.fixture(scope="module")
def population():
    """50 subjects per grade with realistic within-grade variation and a range of exposures."""
    return sim.radiograph_set(jax.random.key(0), 250, grades="balanced", progress=False,
                              variation=sim.REALISTIC_RADIOGRAPH["variation"],
                              photons=(1e3, 1e5), **GRID)


def test_defaults_give_the_images_they_gave_before():
    a = sim.knee_radiograph(jax.random.key(3), grade=2, **SMALL)
    assert _digest(a.image) == REFERENCE["clean"]
    assert _digest(a.joint_space_width) == REFERENCE["clean_widths"]
    assert a.acquisition is None
    off = dict(variation=0.0, blur_fwhm=0.0, scatter_to_primary=0.0, tilt=0.0, flexion=0.0,
               axial_rotation=0.0, shift=0.0, magnification=1.0, detector_noise=0.0, window=0.0)
    b = sim.knee_radiograph(jax.random.key(4), photons=(1e4, 1e4), side="left", **SMALL, **off)
    assert _digest(b.image) == REFERENCE["noisy"]
    assert _digest(b.joint_space_width) == REFERENCE["noisy_widths"]
    assert int(b.grade) == NOISY_GRADE


def test_realistic_path_without_realism_is_the_default_projection():
    """The compiled path of the options, with every option off, the default's edge ramp (the
    ray step) and no jitter of the samples along the rays, reproduces the default image and
    widths."""
    default = sim.knee_radiograph(jax.random.key(5), grade=3, side="left", **GRID)
    params = realism_arrays(check_realism({}, "test"), GRID["shape"], GRID["pixel_size"], "left")
    params["edge_ramp"] = jnp.float32(np.inf)
    params["depth_jitter"] = jnp.float32(0.0)
    image, widths, anatomy, _ = _radiograph_core(jax.random.key(5), jnp.int32(3), params,
                                                 GRID["shape"], GRID["depth_samples"])
    np.testing.assert_allclose(np.asarray(image), np.asarray(default.image), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(widths), np.asarray(default.joint_space_width),
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(anatomy.condyle_centres),
                               np.asarray(default.anatomy.condyle_centres), atol=1e-4)


def _best_threshold_error(high, low):
    """Smallest error rate of one threshold separating ``high`` (above) from ``low``."""
    values = np.concatenate([high, low])
    return min((np.sum(high < t) + np.sum(low >= t)) / values.size for t in values)


@pytest.mark.slow
def test_within_grade_variation_overlaps_adjacent_grades(population):
    _, grades, features = population
    assert np.array_equal(np.bincount(grades), [50] * 5)
    width = features["minimum_joint_space_width"]
    np.testing.assert_array_equal(width, features["joint_space_width"].min(axis=1))
    mean = np.array([width[grades == g].mean() for g in range(5)])
    assert np.all(np.diff(mean) < -0.3), mean  # the mean still falls with the grade
    osteophyte = features["osteophyte_size"]
    for g in range(4):
        # No threshold on the width separates adjacent grades: at least 10 % on the wrong side
        # (without variation the osteophytes alone would separate them perfectly).
        assert _best_threshold_error(width[grades == g], width[grades == g + 1]) > 0.1, g
        assert _best_threshold_error(osteophyte[grades == g + 1], osteophyte[grades == g]) > 0.05
    # Each feature sits at its own continuous grade within +-1 of the label, and is the table
    # read there (numpy's interpolation) times the subject's factor in [0.85, 1.15].
    severity = features["severity"]
    assert np.all(np.abs(severity - grades[:, None]) <= 1.0 + 1e-6)
    assert np.all((severity >= 0) & (severity <= 4))
    table = np.asarray(sim.KL_GRADE_TABLE)
    ost_table = np.interp(severity[:, 1], np.arange(5), table[:, 2])
    scl_table = np.interp(severity[:, 2], np.arange(5), table[:, 3])
    both = (ost_table > 0.1) & (scl_table > 0.1)
    factor = osteophyte[both] / ost_table[both]
    np.testing.assert_allclose(factor, features["subchondral_sclerosis"][both] / scl_table[both],
                               rtol=1e-4)
    assert np.all((factor > 0.85 - 1e-4) & (factor < 1.15 + 1e-4))
    medial = np.interp(severity[:, 0], np.arange(5), table[:, 0])
    narrow = medial > 0.05
    ratio = features["joint_space_narrowing"][narrow, 0] / medial[narrow]
    assert np.all((ratio > 0.85 - 1e-4) & (ratio < 1.15 + 1e-4))
    # Exposures are drawn log-uniformly from the range.
    log_photons = np.log10(features["photons"])
    assert np.all((log_photons >= 3 - 1e-5) & (log_photons <= 5 + 1e-5))
    assert abs(log_photons.mean() - 4.0) < 0.15


def test_blur_is_the_stated_point_spread_function(clean):
    r, line = clean
    primary = np.exp(-line)
    # A PSF of 1.7 pixels: the blur of scipy.ndimage.gaussian_filter on the primary intensity.
    fwhm = 12.0
    blurred = sim.knee_radiograph(jax.random.key(11), grade=2, blur_fwhm=fwhm, **GRID)
    sigma = fwhm / FWHM_PER_SIGMA / GRID["pixel_size"]
    np.testing.assert_allclose(np.asarray(blurred.image),
                               -np.log(ndimage.gaussian_filter(primary, sigma)), atol=1e-4)
    # A PSF narrower than a pixel (2 mm FWHM on 3 mm pixels) still removes the high-frequency
    # energy its transfer function exp(-2 pi^2 sigma^2 f^2) states (a Hann-windowed FFT).
    fwhm = 2.0
    blurred = sim.knee_radiograph(jax.random.key(11), grade=2, blur_fwhm=fwhm, **GRID)
    sigma = fwhm / FWHM_PER_SIGMA  # mm
    n = GRID["shape"][0]
    f = np.fft.fftfreq(n, d=GRID["pixel_size"])
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    window = np.hanning(n)[:, None] * np.hanning(n)[None, :]
    band = np.sqrt(f2) > 0.08  # cycles / mm, up to the Nyquist 0.167

    def energy(image):
        return np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2

    e, e_blurred = energy(primary), energy(np.exp(-np.asarray(blurred.image, np.float64)))
    measured = e_blurred[band].sum() / e[band].sum()
    predicted = (e * np.exp(-4 * np.pi ** 2 * sigma ** 2 * f2))[band].sum() / e[band].sum()
    assert 0.3 < predicted < 0.9
    assert abs(measured - predicted) < 0.02 * predicted, (measured, predicted)
    # The same in the transform the filter is exact in (DCT-II, mirrored borders).
    k = np.arange(n) / (2.0 * n)
    mtf = np.exp(-2 * np.pi ** 2 * (sigma / GRID["pixel_size"]) ** 2
                 * (k[:, None] ** 2 + k[None, :] ** 2))
    d = sfft.dctn(primary, norm="ortho")
    d_blurred = sfft.dctn(np.exp(-np.asarray(blurred.image, np.float64)), norm="ortho")
    np.testing.assert_allclose(d_blurred, d * mtf, atol=1e-4 * np.abs(d).max())


def test_scatter_is_a_low_pass_copy_at_the_stated_ratio(clean):
    _, line = clean
    primary = np.exp(-line)
    ratio, fwhm = 0.4, 60.0
    r = sim.knee_radiograph(jax.random.key(11), grade=2, scatter_to_primary=ratio,
                            scatter_fwhm=fwhm, **GRID)
    scatter = (1 + ratio) * np.exp(-np.asarray(r.image, np.float64)) - primary
    sigma = fwhm / FWHM_PER_SIGMA / GRID["pixel_size"]
    np.testing.assert_allclose(scatter, ratio * ndimage.gaussian_filter(primary, sigma,
                                                                        truncate=8.0),
                               atol=1e-5)
    np.testing.assert_allclose(scatter.sum() / primary.sum(), ratio, rtol=1e-4)
    # Scatter lowers contrast: the image's range shrinks.
    assert np.ptp(np.asarray(r.image)) < np.ptp(line)


def test_exposure_noise_variance_is_quantum_plus_electronic(clean):
    _, line = clean
    expected = []
    for electronic in (0.0, 20.0):
        r = sim.knee_radiograph(jax.random.key(11), grade=2, photons=(2e3, 2e4),
                                detector_noise=electronic, **GRID)
        photons = float(r.acquisition["photons"])
        assert 2e3 <= photons <= 2e4
        counts = photons * np.exp(-line)
        inside = counts > 100  # where -log of a count is close to normal
        difference = np.asarray(r.image, np.float64) - line
        # Var(-log(n / N)) = Var(n) / E(n)^2 with Var(n) = E(n) + electronic^2.
        z = difference[inside] * counts[inside] / np.sqrt(counts[inside] + electronic ** 2)
        assert inside.sum() > 1000
        assert abs(z.var() - 1.0) < 0.12, (electronic, z.var())
        assert abs(z.mean()) < 0.1
        expected.append((1 / counts[inside] + electronic ** 2 / counts[inside] ** 2).mean())
    assert expected[1] > 1.1 * expected[0]  # the electronic noise shows in the dark pixels


def test_positioning_rotates_shifts_magnifies_and_blurs_the_joint_space(clean):
    r0, line = clean
    crop = (slice(10, 38), slice(10, 38))

    def rms(a, b):
        return float(np.sqrt(np.mean((a[crop] - b[crop]) ** 2)))

    tilted = sim.knee_radiograph(jax.random.key(11), grade=2, tilt=12.0, **GRID)
    angle = float(tilted.acquisition["rotation"][2])
    assert 3.0 < abs(angle) <= 12.0
    image = np.asarray(tilted.image, np.float64)
    errors = {a: rms(image, ndimage.rotate(line, a, reshape=False, order=1))
              for a in (angle, -angle, angle + 3.0, angle - 3.0)}
    assert min(errors, key=errors.get) == angle, errors
    # The anatomical width is measured in the canonical position: positioning leaves it.
    np.testing.assert_array_equal(np.asarray(tilted.joint_space_width),
                                  np.asarray(r0.joint_space_width))
    # A shift moves the landmarks with it; magnification zooms about the centre.
    moved = sim.knee_radiograph(jax.random.key(11), grade=2, shift=9.0, magnification=1.3,
                                **GRID)
    shift = np.asarray(moved.acquisition["shift"])
    np.testing.assert_allclose(np.asarray(moved.anatomy.condyle_centres)[:, :2],
                               np.asarray(r0.anatomy.condyle_centres)[:, :2] + shift, atol=1e-4)
    left = [sim.knee_radiograph(jax.random.key(11), grade=2, side="left", **GRID, **kw)
            for kw in (dict(window=0.5), dict(shift=9.0))]
    np.testing.assert_allclose(np.asarray(left[1].anatomy.condyle_centres)[:, :2],
                               np.asarray(left[0].anatomy.condyle_centres)[:, :2]
                               + np.asarray(left[1].acquisition["shift"]), atol=1e-4)
    pixels = 1.3 * shift[::-1] * np.array([-1.0, 1.0]) / GRID["pixel_size"]  # rows up, cols
    centre = (np.array(line.shape) - 1) / 2.0
    zoomed = ndimage.affine_transform(line, np.eye(2) / 1.3,
                                      offset=centre - (centre + pixels) / 1.3, order=1)
    assert rms(np.asarray(moved.image, np.float64), zoomed) < 0.5 * rms(
        np.asarray(moved.image, np.float64), line)
    # Flexion off the plateau's line blurs the joint: the dark joint space and the bright
    # plateau seen edge-on below it fade (the variation of the row profile over the joint).
    flexed = sim.knee_radiograph(jax.random.key(11), grade=2, flexion=15.0, **GRID)
    assert abs(float(flexed.acquisition["rotation"][0])) > 5.0

    def joint_contrast(image):
        profile = image[20:29, 14:34].mean(axis=1)
        return float(np.abs(np.diff(profile)).sum())

    assert joint_contrast(np.asarray(flexed.image)) < 0.6 * joint_contrast(line)


def test_radiograph_set_is_knee_radiograph_of_each_subject():
    key = jax.random.key(21)
    images, grades, features = sim.radiograph_set(key, 5, grades="balanced", progress=False,
                                                  **GRID, **sim.REALISTIC_RADIOGRAPH)
    assert images.shape == (5, 48, 48) and images.dtype == np.float32
    assert grades.dtype == np.int32 and sorted(grades.tolist()) == [0, 1, 2, 3, 4]
    assert np.all(np.isfinite(images))
    assert features["rotation"].shape == (5, 3) and features["window"].shape == (5, 2)
    for i in (0, 3):
        r = sim.knee_radiograph(jax.random.split(key, 5)[i], grade=int(grades[i]), **GRID,
                                **sim.REALISTIC_RADIOGRAPH)
        level, width = np.asarray(r.acquisition["window"])
        np.testing.assert_allclose(images[i], (np.asarray(r.image) - level) / width + 0.5,
                                   rtol=1e-6, atol=1e-6)
        assert features["minimum_joint_space_width"][i] == float(r.minimum_joint_space_width)
        np.testing.assert_array_equal(features["severity"][i], np.asarray(
            r.acquisition["severity"]))
        np.testing.assert_array_equal(features["joint_space_narrowing"][i],
                                      np.asarray(r.anatomy.joint_space_narrowing))
    # The display window spans the 1st to 99th percentile, jittered by at most 10 %.
    low, high = np.percentile(images, [1, 99], axis=(1, 2))
    assert np.all(np.abs((low + high) / 2 - 0.5) < 0.12) and np.all(np.abs(high - low - 1) < 0.13)
    drawn = sim.radiograph_set(key, 3, progress=False, **GRID)[1]
    assert drawn.dtype == np.int32 and np.all((drawn >= 0) & (drawn <= 4))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(variation=-0.1), ValueError, r"variation must be a number in \[0, 4\]"),
    (dict(blur_fwhm=float("nan")), ValueError, "blur_fwhm must be a number in"),
    (dict(scatter_fwhm=0.0), ValueError, "scatter_fwhm must be a finite number > 0"),
    (dict(tilt=90.0), ValueError, r"tilt must be a number in \[0, 45\]"),
    (dict(magnification=(1.2, 1.1)), ValueError, "magnification must be a number in"),
    (dict(photons=(0.0, 10.0)), ValueError, "photons must be None or a number > 0"),
    (dict(detector_noise=5.0), ValueError, "detector_noise .* needs photons"),
    (dict(window=1.0), ValueError, r"window must be a number in \[0, 1\)"),
])
def test_bad_realism_is_named(kwargs, error, message):
    with pytest.raises(error, match="mskjax.sim.knee_radiograph: " + message):
        sim.knee_radiograph(jax.random.key(0), **{**GRID, **kwargs})
    with pytest.raises(error, match="mskjax.sim.radiograph_set: " + message):
        sim.radiograph_set(jax.random.key(0), 2, progress=False, **{**GRID, **kwargs})


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num=0), ValueError, "num must be an integer >= 1"),
    (dict(grades="all"), ValueError, "grades must be None, 'balanced' or 4 ints in 0..4"),
    (dict(grades=[0, 1, 5, 2]), ValueError, "grades must be None, 'balanced' or 4 ints"),
    (dict(grades=[0, 1]), ValueError, "grades must be None, 'balanced' or 4 ints"),
    (dict(shape=(96,)), ValueError, r"shape must be \(rows, cols\)"),
    (dict(blur=1.0), TypeError, "unknown option"),
    (dict(side="up"), ValueError, "side must be 'right' or 'left'"),
])
def test_bad_set_inputs_are_named(kwargs, error, message):
    args = {**dict(num=4, progress=False, **GRID), **kwargs}
    with pytest.raises(error, match="mskjax.sim.radiograph_set: " + message):
        sim.radiograph_set(jax.random.key(0), args.pop("num"), **args)
