"""DenseNet against torchvision's (weights copied: OIHW -> HWIO, BatchNorm scale, offset and
running statistics): the last feature map ``relu(features(x))`` of DenseNet-121 and of the small
layout (torchvision's ``DenseNet`` class with the same sizes) in evaluation and training mode,
gradients; shapes in 1 to 3 spatial axes; bad input. Tolerance: float32 round-off through the
net, ``max |jax - torch| <= 1e-4 * max |torch|``."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets
from mskjax.nets._densenet import DENSENET_LAYOUTS
from tests.nets.torchvision_oracle import (assert_close, densenet_features, from_torch,
                                           import_torchvision, jitted, load_densenet,
                                           randomise_norms, to_torch, torch)


def image(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_densenet(growth_rate, block_config, num_init_features, bn_size=4, seed=0):
    tv = import_torchvision()
    torch.manual_seed(seed)
    model = tv.models.densenet.DenseNet(growth_rate=growth_rate, block_config=block_config,
                                        num_init_features=num_init_features, bn_size=bn_size,
                                        num_classes=3)
    return randomise_norms(model, seed)


@pytest.mark.slow
def test_densenet121_equals_torchvision_in_evaluation_mode():
    tv = import_torchvision()
    torch.manual_seed(0)
    theirs = randomise_norms(tv.models.densenet121(num_classes=4)).eval()
    ours = load_densenet(nets.DenseNet(3, block_config="densenet121", rngs=nnx.Rngs(0)),
                         theirs)
    ours.eval()
    x = image((1, 64, 64, 3))
    with torch.no_grad():
        ref = from_torch(densenet_features(theirs, to_torch(x)))
    out = jitted(ours)(x)
    assert out.shape == (1, 2, 2, 1024) == (1, *ours.feature_shape((64, 64)), ours.out_features)
    assert_close(out, ref)


def test_small_layout_equals_torchvision_in_evaluation_mode():
    theirs = torch_densenet(12, (2, 4, 6), 24, seed=1).eval()
    ours = load_densenet(nets.DenseNet(3, block_config="small", rngs=nnx.Rngs(0)), theirs)
    assert (ours.growth_rate, ours.block_config, ours.num_init_features) == (12, (2, 4, 6), 24)
    assert ours.out_features == theirs.classifier.in_features == 108
    x = image((2, 37, 45, 3), seed=1)
    with torch.no_grad():
        ref = from_torch(densenet_features(theirs, to_torch(x)))
    ours.eval()
    assert_close(jitted(ours)(x), ref)


def test_training_mode_and_gradients_equal_torchvision():
    theirs = torch_densenet(4, (2, 1), 8, bn_size=2, seed=2).train()
    ours = nets.DenseNet(3, growth_rate=4, block_config=(2, 1), num_init_features=8, bn_size=2,
                         rngs=nnx.Rngs(0))
    load_densenet(ours, theirs)
    x = image((2, 21, 18, 3), seed=2)
    tx = to_torch(x).requires_grad_(True)
    ref = densenet_features(theirs, tx)
    weights = image(ref.shape, seed=3)
    (ref * torch.from_numpy(weights)).sum().backward()

    def loss(model, x):
        out = model(x)
        return jnp.sum(out * jnp.moveaxis(weights, 1, -1)), out

    (_, out), (grads, gx) = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        ours, jnp.asarray(x))  # training mode: batch statistics
    assert_close(out, from_torch(ref))
    assert_close(gx, from_torch(tx.grad))
    np.testing.assert_allclose(ours.blocks[0][1].norm2.mean[...],
                               theirs.features.denseblock1.denselayer2.norm2.running_mean.numpy(),
                               rtol=1e-4, atol=1e-5)
    graphdef, _, rest = nnx.split(ours, nnx.Param, ...)
    grads = nnx.merge(graphdef, grads, rest)
    for ours_kernel, their_conv in [
            (grads.conv0, theirs.features.conv0),
            (grads.blocks[0][1].conv2, theirs.features.denseblock1.denselayer2.conv2),
            (grads.transitions[0].conv, theirs.features.transition1.conv)]:
        assert_close(ours_kernel[...], np.transpose(their_conv.weight.grad.numpy(), (2, 3, 1, 0)))
    assert_close(grads.norm5.scale[...], theirs.features.norm5.weight.grad.numpy())


@pytest.mark.parametrize("ndim,spatial", [(1, (41,)), (2, (33, 18)), (3, (16, 17, 20))])
def test_shapes_in_every_rank(ndim, spatial):
    model = nets.DenseNet(2, growth_rate=4, block_config=(2, 3), num_init_features=8,
                          compression=0.75, ndim=ndim, norm="instance", rngs=nnx.Rngs(0))
    assert model.downsamplings == 3
    # 8 + 2 * 4 = 16 -> floor(0.75 * 16) = 12 after the transition -> 12 + 3 * 4 = 24
    assert model.transitions[0].conv[...].shape == (1,) * ndim + (16, 12)
    assert model.out_features == 24
    out = jitted(model)(image((2, *spatial, 2)))
    # stem and max pooling: ceil(n / 2) each; the transition's average pooling: floor(n / 2)
    expected = tuple(math.ceil(math.ceil(n / 2) / 2) // 2 for n in spatial)
    assert out.shape == (2, *expected, 24)
    assert model.feature_shape(spatial) == expected
    assert bool(jnp.all(out >= 0))


def test_named_layouts_and_overrides():
    assert DENSENET_LAYOUTS["densenet121"] == (32, (6, 12, 24, 16), 64)
    # DenseNet-121's blocks with growth 2 from 4 features: 4 + 12 = 16 -> 8 + 24 = 32 -> 16
    # + 48 = 64 -> 32 + 32 = 64
    model = nets.DenseNet(1, block_config="densenet121", growth_rate=2, num_init_features=4,
                          norm="group", rngs=nnx.Rngs(0))
    assert [len(b) for b in model.blocks] == [6, 12, 24, 16]
    assert (model.growth_rate, model.num_init_features, model.out_features) == (2, 4, 64)
    assert model.norm5.num_groups == 32
    default = nets.DenseNet(1, block_config=(1,), rngs=nnx.Rngs(0))  # a tuple: growth 32, 64
    assert default.out_features == 96 and isinstance(default.norm5, nnx.BatchNorm)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"DenseNet: block_config must be one of .*'tiny'"):
        nets.DenseNet(1, block_config="tiny", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="DenseNet: block_config must be a name"):
        nets.DenseNet(1, block_config=(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="DenseNet: compression must be in"):
        nets.DenseNet(1, block_config="small", compression=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="DenseNet: growth_rate"):
        nets.DenseNet(1, block_config="small", growth_rate=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="DenseNet: norm must be one of"):
        nets.DenseNet(1, block_config="small", norm="batchnorm", rngs=nnx.Rngs(0))
    model = nets.DenseNet(1, block_config="small", norm="group", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"DenseNet: x must be \(batch, \*spatial, 1\)"):
        model(jnp.ones((1, 32, 32)))
    with pytest.raises(ValueError, match="DenseNet: every spatial size must be at least 16"):
        model(jnp.ones((1, 15, 64, 1)))
