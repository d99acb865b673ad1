"""Validation that survives jit: concrete JAX scalars are numbers, traced integer masks are not
read on the host, static arguments say so when traced; NaN in the k-space stays visible."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import linop, pipeline, recon
from mskjax._checks import check_interval, check_positive_int

RNG = np.random.default_rng(0)
MAPS = (RNG.standard_normal((2, 16, 16)) + 1j * RNG.standard_normal((2, 16, 16))).astype(
    np.complex64)
MASK = np.zeros((16, 16), bool)
MASK[:, ::2] = True
MASK[:, 6:10] = True
KSPACE = np.where(MASK, RNG.standard_normal((2, 16, 16)) + 1j * RNG.standard_normal((2, 16, 16)),
                  0).astype(np.complex64)
DTYPES = [np.bool_, np.int32, np.uint8, np.int8, np.float32]


@pytest.mark.parametrize("value", [jnp.asarray(0.01), jnp.float32(0.01), np.float64(0.01),
                                   np.asarray(0.01), jnp.asarray(1, jnp.int32)])
def test_check_interval_accepts_concrete_scalars(value):
    check_interval(value, "lamda", "f", low=0, low_open=False)


@pytest.mark.parametrize("value", [jnp.asarray(-0.5), jnp.asarray(jnp.nan), jnp.ones(2),
                                   jnp.asarray(True), jnp.asarray(1 + 1j), "0.1", None])
def test_check_interval_refuses_bad_values(value):
    with pytest.raises(ValueError, match=r"^f: lamda must be"):
        check_interval(value, "lamda", "f", low=0, low_open=False)


def test_check_interval_traced_says_static():
    def f(x):
        check_interval(x, "lamda", "f", low=0)
        return x
    with pytest.raises(ValueError, match=r"^f: lamda must be static under jit"):
        jax.jit(f)(0.1)


@pytest.mark.parametrize("value", [3, np.int64(3), jnp.asarray(3), np.asarray(3, np.uint8)])
def test_check_positive_int_accepts_concrete_ints(value):
    check_positive_int(value, "max_iter", "f")


@pytest.mark.parametrize("value", [0, 2.0, jnp.asarray(2.0), jnp.asarray(0), jnp.ones(2, int),
                                   True])
def test_check_positive_int_refuses_bad_values(value):
    with pytest.raises(ValueError, match=r"^f: max_iter must be an integer >= 1"):
        check_positive_int(value, "max_iter", "f")


def test_static_max_iter_traced_says_static():
    with pytest.raises(ValueError, match=r"mskjax.recon.cg_sense: max_iter must be static under "
                                         r"jit"):
        jax.jit(lambda n: recon.cg_sense(KSPACE, MAPS, max_iter=n).image)(5)


@pytest.mark.parametrize("tol", [jnp.float32(0), jnp.asarray(1e-6), np.float32(1e-6)])
def test_cg_sense_concrete_tol(tol):
    expected = recon.cg_sense(KSPACE, MAPS, mask=MASK, tol=float(tol), max_iter=5).image
    got = recon.cg_sense(KSPACE, MAPS, mask=MASK, tol=tol, max_iter=5).image
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", [recon.l1_wavelet, recon.total_variation])
def test_concrete_lamda(method):
    expected = method(KSPACE, MAPS, mask=MASK, lamda=0.01, max_iter=5).image
    for lamda in (jnp.asarray(0.01), jnp.float32(0.01)):
        got = method(KSPACE, MAPS, mask=MASK, lamda=lamda, max_iter=5).image
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    got = jax.jit(lambda lam: method(KSPACE, MAPS, mask=MASK, lamda=lam, max_iter=5).image)(
        jnp.float32(0.01))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_cg_sense_concrete_lamda_and_max_iter():
    expected = recon.cg_sense(KSPACE, MAPS, mask=MASK, lamda=0.1, max_iter=5).image
    got = recon.cg_sense(KSPACE, MAPS, mask=MASK, lamda=jnp.asarray(0.1),
                         max_iter=jnp.asarray(5)).image
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sense_traced_mask_dtypes(dtype):
    mask = MASK.astype(dtype)
    x = jnp.asarray(RNG.standard_normal((16, 16)) + 0j, jnp.complex64)
    expected = linop.Sense(MAPS, mask=MASK)(x)
    eager = linop.Sense(MAPS, mask=mask)(x)
    jitted = jax.jit(lambda m: linop.Sense(MAPS, mask=m)(x))(mask)
    np.testing.assert_allclose(eager, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jitted, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["cg_sense", "l1_wavelet", "total_variation"])
def test_recon_traced_mask_dtypes(method, dtype):
    kwargs = {"max_iter": 5} if method == "cg_sense" else {"max_iter": 5, "lamda": 0.01}
    fn = getattr(recon, method)
    expected = fn(KSPACE, MAPS, mask=MASK, **kwargs).image
    mask = MASK.astype(dtype)
    eager = fn(KSPACE, MAPS, mask=mask, **kwargs).image
    jitted = jax.jit(lambda m: fn(KSPACE, MAPS, mask=m, **kwargs).image)(mask)
    np.testing.assert_allclose(eager, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jitted, expected, rtol=1e-4, atol=1e-5)


def _one_nan():
    kspace = KSPACE.copy()
    kspace[1, 4, 6] = np.nan
    return kspace


@pytest.mark.parametrize("maps", [None, MAPS])
def test_zero_filled_nan_visible_under_jit(maps):
    image = jax.jit(lambda k: recon.zero_filled(k, maps=maps))(_one_nan())
    assert not np.all(np.isfinite(image))
    assert not np.any(np.asarray(image) == 0)


@pytest.mark.parametrize("maps", [None, MAPS])
def test_pipeline_zero_filled_nan_visible_under_jit(maps):
    stage = pipeline.zero_filled()
    sample = pipeline.Sample(kspace=jnp.asarray(_one_nan()),
                             maps=None if maps is None else jnp.asarray(maps))
    image = jax.jit(stage.apply)((), sample).image
    assert not np.all(np.isfinite(image))
    assert not np.any(np.asarray(image) == 0)


@pytest.mark.parametrize("name", ["pipe_menon_density", "ramp_density"])
def test_density_nan_coords_visible_under_jit(name):
    from mskjax import sampling
    if name == "pipe_menon_density":
        pytest.importorskip("jax_finufft")
    coords = np.array(sampling.radial(16, 8, shape=(16, 16)))
    coords[3, 2, 0] = np.nan
    kwargs = {"max_iter": 5} if name == "pipe_menon_density" else {}
    fn = getattr(sampling, name)
    with pytest.raises(ValueError, match=rf"mskjax.sampling.{name}: coords must be finite"):
        fn(coords, shape=(16, 16), **kwargs)
    density = jax.jit(lambda c: fn(c, shape=(16, 16), **kwargs))(coords)
    assert not np.isfinite(density[3, 2])
    assert not np.any(np.asarray(density) == 0)


@pytest.mark.parametrize("name", ["random_mask", "equispaced_mask", "magic_mask"])
def test_fastmri_masks_concrete_jnp_arguments(name):
    from mskjax import sampling
    fn = getattr(sampling, name)
    expected, expected_lines = fn((1, 32, 32), center_fraction=0.08, acceleration=4, seed=3)
    got, lines = fn((1, 32, 32), center_fraction=jnp.float32(0.08), acceleration=jnp.asarray(4),
                    seed=jnp.asarray(3))
    np.testing.assert_array_equal(got, expected)
    assert lines == expected_lines
    got, _ = fn((1, 32, 32), center_fraction=0.08, acceleration=4,
                seed=(jnp.asarray(3), np.int64(1)))
    np.testing.assert_array_equal(
        got, fn((1, 32, 32), center_fraction=0.08, acceleration=4, seed=(3, 1))[0])


def test_poisson_disc_concrete_jnp_seed_and_traced_seed():
    from mskjax import sampling
    expected = sampling.poisson_disc((32, 32), acceleration=3.0, seed=1)
    got = sampling.poisson_disc((32, 32), acceleration=jnp.asarray(3.0), seed=jnp.asarray(1))
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match=r"mskjax.sampling.poisson_disc: seed must be static "
                                         r"under jit"):
        jax.jit(lambda s: sampling.poisson_disc((32, 32), acceleration=3.0, seed=s))(1)
    with pytest.raises(ValueError, match=r"mskjax.sampling.poisson_disc: seed must be None or"):
        sampling.poisson_disc((32, 32), acceleration=3.0, seed=jnp.asarray(1.5))


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_pipeline_undersample_traced_integer_mask(dtype):
    stage = pipeline.undersample()
    sample = pipeline.Sample(kspace=jnp.asarray(KSPACE), mask=jnp.asarray(MASK.astype(dtype)))
    out = jax.jit(stage.apply)((), sample)
    np.testing.assert_allclose(out.kspace, np.where(MASK, KSPACE, 0))


@pytest.mark.parametrize(("wrap", "expected"), [(lambda s: s, (2.0, 2.0)),
                                               (lambda s: (s, 1.0), (2.0, 1.0))])
def test_check_spacing_traced_says_static(wrap, expected):
    from mskjax._checks import check_spacing
    with pytest.raises(ValueError, match=r"^f: spacing must be static under jit"):
        jax.jit(lambda s: check_spacing(wrap(s), 2, "f"))(1.0)
    assert check_spacing(wrap(jnp.asarray(2.0)), 2, "f") == expected


def test_normalize_axes_concrete_and_traced():
    from mskjax._checks import normalize_axes
    assert normalize_axes(jnp.asarray(1), 3, "axes", "f") == (1,)
    assert normalize_axes((np.int64(0), jnp.asarray(-1)), 3, "axes", "f") == (0, 2)
    with pytest.raises(TypeError, match=r"^f: axes must be an int or a sequence of ints"):
        normalize_axes((jnp.asarray(0.5),), 3, "axes", "f")
    with pytest.raises(ValueError, match=r"^f: axes must be static under jit"):
        jax.jit(lambda a: normalize_axes(a, 3, "axes", "f"))(1)
