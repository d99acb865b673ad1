"""CT numbers of the simulated knee: attenuation per label from the table, Hounsfield units by
their definition, the inverse, the four CT classes, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import sim

L = sim.KNEE_LABELS
WATER = sim.ATTENUATION_PER_CM["joint_fluid"]
#: The CT class of every label, written out by hand (module docstring of mskjax.sim._ct).
EXPECTED_CLASS = {
    "background": "air", "subcutaneous_fat": "fat", "periarticular_fat": "fat",
    "femur": "bone", "tibia": "bone", "patella": "bone", "fibula": "bone",
    "cortical_bone": "bone", "femoral_cartilage": "soft_tissue",
    "tibial_cartilage": "soft_tissue", "patellar_cartilage": "soft_tissue",
    "medial_meniscus": "soft_tissue", "lateral_meniscus": "soft_tissue",
    "muscle": "soft_tissue", "joint_fluid": "soft_tissue", "tendon_ligament": "soft_tissue",
}


def every_label():
    return jnp.arange(len(L), dtype=jnp.int32)


def test_attenuation_of_each_label_is_the_table():
    mu = np.asarray(sim.attenuation_map(every_label()))
    assert mu.dtype == np.float32
    for name, index in L.items():
        assert mu[index] == pytest.approx(sim.ATTENUATION_PER_CM[name], rel=1e-6), name


def test_hounsfield_units_of_each_label_by_definition():
    hu = np.asarray(sim.hounsfield_units(sim.attenuation_map(every_label())))
    assert sim.WATER_ATTENUATION_PER_CM == WATER
    for name, index in L.items():
        expected = 1000.0 * (sim.ATTENUATION_PER_CM[name] - WATER) / (WATER - 0.0)
        assert hu[index] == pytest.approx(expected, abs=1e-3), name
    # The anchor points and the values the module docstring states.
    assert hu[L["background"]] == pytest.approx(-1000.0, abs=1e-3)
    assert hu[L["joint_fluid"]] == pytest.approx(0.0, abs=1e-4)
    assert hu[L["subcutaneous_fat"]] == pytest.approx(-122, abs=1)
    assert hu[L["muscle"]] == pytest.approx(24, abs=1)
    assert hu[L["femur"]] == pytest.approx(366, abs=1)
    assert hu[L["cortical_bone"]] == pytest.approx(1780, abs=1)


def test_tissue_classes_of_each_label():
    classes = np.asarray(sim.ct_tissue_classes(every_label()))
    assert classes.dtype == np.int32
    assert sim.CT_TISSUE_CLASSES == ("air", "fat", "soft_tissue", "bone")
    assert set(EXPECTED_CLASS) == set(L)
    for name, index in L.items():
        assert sim.CT_TISSUE_CLASSES[classes[index]] == EXPECTED_CLASS[name], name


def test_classes_order_the_hounsfield_units():
    """Every voxel of a class is darker than every voxel of the next (air < fat < soft tissue
    < bone), on a whole phantom slice."""
    phantom = sim.knee_phantom(jax.random.key(0), shape=(16, 48, 48), slice_axis=0,
                               slice_index=8)
    hu = np.asarray(sim.hounsfield_units(sim.attenuation_map(phantom)))
    classes = np.asarray(sim.ct_tissue_classes(phantom))
    np.testing.assert_array_equal(classes, np.asarray(sim.ct_tissue_classes(phantom.labels)))
    assert set(np.unique(classes)) == {0, 1, 2, 3}
    for c in range(3):
        assert hu[classes == c].max() < hu[classes == c + 1].min()


def test_round_trip():
    mu = jnp.asarray(np.random.default_rng(0).uniform(0, 0.8, (5, 7)), jnp.float32)
    back = sim.attenuation_from_hounsfield(sim.hounsfield_units(mu))
    np.testing.assert_allclose(np.asarray(back), np.asarray(mu), rtol=1e-5, atol=1e-7)
    hu = jnp.asarray([-1000.0, -100.0, 0.0, 40.0, 1500.0])
    np.testing.assert_allclose(
        np.asarray(sim.hounsfield_units(sim.attenuation_from_hounsfield(hu, water=0.19),
                                        water=0.19)), np.asarray(hu), rtol=1e-5, atol=1e-3)
    # Another water value: water is 0 HU and vacuum -1000 HU whatever it is.
    np.testing.assert_allclose(np.asarray(sim.hounsfield_units(jnp.asarray([0.0, 0.3]),
                                                               water=0.3)), [-1000.0, 0.0],
                               atol=1e-4)


def test_jit_and_integer_input():
    hu = jax.jit(sim.hounsfield_units)(jnp.asarray([0.205, 0.41]))
    np.testing.assert_allclose(np.asarray(hu), [0.0, 1000.0], atol=1e-3)
    assert np.asarray(sim.hounsfield_units(0)).dtype == np.float32


@pytest.mark.parametrize("func", [sim.attenuation_map, sim.ct_tissue_classes])
def test_bad_labels(func):
    name = func.__name__
    with pytest.raises(TypeError, match=f"mskjax.sim.{name}: expected a KneePhantom"):
        func(jnp.zeros((4, 4), jnp.float32))
    with pytest.raises(ValueError, match=f"mskjax.sim.{name}: labels must be in 0..15"):
        func(jnp.full((4, 4), len(L), jnp.int32))
    with pytest.raises(ValueError, match=f"mskjax.sim.{name}: labels must be in"):
        func(jnp.full((4, 4), -1, jnp.int32))


@pytest.mark.parametrize("func", [sim.hounsfield_units, sim.attenuation_from_hounsfield])
def test_bad_values(func):
    name = func.__name__
    with pytest.raises(TypeError, match=f"mskjax.sim.{name}: .* must be real"):
        func(jnp.ones(3, jnp.complex64))
    with pytest.raises(TypeError, match=f"mskjax.sim.{name}: .* must be real"):
        func(jnp.ones(3, bool))
    for water in (0.0, -0.2, float("inf"), float("nan"), True, "0.2"):
        with pytest.raises(ValueError, match=f"mskjax.sim.{name}: water must be a positive"):
            func(jnp.ones(3), water=water)


@pytest.mark.parametrize("func", [sim.attenuation_map, sim.ct_tissue_classes])
def test_empty_label_map_gives_an_empty_map(func):
    # regression: numpy's "zero-size array to reduction operation min" ValueError
    assert np.asarray(func(np.zeros((0, 4), np.int32))).shape == (0, 4)


@pytest.mark.parametrize("func", [sim.hounsfield_units, sim.attenuation_from_hounsfield])
@pytest.mark.parametrize("value", ["abc", None, [[0.2], [0.3, 1.0]], np.array([None, 1])],
                         ids=repr)
def test_non_arrays_are_clean_type_errors(func, value):
    # regression: JAX's and numpy's own errors, without the function's name
    with pytest.raises(TypeError, match=f"^mskjax.sim.{func.__name__}:"):
        func(value)


@pytest.mark.parametrize("water", [1e-30, 1e30])
def test_water_that_makes_inf_or_nan_is_refused(water):
    # regression: water=1e-30 gave inf and water=1e30 gave -0 or NaN for finite attenuations
    with pytest.raises(ValueError, match="^mskjax.sim.hounsfield_units: water"):
        sim.hounsfield_units(np.float32([0.205, 1.0]), water=water)
    np.testing.assert_allclose(np.asarray(sim.hounsfield_units(np.float32([0.0, 2e18]),
                                                               water=1e18)), [-1000, 1000])
