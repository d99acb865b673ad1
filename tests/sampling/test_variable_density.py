import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.sampling import variable_density

STATIC = ("shape", "acceleration", "calib", "power")


def box(shape, calib):
    out = np.zeros(shape, bool)
    out[tuple(slice(n // 2 - c // 2, n // 2 - c // 2 + c) for n, c in zip(shape, calib))] = 1
    return out


def radius(shape):
    grids = np.meshgrid(*[(np.arange(n) - n // 2) / (n / 2) for n in shape], indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


@pytest.mark.parametrize("shape,acceleration,calib", [
    ((64, 48), 4, (8, 8)),
    ((101, 77), 3.3, (9, 12)),
    ((230, 180), 10, (24, 20)),
    ((33, 20, 12), 6, (4, 3, 2)),
    ((368,), 4, (30,)),
    ((10, 10), 1, (0, 0)),
])
def test_exact_count_and_calibration(shape, acceleration, calib):
    mask = variable_density(jax.random.key(0), shape, acceleration=acceleration, calib=calib)
    assert mask.dtype == jnp.bool_ and mask.shape == shape
    assert int(mask.sum()) == round(np.prod(shape) / acceleration)
    assert np.asarray(mask)[box(shape, calib)].all()


def test_calib_as_one_int():
    mask = variable_density(jax.random.key(1), (16, 12, 10), acceleration=5, calib=4)
    assert np.asarray(mask)[box((16, 12, 10), (4, 4, 4))].all()


def test_determinism_and_keys():
    a = variable_density(jax.random.key(3), (64, 48), acceleration=4, calib=(6, 6))
    b = variable_density(jax.random.key(3), (64, 48), acceleration=4, calib=(6, 6))
    c = variable_density(jax.random.key(4), (64, 48), acceleration=4, calib=(6, 6))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    raw = variable_density(jax.random.PRNGKey(3), (64, 48), acceleration=4, calib=(6, 6))
    assert int(raw.sum()) == int(a.sum())


def test_jit_equals_eager_and_vmap_equals_loop():
    f = functools.partial(variable_density, shape=(40, 30), acceleration=4, calib=(4, 4),
                          power=1.5)
    jitted = jax.jit(variable_density, static_argnames=STATIC)
    keys = jax.random.split(jax.random.key(5), 4)
    for key in keys:
        np.testing.assert_array_equal(
            jitted(key, (40, 30), acceleration=4, calib=(4, 4), power=1.5), f(key))
    batch = jax.jit(jax.vmap(f))(keys)
    assert batch.shape == (4, 40, 30)
    np.testing.assert_array_equal(batch, np.stack([f(k) for k in keys]))


def test_centre_denser_than_periphery():
    shape = (64, 48)
    keys = jax.random.split(jax.random.key(6), 64)
    masks = np.asarray(jax.vmap(lambda k: variable_density(k, shape, acceleration=6))(keys))
    rate = masks.mean(axis=0)
    r = radius(shape)
    centre, ring, corner = rate[r < 0.25].mean(), rate[(r > 0.6) & (r < 0.9)].mean(), \
        rate[r > 1.1].mean()
    assert centre > 0.5
    assert centre > 4 * ring > 0
    assert corner < 0.3 * ring
    # power=0 is uniform
    flat = np.asarray(jax.vmap(lambda k: variable_density(k, shape, acceleration=6, power=0))(
        keys)).mean(axis=0)
    assert abs(flat[r < 0.25].mean() - flat[r > 1.1].mean()) < 0.03


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(shape=()), ValueError, "shape must have at least one axis"),
    (dict(shape=(8, 0)), ValueError, "shape must have positive sizes"),
    (dict(acceleration=0.9), ValueError, r"acceleration must be in \[1, inf\), got 0.9"),
    (dict(acceleration=float("inf")), ValueError, "acceleration must be a finite"),
    (dict(acceleration=1000), ValueError, "acceleration 1000 leaves no samples"),
    (dict(power=-1.0), ValueError, r"power must be in \[0, inf\)"),
    (dict(calib=(12, 4)), ValueError, "calib sizes must be non-negative and at most"),
    (dict(calib=(-1, 4)), ValueError, "calib sizes must be non-negative"),
    (dict(calib=(4, 4, 4)), ValueError, "calib must have one size per axis"),
    (dict(calib=(4.5, 4)), TypeError, "calib must be an int or a tuple of ints"),
    (dict(calib=(8, 8)), ValueError, r"the calibration box \(8, 8\) \(64 samples\) exceeds the "
                                     "24 samples"),
    (dict(key=0), TypeError, "key must be one jax.random key"),
    (dict(key=jax.random.split(jax.random.key(0), 3)), TypeError, "key must be one jax.random"),
])
def test_bad_inputs(kwargs, error, message):
    kwargs = dict(key=jax.random.key(0), shape=(10, 12), acceleration=5) | kwargs
    key, shape = kwargs.pop("key"), kwargs.pop("shape")
    with pytest.raises(error, match=f"mskjax.sampling.variable_density: {message}"):
        variable_density(key, shape, **kwargs)
