import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit

import mskjax.quant._relaxation as relaxation
from mskjax import sim
from mskjax.quant import FitStatus, RelaxationFit, fit_relaxation

TSL = np.array([1.0, 10.0, 30.0, 60.0])  # the real knee's spin-lock times (ms)


def decay(amplitude, time_constant, times):
    return amplitude * np.exp(-np.asarray(times, np.float64)[:, None] / time_constant)


def noisy_voxels(rng, count, sigma, times=TSL):
    """Noisy decays whose every sample is positive (so every echo is usable)."""
    tc = rng.uniform(15, 90, 4 * count)
    amp = rng.uniform(400, 1500, 4 * count)
    signal = decay(amp, tc, times) + rng.normal(0, sigma, (len(times), 4 * count))
    keep = np.flatnonzero(np.all(signal > 1, axis=0))[:count]
    assert keep.size == count
    return signal[:, keep], tc[keep], amp[keep]


def scipy_fit(times, signal):
    """The oracle: scipy's Levenberg-Marquardt (MINPACK) at tight tolerances, float64."""
    def model(t, a, rate):
        return a * np.exp(-rate * t)

    slope, intercept = np.polyfit(times, np.log(signal), 1)
    (a, rate), _ = curve_fit(model, times, signal, p0=(np.exp(intercept), -slope),
                             xtol=1e-15, ftol=1e-15, gtol=1e-15, maxfev=10000)
    return a, 1 / rate


@pytest.mark.parametrize("method", ["log_linear", "nonlinear"])
def test_noiseless_decay_is_recovered(rng, method):
    tc, amp = rng.uniform(5, 150, (6, 7)), rng.uniform(1, 3000, (6, 7))
    images = (amp * np.exp(-TSL[:, None, None] / tc)).astype(np.float32)
    fit = fit_relaxation(images, TSL, method=method)
    assert isinstance(fit, RelaxationFit)
    assert fit.time_constant.shape == (6, 7) and fit.time_constant.dtype == jnp.float32
    assert bool(jnp.all(fit.valid)) and bool(jnp.all(fit.status == FitStatus.VALID))
    np.testing.assert_allclose(fit.time_constant, tc, rtol=2e-5)
    np.testing.assert_allclose(fit.amplitude, amp, rtol=2e-5)
    np.testing.assert_allclose(fit.r2, 1.0, atol=1e-5)


def test_nonlinear_matches_scipy_curve_fit_in_float64(rng):
    signal, _, _ = noisy_voxels(rng, 40, sigma=25.0)
    with jax.enable_x64(True):
        fit = fit_relaxation(signal, TSL)
        assert fit.time_constant.dtype == jnp.float64
        tc, amp, r2 = (np.asarray(x) for x in (fit.time_constant, fit.amplitude, fit.r2))
    assert np.all(np.asarray(fit.valid))
    for i in range(signal.shape[1]):
        a_ref, tc_ref = scipy_fit(TSL, signal[:, i])
        assert tc[i] == pytest.approx(tc_ref, rel=1e-7)
        assert amp[i] == pytest.approx(a_ref, rel=1e-7)
        residual = signal[:, i] - a_ref * np.exp(-TSL / tc_ref)
        r2_ref = 1 - np.sum(residual ** 2) / np.sum((signal[:, i] - signal[:, i].mean()) ** 2)
        assert r2[i] == pytest.approx(r2_ref, rel=1e-9)


def test_float32_fit_is_within_1e4_of_the_float64_optimum(rng):
    signal, _, _ = noisy_voxels(rng, 200, sigma=25.0)
    signal = signal.astype(np.float32)
    fit = fit_relaxation(signal, TSL)
    with jax.enable_x64(True):
        exact = fit_relaxation(signal.astype(np.float64), TSL)
    rel = np.abs(np.asarray(fit.time_constant) / np.asarray(exact.time_constant) - 1)
    assert np.all(np.asarray(fit.valid)) and rel.max() < 1e-4 and np.median(rel) < 1e-6


def test_log_linear_is_numpy_polyfit_of_the_log(rng):
    signal, _, _ = noisy_voxels(rng, 30, sigma=20.0)
    fit = fit_relaxation(signal.astype(np.float32), TSL, method="log_linear")
    for i in range(30):
        slope, intercept = np.polyfit(TSL, np.log(signal[:, i]), 1)
        assert float(fit.time_constant[i]) == pytest.approx(-1 / slope, rel=1e-4)
        assert float(fit.amplitude[i]) == pytest.approx(np.exp(intercept), rel=1e-4)
    # the log-linear fit is not the least-squares fit of the signal
    nonlinear = fit_relaxation(signal.astype(np.float32), TSL)
    assert np.max(np.abs(np.asarray(nonlinear.time_constant - fit.time_constant))) > 0.1


def test_t2_and_t1rho_of_the_simulated_tissues():
    labels = np.array(list(sim.KNEE_LABELS.values()), np.int32).reshape(4, 4)
    maps = sim.tissue_maps(labels)
    echo_times, spin_lock_times = (10.0, 20.0, 40.0, 60.0), (0.0, 10.0, 30.0, 60.0)
    mese = sim.multi_echo_spin_echo(maps, echo_times=echo_times, fat_suppressed=True)
    t1rho = sim.t1rho_prepared(maps, spin_lock_times=spin_lock_times)
    water = np.asarray(maps.proton_density * (1 - maps.fat_fraction)) > 0
    for images, times, truth in [(mese, echo_times, maps.t2),
                                 (t1rho, spin_lock_times, maps.t1rho)]:
        fit = fit_relaxation(images, times)
        truth = np.asarray(truth)
        # a positive signal and a time constant up to 10x the longest time: recovered
        recoverable = water & (truth <= 10 * max(times))
        assert np.array_equal(np.asarray(fit.valid), recoverable)
        np.testing.assert_allclose(np.asarray(fit.time_constant)[recoverable],
                                   truth[recoverable], rtol=1e-4)
        # background (no signal): too few usable times; fluid (T2 770 ms): out of range
        status = np.asarray(fit.status)
        assert np.all(status[~water] == FitStatus.TOO_FEW_TIMES)
        assert np.all(status[water & ~recoverable] == FitStatus.OUT_OF_RANGE)
        assert np.all(np.asarray(fit.time_constant)[~recoverable] == 0)


def test_ill_posed_voxels_are_flagged_never_nan():
    t = np.array([0.0, 10.0, 20.0, 40.0])
    voxels = {
        "all zero": [0, 0, 0, 0],
        "one positive echo": [100, 0, -3, 0],
        "negative echoes": [-100, -50, -20, -5],
        "flat": [500, 500, 500, 500],
        "growing": [100, 150, 230, 500],
        "slower than 10x the longest time": [1000, 999, 998, 996],
        "good": [1000, 607, 368, 135],
    }
    images = np.array(list(voxels.values()), np.float32).T
    for method in ("log_linear", "nonlinear"):
        fit = fit_relaxation(images, t, method=method)
        status = dict(zip(voxels, np.asarray(fit.status).tolist()))
        assert status == {
            "all zero": FitStatus.TOO_FEW_TIMES,
            "one positive echo": FitStatus.TOO_FEW_TIMES,
            "negative echoes": FitStatus.TOO_FEW_TIMES,
            "flat": FitStatus.NOT_DECAYING,
            "growing": FitStatus.NOT_DECAYING,
            "slower than 10x the longest time": FitStatus.OUT_OF_RANGE,
            "good": FitStatus.VALID,
        }, method
        for field in (fit.time_constant, fit.amplitude, fit.r2):
            values = np.asarray(field)
            assert np.all(np.isfinite(values)) and np.all(values[:-1] == 0)
        assert float(fit.time_constant[-1]) == pytest.approx(20.0, rel=2e-3)
    # the slow voxel is valid once the range allows it (T about 10 s)
    slow = fit_relaxation(images[:, 5:6], t, time_constant_range=(0, 50000))
    assert bool(slow.valid[0]) and 5000 < float(slow.time_constant[0]) < 20000


def test_negative_and_zero_echoes_are_left_out_of_the_fit():
    t = np.array([0.0, 10.0, 20.0, 40.0])
    clean = 1000 * np.exp(-t / 25.0)
    damaged = clean.copy()
    damaged[2] = -40.0
    damaged2 = clean.copy()
    damaged2[3] = 0.0
    fit = fit_relaxation(np.stack([clean, damaged, damaged2], axis=1), t)
    assert bool(jnp.all(fit.valid))
    np.testing.assert_allclose(fit.time_constant, 25.0, rtol=1e-4)


def test_noise_floor_excludes_echoes_below_it():
    t = np.array([0.0, 30.0, 60.0, 150.0])
    signal = 1000 * np.exp(-t / 30.0)  # 6.7 at 150 ms
    biased = np.sqrt(signal ** 2 + 50.0 ** 2)  # a Rician-like floor at the late echo
    fit_all = fit_relaxation(biased[:, None], t)
    fit_floor = fit_relaxation(biased[:, None], t, noise_floor=60.0)  # leaves out 150 ms
    assert biased[2] > 60 > biased[3]
    _, ref_tc = scipy_fit(t[:3], biased[:3])
    assert float(fit_floor.time_constant[0]) == pytest.approx(ref_tc, rel=1e-4)
    assert abs(float(fit_floor.time_constant[0]) - 30) < abs(float(fit_all.time_constant[0]) - 30)
    # a floor above all but one echo leaves too few times
    few = fit_relaxation(biased[:, None], t, noise_floor=600.0)
    assert int(few.status[0]) == FitStatus.TOO_FEW_TIMES and not bool(few.valid[0])


def test_mask_min_r2_and_iterations_flags(rng):
    signal, _, _ = noisy_voxels(rng, 64, sigma=60.0)
    images = signal.reshape(4, 8, 8).astype(np.float32)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 1:7] = True
    fit = fit_relaxation(images, TSL, mask=mask)
    assert np.all(np.asarray(fit.status)[~mask] == FitStatus.MASKED)
    assert np.all(np.asarray(fit.valid)[mask])
    r2 = np.asarray(fit.r2)[mask]
    threshold = float(np.median(r2))
    strict = fit_relaxation(images, TSL, mask=mask, min_r2=threshold)
    low = np.asarray(strict.status) == FitStatus.LOW_R2
    assert low.sum() == (r2 < threshold).sum() > 0
    np.testing.assert_array_equal(np.asarray(strict.time_constant)[~low],
                                  np.asarray(fit.time_constant)[~low])
    one_step = fit_relaxation(images, TSL, max_iterations=1)
    assert np.any(np.asarray(one_step.status) == FitStatus.NOT_CONVERGED)
    assert np.all(np.asarray(one_step.time_constant)[~np.asarray(one_step.valid)] == 0)


def test_amplitude_overflow_is_flagged():
    t = np.array([100.0, 101.0])
    images = np.array([[1e30], [1.0]], np.float32)  # log-linear intercept exp(6969): overflows
    fit = fit_relaxation(images, t, method="log_linear")
    assert int(fit.status[0]) == FitStatus.NONPOSITIVE_AMPLITUDE
    assert float(fit.amplitude[0]) == 0 and np.isfinite(float(fit.amplitude[0]))


def test_jit_matches_eager_and_masks(rng):
    signal, _, _ = noisy_voxels(rng, 12, sigma=20.0)
    images = signal.reshape(4, 3, 4).astype(np.float32)
    mask = np.arange(12).reshape(3, 4) % 3 != 0
    eager = fit_relaxation(images, TSL, mask=mask)
    jitted = jax.jit(lambda x, m: fit_relaxation(x, TSL, mask=m))(images, mask)
    np.testing.assert_array_equal(np.asarray(jitted.status), np.asarray(eager.status))
    np.testing.assert_allclose(jitted.time_constant, eager.time_constant, rtol=1e-4)
    # NaN echoes under jit are left out rather than spread
    nan_images = images.copy()
    nan_images[3, 0, 1] = np.nan
    out = jax.jit(lambda x: fit_relaxation(x, TSL))(nan_images)
    assert bool(out.valid[0, 1]) and np.all(np.isfinite(np.asarray(out.time_constant)))


def test_chunks_and_buckets(monkeypatch, rng):
    signal, _, _ = noisy_voxels(rng, 50, sigma=20.0)
    images = signal.astype(np.float32)
    whole = fit_relaxation(images, TSL)
    monkeypatch.setattr(relaxation, "CHUNK", 8)
    monkeypatch.setattr(relaxation, "MIN_BUCKET", 2)
    chunked = fit_relaxation(images, TSL)  # 7 chunks of 8, the last one padded
    np.testing.assert_array_equal(np.asarray(chunked.status), np.asarray(whole.status))
    np.testing.assert_allclose(chunked.time_constant, whole.time_constant, rtol=1e-5)
    # voxel counts within one bucket reuse the compiled kernels
    kernels = (relaxation._prepare_jit, relaxation._run_jit, relaxation._finish_jit)
    fit_relaxation(images[:, :5], TSL)
    before = [k._cache_size() for k in kernels]
    fit_relaxation(images[:, :6], TSL)
    fit_relaxation(images[:, :8], TSL)
    assert [k._cache_size() for k in kernels] == before


def test_stages_continue_the_slow_voxels(monkeypatch, rng):
    """One step for all, then the rest in buckets of 4: the same fit as one long loop."""
    signal, _, _ = noisy_voxels(rng, 40, sigma=40.0)
    images = np.concatenate([signal, [[480.0], [500.0], [505.0], [520.0]]], axis=1)
    whole = fit_relaxation(images.astype(np.float32), TSL)
    monkeypatch.setattr(relaxation, "LM_FIRST_STAGE", 1)
    monkeypatch.setattr(relaxation, "LEFTOVER_BUCKET", 4)
    staged = fit_relaxation(images.astype(np.float32), TSL)
    np.testing.assert_array_equal(np.asarray(staged.status), np.asarray(whole.status))
    assert int(whole.status[-1]) == FitStatus.NOT_DECAYING  # a growing signal
    np.testing.assert_allclose(staged.time_constant, whole.time_constant, rtol=1e-6)
    np.testing.assert_allclose(staged.amplitude, whole.amplitude, rtol=1e-6)


def test_real_knee_t1rho_matches_scipy_on_sampled_voxels(shared_data):
    data = np.load(shared_data / "knee_sagittal_qdess_t1rho" / "knee_qdess_t1rho_8slices.npz")
    tsl = data["cubequant_tsl_ms"]
    images = data["cubequant_t1rho"][:, 4, 200:300, 150:350]  # (4, 100, 200) int16
    fit = fit_relaxation(images, tsl, time_constant_range=(0, 500), min_r2=0.9)
    valid = np.asarray(fit.valid)
    assert fit.time_constant.dtype == jnp.float32
    assert 0.2 < valid.mean() < 1.0
    tc = np.asarray(fit.time_constant)
    assert 20 < np.median(tc[valid]) < 80  # knee T1rho in ms
    picks = np.random.default_rng(0).choice(np.flatnonzero(valid), 60, replace=False)
    for i in picks:
        signal = images.reshape(4, -1)[:, i].astype(np.float64)
        _, tc_ref = scipy_fit(tsl, signal)
        assert tc.reshape(-1)[i] == pytest.approx(tc_ref, rel=1e-4)


@pytest.mark.parametrize("times, message", [
    ([1.0, 10.0, 30.0], "times has 3 entries but images has 4 images"),
    ([[1.0, 10.0], [30.0, 60.0]], "times must be 1D"),
    ([1.0, 10.0, np.nan, 60.0], "times must be finite and >= 0"),
    ([1.0, -10.0, 30.0, 60.0], "times must be finite and >= 0"),
    ([10.0, 10.0, 10.0, 10.0], "times must hold at least two distinct"),
])
def test_times_that_do_not_match_are_errors(times, message):
    with pytest.raises(ValueError, match=f"mskjax.quant.fit_relaxation: {message}"):
        fit_relaxation(np.ones((4, 3, 3), np.float32), times)


def test_bad_input_errors():
    images = np.ones((4, 3, 3), np.float32)
    func = "mskjax.quant.fit_relaxation"
    with pytest.raises(TypeError, match=f"{func}: images must be real magnitude images"):
        fit_relaxation(images.astype(np.complex64), TSL)
    with pytest.raises(TypeError, match=f"{func}: images must be real numbers"):
        fit_relaxation(images > 0, TSL)
    with pytest.raises(ValueError, match=f"{func}: images must be .len.times., .spatial., "
                                         "at least 2D"):
        fit_relaxation(np.ones(4), TSL)
    bad = images.copy()
    bad[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match=f"{func}: images must be finite, got 1 NaN"):
        fit_relaxation(bad, TSL)
    with pytest.raises(ValueError, match=r"mask must have the images' spatial shape \(3, 3\), "
                                         r"got \(3, 4\)"):
        fit_relaxation(images, TSL, mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="model must be one of \\['mono_exponential'\\]"):
        fit_relaxation(images, TSL, model="bi_exponential")
    with pytest.raises(ValueError, match="method must be one of"):
        fit_relaxation(images, TSL, method="lm")
    with pytest.raises(ValueError, match="time_constant_range must satisfy 0 <= low < high"):
        fit_relaxation(images, TSL, time_constant_range=(100, 10))
    with pytest.raises(ValueError, match="noise_floor must be a finite number"):
        fit_relaxation(images, TSL, noise_floor=float("nan"))
    with pytest.raises(ValueError, match="min_r2 must be <= 1"):
        fit_relaxation(images, TSL, min_r2=2.0)
    with pytest.raises(ValueError, match="max_iterations must be an integer >= 1"):
        fit_relaxation(images, TSL, max_iterations=0)
    with pytest.raises(TypeError, match="times must be concrete numbers"):
        jax.jit(lambda x, t: fit_relaxation(x, t))(images, jnp.asarray(TSL))
