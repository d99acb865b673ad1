"""The PatchGAN discriminator against CycleGAN's ``NLayerDiscriminator`` written in PyTorch.

The oracle is the published architecture (pytorch-CycleGAN-and-pix2pix, ``networks.py``,
``norm_layer=InstanceNorm2d`` without affine parameters, so every convolution has a bias),
built here in a few lines of torch with the weights of the mskjax net; its biases in front of
instance norms are random, which the norm cancels. Tolerance: float32 round-off,
max |jax - torch| <= 1e-4 * max |torch|.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from mskjax import nets
from mskjax.nets._discriminator import conv_stride2

torch = pytest.importorskip("torch")

RTOL = 1e-4


def assert_close(out, ref, rtol=RTOL):
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape
    err = np.abs(out - ref).max()
    assert err <= rtol * np.abs(ref).max(), f"max abs diff {err}, max |ref| {np.abs(ref).max()}"


def torch_patchgan(model: nets.PatchDiscriminator):
    """CycleGAN's NLayerDiscriminator (instance norm) with the weights of ``model``."""
    nn = torch.nn
    kernels = [np.asarray(k[...]) for k in model.kernels]
    layers = []
    for i, kernel in enumerate(kernels):
        stride = 2 if i < model.num_layers else 1
        conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], 4, stride=stride, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1)).copy()))
            if i == 0:
                conv.bias.copy_(torch.from_numpy(np.asarray(model.first_bias[...])))
            elif i == len(kernels) - 1:
                conv.bias.copy_(torch.from_numpy(np.asarray(model.last_bias[...])))
            else:  # cancelled by the instance norm
                conv.bias.uniform_(-1.0, 1.0)
        layers.append(conv)
        if 0 < i < len(kernels) - 1:
            layers.append(nn.InstanceNorm2d(kernel.shape[3]))
        if i < len(kernels) - 1:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def to_torch(x):
    return torch.from_numpy(np.moveaxis(x, -1, 1).copy())


@pytest.mark.parametrize("shape,num_layers", [((2, 32, 32, 1), 3), ((1, 27, 34, 2), 2)])
def test_matches_cyclegan_nlayer_discriminator(shape, num_layers):
    torch.manual_seed(0)
    model = nets.PatchDiscriminator(shape[-1], chans=4, num_layers=num_layers,
                                    rngs=nnx.Rngs(1))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        ref = np.moveaxis(torch_patchgan(model)(to_torch(x)).numpy(), 1, -1)
    out = model(x)
    assert out.shape == (shape[0], *model.score_shape(shape[1:-1]), 1)
    assert_close(out, ref)


def test_input_gradient_matches_torch():
    torch.manual_seed(1)
    model = nets.PatchDiscriminator(1, chans=3, num_layers=2, rngs=nnx.Rngs(2))
    x = np.random.default_rng(1).standard_normal((1, 25, 30, 1)).astype(np.float32)
    out_shape = (1, *model.score_shape((25, 30)), 1)
    weights = np.random.default_rng(2).standard_normal(out_shape).astype(np.float32)
    graphdef, state = nnx.split(model)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(nnx.merge(graphdef, state)(v) * weights)))(x)
    xt = to_torch(x).requires_grad_(True)
    (torch_patchgan(model)(xt) * to_torch(weights)).sum().backward()
    assert_close(grad, np.moveaxis(xt.grad.numpy(), 1, -1))


@pytest.mark.parametrize("spatial", [(9,), (10,), (8, 11), (6, 7, 5)])
def test_stride2_convolution_matches_lax(spatial):
    """Space-to-depth + 2 x 2 convolution equals a strided 4 x 4 convolution (any rank, odd and
    even sizes), values and gradients."""
    ndim = len(spatial)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, *spatial, 3)).astype(np.float32)
    kernel = rng.standard_normal((*(4,) * ndim, 3, 5)).astype(np.float32)
    names = "DHW"[-ndim:]

    def ref(x, kernel):
        return lax.conv_general_dilated(x, kernel, (2,) * ndim, [(1, 1)] * ndim,
                                        dimension_numbers=(f"N{names}C", f"{names}IO",
                                                           f"N{names}C"))

    expected = ref(x, kernel)
    assert expected.shape[1:-1] == tuple(n // 2 for n in spatial)
    assert_close(conv_stride2(x, kernel), expected, rtol=1e-5)
    cot = rng.standard_normal(expected.shape).astype(np.float32)
    got = jax.grad(lambda a, b: jnp.sum(conv_stride2(a, b) * cot), argnums=(0, 1))(x, kernel)
    want = jax.grad(lambda a, b: jnp.sum(ref(a, b) * cot), argnums=(0, 1))(x, kernel)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-5)


def test_three_dimensional_scores_shape_and_patch_locality():
    """3D: the score map has the documented shape, and an output pixel of a stride-2 layer
    sees its own 4 x 4 x 4 window of the input only (the whole net cannot show locality: its
    instance norms mix every pixel)."""
    model = nets.PatchDiscriminator(2, chans=2, num_layers=1, rngs=nnx.Rngs(0), ndim=3)
    x = np.random.default_rng(4).standard_normal((1, 6, 7, 8, 2)).astype(np.float32)
    out = model(x)
    assert out.shape == (1, 1, 1, 2, 1)
    assert np.all(np.isfinite(np.asarray(out)))
    # The first layer alone: score (i, j) of the stride-2 convolution sees input rows
    # 2i - 1 .. 2i + 2 only.
    first = lambda v: conv_stride2(v, model.kernels[0][...])  # noqa: E731
    grad = jax.grad(lambda v: first(v)[0, 1, 1, 1, 0])(x)
    support = np.nonzero(np.abs(np.asarray(grad[0])).sum(-1))
    assert [(int(s.min()), int(s.max())) for s in support] == [(1, 4)] * 3


@pytest.mark.parametrize("num_layers,field", [(1, 16), (3, 70), (5, 286)])
def test_receptive_field_is_the_published_one(num_layers, field):
    """pix2pix's 16 x 16, 70 x 70 and 286 x 286 PatchGANs."""
    model = nets.PatchDiscriminator(1, chans=1, num_layers=num_layers, rngs=nnx.Rngs(0))
    assert model.receptive_field == field


def test_channels_double_up_to_eight_times():
    model = nets.PatchDiscriminator(1, chans=2, num_layers=5, rngs=nnx.Rngs(0))
    widths = [k[...].shape[-1] for k in model.kernels]
    assert widths == [2, 4, 8, 16, 16, 16, 1]


def test_bad_input():
    model = nets.PatchDiscriminator(1, chans=2, num_layers=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="PatchDiscriminator: x must be"):
        model(jnp.zeros((1, 32, 32, 2)))
    with pytest.raises(ValueError, match="at least 24"):
        model(jnp.zeros((1, 32, 23, 1)))
    with pytest.raises(TypeError, match="real floating point"):
        model(jnp.zeros((1, 32, 32, 1), jnp.complex64))
    with pytest.raises(ValueError, match="ndim must be 1, 2 or 3"):
        nets.PatchDiscriminator(1, rngs=nnx.Rngs(0), ndim=4)
    with pytest.raises(ValueError, match="num_layers"):
        nets.PatchDiscriminator(1, num_layers=0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs"):
        nets.PatchDiscriminator(1, rngs=0)
