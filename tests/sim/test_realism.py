"""Realistic rendering of the knee phantom: partial volume, bias, Rician noise at an SNR, Gibbs
ringing, trabecular texture, contrast jitter, elastic deformation, training examples."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats

from mskjax import sim

L = sim.KNEE_LABELS
MARROW = [L[name] for name in ("femur", "tibia", "patella", "fibula")]
GRID = (10, 24, 24)  # 16 x 6.7 x 6.7 mm voxels: coarse, so most voxels of thin tissue are mixed
PATHOLOGY = {"cartilage_lesion": True, "bone_marrow_oedema": True, "effusion": True}


@pytest.fixture(scope="module")
def phantom():
    return sim.knee_phantom(jax.random.key(4), shape=GRID, pathology=PATHOLOGY)


def blocks(fine, factor, ndim):
    """``(*coarse, factor ** ndim)``: the fine samples of each coarse voxel."""
    shape = []
    for n in fine.shape:
        shape += [n // factor, factor]
    order = list(range(0, 2 * ndim, 2)) + list(range(1, 2 * ndim, 2))
    return np.asarray(fine).reshape(shape).transpose(order).reshape(
        tuple(n // factor for n in fine.shape) + (-1,))


def uniform(tissue, shape):
    return jnp.full(shape, L[tissue], jnp.int32)


# Partial volume ----------------------------------------------------------------------------

def test_partial_volume_is_the_mean_of_a_fine_rendering(phantom):
    fine = sim.knee_phantom(jax.random.key(4), shape=tuple(2 * n for n in GRID),
                            pathology=PATHOLOGY)
    assert bool(fine.pathology.masks["bone_marrow_oedema"].any())
    image = np.asarray(sim.render(phantom, contrast="t1_spgr", partial_volume=2))
    brute = blocks(sim.render(fine, contrast="t1_spgr"), 2, 3).mean(-1)
    np.testing.assert_allclose(image, brute, rtol=1e-5, atol=1e-7)
    # Voxels whose eight samples are one tissue (and pathology) keep the clean value; mixed
    # ones do not.
    clean = np.asarray(sim.render(phantom, contrast="t1_spgr"))
    kind = np.asarray(fine.labels) * 16
    for bit, mask in enumerate(fine.pathology.masks.values()):
        kind = kind + (np.asarray(mask) << bit)
    sub = blocks(kind, 2, 3)
    pure = np.all(sub == sub[..., :1], axis=-1)
    assert 0.2 < pure.mean() < 0.95
    np.testing.assert_allclose(image[pure], clean[pure], rtol=1e-6)
    changed = ~np.isclose(image, clean, rtol=1e-4, atol=1e-6)
    assert not np.any(changed & pure)
    assert changed[~pure].mean() > 0.5
    # Mixed voxels lie between the signals of the tissues they hold.
    samples = blocks(sim.render(fine, contrast="t1_spgr"), 2, 3)
    assert np.all((image >= samples.min(-1) - 1e-6) & (image <= samples.max(-1) + 1e-6))


def test_partial_volume_of_a_slice_and_of_echoes():
    key = jax.random.key(5)
    coarse = sim.knee_phantom(key, shape=GRID, slice_axis=0, slice_index=4)
    fine = sim.knee_phantom(key, shape=(GRID[0], 2 * GRID[1], 2 * GRID[2]), slice_axis=0,
                            slice_index=4)
    image = sim.render(coarse, contrast="mese", echo_times=(10.0, 40.0), partial_volume=2)
    assert image.shape == (2, *GRID[1:])
    brute = np.stack([blocks(e, 2, 2).mean(-1) for e in
                      sim.render(fine, contrast="mese", echo_times=(10.0, 40.0))])
    np.testing.assert_allclose(image, brute, rtol=1e-5, atol=1e-7)
    # partial_volume=1 is the clean rendering itself.
    np.testing.assert_array_equal(sim.render(coarse, partial_volume=1), sim.render(coarse))


# Receive bias ------------------------------------------------------------------------------

def test_bias_is_smooth_positive_and_spans_the_stated_range():
    labels = uniform("muscle", (6, 20, 24))
    clean = sim.render(labels)
    field = np.asarray(sim.render(labels, key=jax.random.key(0), bias=0.4) / clean, np.float64)
    assert np.all(field > 0)
    log = np.log(field)
    assert log.max() == pytest.approx(0.4, abs=1e-5)
    assert log.min() == pytest.approx(-0.4, abs=1e-5)
    # Smooth: a quadratic polynomial along every line (third differences vanish), whose
    # steps obey Markov's bound |f'| <= 4 max|f| on [-1, 1].
    for axis, n in enumerate(log.shape):
        assert np.abs(np.diff(log, n=3, axis=axis)).max() < 1e-5
        assert np.abs(np.diff(log, axis=axis)).max() <= 0.4 * 4 * 2 / (n - 1)
    assert max(np.abs(np.diff(log, axis=a)).max() for a in range(3)) > 0.01
    other = np.asarray(sim.render(labels, key=jax.random.key(1), bias=0.4) / clean)
    assert np.abs(np.log(other) - log).max() > 0.05  # another subject, another field


# Rician noise at an SNR ---------------------------------------------------------------------

def test_snr_of_a_uniform_region_matches_rician_statistics():
    labels = uniform("muscle", (8, 32, 32))
    signal = float(sim.render(labels)[0, 0, 0])
    image = np.asarray(sim.render(labels, key=jax.random.key(7), snr=4.0), np.float64).ravel()
    sigma = signal / 4.0  # the foreground is all muscle: S_ref is muscle's signal
    rice = scipy.stats.rice(signal / sigma, scale=sigma)
    n = image.size
    assert image.mean() == pytest.approx(rice.mean(), abs=4 * rice.std() / np.sqrt(n))
    assert image.std() == pytest.approx(rice.std(), rel=4 / np.sqrt(2 * n))
    # Not the Gaussian of the same sigma: the Rician mean is above the signal.
    assert rice.mean() - signal > 8 * rice.std() / np.sqrt(n)
    assert scipy.stats.kstest(image, rice.cdf).pvalue > 1e-3


def test_snr_is_the_foreground_mean_over_the_channel_noise(phantom):
    clean = np.asarray(sim.render(phantom))
    labels = np.asarray(phantom.labels)
    reference = clean[labels != 0].mean()
    noisy = np.asarray(sim.render(phantom, key=jax.random.key(2), snr=10.0), np.float64)
    background = noisy[labels == 0]  # pure noise: |n|^2 has mean 2 sigma^2
    sigma = np.sqrt(np.mean(background ** 2) / 2)
    assert background.size > 1000
    assert sigma == pytest.approx(reference / 10.0, rel=4 / np.sqrt(background.size))


# Gibbs ringing -----------------------------------------------------------------------------

def step_labels(shape, axis):
    labels = np.full(shape, L["muscle"], np.int32)
    index = [slice(None)] * len(shape)
    index[axis] = slice(shape[axis] // 4, 3 * shape[axis] // 4)
    labels[tuple(index)] = L["joint_fluid"]
    return jnp.asarray(labels)


def test_gibbs_rings_next_to_a_step_and_is_a_truncation_of_kspace():
    labels = step_labels((32, 32), axis=1)
    clean = np.asarray(sim.render(labels))
    np.testing.assert_array_equal(sim.render(labels, gibbs=1.0), clean)
    np.testing.assert_array_equal(sim.render(labels, gibbs=None), clean)
    fluid, muscle = clean[0, 16], clean[0, 0]
    ringing = np.asarray(sim.render(labels, gibbs=0.5))
    jump = fluid - muscle
    assert ringing.max() > fluid + 0.04 * jump  # overshoot on the bright side
    assert ringing.min() < muscle - 0.04 * jump  # undershoot on the dark side
    assert np.argmax(ringing[0]) in (8, 9, 22, 23)  # right next to the edges at 8 and 24
    # The oracle: numpy's FFT with the frequencies |k| > 0.5 * n / 2 zeroed.
    k = np.abs(np.fft.fftfreq(32) * 32)
    keep = np.outer(k <= 8, k <= 8)
    expected = np.abs(np.fft.ifft2(np.fft.fft2(clean) * keep))
    np.testing.assert_allclose(ringing, expected, atol=1e-5 * fluid)


def test_gibbs_truncates_only_the_last_two_axes_of_a_volume():
    through = step_labels((16, 8, 8), axis=0)  # a step across slices: no ringing
    np.testing.assert_allclose(sim.render(through, gibbs=0.5), sim.render(through), rtol=1e-5)
    in_plane = step_labels((4, 16, 16), axis=2)
    assert not np.allclose(sim.render(in_plane, gibbs=0.5), sim.render(in_plane), rtol=1e-2)


# Trabecular texture ------------------------------------------------------------------------

def correlation(ratio, mask, axis):
    """Lag-1 correlation of ``ratio`` along ``axis`` over pairs of voxels inside ``mask``."""
    a, b = np.moveaxis(ratio, axis, 0)[:-1], np.moveaxis(ratio, axis, 0)[1:]
    both = np.moveaxis(mask, axis, 0)[:-1] & np.moveaxis(mask, axis, 0)[1:]
    return np.corrcoef(a[both], b[both])[0, 1]


def test_trabecular_texture_changes_only_marrow_at_a_fine_grain():
    phantom = sim.knee_phantom(jax.random.key(3), shape=(16, 48, 48))
    labels = np.asarray(phantom.labels)
    marrow = np.isin(labels, MARROW)
    clean = np.asarray(sim.render(phantom, contrast="t1_spgr"))
    key = jax.random.key(8)
    grain = np.asarray(sim.render(phantom, contrast="t1_spgr", key=key, trabecular=0.3))
    changed = ~np.isclose(grain, clean, rtol=1e-6, atol=0)
    assert not np.any(changed & ~marrow)
    assert changed[marrow].mean() > 0.99
    ratio = grain / np.where(clean > 0, clean, 1)
    assert np.std(ratio[marrow]) == pytest.approx(0.3, rel=0.2)
    smooth = np.asarray(sim.render(phantom, contrast="t1_spgr", key=key, texture=0.3))
    smooth_ratio = smooth / np.where(clean > 0, clean, 1)
    # Finer than the smooth texture across the grain, and elongated superior-inferior.
    assert correlation(ratio, marrow, 2) < correlation(smooth_ratio, marrow, 2) - 0.3
    assert correlation(ratio, marrow, 1) > correlation(ratio, marrow, 2) + 0.2


# Contrast jitter ---------------------------------------------------------------------------

def test_jitter_parameters():
    same = sim.jitter_parameters(jax.random.key(0), scale=0.0)
    assert same == sim.TISSUE_PARAMETERS
    a = sim.jitter_parameters(jax.random.key(0))
    b = sim.jitter_parameters(jax.random.key(1))
    assert a == sim.jitter_parameters(jax.random.key(0))
    assert a["muscle"]["t1"] != b["muscle"]["t1"]
    assert a["femur"] == a["tibia"] == a["patella"] == a["fibula"]  # one marrow per subject
    assert a["femoral_cartilage"] == a["tibial_cartilage"]
    assert a["femur"]["fat_fraction"] == sim.TISSUE_PARAMETERS["femur"]["fat_fraction"]
    assert a["background"]["proton_density"] == 0.0
    # T1rho moves with T2.
    assert a["muscle"]["t1rho"] / a["muscle"]["t2"] == pytest.approx(
        sim.TISSUE_PARAMETERS["muscle"]["t1rho"] / sim.TISSUE_PARAMETERS["muscle"]["t2"])
    # Log-normal with the stated scale, independently for T1, T2 and PD.
    draws = [sim.jitter_parameters(jax.random.key(i), scale=0.2)["muscle"] for i in range(200)]
    logs = np.log([[d[p] / sim.TISSUE_PARAMETERS["muscle"][p] for p in ("t1", "t2",
                                                                           "proton_density")]
                   for d in draws])
    np.testing.assert_allclose(logs.std(axis=0), 0.2, rtol=0.2)
    assert np.abs(np.corrcoef(logs.T)[np.triu_indices(3, 1)]).max() < 0.3
    # Overrides first; the result is what render takes.
    fixed = sim.jitter_parameters(jax.random.key(0), scale=0.0,
                                  parameters={"muscle": {"t2": 50.0}})
    assert fixed["muscle"]["t2"] == 50.0
    labels = jnp.arange(len(L), dtype=jnp.int32)
    one, two = sim.render(labels, parameters=a), sim.render(labels, parameters=b)
    assert np.abs(np.asarray(one) - np.asarray(two))[L["muscle"]] > 1e-3


# Elastic deformation -----------------------------------------------------------------------

def test_elastic_deformation_with_no_displacement_is_the_identity(phantom):
    image = sim.render(phantom)
    channels = jnp.stack([image, 2 * image])
    out, labels = sim.elastic_deformation(jax.random.key(0), channels, phantom.labels,
                                          alpha=0.0, voxel_size=phantom.voxel_size)
    np.testing.assert_array_equal(out, channels)
    np.testing.assert_array_equal(labels, phantom.labels)


def test_elastic_deformation_moves_image_and_labels_together(phantom):
    labels = phantom.labels
    femur = (labels == L["femur"]).astype(jnp.float32)
    moved, moved_labels = sim.elastic_deformation(jax.random.key(1), femur, labels, alpha=12.0,
                                                  sigma=15.0, voxel_size=phantom.voxel_size)
    assert moved_labels.dtype == labels.dtype and moved.dtype == jnp.float32
    assert set(np.unique(moved_labels)) <= set(np.unique(labels))
    moved_femur = np.asarray(moved_labels) == L["femur"]
    assert (moved_femur != np.asarray(labels == L["femur"])).sum() > 20  # the bone moved
    # Its edge in the image is where its label went (bilinear vs nearest differ at corners).
    assert ((np.asarray(moved) > 0.5) == moved_femur).mean() > 0.99


def test_elastic_displacement_has_the_stated_amplitude_and_matches_scipy():
    shape, voxel = (24, 32), (2.0, 1.0)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) * d for n, d in zip(shape, voxel)],
                       indexing="ij")
    ramps = jnp.asarray(np.stack(grid))  # mm along each axis
    labels = jnp.zeros(shape, jnp.int32)
    key = jax.random.key(2)
    out, _ = sim.elastic_deformation(key, ramps, labels, alpha=3.0, sigma=6.0, voxel_size=voxel)
    u = np.asarray(out) - np.asarray(ramps)  # the displacement (mm) wherever it stays inside
    inside = np.all([(g + c >= d) & (g + c <= (n - 2) * d)  # not clamped at an edge
                     for g, c, n, d in zip(grid, u, shape, voxel)], axis=0)
    size = np.sqrt((u ** 2).sum(0))[inside]
    assert size.max() <= 3.0 + 1e-4 and size.max() > 2.0
    # Smooth over sigma: the displacement changes by about alpha / sigma per mm.
    both = inside[:, 1:] & inside[:, :-1]
    assert np.abs(np.diff(u[1], axis=1))[both].max() < 2 * 3.0 / 6.0 * voxel[1]
    # The resampling agrees with scipy's map_coordinates for the same coordinates.
    from mskjax.sim._deform import displacement_field
    field = np.asarray(displacement_field(key, shape, 3.0, 6.0, voxel))
    image = np.asarray(jax.random.normal(jax.random.key(3), shape))
    coordinates = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")) + field
    mine, _ = sim.elastic_deformation(key, jnp.asarray(image), labels, alpha=3.0, sigma=6.0,
                                      voxel_size=voxel)
    theirs = scipy.ndimage.map_coordinates(image, coordinates, order=1, mode="nearest")
    np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_elastic_deformation_jit_equals_eager(phantom):
    image = sim.render(phantom)
    deform = functools.partial(sim.elastic_deformation, alpha=4.0, sigma=10.0,
                               voxel_size=phantom.voxel_size)
    eager = deform(jax.random.key(5), image, phantom.labels)
    jitted = jax.jit(deform)(jax.random.key(5), image, phantom.labels)
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(jitted[1], eager[1])


# Training examples -------------------------------------------------------------------------

def test_segmentation_example():
    key = jax.random.key(11)
    shape = (8, 64, 64)  # 2.5 mm in-plane: the default deformation (up to 3 mm) moves labels
    example = sim.segmentation_example(key, shape=shape)
    assert example.image.shape == shape and example.image.dtype == jnp.float32
    assert example.labels.shape == shape and example.labels.dtype == jnp.int32
    assert float(jnp.percentile(example.image, 99.0)) == pytest.approx(1.0, rel=1e-5)
    assert isinstance(example.phantom, sim.KneePhantom)
    again = sim.segmentation_example(key, shape=shape)
    np.testing.assert_array_equal(example.image, again.image)
    other = sim.segmentation_example(jax.random.key(12), shape=shape)
    assert not np.array_equal(example.labels, other.labels)
    # Deformed labels differ from the phantom's; without deformation they are the phantom's.
    assert not np.array_equal(example.labels, example.phantom.labels)
    still = sim.segmentation_example(key, shape=shape, deform=False)
    np.testing.assert_array_equal(still.labels, still.phantom.labels)
    np.testing.assert_array_equal(still.phantom.labels, example.phantom.labels)
    # Two contrasts of one subject: the first channel is the single-contrast example.
    both = sim.segmentation_example(key, shape=shape, contrast=("pd_fs", "t1_spgr"))
    assert both.image.shape == (2, *shape)
    # (Compiled for one channel or two, the sample coordinates round differently in float32,
    # by about 1e-6 voxel; next to an edge that moves a value by about as much of the 99th
    # percentile, which is 1.)
    np.testing.assert_allclose(both.image[0], example.image, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(both.labels, example.labels)
    for channel in both.image:
        assert float(jnp.percentile(channel, 99.0)) == pytest.approx(1.0, rel=1e-5)
    fat, muscle = (np.asarray(both.labels) == L[t] for t in ("subcutaneous_fat", "muscle"))
    pd, t1 = (np.asarray(channel) for channel in both.image)
    assert t1[fat].mean() / t1[muscle].mean() > 2 * pd[fat].mean() / pd[muscle].mean()
    # Each contrast has its own noise: uncorrelated in the background away from the knee
    # (where partial volume and ringing leave no signal).
    background = np.asarray(both.labels) == L["background"]
    far = scipy.ndimage.binary_erosion(background, np.ones((3, 9, 9)), border_value=1)
    assert far.sum() > 1000
    assert abs(np.corrcoef(pd[far], t1[far])[0, 1]) < 0.1
    # A sagittal slice from the central half of the knee.
    flat = sim.segmentation_example(key, shape=shape, slice_axis=0)
    assert flat.image.shape == shape[1:] and flat.labels.shape == shape[1:]
    assert flat.phantom.axes == sim.AXES[1:]


# Bad input ---------------------------------------------------------------------------------

LABELS = jnp.arange(len(L), dtype=jnp.int32)
KEY = jax.random.key(0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(snr=-1.0, key=KEY), ValueError, "snr must be None or a finite number > 0"),
    (dict(snr=0.0, key=KEY), ValueError, "snr must be None or a finite number > 0"),
    (dict(snr=10.0, noise=0.1, key=KEY), ValueError, "either noise .* or snr, not both"),
    (dict(gibbs=0.0), ValueError, r"gibbs must be None or the fraction of k-space kept, in "
                                  r"\(0, 1\]"),
    (dict(gibbs=1.5), ValueError, "gibbs must be None or the fraction"),
    (dict(partial_volume=0), ValueError, "partial_volume must be an integer >= 1"),
    (dict(partial_volume=1.5), ValueError, "partial_volume must be an integer >= 1"),
    (dict(partial_volume=2), ValueError, "partial_volume > 1 needs a KneePhantom"),
    (dict(bias=-0.1, key=KEY), ValueError, "bias must be a finite number >= 0"),
    (dict(trabecular=float("nan"), key=KEY), ValueError, "trabecular must be a finite"),
    (dict(bias=0.3), ValueError, "need a key, as do snr, bias and trabecular; got bias"),
    (dict(snr=20.0), ValueError, "got snr without one"),
    (dict(trabecular=0.2, key=0), TypeError, "key must be one jax.random key"),
])
def test_bad_render_options_are_named(kwargs, error, message):
    with pytest.raises(error, match="mskjax.sim.render: .*" + message):
        sim.render(LABELS, **kwargs)


def test_partial_volume_needs_a_drawn_phantom(phantom):
    with pytest.raises(ValueError, match="partial_volume > 1 needs a KneePhantom from"):
        sim.render(phantom.replace(evaluation=None), partial_volume=2)
    with pytest.raises(ValueError, match="labels are all background"):
        sim.render(jnp.zeros((4, 4), jnp.int32), snr=10.0, key=KEY)


@pytest.mark.parametrize("call, error, message", [
    (lambda: sim.jitter_parameters(KEY, scale=-0.1), ValueError,
     "mskjax.sim.jitter_parameters: scale must be a finite number >= 0"),
    (lambda: sim.jitter_parameters(KEY, parameters={"bone": {"t1": 1.0}}), ValueError,
     "mskjax.sim.jitter_parameters: unknown tissue 'bone'"),
    (lambda: sim.jitter_parameters(None), TypeError, "key must be one jax.random key"),
    (lambda: sim.elastic_deformation(KEY, jnp.zeros((4, 4)), jnp.zeros((4, 4))), TypeError,
     "mskjax.sim.elastic_deformation: labels must be an integer array"),
    (lambda: sim.elastic_deformation(KEY, jnp.zeros((4, 4), jnp.int32),
                                     jnp.zeros((4, 4), jnp.int32)), TypeError,
     "image must be real floating point"),
    (lambda: sim.elastic_deformation(KEY, jnp.zeros((4, 5)), jnp.zeros((4, 4), jnp.int32)),
     ValueError, r"image must be \(\*spatial\) or \(channels, \*spatial\)"),
    (lambda: sim.elastic_deformation(KEY, jnp.zeros(4), jnp.zeros(4, jnp.int32)), ValueError,
     "labels must be 2D or 3D"),
    (lambda: sim.elastic_deformation(KEY, jnp.zeros((4, 4)), jnp.zeros((4, 4), jnp.int32),
                                     alpha=-1.0), ValueError, "alpha must be a finite number >= 0"),
    (lambda: sim.elastic_deformation(KEY, jnp.zeros((4, 4)), jnp.zeros((4, 4), jnp.int32),
                                     sigma=0.0), ValueError, "sigma must be a finite number > 0"),
    (lambda: sim.elastic_deformation(KEY, jnp.zeros((4, 4)), jnp.zeros((4, 4), jnp.int32),
                                     voxel_size=(1.0,)), ValueError, "voxel_size must be 2 finite"),
    (lambda: sim.segmentation_example(KEY, shape=(8, 16, 16), contrast="t2"), ValueError,
     "mskjax.sim.segmentation_example: contrast must be one of"),
    (lambda: sim.segmentation_example(KEY, shape=(8, 16, 16), kl_grade=5), ValueError,
     "kl_grade must be an int in 0..4 or 'random'"),
    (lambda: sim.segmentation_example(KEY, shape=(8, 16, 16), deform={"beta": 1.0}),
     ValueError, "deform takes alpha and sigma"),
    (lambda: sim.segmentation_example(KEY, shape=(8, 16, 16), snr=-1.0), ValueError,
     "mskjax.sim.segmentation_example: snr must be None"),
])
def test_bad_inputs_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()
