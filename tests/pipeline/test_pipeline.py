
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import pipeline
from mskjax.coils import rss
from mskjax.fourier import ifftnc
from mskjax.linop import Sense
from tests.conftest import random_complex


def make_sample(seed=0, coils=4, shape=(16, 12)):
    rng = np.random.default_rng(seed)
    maps = random_complex(rng, (coils, *shape))
    image = random_complex(rng, shape)
    return pipeline.Sample(kspace=Sense(maps)(image), maps=maps, target=np.abs(image))


def threshold(image):
    return (jnp.abs(image) > 1.0).astype(jnp.int32)


def test_chained_pipeline_jits_end_to_end_and_matches_manual():
    sample = make_sample()
    mask = np.zeros(12, bool)
    mask[::3] = True
    mask[5:7] = True
    pipe = pipeline.chain(
        pipeline.undersample(mask),
        pipeline.zero_filled(),
        pipeline.map_field(threshold, source="image", target="segmentation"),
    )
    params = pipe.init(jax.random.key(0), sample)
    assert params == ((), (), ())
    traces = []

    def apply(p, s):
        traces.append(1)
        return pipe.apply(p, s)

    jitted = jax.jit(apply)
    out = jitted(params, sample)
    # Manual computation of the same path.
    k = np.where(mask, np.asarray(sample.kspace), 0)
    image = np.sum(np.conj(sample.maps) * np.asarray(ifftnc(k, axes=(1, 2))), axis=0)
    np.testing.assert_allclose(out.image, image, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.segmentation, np.abs(image) > 1.0)
    np.testing.assert_array_equal(out.mask, mask)
    assert np.all(np.asarray(out.kspace)[..., ~mask] == 0)
    eager = pipe.apply(params, sample)
    np.testing.assert_allclose(eager.image, out.image, rtol=1e-5, atol=1e-6)
    # A second sample of the same shapes reuses the compiled pipeline.
    jitted(params, make_sample(seed=1))
    assert len(traces) == 1
    # And the pipeline vmaps over a batch of samples.
    batch = jax.tree_util.tree_map(lambda *a: jnp.stack(a), sample, make_sample(seed=1))
    batched = jax.vmap(pipe.apply, in_axes=(None, 0))(params, batch)
    np.testing.assert_allclose(batched.image[0], out.image, rtol=1e-5, atol=1e-5)


def test_rss_without_maps():
    sample = make_sample().replace(maps=None)
    out = pipeline.chain(pipeline.identity(), pipeline.zero_filled()).apply(((), ()), sample)
    np.testing.assert_allclose(out.image, rss(ifftnc(sample.kspace, axes=(1, 2))), rtol=1e-6)


def test_named_chain_and_params_dict():
    sample = make_sample()
    pipe = pipeline.named_chain(("zf", pipeline.zero_filled()), ("id", pipeline.identity()))
    params = pipe.init(jax.random.key(0), sample)
    assert params == {"zf": (), "id": ()}
    with pytest.raises(ValueError, match=r"missing \['id'\], unexpected \['other'\]"):
        pipe.apply({"zf": (), "other": ()}, sample)
    with pytest.raises(ValueError, match="stage names must be unique"):
        pipeline.named_chain(("a", pipeline.identity()), ("a", pipeline.identity()))


def test_parametric_stage_and_key_folding():
    # A stage with parameters: a learned scale on the image.
    scale = pipeline.Stage(
        init=lambda key, sample: {"w": jax.random.normal(key, ())},
        apply=lambda p, sample, **extra: sample.replace(image=p["w"] * sample.image),
    )
    sample = make_sample()
    pipe = pipeline.chain(pipeline.zero_filled(), scale)
    params = pipe.init(jax.random.key(3), sample)
    assert params[1]["w"] == jax.random.normal(jax.random.fold_in(jax.random.key(3), 1), ())
    out = jax.jit(pipe.apply)(params, sample)
    zf = pipeline.zero_filled().apply((), sample).image
    np.testing.assert_allclose(out.image, params[1]["w"] * zf, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda p: jnp.sum(jnp.abs(pipe.apply(p, sample).image) ** 2))(params)
    assert np.isfinite(grad[1]["w"]) and grad[1]["w"] != 0


def test_random_mask_function_uses_the_key():
    def mask_fn(key, shape):
        return jax.random.bernoulli(key, 0.5, shape[-1:])

    pipe = pipeline.chain(pipeline.undersample(mask_fn))
    sample = make_sample()
    a = pipe.apply(((),), sample, key=jax.random.key(0)).mask
    b = pipe.apply(((),), sample, key=jax.random.key(0)).mask
    c = pipe.apply(((),), sample, key=jax.random.key(1)).mask
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # The stage at index 0 receives fold_in(key, 0).
    np.testing.assert_array_equal(a, mask_fn(jax.random.fold_in(jax.random.key(0), 0), (12,)))
    with pytest.raises(ValueError, match="needs a key"):
        pipe.apply(((),), sample)


def test_errors():
    pipe = pipeline.chain(pipeline.zero_filled(), pipeline.identity())
    sample = make_sample()
    with pytest.raises(ValueError, match=r"expected params as a tuple of 2 \(one per stage\), "
                                         r"got a tuple of 1; build them with the same chain"):
        pipe.apply(((),), sample)
    with pytest.raises(ValueError, match="the sample has no kspace"):
        pipeline.zero_filled().apply((), pipeline.Sample())
    with pytest.raises(ValueError, match="the sample has no mask"):
        pipeline.undersample().apply((), sample)
    with pytest.raises(ValueError, match="mask must broadcast"):
        pipeline.undersample(np.ones(5, bool)).apply((), sample)
    with pytest.raises(TypeError, match="stage 1 must be a Stage"):
        pipeline.chain(pipeline.identity(), lambda s: s)
    with pytest.raises(ValueError, match="'picture' is not a Sample field"):
        pipeline.map_field(threshold, source="picture")
    with pytest.raises(TypeError, match="unknown fields"):
        sample.replace(picture=1)
    with pytest.raises(TypeError, match="kspace must be complex"):
        pipeline.zero_filled().apply((), sample.replace(kspace=np.abs(sample.kspace)))


def test_zero_filled_errors():
    from mskjax.recon import zero_filled
    k = np.ones((2, 4, 4), np.complex64)
    with pytest.raises(ValueError, match=r"mskjax.recon.zero_filled: maps must have shape \(2, 4, 4\)"):
        zero_filled(k, maps=np.ones((3, 4, 4), np.complex64))
    with pytest.raises(ValueError, match="kspace must be finite"):
        zero_filled(np.full((2, 4, 4), np.inf, np.complex64))
    with pytest.raises(ValueError, match=r"kspace must be \(coils, \*spatial\)"):
        zero_filled(np.ones(4, np.complex64))
