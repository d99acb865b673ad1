"""Transfer learning: a checkpoint's backbone into a new classifier, frozen and slower backbones,
BatchNorm statistics recomputed from batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import losses, train
from mskjax.nets import Classifier, ClassifierHead


class TinyBackbone(nnx.Module):
    """Two convolutions with BatchNorm; follows the backbone contract."""

    def __init__(self, in_chans=1, out_features=4, *, extra=False, rngs):
        self.ndim, self.in_chans, self.out_features = 2, in_chans, out_features
        self.norm_in = nnx.BatchNorm(in_chans, rngs=rngs)
        self.blocks = nnx.List([nnx.Conv(in_chans, 6, (3, 3), strides=2, rngs=rngs),
                                nnx.Conv(6, out_features, (3, 3), rngs=rngs)])
        self.norm = nnx.BatchNorm(out_features, rngs=rngs)
        if extra:
            self.extra = nnx.Linear(out_features, out_features, rngs=rngs)

    def __call__(self, x):
        x = self.norm_in(x)
        x = jax.nn.relu(self.blocks[0](x))
        return jax.nn.relu(self.norm(self.blocks[1](x)))


def classifier(task="multiclass", num_classes=3, *, seed=0, **kwargs):
    rngs = nnx.Rngs(seed)
    backbone = TinyBackbone(rngs=rngs, **kwargs)
    return Classifier(backbone, ClassifierHead(backbone.out_features, task=task,
                                               num_classes=num_classes, rngs=rngs))


def save(net, directory, *, params=None):
    if params is None:
        params = train.split_model(net)[1]
    state = train.init_train_state(params, optax.sgd(0.1), key=0)
    return train.save_checkpoint(directory, state, config={"model": {"name": "tiny",
                                                                      "kwargs": {}}})


def leaves(module, kind=nnx.Param):
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(module, kind))}


def test_load_backbone_keeps_the_new_head(tmp_path):
    old = classifier("multiclass", 3, seed=0)
    save(old, tmp_path / "old")
    new = classifier("binary", None, seed=1)
    head_before, stats_before = leaves(new.head), leaves(new.backbone, nnx.BatchStat)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(old.backbone).values(),
                                                         leaves(new.backbone).values()))
    out = train.load_backbone(new, tmp_path / "old")
    assert out is new
    for path, value in leaves(old.backbone).items():
        np.testing.assert_array_equal(leaves(new.backbone)[path], value, err_msg=str(path))
    for path, value in head_before.items():
        np.testing.assert_array_equal(leaves(new.head)[path], value)
    # the checkpoint holds parameters only: the running statistics are the model's
    for path, value in stats_before.items():
        np.testing.assert_array_equal(leaves(new.backbone, nnx.BatchStat)[path], value)


def test_load_backbone_restores_batch_statistics_when_saved(tmp_path):
    old = classifier(seed=0)
    old.backbone.norm.mean[...] = jnp.arange(4.0)
    old.backbone.norm.var[...] = jnp.arange(1.0, 5.0)
    _, both, _ = nnx.split(old, nnx.Any(nnx.Param, nnx.BatchStat), ...)
    save(old, tmp_path / "old", params=both)
    new = train.load_backbone(classifier("ordinal", 5, seed=2), tmp_path / "old")
    np.testing.assert_array_equal(new.backbone.norm.mean[...], np.arange(4.0))
    np.testing.assert_array_equal(new.backbone.norm.var[...], np.arange(1.0, 5.0))
    np.testing.assert_array_equal(new.backbone.blocks[0].kernel[...],
                                  old.backbone.blocks[0].kernel[...])


def test_load_backbone_mismatches_are_listed(tmp_path):
    save(classifier(seed=0), tmp_path / "old")
    with pytest.raises(ValueError, match=r"load_backbone: the backbone of the checkpoint .* "
                                         r"do not fit model.backbone \(TinyBackbone\): "
                                         r"blocks.1.bias: checkpoint \(4,\) float32, model \(8,\)"
                                         r" float32; blocks.1.kernel: checkpoint \(3, 3, 6, 4\) "
                                         r"float32, model \(3, 3, 6, 8\) float32"):
        train.load_backbone(classifier(seed=1, out_features=8), tmp_path / "old")
    with pytest.raises(ValueError, match=r"blocks.0.kernel: checkpoint \(3, 3, 1, 6\) float32, "
                                         r"model \(3, 3, 2, 6\) float32"):
        train.load_backbone(classifier(seed=1, in_chans=2), tmp_path / "old")
    with pytest.raises(ValueError, match=r"extra.bias: in the model, not in the checkpoint; "
                                         r"extra.kernel: in the model, not in the checkpoint"):
        train.load_backbone(classifier(seed=1, extra=True), tmp_path / "old")
    save(classifier(seed=1, extra=True), tmp_path / "extra")
    with pytest.raises(ValueError, match="extra.kernel: in the checkpoint, not in the model"):
        train.load_backbone(classifier(seed=1), tmp_path / "extra")
    save(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), tmp_path / "linear")
    with pytest.raises(ValueError, match=r"has no parameters under 'backbone'; its parameters "
                                         r"are under \['bias', 'kernel'\]"):
        train.load_backbone(classifier(seed=1), tmp_path / "linear")
    with pytest.raises(FileNotFoundError, match="no checkpoint of step 7"):
        train.load_backbone(classifier(seed=1), tmp_path / "old", step=7)


def run(net, optimizer, images, labels, steps=3):
    graphdef, params, rest = train.split_model(net)

    def loss_fn(params, batch, key):
        outputs = train.merge_model(graphdef, params, rest)(batch["image"])
        return losses.softmax_cross_entropy(batch["label"], outputs), {}

    state = train.init_train_state(params, optimizer, key=0)
    step = jax.jit(train.make_train_step(loss_fn, optimizer))
    for _ in range(steps):
        state, _ = step(state, {"image": images, "label": labels})
    return params, state.params, (loss_fn, rest)


def split_leaves(params):
    flat = {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(params)}
    return ({p: v for p, v in flat.items() if p[0] == "backbone"},
            {p: v for p, v in flat.items() if p[0] != "backbone"})


def test_transfer_optimizer_frozen_slower_and_exact(rng):
    images = jnp.asarray(rng.standard_normal((6, 8, 8, 1)) * 3 + 2, jnp.float32)
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    net = classifier()
    params = train.split_model(net)[1]
    # frozen: the backbone is bit-identical, the head moved
    before, after, (loss_fn, rest) = run(net, train.transfer_optimizer(params, head_lr=1e-2),
                                         images, labels)
    (b0, h0), (b1, h1) = split_leaves(before), split_leaves(after)
    assert len(b0) == 8 and len(h0) == 2
    for path in b0:
        np.testing.assert_array_equal(b1[path], b0[path], err_msg=str(path))
    assert all(np.abs(h1[p] - h0[p]).max() > 1e-3 for p in h0)
    # why recompute_batch_statistics exists: the BatchNorm layers normalised each batch in
    # training mode, but the loss treats their running statistics as constants
    stats = dict(nnx.to_flat_state(rest))
    np.testing.assert_array_equal(stats[("backbone", "norm_in", "mean")][...], 0.0)
    np.testing.assert_array_equal(stats[("backbone", "norm_in", "var")][...], 1.0)
    # a lower rate, exact with SGD: one step is -lr * gradient, with each part's rate
    opt = train.transfer_optimizer(params, head_lr=0.5, backbone_lr=0.01, base=optax.sgd)
    before, after, _ = run(net, opt, images, labels, steps=1)
    grads = jax.grad(lambda p: loss_fn(p, {"image": images, "label": labels}, None)[0])(before)
    (gb, gh), (b0, h0), (b1, h1) = split_leaves(grads), split_leaves(before), split_leaves(after)
    for path in gb:
        np.testing.assert_allclose(b1[path], b0[path] - 0.01 * gb[path], rtol=1e-6, atol=1e-7)
        assert np.abs(gb[path]).max() > 0
    for path in gh:
        np.testing.assert_allclose(h1[path], h0[path] - 0.5 * gh[path], rtol=1e-6, atol=1e-7)


def test_transfer_optimizer_errors():
    params = train.split_model(classifier())[1]
    with pytest.raises(ValueError, match=r"transfer_optimizer: no parameters under 'encoder'; "
                                         r"the params have \['backbone', 'head'\]"):
        train.transfer_optimizer(params, head_lr=1e-3, prefix="encoder")
    with pytest.raises(ValueError, match="backbone_lr must be a finite number >= 0"):
        train.transfer_optimizer(params, head_lr=1e-3, backbone_lr=-1e-4)
    with pytest.raises(ValueError, match="head_lr must be a finite number > 0"):
        train.transfer_optimizer(params, head_lr=0.0)


def test_recompute_batch_statistics_pools_the_data(rng):
    data = (rng.standard_normal((10, 8, 8, 1)) * 3 + 2).astype(np.float32)
    net = classifier()
    net.backbone.norm_in.momentum = 0.5
    before = leaves(net, nnx.Any(nnx.Param, nnx.BatchStat))
    sizes = (3, 5, 2)
    batches = np.split(data, np.cumsum(sizes)[:-1])
    new = train.recompute_batch_statistics(net, (jnp.asarray(b) for b in batches))
    # the first BatchNorm sees the data: the mean and variance of all of it, batch sizes
    # notwithstanding (float64 oracle)
    np.testing.assert_allclose(new.backbone.norm_in.mean[...],
                               data.astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(new.backbone.norm_in.var[...],
                               data.astype(np.float64).var(axis=(0, 1, 2)), rtol=1e-5)
    # the second sees the conv features, normalised with each batch's own statistics
    expected_mean, expected_sq = 0.0, 0.0
    for b in batches:
        x = (b - b.mean(axis=(0, 1, 2))) / np.sqrt(b.var(axis=(0, 1, 2)) + 1e-5)
        h = net.backbone.blocks[1](jax.nn.relu(net.backbone.blocks[0](jnp.asarray(x))))
        h = np.asarray(h, np.float64)
        expected_mean = expected_mean + len(b) * h.mean(axis=(0, 1, 2))
        expected_sq = expected_sq + len(b) * (h ** 2).mean(axis=(0, 1, 2))
    expected_mean, expected_sq = expected_mean / 10, expected_sq / 10
    np.testing.assert_allclose(new.backbone.norm.mean[...], expected_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new.backbone.norm.var[...], expected_sq - expected_mean ** 2,
                               rtol=1e-4, atol=1e-6)
    # momentum played no part and is kept; the input model and the parameters are unchanged
    assert new.backbone.norm_in.momentum == 0.5 and new.backbone.norm.momentum == 0.99
    assert net.backbone.norm_in.use_running_average is False
    for path, value in leaves(net, nnx.Any(nnx.Param, nnx.BatchStat)).items():
        np.testing.assert_array_equal(value, before[path])
    for path, value in leaves(new).items():
        np.testing.assert_array_equal(value, before[path])
    # with the statistics in place, evaluation mode normalises the data as training did
    new.eval()
    np.testing.assert_allclose(np.asarray(new.backbone.norm_in(jnp.asarray(data))).mean(), 0,
                               atol=1e-5)


def test_recompute_batch_statistics_errors():
    with pytest.raises(ValueError, match="recompute_batch_statistics: Linear has no "
                                         "nnx.BatchNorm layer"):
        train.recompute_batch_statistics(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), [jnp.ones((1, 2))])
    with pytest.raises(ValueError, match="batches must hold at least one batch"):
        train.recompute_batch_statistics(classifier(), [])


def test_with_the_package_resnet(tmp_path, rng):
    import mskjax.nets

    if not hasattr(mskjax.nets, "ResNet"):
        pytest.skip("mskjax.nets.ResNet is not available")

    def resnet_classifier(task, num_classes, seed, width=4):
        rngs = nnx.Rngs(seed)
        backbone = mskjax.nets.ResNet(1, layers=(1, 1), width=width, norm="batch", rngs=rngs)
        return Classifier(backbone, ClassifierHead(backbone.out_features, task=task,
                                                   num_classes=num_classes, rngs=rngs))

    save(resnet_classifier("multiclass", 3, 0), tmp_path / "old")
    new = train.load_backbone(resnet_classifier("ordinal", 5, 1), tmp_path / "old")
    old = resnet_classifier("multiclass", 3, 0)
    for path, value in leaves(old.backbone).items():
        np.testing.assert_array_equal(leaves(new.backbone)[path], value, err_msg=str(path))
    with pytest.raises(ValueError, match=r"stages.0.0.conv1: checkpoint \(3, 3, 4, 4\) float32, "
                                         r"model \(3, 3, 8, 8\) float32"):
        train.load_backbone(resnet_classifier("binary", None, 1, width=8), tmp_path / "old")
    # one batch of all the data: the running statistics become that batch's, so evaluation
    # mode gives what training mode gives on it, layer after layer
    data = jnp.asarray(rng.standard_normal((4, 16, 16, 1)) * 2 + 1, jnp.float32)
    fresh = train.recompute_batch_statistics(new, [data])
    training = np.asarray(new(data))
    fresh.eval()
    np.testing.assert_allclose(fresh(data), training, rtol=1e-4, atol=1e-5)
    new.eval()
    assert np.abs(np.asarray(new(data)) - training).max() > 1e-2
