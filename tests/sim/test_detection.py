"""Detection data: conspicuity of the phantom's pathologies, 2D and multi-view examples, sets."""

import jax
import numpy as np
import pytest
from scipy import ndimage

from mskjax import io, sim
from mskjax.sim._detection import _fine_samples
from mskjax.sim._phantom import subvoxel_samples
from tests.sim.helpers import SHAPE

L = sim.KNEE_LABELS
#: One image size for every 2D test and one stack for every multi-view test (one compilation).
SIZE = (48, 48)
STACK = dict(slices=4, size=24)
ALL = ["cartilage_lesion", "meniscal_tear", "bone_marrow_oedema", "effusion"]


def example(seed, **kwargs):
    return sim.lesion_detection_example(jax.random.key(seed), shape=SIZE, **kwargs)


# ----------------------------------------------------------------------------- the phantom


def test_conspicuity_zero_leaves_the_healthy_tissue_and_one_changes_it():
    key = jax.random.key(21)
    grid = dict(shape=(40, 40, 40), voxel_size=1.5, centre=(0.0, 0.0, -5.0))  # the joint
    healthy = sim.knee_phantom(key, **grid)
    faint = sim.knee_phantom(key, **grid, pathology=ALL, conspicuity=0.0)
    strong = sim.knee_phantom(key, **grid, pathology=ALL, conspicuity=1.0)
    masks = {name: np.asarray(m) for name, m in strong.pathology.masks.items()}
    for name in ("cartilage_lesion", "meniscal_tear", "bone_marrow_oedema"):
        assert np.asarray(faint.pathology.masks[name]).any(), name  # there, but invisible
    before, after = sim.tissue_maps(healthy), sim.tissue_maps(faint)
    for field in ("proton_density", "t1", "t2", "t1rho", "fat_fraction"):
        np.testing.assert_allclose(getattr(after, field), getattr(before, field), rtol=1e-6,
                                   err_msg=field)
    changed = sim.tissue_maps(strong)
    for name in ("cartilage_lesion", "meniscal_tear", "bone_marrow_oedema"):
        assert np.all(np.asarray(changed.t2)[masks[name]]
                      > np.asarray(before.t2)[masks[name]]), name
    # Conspicuity 1 has the default contrast: a full-thickness defect and a cleft are fluid.
    fluid = sim.TISSUE_PARAMETERS["joint_fluid"]["t2"]
    defect = masks["cartilage_lesion"] & (np.asarray(strong.labels) == L["joint_fluid"])
    assert defect.any()
    np.testing.assert_allclose(np.asarray(changed.t2)[defect], fluid, rtol=1e-5)
    # Effusion at conspicuity 0 adds no fluid; at 1 it does.
    assert not np.asarray(faint.pathology.masks["effusion"]).any()
    assert masks["effusion"].any()


def test_conspicuity_scales_size_and_is_reported():
    key = jax.random.key(3)
    sizes, reported = [], []
    for c in (0.2, 0.6, 1.0):
        p = sim.knee_phantom(key, shape=SHAPE, pathology={"cartilage_lesion": "medial_femoral"},
                             conspicuity={"cartilage_lesion": c})
        sizes.append(int(np.asarray(p.pathology.masks["cartilage_lesion"]).sum()))
        reported.append(float(p.pathology.conspicuity["cartilage_lesion"]))
        assert np.isnan(float(p.pathology.conspicuity["meniscal_tear"]))  # absent
    assert sizes[0] < sizes[1] < sizes[2]
    np.testing.assert_allclose(reported, (0.2, 0.6, 1.0), rtol=1e-6)
    default = sim.knee_phantom(key, shape=SHAPE, pathology=["cartilage_lesion"])
    assert np.isnan(float(default.pathology.conspicuity["cartilage_lesion"]))
    # A conspicuity for an absent pathology changes nothing.
    other = sim.knee_phantom(key, shape=SHAPE, pathology=["cartilage_lesion"],
                             conspicuity={"effusion": 0.5})
    np.testing.assert_array_equal(other.labels, default.labels)


@pytest.mark.parametrize("value, error, message", [
    (1.5, ValueError, r"conspicuity\['cartilage_lesion'\] must be a number in \[0, 1\]"),
    ({"fracture": 0.5}, ValueError, "unknown pathology 'fracture' in conspicuity"),
    ({"effusion": "high"}, ValueError, r"conspicuity\['effusion'\] must be a number"),
    ({"effusion": np.zeros(2, np.float32)}, TypeError,
     r"conspicuity\[.effusion.\] must be a number in \[0, 1\] or a float scalar array, got "
     r"float32 of shape \(2,\)"),
])
def test_bad_conspicuity_is_named(value, error, message):
    with pytest.raises(error, match="mskjax.sim.knee_phantom: " + message):
        sim.knee_phantom(jax.random.key(0), shape=SHAPE, conspicuity=value)


def test_sub_voxel_samples_in_one_fine_evaluation_equal_the_shifted_grids():
    phantom = sim.knee_phantom(jax.random.key(1), shape=(6, 20, 24), voxel_size=(4.0, 2.0, 1.7),
                               centre=(15.0, 0.0, -15.0), pathology=ALL, conspicuity=0.7)
    expected, got = subvoxel_samples(phantom, 2, "test"), _fine_samples(phantom, 2)
    np.testing.assert_array_equal(got[0], expected[0])
    for name in ALL:
        np.testing.assert_array_equal(got[1][name], expected[1][name], err_msg=name)
    assert np.asarray(expected[1]["cartilage_lesion"]).any()


# ----------------------------------------------------------------------------- 2D examples


def test_label_is_presence_and_the_mask_shows_it():
    for seed in range(4):
        pos, neg = example(seed, present=True), example(seed, present=False)
        assert pos.image.shape == SIZE and pos.image.dtype == np.float32
        assert pos.mask.dtype == bool and pos.labels.dtype == np.int32
        assert int(pos.label) == 1 and pos.mask.any()
        assert int(neg.label) == 0 and not neg.mask.any()
        assert np.isnan(neg.conspicuity) and np.isnan(neg.cnr) and np.isnan(neg.cnr_measured)
        assert all(np.all(np.isnan(v)) for v in neg.parameters.values())
        assert 0.0 <= float(pos.conspicuity) <= 1.0
        # Negatives are the same knee at the same place: same slice, site and tissue labels.
        assert float(pos.slice_position) == float(neg.slice_position)
        assert int(pos.site) == int(neg.site)
        np.testing.assert_array_equal(pos.labels, neg.labels)
    drawn = [example(seed) for seed in range(10, 16)]
    assert {int(e.label) for e in drawn} == {0, 1}
    assert all(int(e.label) == int(e.mask.any()) for e in drawn)


def test_conspicuity_zero_is_the_healthy_image_and_cnr_grows_with_it():
    seed = 2
    absent = example(seed, present=False)
    series = [example(seed, present=True, conspicuity=c) for c in (0.0, 0.25, 0.5, 0.75, 1.0)]
    np.testing.assert_array_equal(series[0].image, absent.image)
    cnr = [float(e.cnr) for e in series]
    assert cnr[0] == 0.0 and all(a < b for a, b in zip(cnr, cnr[1:])), cnr
    strong = series[-1]
    assert cnr[-1] > 5.0 and float(strong.cnr_measured) > 5.0
    # On the image: the lesion's pixels moved by about cnr noise standard deviations.
    shift = (strong.image - absent.image)[strong.mask].mean() / float(strong.noise)
    assert shift == pytest.approx(cnr[-1], rel=0.2)
    assert np.all(np.diff([float(e.parameters["radius"]) for e in series]) > 0)
    assert np.all(np.diff([float(e.parameters["fill"]) for e in series]) > 0)


def test_noise_follows_the_drawn_snr():
    e = example(4, present=True, snr=15.0)
    assert float(e.snr) == pytest.approx(15.0)
    # SNR = mean noise-free foreground / noise standard deviation of one channel.
    foreground = e.labels != L["background"]
    assert e.clean[foreground].mean() / float(e.noise) == pytest.approx(15.0, rel=1e-4)
    # Where the signal is far above the noise, Rician noise is Gaussian with that deviation.
    bright = e.clean > 8 * float(e.noise)
    assert bright.sum() > 200
    assert np.std((e.image - e.clean)[bright]) == pytest.approx(float(e.noise), rel=0.15)
    assert np.percentile(e.image, 99) == pytest.approx(1.0, rel=1e-5)


def test_surround_cnr_against_scipy_distances():
    e = example(6, present=True, conspicuity=1.0)
    pixel = 100.0 / max(SIZE)
    host = np.bincount(e.labels[e.mask]).argmax()
    near = ndimage.distance_transform_edt(~e.mask, sampling=pixel) <= 5.0
    reference = near & ~e.mask & (e.labels == host)
    expected = (e.image[e.mask].mean() - e.image[reference].mean()) / float(e.noise)
    assert float(e.cnr_measured) == pytest.approx(expected, rel=1e-4)


def test_tear_and_oedema_examples():
    for pathology, host in (("meniscal_tear", ("medial_meniscus", "lateral_meniscus")),
                            ("bone_marrow_oedema", ("femur", "tibia"))):
        e = example(1, pathology=pathology, present=True, conspicuity=1.0)
        assert e.mask.any() and float(e.cnr) > 3.0, pathology
        assert set(np.unique(e.labels[e.mask])) <= {L[h] for h in host}, pathology


def test_reproducible_from_the_key():
    a, b, c = example(8), example(8), example(9)
    for x, y in zip(a, b):
        if isinstance(x, dict):
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
        else:
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(pathology="effusion"), ValueError, "pathology must be one of"),
    (dict(present=1), TypeError, "present must be None"),
    (dict(conspicuity=1.2), ValueError, r"conspicuity must be a number in \[0.0, 1.0\]"),
    (dict(conspicuity=(0.6, 0.2)), ValueError, "conspicuity must be a number"),
    (dict(snr=0.0), ValueError, r"snr must be a number in \(0.0, inf\]"),
    (dict(contrast="mese"), ValueError, "contrast must be one of"),
    (dict(shape=(4, 48)), ValueError, "each size in shape must be an integer >= 8"),
    (dict(shape=48), ValueError, "shape must be"),
    (dict(plane="oblique"), ValueError, "plane must be one of"),
    (dict(field_of_view=-1.0), ValueError, "field_of_view must be a finite number > 0"),
    (dict(realistic="yes"), TypeError, "realistic must be a bool"),
    (dict(kl_grade=5), ValueError, "kl_grade must be"),
    (dict(field_of_view=4.0), ValueError, "no slice of 20 knees showed"),
])
def test_bad_inputs_are_named(kwargs, error, message):
    with pytest.raises(error, match="mskjax.sim.lesion_detection_example: " + message):
        sim.lesion_detection_example(jax.random.key(0), **{"shape": SIZE, **kwargs})


def test_bad_key():
    with pytest.raises(TypeError, match="lesion_detection_example: key must be one jax.random"):
        sim.lesion_detection_example(0)


# ----------------------------------------------------------------------------- multi-view


def test_multiview_planes_contrasts_and_labels():
    pos = sim.multiview_example(jax.random.key(2), present=True, conspicuity=1.0, side="right",
                                **STACK)
    neg = sim.multiview_example(jax.random.key(2), present=False, side="right", **STACK)
    shape = (STACK["slices"], STACK["size"], STACK["size"])
    assert len(pos.views) == len(pos.masks) == len(pos.labels) == 3
    for view, mask, labels in zip(pos.views, pos.masks, pos.labels):
        assert view.shape == mask.shape == labels.shape == shape and view.dtype == np.float32
        assert np.percentile(view, 99) == pytest.approx(1.0, rel=1e-5)
    assert int(pos.label) == 1 and any(m.any() for m in pos.masks)
    assert np.nanmax(pos.cnr) > 3.0
    assert int(neg.label) == 0 and not any(m.any() for m in neg.masks)
    assert np.all(np.isnan(neg.cnr)) and np.isnan(neg.conspicuity)
    for a, b in zip(pos.labels, neg.labels):
        np.testing.assert_array_equal(a, b)  # the same knee, whatever the label

    def mean_position(labels, name, axis):
        return np.argwhere(labels == L[name])[:, axis].mean()

    sagittal, coronal, axial = pos.labels
    # Rows run superior to inferior (sagittal, coronal), anterior to posterior (axial);
    # columns (coronal, axial) and sagittal slices run from the patient's right to left, so
    # from the lateral to the medial side of a right knee (the fibula is lateral).
    assert mean_position(sagittal, "femur", 1) < mean_position(sagittal, "tibia", 1)
    assert mean_position(coronal, "femur", 1) < mean_position(coronal, "tibia", 1)
    assert mean_position(axial, "patella", 1) < mean_position(axial, "femur", 1)
    assert (mean_position(sagittal, "lateral_meniscus", 0)
            < mean_position(sagittal, "medial_meniscus", 0))
    assert (mean_position(coronal, "lateral_meniscus", 2)
            < mean_position(coronal, "medial_meniscus", 2))
    assert mean_position(axial, "fibula", 2) < mean_position(axial, "tibia", 2)
    # Contrasts per plane: fat dark in the fat-suppressed PD views, bright in the T1 view.
    for view, labels, t1 in zip(pos.views, pos.labels, (False, True, False)):
        fat, muscle = view[labels == L["subcutaneous_fat"]], view[labels == L["muscle"]]
        assert (fat.mean() > muscle.mean()) == t1


def test_bad_multiview_inputs_are_named():
    with pytest.raises(ValueError, match="multiview_example: contrasts must be three"):
        sim.multiview_example(jax.random.key(0), contrasts=("pd_fs",), **STACK)
    with pytest.raises(ValueError, match="multiview_example: slices must be an integer >= 2"):
        sim.multiview_example(jax.random.key(0), slices=1, size=24)


# ----------------------------------------------------------------------------- sets


def test_detection_set_is_indexed_by_subject_and_writes_as_a_classification_set(tmp_path):
    train = sim.detection_set(num_subjects=3, seed=5, shape=SIZE, progress=False)
    test = sim.detection_set(num_subjects=2, seed=5, first_subject=3, shape=SIZE,
                             progress=False)
    assert train["image"].shape == (3, *SIZE) and train["mask"].shape == (3, *SIZE)
    np.testing.assert_array_equal(train["subject"], [0, 1, 2])
    np.testing.assert_array_equal(test["subject"], [3, 4])
    one = sim.lesion_detection_example(jax.random.fold_in(jax.random.key(5), 4), shape=SIZE)
    np.testing.assert_array_equal(test["image"][1], one.image)
    assert int(test["label"][1]) == int(one.label)
    np.testing.assert_array_equal(test["radius"][1], one.parameters["radius"])
    io.write_classification_set(tmp_path / "set", {"train": train, "test": test},
                                task="binary", num_classes=2, source="simulated lesions")
    back = io.read_classification_set(tmp_path / "set", split="test")
    np.testing.assert_array_equal(back["image"], test["image"])
    with pytest.raises(ValueError, match="detection_set: kind must be one of"):
        sim.detection_set(num_subjects=1, kind="grading")
    with pytest.raises(ValueError, match="detection_set: num_subjects must be an integer >= 1"):
        sim.detection_set(num_subjects=0)
