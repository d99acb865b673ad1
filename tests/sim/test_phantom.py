"""The procedural knee phantom: determinism, variety, anatomy, resolution independence, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from mskjax import sim
from tests.sim.helpers import SHAPE, column_thickness

L = sim.KNEE_LABELS

#: Plausible volumes (mL) inside the default 160 mm field of view, for adult knees scaled by
#: 0.88 to 1.12: bones are the parts inside the field of view (the femur's distal 8 cm, the
#: tibia's proximal 8 cm), cartilage a few mL per plate (femoral cartilage is the largest),
#: menisci 1 to 4 mL each, a healthy joint a few mL of fluid.
VOLUME_RANGES_ML = {
    "femur": (60, 320), "tibia": (35, 180), "patella": (6, 40), "fibula": (2, 25),
    "femoral_cartilage": (5, 25), "tibial_cartilage": (1.5, 9), "patellar_cartilage": (1.5, 10),
    "medial_meniscus": (0.4, 5), "lateral_meniscus": (0.4, 5), "muscle": (250, 1600),
    "subcutaneous_fat": (100, 1300), "joint_fluid": (0.5, 12), "cortical_bone": (15, 120),
    "tendon_ligament": (3, 40), "periarticular_fat": (50, 700),
}


def volumes_ml(phantom):
    labels = np.asarray(phantom.labels)
    voxel_ml = np.prod(phantom.voxel_size) / 1000.0
    return {name: float(np.sum(labels == value)) * voxel_ml for name, value in L.items()}


def test_labels_are_named_and_the_result_is_described(healthy):
    assert list(L) == list(healthy[0].tissue_names)
    assert list(L.values()) == list(range(len(L)))
    for required in ["background", "femur", "tibia", "patella", "femoral_cartilage",
                     "tibial_cartilage", "patellar_cartilage", "medial_meniscus",
                     "lateral_meniscus", "muscle", "subcutaneous_fat", "joint_fluid"]:
        assert required in L
    p = healthy[0]
    assert p.labels.shape == SHAPE and p.labels.dtype == np.int32
    assert p.voxel_size == (5.0, 2.5, 2.5)
    assert p.axes == sim.AXES == ("left-right", "superior-inferior", "anterior-posterior")
    assert p.labels.min() >= 0 and p.labels.max() < len(L)
    # The corners of the field of view are outside the limb.
    assert p.labels[0, 0, 0] == 0 and p.labels[-1, -1, -1] == 0


def test_same_key_same_knee():
    key = jax.random.key(11)
    a = sim.knee_phantom(key, shape=SHAPE, pathology="random")
    b = sim.knee_phantom(key, shape=SHAPE, pathology="random")
    np.testing.assert_array_equal(a.labels, b.labels)
    for x, y in zip(jax.tree.leaves((a.anatomy, a.pathology)),
                    jax.tree.leaves((b.anatomy, b.pathology))):
        np.testing.assert_array_equal(x, y)


def test_different_keys_different_knees(healthy):
    for i in range(len(healthy)):
        for j in range(i):
            a, b = healthy[i], healthy[j]
            assert np.mean(a.labels != b.labels) > 0.02
            for field in ["size_scale", "femoral_cartilage_thickness", "condyle_semi_axes",
                          "patella_height", "rotation", "subcutaneous_fat_thickness"]:
                assert not np.allclose(getattr(a.anatomy, field), getattr(b.anatomy, field))
    scales = [float(p.anatomy.size_scale) for p in healthy]
    assert all(0.88 <= s <= 1.12 for s in scales)


def test_every_tissue_is_present_with_a_plausible_volume(healthy):
    for p in healthy:
        v = volumes_ml(p)
        for name, (low, high) in VOLUME_RANGES_ML.items():
            assert low <= v[name] <= high, (name, v[name])
        # Larger structures are larger: femur > tibia > patella, femoral > tibial cartilage.
        assert v["femur"] > v["tibia"] > v["patella"]
        assert v["femoral_cartilage"] > v["tibial_cartilage"]


def zoom(key, centre, voxel=0.25):
    return np.asarray(sim.knee_phantom(key, shape=SHAPE, voxel_size=voxel,
                                       centre=tuple(np.asarray(centre))).labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_cartilage_thickness_measured_from_labels_matches_the_drawn_thickness(seed, healthy):
    key = jax.random.key(seed)
    a = healthy[seed].anatomy
    # Zoom (0.25 mm voxels) on the medial femorotibial contact and on the back of the patella.
    contact = np.asarray(a.condyle_centres[0]) - [0.0, float(a.condyle_semi_axes[0, 1]), 0.0]
    labels = zoom(key, contact)
    patella = zoom(key, np.asarray(a.patella_centre) - [0.0, 0.0, 13.0])
    cases = [(labels == L["femoral_cartilage"], 1, a.femoral_cartilage_thickness[0]),
             (labels == L["tibial_cartilage"], 1, a.tibial_cartilage_thickness[0]),
             (patella == L["patellar_cartilage"], 2, a.patellar_cartilage_thickness)]
    for mask, axis, drawn in cases:
        assert mask.sum() > 1000
        # Runs along the surface normal (poses tilt it by at most a few degrees).
        np.testing.assert_allclose(column_thickness(mask, 0.25, axis), float(drawn), rtol=0.1)
        # Twice the distance to the nearest non-cartilage voxel, on the medial surface (ridge).
        distance = ndimage.distance_transform_edt(mask, sampling=0.25)
        ridge = mask & (distance == ndimage.maximum_filter(distance, size=3))
        ridge[:2] = ridge[-2:] = ridge[:, :2] = ridge[:, -2:] = False
        ridge[:, :, :2] = ridge[:, :, -2:] = False
        np.testing.assert_allclose(2 * np.mean(distance[ridge]), float(drawn), rtol=0.2)
    # Thickness is drawn per subject: femoral and tibial about 2 mm, patellar 2.4 to 3.2 mm.
    assert 1.5 <= float(a.femoral_cartilage_thickness[0]) <= 2.8
    assert 1.4 <= float(a.tibial_cartilage_thickness[0]) <= 2.9
    assert 2.4 <= float(a.patellar_cartilage_thickness) <= 3.2


def test_the_same_anatomy_at_any_resolution():
    """A grid of half the spacing, shifted so that every other point is a coarse point, gives
    the same labels there: the anatomy is continuous, not a resampled volume."""
    key = jax.random.key(4)
    coarse = np.asarray(sim.knee_phantom(key, shape=SHAPE).labels)
    fine = np.asarray(sim.knee_phantom(key, shape=SHAPE, voxel_size=(2.5, 1.25, 1.25),
                                       centre=(1.25, -0.625, -0.625)).labels)
    agree = np.mean(fine[::2, ::2, ::2] == coarse[8:24, 16:48, 16:48])
    assert agree > 0.999


def test_a_slice_is_the_slice_of_the_volume():
    key = jax.random.key(5)
    volume = sim.knee_phantom(key, shape=SHAPE, pathology="random")
    section = sim.knee_phantom(key, shape=SHAPE, pathology="random", slice_axis=0,
                               slice_index=19)
    assert section.labels.shape == SHAPE[1:]
    assert section.axes == ("superior-inferior", "anterior-posterior")
    assert section.voxel_size == (2.5, 2.5)
    assert np.mean(np.asarray(section.labels) == np.asarray(volume.labels)[19]) > 0.999
    for name, mask in section.pathology.masks.items():
        assert mask.shape == SHAPE[1:], name
    negative = sim.knee_phantom(key, shape=SHAPE, pathology="random", slice_axis=0,
                                slice_index=19 - SHAPE[0])
    np.testing.assert_array_equal(negative.labels, section.labels)


def test_a_left_knee_mirrors_a_right_knee():
    key = jax.random.key(6)
    right = np.asarray(sim.knee_phantom(key, shape=SHAPE).labels)
    left = sim.knee_phantom(key, shape=SHAPE, side="left")
    np.testing.assert_array_equal(np.asarray(left.labels), right[::-1])
    # Medial is towards +x for a right knee, -x for a left one.
    assert float(left.anatomy.condyle_centres[0, 0]) < 0 < float(
        sim.knee_phantom(key, shape=SHAPE).anatomy.condyle_centres[0, 0])


def test_osteoarthritis_grade_narrows_the_joint_and_changes_nothing_else():
    key = jax.random.key(8)
    anatomies = [sim.knee_phantom(key, shape=SHAPE, kl_grade=g).anatomy for g in range(5)]
    widths = np.array([np.asarray(a.joint_space_width) for a in anatomies])
    assert np.all(np.diff(widths[:, 0]) < 0)  # medial narrows at every grade
    assert np.all(np.diff(widths[:, 1]) <= 0)
    assert [int(a.kl_grade) for a in anatomies] == [0, 1, 2, 3, 4]
    assert float(anatomies[4].osteophyte_size) > float(anatomies[1].osteophyte_size) > 0
    assert float(anatomies[0].osteophyte_size) == 0
    for field in ["size_scale", "condyle_semi_axes", "patella_height", "rotation"]:
        np.testing.assert_array_equal(getattr(anatomies[0], field), getattr(anatomies[4], field))


def test_jit_and_vmap_over_keys():
    shape = (8, 16, 16)
    keys = jax.random.split(jax.random.key(9), 3)
    batched = jax.jit(jax.vmap(lambda k: sim.knee_phantom(k, shape=shape, pathology="random")))
    phantoms = batched(keys)
    assert phantoms.labels.shape == (3, *shape)
    assert phantoms.anatomy.size_scale.shape == (3,)
    assert phantoms.pathology.masks["effusion"].shape == (3, *shape)
    for i in range(3):
        single = sim.knee_phantom(keys[i], shape=shape, pathology="random")
        np.testing.assert_array_equal(phantoms.labels[i], single.labels)
        np.testing.assert_allclose(phantoms.anatomy.size_scale[i], single.anatomy.size_scale)


def test_the_result_is_a_pytree_with_static_metadata(healthy):
    leaves, tree = jax.tree.flatten(healthy[0])
    assert all(hasattr(leaf, "shape") for leaf in leaves)
    rebuilt = jax.tree.unflatten(tree, leaves)
    assert rebuilt.voxel_size == healthy[0].voxel_size and rebuilt.axes == healthy[0].axes
    assert dataclasses.is_dataclass(healthy[0].anatomy)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(shape=(32, 64)), ValueError, "shape must be 3 ints"),
    (dict(shape=(32, 0, 64)), ValueError, "each size in shape must be an integer >= 1"),
    (dict(voxel_size=(1.0, -1.0, 1.0)), ValueError, "voxel_size must be 3 finite positive"),
    (dict(voxel_size="big"), TypeError, "voxel_size must be None, a number or 3 numbers"),
    (dict(centre=(0.0, 1.0)), ValueError, "centre must be 3 finite numbers"),
    (dict(slice_axis=0), ValueError, "give both slice_axis and slice_index"),
    (dict(slice_axis=3, slice_index=0), ValueError, "slice_axis must be 0, 1 or 2"),
    (dict(slice_axis=1, slice_index=64), ValueError, r"slice_index must be an int in \[-64, 64\)"),
    (dict(pathology="fracture"), ValueError, "unknown pathology 'fracture'"),
    (dict(pathology={"effusion": 1.5}), ValueError,
     r"pathology\[.effusion.\] must be a probability"),
    (dict(pathology={"meniscal_tear": "anterior"}), ValueError, "unknown site 'anterior'"),
    (dict(pathology=3), TypeError, "pathology must be None, 'random'"),
    (dict(kl_grade=5), ValueError, "kl_grade must be an int in 0..4"),
    (dict(kl_grade=1.5), TypeError, "kl_grade must be an int in 0..4 or an integer"),
    (dict(side="both"), ValueError, "side must be 'right' or 'left'"),
])
def test_bad_inputs_are_named(kwargs, error, message):
    with pytest.raises(error, match="mskjax.sim.knee_phantom: " + message):
        sim.knee_phantom(jax.random.key(0), **{"shape": SHAPE, **kwargs})


def test_bad_key():
    with pytest.raises(TypeError, match="mskjax.sim.knee_phantom: key must be one jax.random key"):
        sim.knee_phantom(jax.random.split(jax.random.key(0), 2), shape=SHAPE)
    with pytest.raises(TypeError, match="key must be one jax.random key"):
        sim.knee_phantom(0, shape=SHAPE)
    # A raw uint32 key works as well.
    raw = sim.knee_phantom(jax.random.PRNGKey(0), shape=SHAPE)
    assert raw.labels.shape == SHAPE and jnp.issubdtype(raw.labels.dtype, jnp.integer)
