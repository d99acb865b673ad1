"""Segmentation with the U-Net (2D and 3D, multi-class), ``predict_labels`` and the
``Segmenter`` stage (whole image or sliding windows; logits, probabilities or labels)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import metrics, nets, pipeline


def test_predict_labels_is_the_argmax_over_channels():
    logits = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    labels = nets.predict_labels(logits)
    assert labels.dtype == jnp.int32
    np.testing.assert_array_equal(labels, logits.argmax(-1))
    np.testing.assert_array_equal(nets.predict_labels(np.array([[1.0, 1.0, 0.0]])), [0])
    with pytest.raises(TypeError, match="mskjax.nets.predict_labels: logits must be real"):
        nets.predict_labels(np.zeros((2, 3), np.complex64))


def disc_batch(n, size, seed):
    """Noisy images of a bright disc on a ring of medium intensity: labels 0, 1 (disc), 2."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(n):
        cy, cx = rng.uniform(5, size - 5, 2)
        r = np.hypot(yy - cy, xx - cx)
        label = np.where(r < 2.5, 1, np.where(r < 4.5, 2, 0))
        images.append(np.choose(label, [0.0, 1.0, 0.5]) + 0.1 * rng.standard_normal(r.shape))
        labels.append(label)
    return np.asarray(images, np.float32)[..., None], np.asarray(labels, np.int32)


def test_unet_learns_a_three_class_segmentation():
    model = nets.UNet(1, 3, chans=4, num_pool_layers=1, rngs=nnx.Rngs(0))
    images, labels = disc_batch(8, 16, seed=0)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, images, labels)) for _ in range(60)]
    test_images, test_labels = disc_batch(4, 16, seed=1)
    predicted = np.asarray(nets.predict_labels(model(jnp.asarray(test_images))))
    dice = metrics.dice(predicted, test_labels, num_classes=3)
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    assert dice[1:].min() > 0.8, dice  # held-out images


class Pixelwise(nnx.Module):
    """A 1 x 1 linear net: the smallest thing with the segmentation-net interface."""

    def __init__(self, in_chans, num_classes, *, ndim, rngs):
        self.ndim, self.in_chans = ndim, in_chans
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (in_chans, num_classes)))

    def __call__(self, x):
        return x @ self.weight[...]


def test_3d_unet_segmenter_stage_in_a_jitted_chain():
    volume = np.random.default_rng(1).standard_normal((6, 8, 7)).astype(np.float32)
    unet = nets.UNet(1, 4, chans=2, num_pool_layers=1, ndim=3, rngs=nnx.Rngs(0))
    direct = np.asarray(unet(jnp.asarray(volume[None, ..., None])))[0]
    sample = pipeline.Sample(image=volume)
    pipe = pipeline.chain(nets.stage(nets.Segmenter(unet)))
    out = jax.jit(pipe.apply)(pipe.init(jax.random.key(0), sample), sample)
    assert out.segmentation.shape == (6, 8, 7, 4)
    np.testing.assert_allclose(out.segmentation, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.image, volume)


def test_segmenter_outputs():
    image = np.random.default_rng(1).standard_normal((5, 6, 2)).astype(np.float32)
    net = Pixelwise(2, 3, ndim=2, rngs=nnx.Rngs(0))
    logits = np.asarray(net(jnp.asarray(image)))
    sample = pipeline.Sample(image=image)
    out = {output: nets.Segmenter(net, output=output).apply_sample(sample).segmentation
           for output in ("logits", "probabilities", "labels")}
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-6)
    np.testing.assert_allclose(out["probabilities"], jax.nn.softmax(logits), rtol=1e-5)
    assert out["labels"].dtype == jnp.int32
    np.testing.assert_array_equal(out["labels"], logits.argmax(-1))
    # a complex image enters as two channels
    z = image[..., 0] + 1j * image[..., 1]
    np.testing.assert_allclose(
        nets.Segmenter(net).apply_sample(pipeline.Sample(image=z)).segmentation, logits,
        rtol=1e-6)


def test_segmenter_by_sliding_windows_equals_the_function_on_the_net():
    image = np.random.default_rng(2).standard_normal((20, 13)).astype(np.float32)
    factory = lambda rngs: nets.Segmenter(  # noqa: E731
        nets.UNet(1, 2, chans=2, num_pool_layers=1, rngs=rngs), window=(8, 8), overlap=0.5,
        batch_size=2)
    stage = nets.stage(factory)
    sample = pipeline.Sample(image=image)
    params = stage.init(jax.random.key(3), sample)
    out = jax.jit(stage.apply)(params, sample)
    segmenter = nnx.merge(nnx.graphdef(factory(nnx.Rngs(0))), params)
    graphdef, state = nnx.split(segmenter.net)
    predict = jax.jit(lambda tiles: nnx.merge(graphdef, state)(tiles))
    expected = nets.sliding_window_inference(predict, image[..., None], window=(8, 8),
                                             batch_size=2)
    np.testing.assert_allclose(out.segmentation, expected, rtol=1e-5, atol=1e-5)
    whole = np.asarray(segmenter(jnp.asarray(image[None, ..., None])))[0]
    assert not np.allclose(out.segmentation, whole, atol=1e-3)  # the tiles really differ


def test_bad_arguments():
    unet = nets.UNet(1, 2, chans=2, num_pool_layers=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="mskjax.nets.Segmenter: output must be one of"):
        nets.Segmenter(unet, output="scores")
    with pytest.raises(ValueError, match="window must have one size per spatial axis"):
        nets.Segmenter(unet, window=(4, 4, 4))
    with pytest.raises(TypeError, match="net must be an nnx.Module"):
        nets.Segmenter(lambda x: x)
    stage = nets.stage(nets.Segmenter(unet))
    with pytest.raises(ValueError, match="Segmenter.apply_sample: the sample has no image"):
        stage.apply(stage.init(jax.random.key(0), None), pipeline.Sample())
    with pytest.raises(ValueError, match="the net takes 1 input channels"):
        stage.apply(stage.init(jax.random.key(0), None),
                    pipeline.Sample(image=np.zeros((8, 8, 3), np.float32)))
