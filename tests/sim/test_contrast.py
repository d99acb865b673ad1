"""Tissue parameters and MR contrasts: the physics orders the tissues, fits recover the inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import sim
from tests.sim.helpers import SHAPE

L = sim.KNEE_LABELS
ONE_OF_EACH = jnp.arange(len(L), dtype=jnp.int32)  # one voxel of every tissue
MAPS = sim.tissue_maps(ONE_OF_EACH)


def signal(image, tissue):
    return float(np.asarray(image)[..., L[tissue]])


def test_parameter_table_matches_the_literature_values():
    p = sim.TISSUE_PARAMETERS
    assert set(p) == set(L)
    assert p["femoral_cartilage"]["t1"] == pytest.approx(1240, rel=0.05)  # Gold 2004, 3 T
    assert p["femoral_cartilage"]["t2"] == pytest.approx(37, rel=0.1)
    assert p["femoral_cartilage"]["t1rho"] == pytest.approx(40, rel=0.15)
    assert p["joint_fluid"]["t2"] > 500 and p["joint_fluid"]["t1"] > 3000
    assert p["muscle"]["t1"] == pytest.approx(1420, rel=0.05)
    assert 0.6 <= p["femur"]["fat_fraction"] <= 0.9
    assert p["subcutaneous_fat"]["fat_fraction"] >= 0.9
    assert sim.FAT_RELAXATION == {"t1": pytest.approx(370, rel=0.05),
                                  "t2": pytest.approx(130, rel=0.1)}
    assert p["medial_meniscus"]["t2"] < p["femoral_cartilage"]["t2"]
    maps = MAPS
    assert maps.proton_density.dtype == jnp.float32
    assert signal(maps.t2, "joint_fluid") == p["joint_fluid"]["t2"]
    assert signal(maps.fat_fraction, "femur") == pytest.approx(p["femur"]["fat_fraction"])


def test_t1_weighted_spgr_fat_bright_fluid_dark():
    s = sim.spoiled_gradient_echo(MAPS, tr=20.0, te=4.0, flip_angle=30.0)
    assert s.shape == ONE_OF_EACH.shape and s.dtype == jnp.float32
    fat = signal(s, "subcutaneous_fat")
    assert fat == max(signal(s, t) for t in L)  # fat is the brightest tissue
    assert signal(s, "femur") > signal(s, "muscle") > signal(s, "joint_fluid")
    assert fat > 4 * signal(s, "joint_fluid")
    # The closed form, for cartilage.
    t1, t2, a = 1240.0, 37.0, np.deg2rad(30.0)
    e1 = np.exp(-20.0 / t1)
    expected = 0.75 * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-4.0 / t2)
    assert signal(s, "femoral_cartilage") == pytest.approx(expected, rel=1e-5)
    # Fat suppression removes it.
    fs = sim.spoiled_gradient_echo(MAPS, fat_suppressed=True)
    assert signal(fs, "subcutaneous_fat") < 0.2 * fat


def test_fat_suppressed_pd_fluid_brightest_fat_dark_cartilage_between():
    s = sim.fast_spin_echo(MAPS, tr=3000.0, te=30.0)
    fluid = signal(s, "joint_fluid")
    assert fluid == max(signal(s, t) for t in L)
    assert fluid > signal(s, "femoral_cartilage") > signal(s, "muscle")
    assert signal(s, "subcutaneous_fat") < 0.2 * signal(s, "muscle")  # fat dark when suppressed
    assert signal(s, "femur") < signal(s, "femoral_cartilage")
    assert signal(s, "medial_meniscus") < 0.5 * signal(s, "femoral_cartilage")
    assert signal(s, "tendon_ligament") < 0.05 * fluid
    without = sim.fast_spin_echo(MAPS, fat_suppressed=False)
    assert signal(without, "subcutaneous_fat") > 3 * signal(s, "subcutaneous_fat")


def test_multi_echo_spin_echo_fluid_brightest_late_and_log_linear_fit_recovers_t2():
    echo_times = np.arange(10.0, 90.0, 10.0)
    s = np.asarray(sim.multi_echo_spin_echo(MAPS, tr=2000.0, echo_times=echo_times,
                                             fat_suppressed=True), np.float64)
    assert s.shape == (8, len(L))
    late = s[-1]
    assert np.argmax(late) == L["joint_fluid"]
    assert late[L["femoral_cartilage"]] > late[L["muscle"]] > late[L["medial_meniscus"]]
    for tissue, params in sim.TISSUE_PARAMETERS.items():
        if params["proton_density"] == 0 or params["t2"] < 2:
            continue  # background, and cortical bone (no signal left at 10 ms)
        slope = np.polyfit(echo_times, np.log(s[:, L[tissue]]), 1)[0]
        assert -1.0 / slope == pytest.approx(params["t2"], rel=1e-3), tissue
    # Without fat suppression, fatty marrow decays as a water-fat mixture.
    mixed = np.asarray(sim.multi_echo_spin_echo(MAPS, echo_times=echo_times))[:, L["femur"]]
    fitted = -1.0 / np.polyfit(echo_times, np.log(mixed), 1)[0]
    assert sim.TISSUE_PARAMETERS["femur"]["t2"] < fitted < sim.FAT_RELAXATION["t2"]


def test_qdess_echoes_and_the_analytic_t2_estimate():
    tr, te, flip = 20.0, 6.0, 20.0
    s = np.asarray(sim.qdess(MAPS, tr=tr, te=te, flip_angle=flip, fat_suppressed=True),
                   np.float64)
    assert s.shape == (2, len(L))
    plus, minus = s
    assert np.all(minus <= plus + 1e-12)  # the second echo is always weaker
    assert np.argmax(minus) == L["joint_fluid"]  # S- is T2-weighted
    assert plus[L["joint_fluid"]] > plus[L["femoral_cartilage"]] > plus[L["medial_meniscus"]]
    a = np.deg2rad(flip)
    for tissue in ["femoral_cartilage", "muscle", "joint_fluid", "medial_meniscus"]:
        t1 = sim.TISSUE_PARAMETERS[tissue]["t1"]
        e1 = np.exp(-tr / t1)
        k = np.sin(a / 2) ** 2 * (1 + e1) / (1 - np.cos(a) * e1)
        t2 = -2 * (tr - te) / np.log(minus[L[tissue]] / plus[L[tissue]] / k)
        assert t2 == pytest.approx(sim.TISSUE_PARAMETERS[tissue]["t2"], rel=1e-3), tissue


def test_t1rho_prepared_decay_recovers_t1rho():
    times = np.array([0.0, 10.0, 20.0, 40.0])
    s = np.asarray(sim.t1rho_prepared(MAPS, spin_lock_times=times), np.float64)
    slope = np.polyfit(times, np.log(s[:, L["femoral_cartilage"]]), 1)[0]
    assert -1.0 / slope == pytest.approx(40.0, rel=1e-3)
    assert s[0, L["subcutaneous_fat"]] < 0.1 * s[0, L["joint_fluid"]]


def test_render_a_phantom_with_texture_and_noise():
    key = jax.random.key(2)
    phantom = sim.knee_phantom(key, shape=SHAPE)
    clean = sim.render(phantom, contrast="pd_fs")
    assert clean.shape == SHAPE and clean.dtype == jnp.float32
    np.testing.assert_allclose(clean, sim.render(phantom.labels, contrast="pd_fs"))
    labels = np.asarray(phantom.labels)
    fluid = np.asarray(clean)[labels == L["joint_fluid"]].mean()
    cartilage = np.asarray(clean)[labels == L["femoral_cartilage"]].mean()
    assert fluid > cartilage
    noisy = sim.render(phantom, contrast="pd_fs", key=jax.random.key(3), texture=0.05,
                       noise=0.01)
    again = sim.render(phantom, contrast="pd_fs", key=jax.random.key(3), texture=0.05,
                       noise=0.01)
    np.testing.assert_array_equal(noisy, again)
    assert float(jnp.min(noisy)) >= 0
    residual = np.asarray(noisy - clean)[labels == L["background"]]
    # Rician noise in the background: mean sigma * sqrt(pi / 2).
    assert residual.mean() == pytest.approx(0.01 * np.sqrt(np.pi / 2), rel=0.1)
    inside = np.asarray(noisy)[labels == L["muscle"]]  # texture 5 % and noise about 4 %
    assert 0.05 < inside.std() / inside.mean() < 0.12
    plain = np.asarray(clean)[labels == L["muscle"]]
    assert plain.std() < 1e-6 * plain.mean()
    echoes = sim.render(phantom, contrast="mese", echo_times=(10.0, 50.0))
    assert echoes.shape == (2, *SHAPE)
    assert sim.render(phantom, contrast="qdess").shape == (2, *SHAPE)


def test_parameter_overrides():
    maps = sim.tissue_maps(ONE_OF_EACH, parameters={"joint_fluid": {"t2": 100.0}})
    assert signal(maps.t2, "joint_fluid") == 100.0
    assert signal(maps.t2, "muscle") == sim.TISSUE_PARAMETERS["muscle"]["t2"]
    assert sim.TISSUE_PARAMETERS["joint_fluid"]["t2"] != 100.0  # the table is not modified


def test_contrasts_are_pure_and_jittable():
    f = jax.jit(lambda m: sim.fast_spin_echo(m, tr=2500.0, te=20.0))
    np.testing.assert_allclose(f(MAPS), sim.fast_spin_echo(MAPS, tr=2500.0, te=20.0),
                               rtol=1e-6)
    grad = jax.grad(lambda t2: sim.multi_echo_spin_echo(MAPS.replace(t2=MAPS.t2 * t2)).sum())
    assert np.isfinite(float(grad(1.0)))


@pytest.mark.parametrize("call, error, message", [
    (lambda: sim.render(ONE_OF_EACH, contrast="t2_flair"), ValueError,
     "mskjax.sim.render: unknown contrast 't2_flair'"),
    (lambda: sim.render(ONE_OF_EACH, contrast="pd_fs", flip_angle=10.0), TypeError,
     r"mskjax.sim.render: unknown sequence parameters \['flip_angle'\]"),
    (lambda: sim.render(ONE_OF_EACH, noise=0.1), ValueError, "texture and noise need a key"),
    (lambda: sim.render(ONE_OF_EACH, noise=-1.0, key=jax.random.key(0)), ValueError,
     "noise must be a finite number >= 0"),
    (lambda: sim.tissue_maps(ONE_OF_EACH + 1), ValueError,
     r"mskjax.sim.tissue_maps: labels must be in 0..15"),
    (lambda: sim.tissue_maps(jnp.zeros(3)), TypeError, "expected a KneePhantom or an integer"),
    (lambda: sim.tissue_maps(ONE_OF_EACH, parameters={"bone": {"t1": 1.0}}), ValueError,
     "unknown tissue 'bone'"),
    (lambda: sim.tissue_maps(ONE_OF_EACH, parameters={"muscle": {"t3": 1.0}}), ValueError,
     "unknown parameter 't3' for muscle"),
    (lambda: sim.spoiled_gradient_echo(MAPS, flip_angle=190.0), ValueError,
     r"mskjax.sim.spoiled_gradient_echo: flip_angle must be in \(0, 180\)"),
    (lambda: sim.fast_spin_echo(MAPS, tr=0.0), ValueError, "tr must be a finite number > 0"),
    (lambda: sim.multi_echo_spin_echo(MAPS, echo_times=[]), ValueError,
     "echo_times must be a non-empty 1D sequence"),
    (lambda: sim.qdess(MAPS, tr=10.0, te=6.0), ValueError, "te must be shorter than tr / 2"),
    (lambda: sim.qdess(np.zeros(3)), TypeError, "maps must be TissueMaps"),
])
def test_bad_inputs_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()
