"""CNN3D against the same layout written with ``torch.nn`` (Conv3d without bias, BatchNorm3d,
ReLU; stride 2 in the first convolution of every level after the first), weights copied:
evaluation and training mode, gradients; shapes; bad input."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets
from tests.nets.torchvision_oracle import (assert_close, copy_conv, copy_norm, from_torch,
                                           jitted, randomise_norms, to_torch, torch)

nn = torch.nn
CHANS = (4, 6, 8)


def torch_cnn3d(in_chans, chans, seed=0):
    torch.manual_seed(seed)
    layers, cin = [], in_chans
    for level, c in enumerate(chans):
        for i in range(2):
            stride = 2 if level > 0 and i == 0 else 1
            layers += [nn.Conv3d(cin, c, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm3d(c), nn.ReLU()]
            cin = c
    return randomise_norms(nn.Sequential(*layers), seed)


def load(ours, theirs):
    convs = [m for m in theirs if isinstance(m, nn.Conv3d)]
    norms = [m for m in theirs if isinstance(m, nn.BatchNorm3d)]
    for kernel, norm, conv, bn in zip(ours.kernels, ours.norms, convs, norms, strict=True):
        copy_conv(kernel, conv.weight)
        copy_norm(norm, bn)
    return ours


def volume(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_equals_torch_in_both_modes_with_gradients():
    theirs = torch_cnn3d(2, CHANS)
    ours = load(nets.CNN3D(2, chans=CHANS, rngs=nnx.Rngs(0)), theirs)
    assert (ours.ndim, ours.in_chans, ours.out_features, ours.downsamplings) == (3, 2, 8, 2)
    x = volume((2, 9, 12, 7, 2))
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        ref = from_torch(theirs(to_torch(x)))
    out = jitted(ours)(x)
    assert out.shape == (2, 3, 3, 2, 8) == (2, *ours.feature_shape((9, 12, 7)), 8)
    assert_close(out, ref)
    theirs.train()
    ours.train()
    tx = to_torch(x).requires_grad_(True)
    ref = theirs(tx)
    weights = volume(ref.shape, seed=1)
    (ref * torch.from_numpy(weights)).sum().backward()

    def loss(model, x):
        out = model(x)
        return jnp.sum(out * jnp.moveaxis(weights, 1, -1)), out

    (_, out), (grads, gx) = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        ours, jnp.asarray(x))
    assert_close(out, from_torch(ref))
    assert_close(gx, from_torch(tx.grad))
    graphdef, _, rest = nnx.split(ours, nnx.Param, ...)
    grads = nnx.merge(graphdef, grads, rest)
    convs = [m for m in theirs if isinstance(m, nn.Conv3d)]
    for i in (0, 2, 5):  # the first, a strided one, the last
        assert_close(grads.kernels[i][...],
                     np.transpose(convs[i].weight.grad.numpy(), (2, 3, 4, 1, 0)))


def test_norm_variants_and_sizes():
    model = nets.CNN3D(1, chans=[2, 4, 4, 4], norm="group", rngs=nnx.Rngs(1))
    assert model.chans == (2, 4, 4, 4) and model.downsamplings == 3
    x = volume((2, 8, 17, 9, 1))
    out = jitted(model)(x)
    assert out.shape == (2, 1, 3, 2, 4) == (2, *model.feature_shape((8, 17, 9)), 4)
    assert_close(jitted(model)(x[:1]), out[:1], rtol=1e-5)  # no batch statistics


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="CNN3D: chans must be a non-empty sequence"):
        nets.CNN3D(1, chans=(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="CNN3D: chans must be a non-empty sequence"):
        nets.CNN3D(1, chans=(4, 0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="CNN3D: norm must be one of"):
        nets.CNN3D(1, norm=None, rngs=nnx.Rngs(0))
    model = nets.CNN3D(1, chans=(2, 2, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"CNN3D: x must be \(batch, \*spatial, 1\) with 3"):
        model(jnp.ones((1, 16, 16, 1)))
    with pytest.raises(ValueError, match="CNN3D: every spatial size must be at least 4"):
        model(jnp.ones((1, 16, 3, 16, 1)))
