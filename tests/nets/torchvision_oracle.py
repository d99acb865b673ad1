"""torchvision's ResNet and DenseNet as oracles: import, weights into the mskjax nets, runs.

torchvision is installed without dependencies (Makefile). The wheel that pip finds is a CUDA
build whose compiled operators (``nms``, ``roi_align``, ...) do not load beside PyTorch's CPU
build; ``torchvision._meta_registrations`` then fails on import. The models need none of those
operators, so :func:`import_torchvision` imports the package with that one module replaced by
an empty one when (and only when) the plain import fails.
"""

from __future__ import annotations

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")


def import_torchvision():
    """The torchvision module, or skip the test when it is not installed."""
    try:
        import torchvision
    except ModuleNotFoundError:
        pytest.skip("torchvision is not installed (make test installs it)")
    except RuntimeError:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stub = "torchvision._meta_registrations"
        sys.modules[stub] = types.ModuleType(stub)
        import torchvision
    return torchvision


def randomise_norms(model, seed: int = 0):
    """Random affine parameters and running statistics in every BatchNorm of a torch model
    (fresh ones are 1, 0, 0, 1: a copy that swapped scale and offset would still agree)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
                              torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
    return model


def copy_conv(param: nnx.Param, weight):
    """A torch ``(out, in, *window)`` kernel into an mskjax ``(*window, in, out)`` one."""
    w = weight.detach().numpy()
    w = np.transpose(w, (*range(2, w.ndim), 1, 0))
    assert param[...].shape == w.shape, (param[...].shape, w.shape)
    param[...] = jnp.asarray(w)


def copy_norm(ours, theirs):
    """A torch BatchNorm or GroupNorm into the flax one (scale, bias, running statistics)."""
    ours.scale[...] = jnp.asarray(theirs.weight.detach().numpy())
    ours.bias[...] = jnp.asarray(theirs.bias.detach().numpy())
    if isinstance(ours, nnx.BatchNorm):
        ours.mean[...] = jnp.asarray(theirs.running_mean.numpy())
        ours.var[...] = jnp.asarray(theirs.running_var.numpy())


def load_resnet(ours, theirs):
    """torchvision ResNet ``theirs`` -> mskjax ResNet ``ours`` (in place)."""
    copy_conv(ours.conv1, theirs.conv1.weight)
    copy_norm(ours.bn1, theirs.bn1)
    stages = [getattr(theirs, f"layer{i + 1}") for i in range(len(ours.stages))]
    for stage, their_stage in zip(ours.stages, stages, strict=True):
        for block, their_block in zip(stage, their_stage, strict=True):
            for n in ("1", "2", "3"):
                if hasattr(their_block, "conv" + n):
                    copy_conv(getattr(block, "conv" + n), getattr(their_block, "conv" + n).weight)
                    copy_norm(getattr(block, "bn" + n), getattr(their_block, "bn" + n))
            assert (their_block.downsample is None) == (block.downsample_conv is None)
            if their_block.downsample is not None:
                copy_conv(block.downsample_conv, their_block.downsample[0].weight)
                copy_norm(block.downsample_bn, their_block.downsample[1])
    return ours


def resnet_features(theirs, x):
    """torchvision ResNet's last feature map (before pooling)."""
    t = theirs
    x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
    return t.layer4(t.layer3(t.layer2(t.layer1(x))))


def load_densenet(ours, theirs):
    """torchvision DenseNet ``theirs`` -> mskjax DenseNet ``ours`` (in place)."""
    f = theirs.features
    copy_conv(ours.conv0, f.conv0.weight)
    copy_norm(ours.norm0, f.norm0)
    for i, block in enumerate(ours.blocks):
        their_block = getattr(f, f"denseblock{i + 1}")
        assert len(their_block) == len(block)
        for j, layer in enumerate(block):
            their = getattr(their_block, f"denselayer{j + 1}")
            copy_norm(layer.norm1, their.norm1)
            copy_conv(layer.conv1, their.conv1.weight)
            copy_norm(layer.norm2, their.norm2)
            copy_conv(layer.conv2, their.conv2.weight)
        if i < len(ours.transitions):
            their = getattr(f, f"transition{i + 1}")
            copy_norm(ours.transitions[i].norm, their.norm)
            copy_conv(ours.transitions[i].conv, their.conv.weight)
    copy_norm(ours.norm5, f.norm5)
    return ours


def densenet_features(theirs, x):
    """torchvision DenseNet's last feature map, ``relu(features(x))``."""
    return torch.relu(theirs.features(x))


def to_torch(x):
    """Channels-last numpy -> channels-first torch."""
    x = np.asarray(x)
    return torch.from_numpy(np.moveaxis(x, -1, 1).copy())


def from_torch(t):
    """Channels-first torch -> channels-last numpy."""
    return np.moveaxis(t.detach().numpy(), 1, -1)


def jitted(model):
    """``fn(x) -> model(x)`` compiled once, the model's state a closed-over argument."""
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    return lambda x: fn(state, jnp.asarray(x))


def assert_close(out, ref, rtol=1e-4):
    """``max |out - ref| <= rtol * max |ref|`` (float32 round-off through a deep net)."""
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    err = np.abs(out - ref).max()
    assert err <= rtol * np.abs(ref).max(), f"max abs diff {err}, max |ref| {np.abs(ref).max()}"
