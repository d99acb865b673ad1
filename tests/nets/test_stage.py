"""Nets as pipeline stages (``nets.stage``) and the ``apply_sample`` protocol."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import coils, fourier, nets, pipeline, sampling
from tests.conftest import random_complex

SHAPE = (3, 20, 16)
TINY = dict(num_cascades=2, sens_chans=2, sens_pools=1, chans=2, pools=1)


def full_kspace(seed=0):
    return random_complex(np.random.default_rng(seed), SHAPE)


def test_undersample_then_e2e_varnet_jits_as_one_program_and_equals_the_net():
    model = nets.E2EVarNet(**TINY, rngs=nnx.Rngs(0))
    mask, _ = sampling.equispaced_mask(SHAPE, center_fraction=0.25, acceleration=3, seed=0)
    pipe = pipeline.chain(pipeline.undersample(np.broadcast_to(mask, (1, *SHAPE[1:]))),
                          nets.stage(model))
    sample = pipeline.Sample(kspace=full_kspace())
    params = jax.jit(pipe.init)(jax.random.key(0), sample)
    assert params[0] == ()
    traces = []

    def apply(params, sample):
        traces.append(1)
        return pipe.apply(params, sample)

    jitted = jax.jit(apply)
    out = jitted(params, sample)
    graphdef = nnx.graphdef(model)
    direct = jax.jit(lambda s, k, m: nnx.merge(graphdef, s)(k, m))(
        params[1], full_kspace() * mask, mask)
    assert out.image.shape == SHAPE[1:] and out.image.dtype == jnp.float32
    np.testing.assert_allclose(out.image, direct, rtol=1e-5, atol=1e-6 * float(direct.max()))
    jitted(params, pipeline.Sample(kspace=full_kspace(1)))
    assert len(traces) == 1  # one program, reused


def test_factory_stage_after_zero_filled():
    def factory(rngs):
        return nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=rngs)

    pipe = pipeline.chain(pipeline.zero_filled(), nets.stage(factory))
    sample = pipeline.Sample(kspace=full_kspace())
    init = jax.jit(pipe.init)
    params = init(jax.random.key(3), sample)
    # chain hands stage i the key fold_in(key, i); traced and eager draws agree.
    expected = nnx.state(factory(nnx.Rngs(jax.random.fold_in(jax.random.key(3), 1))))
    jax.tree.map(np.testing.assert_array_equal, params[1], expected)
    other = init(jax.random.key(4), sample)
    assert not np.array_equal(other[1]["head_kernel"][...], params[1]["head_kernel"][...])

    out = jax.jit(pipe.apply)(params, sample).image
    model = nnx.merge(nnx.graphdef(factory(nnx.Rngs(0))), params[1])
    image = coils.rss(fourier.ifft2c(full_kspace()), axis=0)
    assert out.shape == SHAPE[1:]
    np.testing.assert_allclose(out, model(image[None, :, :, None])[0, :, :, 0], rtol=1e-5,
                               atol=1e-6)
    # A fresh stage applies params it did not make (restored from a checkpoint, say).
    fresh = pipeline.chain(pipeline.zero_filled(), nets.stage(factory))
    assert jax.eval_shape(fresh.apply, params, sample).image.shape == SHAPE[1:]
    # NetStage is a pipeline Stage in all but name.
    assert pipeline.Stage(*nets.stage(factory)).init is not None


def test_the_key_reseeds_dropout():
    model = nets.UNet(1, 1, chans=2, num_pool_layers=1, drop_prob=0.5, rngs=nnx.Rngs(0))
    stage = nets.stage(model)
    sample = pipeline.Sample(image=np.random.default_rng(0).standard_normal((12, 10)))
    params = stage.init(jax.random.key(0), sample)
    apply = jax.jit(stage.apply)
    a = apply(params, sample, key=jax.random.key(1)).image
    b = apply(params, sample, key=jax.random.key(1)).image
    c = apply(params, sample, key=jax.random.key(2)).image
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    model.eval()
    evaluating = nets.stage(model)
    d = jax.jit(evaluating.apply)(params, sample, key=jax.random.key(1)).image
    e = jax.jit(evaluating.apply)(params, sample, key=jax.random.key(2)).image
    np.testing.assert_array_equal(d, e)


def test_bad_stages():
    with pytest.raises(TypeError, match="mskjax.nets.stage: expected an nnx.Module or a factory"):
        nets.stage(3)
    with pytest.raises(TypeError, match="Linear has no apply_sample"):
        nets.stage(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    stage = nets.stage(lambda rngs: nnx.Linear(2, 2, rngs=rngs))
    with pytest.raises(TypeError, match="Linear has no apply_sample"):
        stage.init(jax.random.key(0), pipeline.Sample())
    stage = nets.stage(nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="use the params returned by the same stage's init"):
        stage.apply({"nothing": 1}, pipeline.Sample(image=np.ones((8, 8))))
