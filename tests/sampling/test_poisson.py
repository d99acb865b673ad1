import time

import numpy as np
import pytest

from mskjax.sampling import poisson_disc


def box(shape, calib):
    """The calibration box, written out: c indices from n // 2 - c // 2 on each axis."""
    out = np.zeros(shape, bool)
    (ny, nz), (cy, cz) = shape, calib
    out[ny // 2 - cy // 2: ny // 2 - cy // 2 + cy, nz // 2 - cz // 2: nz // 2 - cz // 2 + cz] = 1
    return out


@pytest.mark.parametrize("shape,acceleration,calib", [
    ((230, 180), 8, (24, 24)),
    ((64, 48), 4, (8, 8)),
    ((64, 48), 6, (9, 7)),     # odd calibration on even axes
    ((101, 77), 3, (12, 12)),  # odd sizes
    ((101, 77), 5, (0, 0)),
])
def test_acceleration_and_calibration(shape, acceleration, calib):
    mask = poisson_disc(shape, acceleration=acceleration, calib=calib, seed=1)
    assert mask.dtype == np.bool_ and mask.shape == shape
    achieved = mask.size / mask.sum()
    assert abs(achieved - acceleration) <= 0.1 * acceleration
    assert mask[box(shape, calib)].all()
    # Variable density: the centre quarter is denser than the whole.
    ny, nz = shape
    centre = mask[ny // 2 - ny // 8: ny // 2 + ny // 8, nz // 2 - nz // 8: nz // 2 + nz // 8]
    assert centre.mean() > 1.5 * mask.mean()


def test_crop_corner():
    shape = (64, 48)
    y, z = np.mgrid[:64, :48]
    corner = np.hypot((y - 32) / 32, (z - 24) / 24) > 1.05
    cropped = poisson_disc(shape, acceleration=3, seed=2)
    assert not cropped[corner].any()
    full = poisson_disc(shape, acceleration=3, seed=2, crop_corner=False)
    assert full[corner].any()


def test_seeds():
    a = poisson_disc((64, 48), acceleration=4, calib=(6, 6), seed=7)
    np.testing.assert_array_equal(a, poisson_disc((64, 48), acceleration=4, calib=(6, 6),
                                                  seed=7))
    assert (a != poisson_disc((64, 48), acceleration=4, calib=(6, 6), seed=8)).any()
    fresh = [poisson_disc((64, 48), acceleration=4, seed=None) for _ in range(3)]
    assert len({m.tobytes() for m in fresh}) > 1


def test_global_random_states_unchanged():
    np.random.seed(123)
    before = np.random.get_state()
    poisson_disc((40, 30), acceleration=4, calib=(4, 4), seed=5)
    after = np.random.get_state()
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]
    # numba keeps its own generator for compiled code; sigpy reseeds it, we restore it.
    numba = pytest.importorskip("numba")

    @numba.njit
    def seed(s):
        np.random.seed(s)

    @numba.njit
    def draw():
        return np.random.random()

    seed(99)
    want = draw()
    seed(99)
    poisson_disc((40, 30), acceleration=4, seed=5)
    assert draw() == want
    seed(99)
    poisson_disc((40, 30), acceleration=2, seed=5)  # through the reach check, which draws too
    assert draw() == want


@pytest.mark.parametrize("shape,calib", [((48, 40), (0, 0)), ((33, 20), (6, 4)),
                                         ((20, 33), (3, 3))])
def test_densest_pattern_is_sigpys(shape, calib):
    # The reach check redraws sigpy's densest pattern (unit radius everywhere) with public APIs
    # only; sigpy's private kernel is the oracle here, as long as sigpy has it.
    try:
        from sigpy.mri.samp import _poisson
    except ImportError:
        pytest.skip("sigpy has no private _poisson kernel to compare with")
    from mskjax.sampling._poisson import _densest_pattern_jit, _global_random_states_kept

    kernel = _densest_pattern_jit()
    ny, nz = shape
    unit = np.ones(shape)
    with _global_random_states_kept():
        for seed in range(4):
            want = _poisson(nz, ny, 30, unit, unit, calib, seed)
            got = kernel(ny, nz, calib[0], calib[1], seed, 30)
            np.testing.assert_array_equal(got, want)
            assert 0.5 < want.mean() < 0.95


@pytest.mark.parametrize("shape,crop_corner,seed", [((48, 40), False, 1), ((64, 48), True, 0)])
def test_reach_bound_is_tight(shape, crop_corner, seed):
    # Just inside the densest pattern's reach sigpy's search succeeds; just outside, the check
    # says so at once, quoting the densest acceleration for this seed.
    from mskjax.sampling._poisson import _densest_acceleration, _global_random_states_kept

    with _global_random_states_kept():
        densest = _densest_acceleration(shape, (4, 4), crop_corner, seed)
    assert 1.1 < densest < 2
    mask = poisson_disc(shape, acceleration=densest - 0.05, calib=(4, 4), seed=seed,
                        crop_corner=crop_corner)
    assert abs(mask.size / mask.sum() - (densest - 0.05)) < 0.1
    with pytest.raises(ValueError, match=f"out of reach.*gives about {densest:.2f}"):
        poisson_disc(shape, acceleration=densest - 0.11, calib=(4, 4), seed=seed,
                     crop_corner=crop_corner)


def test_out_of_reach_acceleration_fails_fast():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="poisson_disc: acceleration 1.2 is out of reach"):
        poisson_disc((48, 40), acceleration=1.2)
    assert time.perf_counter() - start < 5
    state = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match="poisson_disc: acceleration 1.1 is out of reach"):
        poisson_disc((48, 40), acceleration=1.1, crop_corner=False, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    mask = poisson_disc((48, 40), acceleration=1.6, crop_corner=False)
    assert abs(mask.size / mask.sum() - 1.6) <= 0.1


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(shape=(4, 5, 6)), ValueError, r"shape must have 2 axes, got \(4, 5, 6\)"),
    (dict(shape=(0, 5)), ValueError, "shape must have positive sizes"),
    (dict(shape=(32, 32.0)), TypeError, "shape must be a tuple of ints"),
    (dict(acceleration=1), ValueError, r"acceleration must be in \(1, inf\), got 1"),
    (dict(acceleration=0.5), ValueError, "acceleration must be in"),
    (dict(acceleration=float("nan")), ValueError, "acceleration must be a finite"),
    (dict(calib=(-1, 4)), ValueError, "calib sizes must be non-negative and smaller than"),
    (dict(calib=(32, 4)), ValueError, "calib sizes must be non-negative and smaller than"),
    (dict(calib=(4,)), ValueError, "calib must have one size per axis"),
    (dict(calib=(4.0, 4)), TypeError, "calib must be an int or a tuple of ints"),
    (dict(calib=(24, 24)), ValueError, r"the calibration box \(24, 24\) \(576 samples\) exceeds"),
    (dict(seed=-1), ValueError, "seed must be None or an int"),
    (dict(seed=1.5), ValueError, "seed must be None or an int"),
    (dict(crop_corner=1), TypeError, "crop_corner must be a bool"),
])
def test_bad_inputs(kwargs, error, message):
    kwargs = dict(shape=(32, 32), acceleration=4) | kwargs
    shape = kwargs.pop("shape")
    with pytest.raises(error, match=f"mskjax.sampling.poisson_disc: {message}"):
        poisson_disc(shape, **kwargs)


@pytest.mark.parametrize("shape, acceleration, calib, crop_corner, seed", [
    ((64, 64), 8, (0, 0), True, 0), ((48, 32), 4, (8, 6), False, 3),
    ((80, 60), 6.5, (12, 12), True, 11), ((33, 47), 3, (5, 7), False, 7),
])
def test_equals_sigpy_poisson_where_its_search_ends(shape, acceleration, calib, crop_corner,
                                                    seed):
    import sigpy.mri

    from mskjax.sampling._common import calibration_slices

    theirs = sigpy.mri.poisson(shape, acceleration, calib=calib, dtype=np.float32,
                               crop_corner=crop_corner, seed=seed) != 0
    theirs[calibration_slices(shape, calib)] = True
    ours = poisson_disc(shape, acceleration=acceleration, calib=calib, seed=seed,
                        crop_corner=crop_corner)
    np.testing.assert_array_equal(ours, theirs)


def test_a_skipped_acceleration_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="mskjax.sampling.poisson_disc: no Poisson disc with "
                                         "acceleration 20 on"):
        poisson_disc((16, 16), acceleration=20, seed=0)
