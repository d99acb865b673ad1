"""k-space to diagnosis: one jitted chain, end-to-end gradients, frozen stages, the loss."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from mskjax import coils, losses, nets, pipeline, train
from mskjax.fourier import fftnc
from tests.conftest import random_complex

SHAPE = (2, 24, 24)  # (coils, rows, cols)
CLASSES = 3


class TinyBackbone(nnx.Module):
    """Two conv blocks with a 2x average pooling between (the backbone contract)."""

    def __init__(self, in_chans, *, features=4, rngs, drop_prob=0.0):
        self.ndim, self.in_chans, self.out_features = 2, in_chans, 2 * features
        self.block1 = nets.ConvBlock(in_chans, features, drop_prob=drop_prob, rngs=rngs)
        self.block2 = nets.ConvBlock(features, 2 * features, drop_prob=drop_prob, rngs=rngs)

    def __call__(self, x):
        return self.block2(nets.avg_pool(self.block1(x)))


def mask():
    line = np.zeros(SHAPE[-1], bool)
    line[::3] = True
    line[10:14] = True
    return line


def recon_net(rngs):
    return nets.VarNet(num_steps=2, num_filters=4, kernel_size=3, num_rbf=5, rngs=rngs)


def segmenter(rngs):
    return nets.Segmenter(nets.UNet(1, CLASSES, chans=4, num_pool_layers=1, rngs=rngs))


def classifier(rngs, *, in_chans=1 + CLASSES, drop_prob=0.0, task="binary", num_classes=None):
    backbone = TinyBackbone(in_chans, rngs=rngs)
    head = nets.ClassifierHead(backbone.out_features, task=task, num_classes=num_classes,
                               drop_prob=drop_prob, rngs=rngs)
    return nets.Classifier(backbone, head)


def build(**changes):
    options = dict(mask=mask(), reconstruction=recon_net, segmentation=segmenter,
                   classifier=classifier)
    return pipeline.kspace_to_diagnosis(**{**options, **changes})


def example(seed):
    rng = np.random.default_rng(seed)
    maps = coils.normalize_maps(random_complex(rng, SHAPE))
    image = random_complex(rng, SHAPE[1:])
    return pipeline.Sample(
        kspace=fftnc(maps * image, axes=(-2, -1)), maps=maps, target=np.abs(image),
        segmentation=rng.integers(0, CLASSES, SHAPE[1:]).astype(np.int32),
        label=np.int32(seed % 2))


def stack(samples):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *samples)


@pytest.fixture(scope="module")
def chain_and_params():
    chain = build()
    params = jax.jit(chain.init)(jax.random.key(0), example(0))
    return chain, params


@pytest.fixture(scope="module")
def jitted_apply(chain_and_params):
    return jax.jit(chain_and_params[0].apply)


def test_the_chain_is_one_program_compiled_once(chain_and_params):
    chain, params = chain_and_params
    assert set(params) == set(pipeline.DIAGNOSIS_STAGES)
    assert params["undersample"] == ()
    traces = []

    def apply(params, sample):
        traces.append(1)
        return chain.apply(params, sample)

    jitted = jax.jit(apply)
    out = jitted(params, example(0))
    assert out.label.shape == (1,)
    assert out.image.shape == SHAPE[1:] and jnp.iscomplexobj(out.image)
    assert out.segmentation.shape == (*SHAPE[1:], CLASSES)
    again = jitted(params, example(1))
    assert len(traces) == 1
    assert not np.allclose(out.label, again.label)


def test_the_chain_equals_the_stages_run_one_by_one(chain_and_params, jitted_apply):
    chain, params = chain_and_params
    sample = example(2)
    out = jitted_apply(params, sample)
    graphdefs = [nnx.graphdef(f(nnx.Rngs(0))) for f in (recon_net, segmenter, classifier)]

    @jax.jit
    def by_hand(recon_params, seg_params, classify_params):
        recon, seg, net = (nnx.merge(g, p) for g, p in
                           zip(graphdefs, (recon_params, seg_params, classify_params)))
        image = recon(sample.kspace * mask(), mask(), sample.maps)
        logits = seg(jnp.abs(image)[None, ..., None])[0]
        return image, logits, net(jnp.concatenate([jnp.abs(image)[..., None],
                                                   jax.nn.softmax(logits)], -1)[None])[0]

    image, logits, outputs = by_hand(params["reconstruct"], params["segment"],
                                     params["classify"])
    np.testing.assert_allclose(out.image, image, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.segmentation, logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.label, outputs, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out.mask, mask())
    # The classifier's input channels are not left in the sample.
    assert out.image.ndim == 2


def test_vmap_over_a_batch_equals_a_loop(chain_and_params, jitted_apply):
    chain, params = chain_and_params
    samples = [example(s) for s in range(3)]
    batched = jax.jit(jax.vmap(chain.apply, in_axes=(None, 0)))(params, stack(samples))
    for i, sample in enumerate(samples):
        out = jitted_apply(params, sample)
        np.testing.assert_allclose(batched.label[i], out.label, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(batched.image[i], out.image, rtol=1e-4, atol=1e-5)


def _grad_norms(grads):
    return {name: float(optax.tree.norm(g)) for name, g in grads.items() if name !=
            "undersample"}


def test_classification_gradients_reach_every_stage_and_none_reach_a_frozen_one(
        chain_and_params):
    chain, params = chain_and_params
    batch = stack([example(s) for s in range(2)])
    loss = functools.partial(pipeline.diagnosis_loss, chain=chain, task="binary",
                             weights={"classification": 1.0})

    @jax.jit
    def grads(params, key):
        def value(p, frozen):
            return loss(p, batch, key, frozen=frozen)[0]
        return jax.grad(value)(params, ()), jax.grad(value)(params, ("segment",))

    trained, frozen = grads(params, jax.random.key(1))
    norms = _grad_norms(trained)
    for name in ("reconstruct", "segment", "classify"):
        assert np.isfinite(norms[name]) and norms[name] > 0, norms
    # Every parameter array of the reconstruction (filters, activations, step sizes).
    assert all(float(jnp.max(jnp.abs(g))) > 0
               for g in jax.tree_util.tree_leaves(trained["reconstruct"]))
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree_util.tree_leaves(frozen["segment"]))
    norms = _grad_norms(frozen)
    assert norms["reconstruct"] > 0 and norms["classify"] > 0
    # The other stages' gradients do not depend on freezing the segmentation.
    for name in ("reconstruct", "classify"):
        for a, b in zip(jax.tree_util.tree_leaves(trained[name]),
                        jax.tree_util.tree_leaves(frozen[name])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_the_loss_is_the_weighted_sum_of_its_terms(chain_and_params, jitted_apply):
    chain, params = chain_and_params
    samples = [example(s) for s in range(2)]
    batch = stack(samples)
    weights = {"reconstruction": 0.5, "segmentation": 2.0, "classification": 3.0}
    loss, metrics = jax.jit(functools.partial(pipeline.diagnosis_loss, chain=chain,
                                              task="binary", weights=weights))(
        params, batch, jax.random.key(0))
    # Independently: run the chain per example, compute each term by hand.
    outs = [jitted_apply(params, s.replace(target=None, segmentation=None, label=None))
            for s in samples]
    image = np.stack([np.abs(np.asarray(o.image)) for o in outs])
    l1 = np.mean(np.abs(image - np.asarray(batch.target)))
    logits = np.stack([np.asarray(o.segmentation) for o in outs])
    seg = losses.dice_ce_loss(batch.segmentation, logits, num_classes=CLASSES)
    outputs = torch.tensor(np.stack([np.asarray(o.label) for o in outs])[:, 0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        outputs, torch.tensor(np.asarray(batch.label), dtype=torch.float32)).item()
    np.testing.assert_allclose(metrics["reconstruction_loss"], l1, rtol=1e-4)
    np.testing.assert_allclose(metrics["segmentation_loss"], seg, rtol=1e-4)
    np.testing.assert_allclose(metrics["classification_loss"], bce, rtol=1e-4)
    np.testing.assert_allclose(loss, 0.5 * l1 + 2.0 * seg + 3.0 * bce, rtol=1e-4)
    # SSIM instead of L1.
    _, metrics = jax.jit(functools.partial(
        pipeline.diagnosis_loss, chain=chain, task="binary", weights={"reconstruction": 1.0},
        image_loss="ssim"))(params, batch, jax.random.key(0))
    peak = np.asarray(batch.target).reshape(2, -1).max(1)
    expected = losses.ssim_loss(batch.target, image, data_range=peak)
    np.testing.assert_allclose(metrics["reconstruction_loss"], expected, rtol=1e-4)
    assert set(metrics) == {"reconstruction_loss"}


def test_train_step_with_frozen_stages_leaves_them_unchanged(chain_and_params):
    chain, params = chain_and_params
    batch = stack([example(s) for s in range(2)])
    loss_fn = functools.partial(pipeline.diagnosis_loss, chain=chain, task="binary",
                                weights={"classification": 1.0, "reconstruction": 0.1})
    optimizer = pipeline.freeze_stages(optax.adam(1e-2), frozen=("reconstruct",))
    state = train.init_train_state(params, optimizer, key=0)
    step = jax.jit(train.make_train_step(loss_fn, optimizer))
    first, metrics = step(state, batch)
    assert int(metrics["skipped"]) == 0 and float(metrics["grad_norm"]) > 0
    assert {"classification_loss", "reconstruction_loss"} <= set(metrics)

    def changed(a, b):
        return any(not np.array_equal(x, y) for x, y in
                   zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))

    assert not changed(first.params["reconstruct"], params["reconstruct"])
    assert changed(first.params["segment"], params["segment"])
    assert changed(first.params["classify"], params["classify"])
    # A few more steps on the same batch lower the classification loss.
    for _ in range(5):
        first, later = step(first, batch)
    assert float(later["classification_loss"]) < float(metrics["classification_loss"])


def test_nets_with_random_streams_train_through_split_trainable():
    chain = build(reconstruction=pipeline.zero_filled(), segmentation=None,
                  classifier=lambda rngs: classifier(rngs, in_chans=1, drop_prob=0.5),
                  classifier_inputs=("image",))
    params = chain.init(jax.random.key(0), example(0))
    assert params["segment"] == () and params["reconstruct"] == ()
    trainable, rest = pipeline.split_trainable(params)
    merged = pipeline.merge_trainable(trainable, rest)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(params)
    batch = stack([example(s) for s in range(2)])
    loss = functools.partial(pipeline.diagnosis_loss, chain=chain, task="binary",
                             weights={"classification": 1.0}, rest=rest)
    grad = jax.jit(jax.grad(lambda p, k: loss(p, batch, k)[0]))
    g1, g2 = grad(trainable, jax.random.key(1)), grad(trainable, jax.random.key(2))
    assert np.isfinite(_grad_norms(g1)["classify"]) and _grad_norms(g1)["classify"] > 0
    # Dropout draws fresh masks from the loss's key.
    assert not np.allclose(g1["classify"]["head"]["kernel"][...],
                           g2["classify"]["head"]["kernel"][...])


def test_zero_filled_reconstruction_and_image_only_classifier():
    chain = build(reconstruction=pipeline.zero_filled(), segmentation=None,
                  classifier=lambda rngs: classifier(rngs, in_chans=1),
                  classifier_inputs="image")
    sample = example(3)
    params = chain.init(jax.random.key(0), sample)
    assert params["reconstruct"] == () and params["segment"] == ()
    out = jax.jit(chain.apply)(params, sample)
    net = nnx.merge(nnx.graphdef(classifier(nnx.Rngs(0), in_chans=1)), params["classify"])
    zero_filled = np.sum(np.conj(sample.maps) * np.asarray(
        jnp.fft.fftshift(jnp.fft.ifft2(jnp.fft.ifftshift(sample.kspace * mask(), axes=(-2, -1)),
                                       norm="ortho"), axes=(-2, -1))), axis=0)
    np.testing.assert_allclose(out.label, net(np.abs(zero_filled)[None, ..., None])[0],
                               rtol=1e-4, atol=1e-5)


def test_the_first_three_stages_give_the_classifier_channels():
    options = dict(mask=mask(), reconstruction=pipeline.zero_filled(), segmentation=segmenter,
                   classifier=classifier)
    stages = pipeline.diagnosis_stages(**options)
    assert tuple(name for name, _ in stages) == pipeline.DIAGNOSIS_STAGES
    chain = pipeline.kspace_to_diagnosis(**options)
    sample = example(4)
    params = chain.init(jax.random.key(0), sample)
    upstream = pipeline.named_chain(*stages[:3])
    out = upstream.apply({n: params[n] for n, _ in stages[:3]}, sample)
    channels = pipeline.classifier_channels(out, ("image", "segmentation"))
    assert channels.shape == (*SHAPE[1:], 1 + CLASSES)
    np.testing.assert_allclose(channels[..., 0], np.abs(np.asarray(out.image)), rtol=1e-6)
    np.testing.assert_allclose(channels[..., 1:].sum(-1), 1.0, rtol=1e-5)
    net = nnx.merge(nnx.graphdef(classifier(nnx.Rngs(0))), params["classify"])
    np.testing.assert_allclose(chain.apply(params, sample).label, net(channels[None])[0],
                               rtol=1e-4, atol=1e-5)


def test_bad_input_gets_a_clear_error(chain_and_params):
    with pytest.raises(ValueError, match="kspace_to_diagnosis: classifier_inputs asks for the "
                                         "segmentation"):
        build(segmentation=None)
    with pytest.raises(ValueError, match="classifier_inputs must be distinct names"):
        build(classifier_inputs=("image", "target"))
    with pytest.raises(ValueError, match="must write logits"):
        build(segmentation=nets.Segmenter(nets.UNet(1, 3, chans=2, num_pool_layers=1,
                                                    rngs=nnx.Rngs(0)), output="probabilities"))
    with pytest.raises(TypeError, match="reconstruction must be an nnx.Module"):
        build(reconstruction=3)
    chain = build(reconstruction=pipeline.zero_filled(),
                  classifier=lambda rngs: classifier(rngs, in_chans=2))
    with pytest.raises(ValueError, match="takes 2 input channels"):
        chain.init(jax.random.key(0), example(0))
    chain, params = chain_and_params
    batch = stack([example(0)])
    call = functools.partial(pipeline.diagnosis_loss, params, batch, jax.random.key(0),
                             chain=chain, task="binary")
    with pytest.raises(ValueError, match="diagnosis_loss: unknown loss terms"):
        call(weights={"detection": 1.0})
    with pytest.raises(ValueError, match="the weight of classification must be a finite"):
        call(weights={"classification": float("nan")})
    with pytest.raises(ValueError, match="frozen names stages"):
        call(weights={"classification": 1.0}, frozen=("recon",))
    with pytest.raises(ValueError, match="needs batch.label"):
        call.func(params, batch.replace(label=None), jax.random.key(0), chain=chain,
                  task="binary", weights={"classification": 1.0})
    with pytest.raises(ValueError, match="freeze_stages: frozen names stages"):
        pipeline.freeze_stages(optax.sgd(1.0), frozen=("recon",)).init(params)
