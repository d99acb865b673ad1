"""Pseudo-CT synthesis examples: MR contrasts channels-last and the CT of the same deformed
knee (oracles: segmentation_example with the same key, the CT functions on its labels), the
class-assignment table and map, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import sim

SHAPE = (16, 40, 40)


@pytest.fixture(scope="module")
def example():
    return sim.pseudo_ct_example(jax.random.key(3), shape=SHAPE)


def test_matches_segmentation_example_and_the_ct_of_its_labels(example):
    reference = sim.segmentation_example(jax.random.key(3), shape=SHAPE,
                                         contrast=("pd_fs", "t1_spgr"), slice_axis=0)
    assert example.contrasts == ("pd_fs", "t1_spgr") == sim.PSEUDO_CT_CONTRASTS
    assert example.mr.shape == (40, 40, 2) and example.mr.dtype == jnp.float32
    # Channels-last: channel c is contrast c of the same subject, slice and deformation.
    np.testing.assert_array_equal(np.asarray(example.mr),
                                  np.moveaxis(np.asarray(reference.image), 0, -1))
    np.testing.assert_array_equal(np.asarray(example.labels), np.asarray(reference.labels))
    labels = np.asarray(example.labels)
    hu_table = {index: 1000.0 * (sim.ATTENUATION_PER_CM[name] - sim.WATER_ATTENUATION_PER_CM)
                / sim.WATER_ATTENUATION_PER_CM for name, index in sim.KNEE_LABELS.items()}
    expected = np.vectorize(hu_table.get)(labels)
    assert example.hounsfield.shape == (40, 40) and example.hounsfield.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(example.hounsfield), expected, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(example.classes),
                                  np.asarray(sim.ct_tissue_classes(example.labels)))
    assert set(np.unique(np.asarray(example.classes))) == {0, 1, 2, 3}
    # Normalised: each contrast's 99th percentile is 1.
    for c in range(2):
        assert np.percentile(np.asarray(example.mr[..., c]), 99) == pytest.approx(1, rel=1e-4)


def test_contrasts_differ_where_the_tissue_does(example):
    """Fat is bright in T1 SPGR and dark in fat-suppressed PD; the channels are the contrasts
    in the order asked for."""
    fat = np.asarray(example.classes) == 1
    pd, t1 = np.asarray(example.mr[..., 0]), np.asarray(example.mr[..., 1])
    assert np.median(t1[fat]) > 2 * np.median(pd[fat])
    # Without noise (each channel draws its own), swapping the names swaps the channels.
    clean = [sim.pseudo_ct_example(jax.random.key(3), shape=SHAPE, contrasts=names,
                                   realistic=False)
             for names in (("pd_fs", "t1_spgr"), ("t1_spgr", "pd_fs"))]
    np.testing.assert_array_equal(np.asarray(clean[0].hounsfield),
                                  np.asarray(clean[1].hounsfield))
    assert clean[1].contrasts == ("t1_spgr", "pd_fs")
    np.testing.assert_allclose(np.asarray(clean[1].mr), np.asarray(clean[0].mr[..., ::-1]),
                               rtol=1e-6, atol=1e-6)


def test_subjects_differ_and_keys_repeat(example):
    again = sim.pseudo_ct_example(jax.random.key(3), shape=SHAPE)
    np.testing.assert_array_equal(np.asarray(again.mr), np.asarray(example.mr))
    other = sim.pseudo_ct_example(jax.random.key(4), shape=SHAPE)
    assert not np.array_equal(np.asarray(other.labels), np.asarray(example.labels))


def test_clean_single_contrast_volume():
    ex = sim.pseudo_ct_example(jax.random.key(0), shape=(8, 16, 16), contrasts=["t1_spgr"],
                               realistic=False, slice_axis=None, deform=False)
    assert ex.mr.shape == (8, 16, 16, 1)
    assert ex.hounsfield.shape == ex.classes.shape == ex.labels.shape == (8, 16, 16)
    np.testing.assert_array_equal(np.asarray(ex.labels), np.asarray(ex.phantom.labels))


@pytest.mark.parametrize("contrasts, match", [
    (("pd_fs", "ct"), "unknown contrast 'ct'"),
    ("pd_fs", "non-empty sequence"),
    ((), "non-empty sequence"),
    (("pd_fs", "pd_fs"), "must be distinct"),
    (("pd_fs", "mese"), "multi-echo contrasts"),
])
def test_bad_contrasts(contrasts, match):
    with pytest.raises(ValueError, match=f"mskjax.sim.pseudo_ct_example: .*{match}"):
        sim.pseudo_ct_example(jax.random.key(0), shape=(8, 16, 16), contrasts=contrasts,
                              realistic=False, deform=False)


def test_mean_hounsfield_per_class_by_hand():
    hu = np.array([[-1000.0, -100.0, 10.0], [30.0, 500.0, 1500.0]])
    classes = np.array([[0, 1, 2], [2, 3, 3]])
    table = sim.mean_hounsfield_per_class(hu, classes)
    np.testing.assert_allclose(table, [-1000.0, -100.0, 20.0, 1000.0])
    assert table.dtype == np.float64
    # The example's fat and air are one HU each; soft tissue and bone are mixtures.
    ex = sim.pseudo_ct_example(jax.random.key(3), shape=SHAPE)
    table = sim.mean_hounsfield_per_class(ex.hounsfield, ex.classes)
    assert table[0] == pytest.approx(-1000, abs=1e-3)
    assert table[1] == pytest.approx(1000 * (0.18 - 0.205) / 0.205, abs=1e-2)
    assert 0 < table[2] < 25 and 366 < table[3] < 1780


def test_pseudo_ct_from_classes():
    classes = jnp.asarray([[0, 3], [2, 1]], jnp.int32)
    table = np.array([-1000.0, -120.0, 20.0, 700.0])
    out = sim.pseudo_ct_from_classes(classes, table)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), [[-1000, 700], [20, -120]])
    jitted = jax.jit(sim.pseudo_ct_from_classes)(classes, jnp.asarray(table, jnp.float32))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(out))


def test_class_assignment_errors():
    f = "mskjax.sim.mean_hounsfield_per_class"
    with pytest.raises(ValueError, match=f"{f}: hounsfield and classes must have one shape"):
        sim.mean_hounsfield_per_class(np.zeros((2, 2)), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=rf"{f}: every class needs .* classes \[2, 3\]"):
        sim.mean_hounsfield_per_class(np.zeros(4), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=f"{f}: classes must lie in 0..3"):
        sim.mean_hounsfield_per_class(np.zeros(4), np.array([0, 1, 2, 4]))
    with pytest.raises(ValueError, match=f"{f}: hounsfield must be finite"):
        sim.mean_hounsfield_per_class(np.array([0, 1, np.nan, 3.0]), np.arange(4))
    with pytest.raises(TypeError, match=f"{f}: classes must be integer"):
        sim.mean_hounsfield_per_class(np.zeros(4), np.zeros(4))
    g = "mskjax.sim.pseudo_ct_from_classes"
    with pytest.raises(ValueError, match=f"{g}: classes must lie in 0..3"):
        sim.pseudo_ct_from_classes(jnp.asarray([0, 4]), np.zeros(4))
    with pytest.raises(ValueError, match=f"{g}: table must be a real"):
        sim.pseudo_ct_from_classes(jnp.asarray([0, 1]), np.zeros((2, 2)))
    with pytest.raises(TypeError, match=f"{g}: classes must be integer"):
        sim.pseudo_ct_from_classes(jnp.asarray([0.0, 1.0]), np.zeros(4))


@pytest.mark.parametrize(("classes", "table"), [("abc", np.zeros(4)), (np.arange(4), "abcd"),
                                                (np.arange(4), None), (None, np.zeros(4))],
                         ids=repr)
def test_pseudo_ct_non_arrays_are_clean_type_errors(classes, table):
    # regression: JAX's own TypeError / ValueError without the function's name
    with pytest.raises(TypeError, match="^mskjax.sim.pseudo_ct_from_classes:"):
        sim.pseudo_ct_from_classes(classes, table)


def test_mean_hounsfield_per_class_none_classes_is_a_clean_type_error():
    # regression: "None is not a valid value for jnp.array"
    with pytest.raises(TypeError, match="^mskjax.sim.mean_hounsfield_per_class:"):
        sim.mean_hounsfield_per_class(np.zeros(4), None)
