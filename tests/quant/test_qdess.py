import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import sim
from mskjax.quant import QDessT2, qdess_t2

# The real scan's sequence (GE header of knee_sagittal_qdess_t1rho).
SCAN = dict(tr=25.0, te=7.48, flip_angle=30.0, gl_area=3132.0, tg=1760.0)


def echo_ratio(t2_ms, *, tr, te, flip_angle, gl_area, tg, t1=1200.0, diffusivity=1.25e-9):
    """S-/S+ of Sveinsson et al. 2017 with its diffusion term, written in SI units.

    The spoiler's area is in (G/cm) us, so its gradient is gl_area / tg G/cm = gl_area / tg
    * 0.01 T/m and its twist dk = gamma G tg = 2 pi 42.58e6 Hz/T * gl_area * 1e-8 T s/m.
    """
    tr_s, te_s, tg_s, t1_s = tr / 1e3, te / 1e3, tg / 1e6, t1 / 1e3
    dk = 2 * math.pi * 42.58e6 * gl_area * 1e-8  # rad/m
    alpha = math.radians(flip_angle)
    e1 = math.exp(-tr_s / t1_s) * math.exp(-tr_s * dk ** 2 * diffusivity)
    k = math.sin(alpha / 2) ** 2 * (1 + e1) / (1 - math.cos(alpha) * e1)
    diffusion = math.exp(-(tr_s - tg_s / 3) * dk ** 2 * diffusivity)
    return k * np.exp(-2 * (tr_s - te_s) / (np.asarray(t2_ms) / 1e3)) * diffusion


def dosma_t2(echo1, echo2, *, tr, te, flip_angle, gl_area, tg, t1=1200.0, diffusivity=1.25e-9):
    """The lines of DOSMA 0.1.2's QDess.generate_t2_map, transcribed (numpy, float64), without
    its rounding and with NaN outside its bounds [0, 100]."""
    TR, TE, Tg, T1 = tr * 1e-3, te * 1e-3, tg * 1e-6, t1 * 1e-3
    alpha = math.radians(flip_angle)
    Gl = gl_area / (Tg * 1e6) * 100
    gamma = 4258 * 2 * math.pi
    dkL = gamma * Gl * Tg
    k = (np.power(np.sin(alpha / 2), 2)
         * (1 + np.exp(-TR / T1 - TR * np.power(dkL, 2) * diffusivity))
         / (1 - np.cos(alpha) * np.exp(-TR / T1 - TR * np.power(dkL, 2) * diffusivity)))
    c1 = (TR - Tg / 3) * (np.power(dkL, 2)) * diffusivity
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.nan_to_num(echo2.astype(np.float64) / echo1)
        t2map = np.nan_to_num(-2000 * (TR - TE) / (np.log(abs(ratio) / k) + c1))
    t2map[(t2map < 0) | (t2map > 100)] = np.nan
    return t2map


def test_recovers_t2_from_the_forward_model_with_diffusion():
    t2 = np.linspace(5.0, 95.0, 40).reshape(5, 8)
    echo1 = np.full(t2.shape, 900.0)
    echo2 = echo1 * echo_ratio(t2, **SCAN)
    out = qdess_t2(echo1.astype(np.float32), echo2.astype(np.float32), **SCAN)
    assert isinstance(out, QDessT2) and out.t2.dtype == jnp.float32
    assert bool(jnp.all(out.valid))
    np.testing.assert_allclose(out.t2, t2, rtol=1e-5)
    with jax.enable_x64(True):
        exact = qdess_t2(echo1, echo2, **SCAN)
        assert exact.t2.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(exact.t2), t2, rtol=1e-12)
    # the diffusion term matters: ignoring it lowers T2, by 0.2 % at 5 ms to 4 % at 95 ms
    plain = np.asarray(qdess_t2(echo1, echo2, **SCAN, diffusivity=0.0).t2)
    assert np.all(plain / t2 - 1 < -0.002) and plain[-1, -1] / 95 - 1 < -0.035
    # a T1 map gives the same answer as the equal scalar
    t1_map = np.full(t2.shape, 1200.0, np.float32)
    np.testing.assert_allclose(qdess_t2(echo1, echo2, **SCAN, t1=t1_map).t2, out.t2, rtol=1e-6)


def test_simulated_knee_tissues_without_fat():
    labels = np.array(list(sim.KNEE_LABELS.values()), np.int32).reshape(4, 4)
    maps = sim.tissue_maps(labels)
    echoes = sim.qdess(maps, tr=25.0, te=7.48, flip_angle=30.0)
    params = dict(SCAN, diffusivity=0.0)  # the simulation has no diffusion
    out = qdess_t2(echoes[0], echoes[1], **params, t1=maps.t1, t2_range=None)
    fat_free = (np.asarray(maps.fat_fraction) == 0) & (np.asarray(maps.proton_density) > 0)
    # cortical bone (T2 0.5 ms) has no second echo left in float32: flagged
    measurable = fat_free & (np.asarray(echoes[1]) > 0)
    assert measurable.sum() == fat_free.sum() - 1
    valid = np.asarray(out.valid)
    assert np.all(valid[measurable]) and not np.any(valid[fat_free & ~measurable])
    np.testing.assert_allclose(np.asarray(out.t2)[measurable], np.asarray(maps.t2)[measurable],
                               rtol=1e-4)
    # DOSMA's default range [0, 100] ms flags the joint fluid (T2 770 ms)
    ranged = qdess_t2(echoes[0], echoes[1], **params, t1=maps.t1)
    fluid = labels == sim.KNEE_LABELS["joint_fluid"]
    assert not bool(ranged.valid[fluid][0]) and float(ranged.t2[fluid][0]) == 0
    np.testing.assert_array_equal(np.asarray(ranged.valid),
                                  valid & (np.asarray(out.t2) <= 100))
    # the assumed T1 matters: cartilage (T1 1240 ms) with DOSMA's 1200 ms is off slightly
    cartilage = labels == sim.KNEE_LABELS["femoral_cartilage"]
    assumed = qdess_t2(echoes[0], echoes[1], **params, t1=1200.0)
    error = float(assumed.t2[cartilage][0]) / 37.0 - 1
    assert 1e-4 < abs(error) < 0.05


def test_real_knee_matches_the_dosma_transcription(shared_data):
    data = np.load(shared_data / "knee_sagittal_qdess_t1rho" / "knee_qdess_t1rho_8slices.npz")
    echo1, echo2 = data["dess"][0, 4], data["dess"][1, 4]  # int16 (512, 512)
    out = qdess_t2(echo1, echo2, **SCAN)
    reference = dosma_t2(echo1, echo2, **SCAN)
    valid = np.asarray(out.valid)
    positive = (echo1 > 0) & (echo2 > 0)
    np.testing.assert_array_equal(valid, np.isfinite(reference) & positive)
    assert 0.3 < valid.mean() < 0.9
    np.testing.assert_allclose(np.asarray(out.t2)[valid], reference[valid], rtol=2e-6)
    # DOSMA reports T2 = 0 where S- = 0; here those voxels are flagged
    assert np.all(reference[(echo2 == 0) & (echo1 > 0)] == 0)
    assert np.all(np.asarray(out.t2)[~valid] == 0)


def test_fat_and_fluid_suppression_follow_dosma(rng):
    echo1 = rng.uniform(50, 1000, (16, 16))
    t2 = rng.uniform(10, 90, (16, 16))
    echo2 = echo1 * echo_ratio(t2, **SCAN)
    echo2[:4] *= 3.0  # fluid-like: a strong second echo
    base = qdess_t2(echo1, echo2, **SCAN)
    fat = qdess_t2(echo1, echo2, **SCAN, suppress_fat=True)
    np.testing.assert_array_equal(np.asarray(fat.valid),
                                  np.asarray(base.valid) & (echo1 > 0.15 * echo1.max()))
    fluid = qdess_t2(echo1, echo2, **SCAN, suppress_fluid=True, beta=1.2)
    nulled = echo1 - 1.2 * echo2
    np.testing.assert_array_equal(np.asarray(fluid.valid),
                                  np.asarray(base.valid) & (nulled > 0.1 * nulled.max()))
    assert np.asarray(fat.valid).sum() < np.asarray(base.valid).sum()
    assert np.asarray(fluid.valid).sum() < np.asarray(base.valid).sum()
    np.testing.assert_array_equal(np.asarray(fat.t2)[np.asarray(fat.valid)],
                                  np.asarray(base.t2)[np.asarray(fat.valid)])


def test_bad_signal_is_flagged_never_nan():
    echo1 = np.array([[1000.0, 0.0, 1000.0, -5.0, 0.0, 1000.0, 1000.0]], np.float32)
    echo2 = np.array([[300.0, 300.0, 0.0, 300.0, 0.0, -300.0, 900.0]], np.float32)
    out = qdess_t2(echo1, echo2, **SCAN)
    # only the first voxel is a plausible decay; the last (S- close to S+) gives T2 < 0
    np.testing.assert_array_equal(np.asarray(out.valid)[0],
                                  [True, False, False, False, False, False, False])
    assert np.all(np.isfinite(np.asarray(out.t2))) and np.all(np.asarray(out.t2)[0, 1:] == 0)
    mask = np.array([[False, True, True, True, True, True, True]])
    assert not bool(qdess_t2(echo1, echo2, **SCAN, mask=mask).valid[0, 0])


def test_jit_matches_eager(rng):
    echo1 = rng.uniform(100, 1000, (6, 5)).astype(np.float32)
    echo2 = (echo1 * echo_ratio(rng.uniform(10, 120, (6, 5)), **SCAN)).astype(np.float32)
    eager = qdess_t2(echo1, echo2, **SCAN)
    jitted = jax.jit(lambda a, b: qdess_t2(a, b, **SCAN))(echo1, echo2)
    np.testing.assert_array_equal(np.asarray(jitted.valid), np.asarray(eager.valid))
    np.testing.assert_allclose(jitted.t2, eager.t2, rtol=1e-6)
    assert not np.all(np.asarray(eager.valid))  # T2 above 100 ms is flagged


def test_bad_input_errors():
    e = np.ones((4, 4), np.float32)
    func = "mskjax.quant.qdess_t2"
    with pytest.raises(ValueError, match=rf"{func}: echo1 and echo2 must have the same shape, "
                                         r"got \(4, 4\) and \(4, 5\)"):
        qdess_t2(e, np.ones((4, 5)), **SCAN)
    with pytest.raises(TypeError, match=f"{func}: echo2 must be a real magnitude image"):
        qdess_t2(e, e.astype(np.complex64), **SCAN)
    bad = e.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=f"{func}: echo1 must be finite"):
        qdess_t2(bad, e, **SCAN)
    for name, value, message in [
        ("te", 30.0, r"te must be a finite number in \[0, 25\) ms, got 30.0"),
        ("tr", -1.0, r"tr must be a finite number in \(0, inf\) ms"),
        ("flip_angle", 0.0, r"flip_angle must be a finite number in \(0, 180\) degrees"),
        ("tg", 0.0, r"tg must be a finite number in \(0, inf\) microseconds"),
        ("gl_area", -3.0, r"gl_area must be a finite number in \[0, inf\)"),
        ("t1", float("nan"), r"t1 must be a finite number in \(0, inf\) ms"),
        ("diffusivity", -1e-9, r"diffusivity must be a finite number in \[0, inf\) m\^2/s"),
    ]:
        with pytest.raises(ValueError, match=f"{func}: {message}"):
            qdess_t2(e, e, **{**SCAN, name: value})
    with pytest.raises(ValueError, match="t2_range must have low < high"):
        qdess_t2(e, e, **SCAN, t2_range=(100.0, 0.0))
    with pytest.raises(ValueError, match=r"a t1 map must broadcast to the echoes' shape"):
        qdess_t2(e, e, **SCAN, t1=np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"a t1 map must hold finite times > 0 ms"):
        qdess_t2(e, e, **SCAN, t1=np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"mask must have the echoes' shape"):
        qdess_t2(e, e, **SCAN, mask=np.ones(4, bool))
