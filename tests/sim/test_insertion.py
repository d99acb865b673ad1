"""Lesions inserted into real knee images: masks, blending, noise, placement, sets, splits."""

import jax
import numpy as np
import pytest

from mskjax import sim

KINDS_AUTO = ("cartilage_defect", "marrow_oedema")


@pytest.fixture(scope="module")
def knees(shared_data):
    """The axial knees without 'knee', which is P3 again at another scale (checked below)."""
    data = np.load(shared_data / "knee_axial_rss" / "knee_axial_rss.npz")
    images, subjects = data["images"], data["subject"]
    assert subjects[0] == "knee" and subjects[3] == "knee_multiple/P3"
    return images[1:], subjects[1:]


def _synthetic(seed, *, coils=4, sigma=1.0, shape=(192, 192)):
    """A body (level 20) holding a darker ellipse (level 8) on a 0 background, as the
    root-sum-of-squares of ``coils`` channels with complex Gaussian noise of ``sigma`` per
    real part (channel 1 carries the signal). Returns (noisy, noise-free signal)."""
    rows, cols = np.indices(shape)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    body = ((rows - cy) / 60.0) ** 2 + ((cols - cx) / 70.0) ** 2 <= 1
    inner = ((rows - cy) / 30.0) ** 2 + ((cols - cx - 10) / 25.0) ** 2 <= 1
    clean = np.where(body, 20.0, 0.0)
    clean = np.where(inner, 8.0, clean)
    rng = np.random.default_rng(seed)
    noise = sigma * (rng.standard_normal((coils, *shape)) + 1j * rng.standard_normal((coils,
                                                                                     *shape)))
    noise[0] += clean
    return np.sqrt(np.sum(np.abs(noise) ** 2, axis=0)).astype(np.float32), clean


# ------------------------------------------------------------------ noise level


@pytest.mark.parametrize("coils", [1, 4, 8])
def test_background_noise_sigma_matches_simulated_sigma(coils):
    # Oracle: the sigma the magnitude noise was drawn with (Rayleigh for 1 coil, chi with 2
    # x coils degrees of freedom for root-sum-of-squares).
    image, _ = _synthetic(coils, coils=coils, sigma=2.5)
    assert sim.background_noise_sigma(image, pixel_size=0.5) == pytest.approx(2.5, rel=0.05)


def test_background_noise_sigma_of_real_knees_is_stable(knees):
    # The 15 scans come from one protocol; the estimate must agree between them and sit
    # well below the marrow's intensity (the knees are not noise).
    images, _ = knees
    sig = np.array([sim.background_noise_sigma(im) for im in images[:5]])
    assert sig.max() / sig.min() < 1.3
    regions = sim.candidate_regions(images[0])
    marrow = np.median(images[0][regions.marrow])
    assert 4 * sig[0] < marrow


def test_lesion_noise_matches_the_image_noise_on_synthetic_image():
    # Inside the lesion, core and soft edge alike, the noise is the image's own sigma: the
    # blend scales the real noise by (1 - w) and the top-up restores it. Without the top-up
    # the fringe's standard deviation would be the smaller (1 - w) sigma.
    image, clean = _synthetic(7, coils=4, sigma=1.0)
    region = np.zeros(image.shape, bool)
    region[40:70, 60:130] = True  # level-20 tissue, above the inner ellipse
    core, fringe = [], []
    for seed in range(10):
        out = sim.insert_lesion(jax.random.key(seed), image, kind="cartilage_defect",
                                conspicuity=1.0, region=region)
        w = out.weight.astype(np.float64)
        full = w == 1.0
        target = float(np.mean(out.image[full]))
        core.append(out.image[full] - target)
        soft = (w > 0.05) & (w < 0.95)
        fringe.append(out.image[soft] - ((1 - w[soft]) * clean[soft] + w[soft] * target))
    core, fringe = np.concatenate(core), np.concatenate(fringe)
    assert core.size > 1000 and fringe.size > 300
    assert np.std(core) == pytest.approx(1.0, rel=0.1)
    assert np.std(fringe) == pytest.approx(1.0, rel=0.1)


def test_lesion_noise_matches_background_estimate_on_real_knee(knees):
    # Tolerance 15 %: a few hundred core pixels give the standard deviation to about 5 %, the
    # target intensity varies slowly with the receive bias.
    images, _ = knees
    sigma = sim.background_noise_sigma(images[2])
    devs = []
    for seed in range(4):
        out = sim.insert_lesion(jax.random.key(seed), images[2], kind="cartilage_defect",
                                conspicuity=1.0)
        full = out.weight == 1.0
        devs.append(out.image[full] - np.mean(out.image[full]))
        assert out.noise_sigma == pytest.approx(sigma)
    devs = np.concatenate(devs)
    assert devs.size > 100
    assert np.std(devs) == pytest.approx(sigma, rel=0.15)


# ------------------------------------------------------------------ blending


@pytest.mark.parametrize("kind", KINDS_AUTO)
def test_mask_is_exactly_where_the_image_changed(knees, kind):
    images, _ = knees
    for seed in range(3):
        out = sim.insert_lesion(jax.random.key(seed), images[seed], kind=kind,
                                conspicuity=0.6)
        assert out.image.dtype == np.float32 and out.image.shape == images[seed].shape
        assert out.mask.any()
        np.testing.assert_array_equal(out.image != images[seed], out.mask)
        np.testing.assert_array_equal(out.mask, out.weight > 0)
        assert 0.0 < out.weight.max() <= 0.6 + 1e-6


@pytest.mark.parametrize("kind", KINDS_AUTO)
def test_conspicuity_zero_leaves_image_unchanged(knees, kind):
    images, _ = knees
    out = sim.insert_lesion(jax.random.key(3), images[4], kind=kind, conspicuity=0.0)
    np.testing.assert_array_equal(out.image, images[4])
    assert not out.mask.any() and out.contrast_to_noise == 0.0


@pytest.mark.parametrize("kind", KINDS_AUTO)
def test_lesion_mean_moves_towards_lesion_intensity_monotonically(knees, kind):
    # One key keeps place and shape; the mean over the smallest lesion's footprint must move
    # monotonically towards the lesion's intensity (fluid is brighter than cartilage and
    # oedema brighter than marrow on these fat-suppressed images: the mean rises).
    images, _ = knees
    image = images[5]
    levels = [0.2, 0.4, 0.6, 0.8, 1.0]
    outs = [sim.insert_lesion(jax.random.key(11), image, kind=kind, conspicuity=c)
            for c in levels]
    np.testing.assert_array_equal(outs[0].centre, outs[-1].centre)
    footprint = outs[0].weight >= 0.1
    assert footprint.sum() >= 5
    means = [float(np.mean(o.image[footprint])) for o in outs]
    assert float(np.mean(image[footprint])) < means[0]
    assert np.all(np.diff(means) > 0), means
    cnr = [o.contrast_to_noise for o in outs]
    assert np.all(np.diff(cnr) > 0) and cnr[-1] > 3.0, cnr
    sizes = [o.size for o in outs]
    assert np.all(np.diff(sizes) > 0) and np.all(np.diff([o.mask.sum() for o in outs]) >= 0)


def test_oedema_model_with_and_without_fat_suppression():
    # The stated model: with a user region the marrow level is the region's median; oedema
    # goes halfway to fluid on fat-suppressed images (suppressed marrow, level 8 here, with
    # fluid-bright tissue at 20 around it) and to half the fatty marrow's level without fat
    # suppression (marrow at 20): brighter, then darker.
    image, clean = _synthetic(5, sigma=0.5)
    dark = (clean == 8.0) & (np.indices(image.shape)[1] > 96)
    bright = np.zeros(image.shape, bool)
    bright[40:60, 60:130] = True
    fs = sim.insert_lesion(jax.random.key(2), image, kind="marrow_oedema", conspicuity=1.0,
                           region=dark)
    plain = sim.insert_lesion(jax.random.key(2), image, kind="marrow_oedema", conspicuity=1.0,
                              region=bright, fat_suppressed=False)
    peak_fs = fs.image[fs.weight == fs.weight.max()].mean()
    peak_plain = plain.image[plain.weight == plain.weight.max()].mean()
    assert peak_fs == pytest.approx(8.0 + 0.5 * (20.0 - 8.0) * fs.weight.max(), abs=1.5)
    assert peak_plain == pytest.approx(20.0 - 10.0 * plain.weight.max(), abs=1.5)
    assert fs.contrast_to_noise > 2.0 and plain.contrast_to_noise < -2.0


# ------------------------------------------------------------------ placement


def test_candidate_regions_find_femur_and_cartilage(knees):
    images, _ = knees
    for image in images[::3]:
        r = sim.candidate_regions(image)
        area = r.marrow.sum() * 0.25
        assert 1000 < area < 6000  # mm^2: a distal femur (plus the patella), not the knee
        assert r.cartilage.sum() * 0.25 > 20
        # Articular surfaces only: the trochlea and posterior condyles at the ends of the
        # femur along the rows (anterior-posterior), nothing in the notch between them.
        rows = np.nonzero(r.marrow.any(axis=1))[0]
        lo, hi = rows.min(), rows.max()
        band_rows = np.nonzero(r.cartilage.any(axis=1))[0]
        middle = (band_rows > lo + 0.35 * (hi - lo)) & (band_rows < hi - 0.35 * (hi - lo))
        assert not middle.any()
        assert not (r.cartilage & r.marrow).any()
        assert (r.subchondral <= r.marrow).all() and (r.marrow <= r.foreground).all()
        # Cartilage and fluid are brighter than the marrow on these images; marrow lies well
        # inside the body.
        assert np.median(image[r.cartilage]) > 1.5 * np.median(image[r.marrow])
        assert r.fluid_level > r.marrow_level


@pytest.mark.parametrize("kind", KINDS_AUTO)
def test_placements_fall_inside_candidate_regions(knees, kind):
    images, _ = knees
    for seed in range(4):
        image = images[seed + 6]
        r = sim.candidate_regions(image)
        out = sim.insert_lesion(jax.random.key(seed), image, kind=kind, conspicuity=0.8)
        where, tissue = ((r.cartilage, r.cartilage) if kind == "cartilage_defect"
                         else (r.subchondral, r.marrow))
        row, col = out.centre.astype(int)
        assert where[row, col]
        assert out.mask.any() and not (out.mask & ~tissue).any()


def test_user_region_confines_lesion_and_cleft_is_thin():
    image, _ = _synthetic(3, sigma=1.0)
    region = np.zeros(image.shape, bool)
    region[88:103, 84:127] = True  # a thin band in the level-8 tissue, like a meniscus
    out = sim.insert_lesion(jax.random.key(0), image, kind="meniscal_cleft", conspicuity=1.0,
                            region=region)
    row, col = out.centre.astype(int)
    assert region[row - 2:row + 3, col - 2:col + 3].all()  # 1 mm inside the region
    assert out.mask.any() and not (out.mask & ~region).any()
    assert out.size == pytest.approx(8.0)
    # 8 mm long (at least half of it inside the region whatever the centre), 1 mm wide (+
    # soft edge), along the region's long axis (columns) +- 20 degrees.
    rows, cols = np.nonzero(out.mask)
    assert out.mask.sum() * 0.25 < 0.35 * np.pi * 4.0 ** 2
    assert np.ptp(cols) * 0.5 >= 4.0 and np.ptp(rows) < 0.5 * np.ptp(cols)
    assert out.contrast_to_noise > 5.0  # fluid-bright (level 20 and above) on level 8


def test_meniscal_cleft_needs_region(knees):
    images, _ = knees
    with pytest.raises(ValueError, match="insert_lesion: kind 'meniscal_cleft' needs region"):
        sim.insert_lesion(jax.random.key(0), images[0], kind="meniscal_cleft", conspicuity=0.5)


def test_reproducible(knees):
    images, _ = knees
    a = sim.insert_lesion(jax.random.key(5), images[1], kind="marrow_oedema", conspicuity=0.5)
    b = sim.insert_lesion(jax.random.key(5), images[1], kind="marrow_oedema", conspicuity=0.5)
    c = sim.insert_lesion(jax.random.key(6), images[1], kind="marrow_oedema", conspicuity=0.5)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


# ------------------------------------------------------------------ errors


def test_bad_input_errors():
    image, _ = _synthetic(0)
    key = jax.random.key(0)
    ok = dict(kind="cartilage_defect", conspicuity=0.5)
    with pytest.raises(ValueError, match=r"insert_lesion: image must be 2D .*got shape"):
        sim.insert_lesion(key, image[None], **ok)
    bad = image.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="insert_lesion: image must be finite, got 1 NaN"):
        sim.insert_lesion(key, bad, **ok)
    with pytest.raises(TypeError, match="insert_lesion: image must be a real floating"):
        sim.insert_lesion(key, image.astype(np.int16), **ok)
    for c in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match=r"conspicuity must be a number in \[0, 1\]"):
            sim.insert_lesion(key, image, kind="cartilage_defect", conspicuity=c)
    with pytest.raises(ValueError, match="kind must be one of .*got 'tear'"):
        sim.insert_lesion(key, image, kind="tear", conspicuity=0.5)
    with pytest.raises(ValueError, match="region must have the image's shape"):
        sim.insert_lesion(key, image, region=np.ones((4, 4), bool), **ok)
    with pytest.raises(TypeError, match="region must be a boolean mask"):
        sim.insert_lesion(key, image, region=np.ones(image.shape), **ok)
    with pytest.raises(ValueError, match="region is empty"):
        sim.insert_lesion(key, image, region=np.zeros(image.shape, bool), **ok)
    with pytest.raises(ValueError, match="noise_sigma must be None or a finite number"):
        sim.insert_lesion(key, image, noise_sigma=-1.0, **ok)
    with pytest.raises(TypeError, match="key must be one jax.random key"):
        sim.insert_lesion(0, image, **ok)
    with pytest.raises(ValueError, match="articular_axis must be None, 0 or 1"):
        sim.insert_lesion(key, image, articular_axis=2, **ok)
    with pytest.raises(ValueError, match="background .* does not look like magnitude noise"):
        sim.insert_lesion(key, np.where(image > 5, image, 0.0).astype(np.float32), **ok)


# ------------------------------------------------------------------ sets and splits


def test_split_by_subject_is_disjoint_and_complete():
    ids = [f"P{i}" for i in range(15)] * 3
    train, test = sim.split_by_subject(ids, test_fraction=0.3, seed=1)
    assert not train & test and train | test == set(ids)
    assert len(test) == round(0.3 * 15)
    assert sim.split_by_subject(ids, test_fraction=0.3, seed=1) == (train, test)
    assert sim.split_by_subject(ids, test_fraction=0.3, seed=2) != (train, test)
    assert len(sim.split_by_subject(["a", "b"], test_fraction=0.01, seed=0)[1]) == 1
    with pytest.raises(ValueError, match="split_by_subject: needs at least 2 distinct"):
        sim.split_by_subject(["a", "a"], test_fraction=0.5, seed=0)
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0, 1\)"):
        sim.split_by_subject(ids, test_fraction=1.0, seed=0)


def test_real_lesion_set_shams_and_split(knees):
    images, subjects = knees
    n = 4
    data = sim.real_lesion_set(images[:n], subjects[:n], key=jax.random.key(0),
                               kind="cartilage_defect", per_image=2,
                               conspicuity_range=(0.3, 1.0))
    assert data.images.shape == (4 * n, *images.shape[1:]) and data.images.dtype == np.float32
    np.testing.assert_array_equal(data.labels, np.tile([1, 1, 0, 0], n))
    np.testing.assert_array_equal(data.subjects, np.repeat(subjects[:n], 4))
    assert np.all(data.masks[data.labels == 1].any(axis=(1, 2)))
    assert not data.masks[data.labels == 0].any()
    assert np.all((data.conspicuity[data.labels == 1] >= 0.3)
                  & (data.conspicuity[data.labels == 1] <= 1.0))
    for i in range(n):
        pos = np.flatnonzero((data.source == i) & (data.labels == 1))
        neg = np.flatnonzero((data.source == i) & (data.labels == 0))
        for p, q in zip(pos, neg):
            # Each negative is its positive's sham (same place); outside the mask a positive
            # is the sham-processed negative, bit for bit.
            np.testing.assert_array_equal(data.centres[p], data.centres[q])
            outside = ~data.masks[p]
            np.testing.assert_array_equal(data.images[p][outside], data.images[q][outside])
            assert not np.array_equal(data.images[p], data.images[q])
        for q in neg:
            np.testing.assert_array_equal(data.images[q], images[i])
    train, test = sim.split_by_subject(data.subjects, test_fraction=0.5, seed=0)
    in_test = np.isin(data.subjects, list(test))
    assert not set(data.subjects[in_test]) & set(data.subjects[~in_test])
    assert set(data.subjects[~in_test]) == train


def test_real_lesion_set_patches_follow_the_lesion(knees):
    images, subjects = knees
    data = sim.real_lesion_set(images[:2], subjects[:2], key=jax.random.key(1),
                               kind="marrow_oedema", per_image=2, patch=(64, 48))
    assert data.images.shape == (8, 64, 48)
    for k in range(8):
        r0, c0 = data.origins[k]
        np.testing.assert_array_equal(data.images[k][~data.masks[k]],
                                      images[data.source[k]][r0:r0 + 64,
                                                             c0:c0 + 48][~data.masks[k]])
        row, col = data.centres[k] - data.origins[k]
        assert 0 <= row < 64 and 0 <= col < 48
    assert data.masks[data.labels == 1].any(axis=(1, 2)).all()


def test_real_lesion_set_refuses_one_scan_under_two_ids(shared_data):
    data = np.load(shared_data / "knee_axial_rss" / "knee_axial_rss.npz")
    with pytest.raises(ValueError, match="images 0 and 3 are the same scan .*'knee'"):
        sim.real_lesion_set(data["images"][:4], data["subject"][:4], key=jax.random.key(0),
                            kind="cartilage_defect", per_image=1)


def test_real_lesion_set_bad_input(knees):
    images, subjects = knees
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="real_lesion_set: images must be \\(n, rows, cols\\)"):
        sim.real_lesion_set(images[0], subjects[:1], key=key, kind="marrow_oedema",
                            per_image=1)
    with pytest.raises(ValueError, match="subjects must have one id per image"):
        sim.real_lesion_set(images[:2], subjects[:3], key=key, kind="marrow_oedema",
                            per_image=1)
    with pytest.raises(ValueError, match="per_image must be an integer >= 1"):
        sim.real_lesion_set(images[:2], subjects[:2], key=key, kind="marrow_oedema",
                            per_image=0)
    with pytest.raises(ValueError, match="conspicuity_range must satisfy"):
        sim.real_lesion_set(images[:2], subjects[:2], key=key, kind="marrow_oedema",
                            per_image=1, conspicuity_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="patch must be \\(rows, cols\\) of ints"):
        sim.real_lesion_set(images[:2], subjects[:2], key=key, kind="marrow_oedema",
                            per_image=1, patch=(1000, 10))
