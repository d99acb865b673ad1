"""ResNet against torchvision's (weights copied: OIHW -> HWIO, BatchNorm scale, offset and
running statistics): the last feature map in evaluation mode, in training mode (batch
statistics and the running averages they leave), the gradients, the group and instance norm
variants; shapes in 1 to 3 spatial axes; the classifier as a jitted pipeline stage; bad input.
Tolerance: float32 round-off through the net, ``max |jax - torch| <= 1e-4 * max |torch|``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets, pipeline
from mskjax.nets._norm import num_groups
from tests.nets.torchvision_oracle import (assert_close, from_torch, import_torchvision, jitted,
                                           load_resnet, randomise_norms, resnet_features,
                                           to_torch, torch)

nn = torch.nn


def torch_resnet(block="basic", layers=(1, 1, 1, 1), norm_layer=None, seed=0):
    tv = import_torchvision()
    torch.manual_seed(seed)
    kind = tv.models.resnet.BasicBlock if block == "basic" else tv.models.resnet.Bottleneck
    model = tv.models.resnet.ResNet(kind, list(layers), num_classes=3, norm_layer=norm_layer)
    return randomise_norms(model, seed)


def image(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_resnet18_equals_torchvision_in_evaluation_mode():
    tv = import_torchvision()
    torch.manual_seed(0)
    theirs = randomise_norms(tv.models.resnet18(num_classes=5)).eval()
    ours = load_resnet(nets.ResNet(3, layers="resnet18", rngs=nnx.Rngs(0)), theirs)
    ours.eval()
    x = image((2, 64, 64, 3))
    with torch.no_grad():
        ref = from_torch(resnet_features(theirs, to_torch(x)))
    out = jitted(ours)(x)
    assert out.shape == (2, 2, 2, 512) == (2, *ours.feature_shape((64, 64)), ours.out_features)
    assert_close(out, ref)


@pytest.mark.slow
def test_resnet50_equals_torchvision_in_evaluation_mode():
    tv = import_torchvision()
    torch.manual_seed(1)
    theirs = randomise_norms(tv.models.resnet50(num_classes=5), seed=1).eval()
    ours = load_resnet(nets.ResNet(3, layers="resnet50", rngs=nnx.Rngs(0)), theirs)
    ours.eval()
    assert ours.block == "bottleneck" and ours.out_features == 2048
    x = image((1, 40, 36, 3), seed=1)
    with torch.no_grad():
        ref = from_torch(resnet_features(theirs, to_torch(x)))
    assert_close(jitted(ours)(x), ref)


def test_training_mode_uses_batch_statistics_and_updates_running_averages_as_torch():
    theirs = torch_resnet().train()
    ours = load_resnet(nets.ResNet(3, layers=(1, 1, 1, 1), rngs=nnx.Rngs(0)), theirs)
    pairs = [(ours.bn1, theirs.bn1, 2 * 24 * 20),  # (ours, theirs, values per channel)
             (ours.stages[3][0].bn2, theirs.layer4[0].bn2, 2 * 2 * 2)]
    before = [their.running_var.numpy().copy() for _, their, _ in pairs]
    x = image((2, 48, 40, 3), seed=2)
    ref = from_torch(resnet_features(theirs, to_torch(x)))
    out = nnx.jit(lambda m, x: m(x))(ours, jnp.asarray(x))  # training mode is the default
    assert_close(out, ref)
    # running = 0.9 running + 0.1 batch; torch folds in the unbiased variance, flax the biased
    for (our_bn, their_bn, n), var0 in zip(pairs, before):
        np.testing.assert_allclose(our_bn.mean[...], their_bn.running_mean.numpy(),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(our_bn.var[...] - 0.9 * var0,
                                   (their_bn.running_var.numpy() - 0.9 * var0) * (n - 1) / n,
                                   rtol=1e-4, atol=1e-6)
    # evaluation mode: the running averages, so one example's features ignore the others
    ours.eval()
    alone, together = jitted(ours)(x[:1]), jitted(ours)(np.concatenate([x[:1], 5 * x[1:]]))
    np.testing.assert_allclose(alone, together[:1], rtol=1e-5, atol=1e-6)
    ours.train()
    alone = nnx.jit(lambda m, x: m(x))(ours, jnp.asarray(x[:1]))
    together = nnx.jit(lambda m, x: m(x))(ours, jnp.asarray(np.concatenate([x[:1], 5 * x[1:]])))
    assert np.abs(np.asarray(alone) - np.asarray(together[:1])).max() > 1e-2


def test_gradients_equal_torch_autograd():
    theirs = torch_resnet(seed=3).train()
    ours = load_resnet(nets.ResNet(3, layers=(1, 1, 1, 1), rngs=nnx.Rngs(0)), theirs)
    x = image((2, 48, 40, 3), seed=3)
    tx = to_torch(x).requires_grad_(True)
    ref = resnet_features(theirs, tx)
    weights = image(ref.shape, seed=4)
    (ref * torch.from_numpy(weights)).sum().backward()

    def loss(model, x):
        return jnp.sum(model(x) * jnp.moveaxis(weights, 1, -1))

    grads, gx = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(ours, jnp.asarray(x))
    assert_close(gx, from_torch(tx.grad))
    graphdef, _, rest = nnx.split(ours, nnx.Param, ...)
    grads = nnx.merge(graphdef, grads, rest)
    for ours_kernel, their_conv in [(grads.conv1, theirs.conv1),
                                    (grads.stages[1][0].conv1, theirs.layer2[0].conv1),
                                    (grads.stages[2][0].downsample_conv,
                                     theirs.layer3[0].downsample[0]),
                                    (grads.stages[3][0].conv2, theirs.layer4[0].conv2)]:
        assert_close(ours_kernel[...], np.transpose(their_conv.weight.grad.numpy(), (2, 3, 1, 0)))
    assert_close(grads.stages[3][0].bn2.scale[...], theirs.layer4[0].bn2.weight.grad.numpy())


@pytest.mark.parametrize("norm", ["group", "instance"])
def test_group_and_instance_norm_equal_torch_group_norm(norm):
    def norm_layer(c):
        return nn.GroupNorm(num_groups(c) if norm == "group" else c, c, eps=1e-5)

    theirs = torch_resnet(norm_layer=norm_layer, seed=5).eval()
    ours = load_resnet(nets.ResNet(3, layers=(1, 1, 1, 1), norm=norm, rngs=nnx.Rngs(0)),
                       theirs)
    assert ours.stages[0][0].bn1.num_groups == (32 if norm == "group" else 64)
    x = image((2, 40, 40, 3), seed=5)
    with torch.no_grad():
        ref = from_torch(resnet_features(theirs, to_torch(x)))
    out = jitted(ours)(x)  # training mode: no batch statistics to depend on
    assert_close(out, ref)
    assert_close(jitted(ours)(x[1:]), out[1:], rtol=1e-5)


def test_num_groups_is_the_largest_divisor_up_to_32():
    assert [num_groups(c) for c in (16, 24, 36, 64, 96, 2048, 7)] == [16, 24, 18, 32, 32, 32, 7]


@pytest.mark.parametrize("ndim,spatial", [(1, (37,)), (2, (33, 47)), (3, (16, 9, 12))])
@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_shapes_in_every_rank(ndim, spatial, block):
    layers = (1, 2) if ndim == 3 else (1, 1, 1)
    model = nets.ResNet(2, layers=layers, block=block, width=4, ndim=ndim, norm="group",
                        rngs=nnx.Rngs(0))
    expansion = 4 if block == "bottleneck" else 1
    assert model.out_features == 4 * 2 ** (len(layers) - 1) * expansion
    assert model.downsamplings == len(layers) + 1
    out = jitted(model)(image((2, *spatial, 2)))
    expected = tuple(-(-n // 2 ** model.downsamplings) for n in spatial)  # ceil at each step
    assert out.shape == (2, *expected, model.out_features)
    assert model.feature_shape(spatial) == expected
    assert out.dtype == jnp.float32 and bool(jnp.all(out >= 0))


def test_named_layouts():
    shapes = {name: nnx.eval_shape(lambda n=name: nets.ResNet(1, layers=n, width=8,
                                                              rngs=nnx.Rngs(0)))
              for name in ("resnet18", "resnet34", "resnet50")}
    assert [len(shapes["resnet18"].stages[i]) for i in range(4)] == [2, 2, 2, 2]
    assert [len(shapes["resnet34"].stages[i]) for i in range(4)] == [3, 4, 6, 3]
    assert shapes["resnet50"].block == "bottleneck"
    assert [shapes[n].out_features for n in ("resnet18", "resnet34", "resnet50")] == [64, 64, 256]


def test_classifier_with_resnet_is_a_jitted_pipeline_stage():
    backbone = nets.ResNet(1, layers=(1, 1), width=4, norm="group", rngs=nnx.Rngs(0))
    model = nets.Classifier(backbone, nets.ClassifierHead(backbone.out_features,
                                                          task="multiclass", num_classes=3,
                                                          rngs=nnx.Rngs(1)))
    model.eval()
    pipe = pipeline.chain(nets.stage(model))
    sample = pipeline.Sample(image=jnp.asarray(image((20, 24), seed=6)))
    params = jax.jit(pipe.init)(jax.random.key(0), sample)
    out = jax.jit(pipe.apply)(params, sample)
    direct = jitted(model)(jnp.asarray(sample.image)[None, ..., None])[0]
    assert out.label.shape == (3,)
    np.testing.assert_allclose(out.label, direct, rtol=1e-5, atol=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"ResNet: layers must be one of .*resnet19"):
        nets.ResNet(1, layers="resnet19", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ResNet: layers must be a name"):
        nets.ResNet(1, layers=(2, 0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ResNet: block must be one of"):
        nets.ResNet(1, layers=(1,), block="dense", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="'bottleneck' blocks, got block='basic'"):
        nets.ResNet(1, layers="resnet50", block="basic", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ResNet: norm must be one of"):
        nets.ResNet(1, layers=(1,), norm="layer", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ResNet: ndim must be 1, 2 or 3"):
        nets.ResNet(1, layers=(1,), ndim=4, rngs=nnx.Rngs(0))
    model = nets.ResNet(1, layers=(1, 1), width=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"ResNet: x must be \(batch, \*spatial, 1\)"):
        model(jnp.ones((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="ResNet: every spatial size must be at least 8"):
        model(jnp.ones((1, 16, 7, 1)))
    with pytest.raises(TypeError, match="ResNet: x must be real floating point"):
        model(jnp.ones((1, 16, 16, 1), jnp.complex64))


def test_group_norm_of_single_values_is_refused():
    # One channel per group on a 1 x 1 map would normalise every feature to 0 (and every
    # gradient with it): a clear error instead.
    model = nets.ResNet(1, layers=(1, 1, 1, 1), width=4, norm="group", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="normalises single values to 0"):
        model(jnp.ones((1, 32, 32, 1)))
    features = model(jnp.asarray(np.random.default_rng(0).random((1, 64, 64, 1)), jnp.float32))
    assert features.shape == (1, 2, 2, 32) and float(jnp.abs(features).max()) > 0
