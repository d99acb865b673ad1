"""DenseNet (Huang et al. 2017, DenseNet-BC) as a classifier backbone, in torchvision's layout.

Layout (``torchvision.models.densenet``; in 2D with ``norm="batch"`` the same arithmetic as
``densenet121`` and its siblings up to the last feature map, ``relu(features(x))``):

- stem: 7 x ... x 7 convolution with stride 2 and padding 3 (``in_chans`` ->
  ``num_init_features``), norm, ReLU, 3 x ... x 3 max pooling with stride 2 and padding 1;
- dense blocks ``i`` of ``block_config[i]`` layers; each layer takes the concatenation of the
  block's input and every earlier layer's output and adds ``growth_rate`` channels: norm,
  ReLU, 1 x 1 convolution to ``bn_size * growth_rate`` channels, norm, ReLU, 3 x 3
  convolution (padding 1) to ``growth_rate``;
- between blocks a transition: norm, ReLU, 1 x 1 convolution to ``floor(compression *
  channels)`` channels, 2 x ... x 2 average pooling with stride 2 (an odd trailing row is
  dropped, as in PyTorch);
- a final norm and ReLU; no pooling, no classifier. ``out_features`` is the channels after the
  last block: 1024 for DenseNet-121.

Named layouts (:data:`DENSENET_LAYOUTS`, ``name -> (growth_rate, block_config,
num_init_features)``): ``"densenet121"`` (32, (6, 12, 24, 16), 64), ``"densenet169"``,
``"densenet201"``, ``"densenet161"`` (48, (6, 12, 36, 24), 96) as torchvision; and
``"small"`` (12, (2, 4, 6), 24): three blocks, 12 layers, 108 output features, 100 000
weights against DenseNet-121's 7 million (a 64 x 64 image gives a 4 x 4 feature map).

Every convolution is without bias. The input must be at least ``2 ** (len(block_config) +
1)`` pixels along every axis (32 for four blocks). Weights are initialised as torchvision
initialises them: convolutions Kaiming-normal in fan-in mode (``std = sqrt(2 / (in *
window))``), norms scale 1 and offset 0. ``norm`` is batch, instance or group normalisation
(:mod:`mskjax.nets._norm` states the trade-off). Attribute names follow torchvision's state
dict (``conv0``, ``norm0``, ``blocks[i][j].norm1`` / ``conv1`` / ``norm2`` / ``conv2``,
``transitions[i].norm`` / ``conv``, ``norm5``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_interval, check_positive_int
from ._blocks import avg_pool
from ._conv import conv
from ._downsample import check_backbone_input, conv_strided, max_pool, out_size
from ._norm import check_norm, make_norm
from ._resnet import conv_kernel

#: Named layouts: ``name -> (growth_rate, block_config, num_init_features)``.
DENSENET_LAYOUTS = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
    "small": (12, (2, 4, 6), 24),
}

_FUNC = "mskjax.nets.DenseNet"


class _DenseLayer(nnx.Module):
    """norm, ReLU, 1 x 1 conv, norm, ReLU, 3 x 3 conv: ``in_chans`` -> ``growth_rate``."""

    def __init__(self, in_chans: int, *, growth_rate: int, bn_size: int, ndim: int, norm: str,
                 rngs: nnx.Rngs):
        inner = bn_size * growth_rate
        self.norm1 = make_norm(norm, in_chans, rngs=rngs)
        self.conv1 = conv_kernel(rngs, 1, in_chans, inner, ndim, fan="in")
        self.norm2 = make_norm(norm, inner, rngs=rngs)
        self.conv2 = conv_kernel(rngs, 3, inner, growth_rate, ndim, fan="in")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = conv(jax.nn.relu(self.norm1(x)), self.conv1[...], padding=0)
        return conv(jax.nn.relu(self.norm2(x)), self.conv2[...], padding=1)


class _Transition(nnx.Module):
    """norm, ReLU, 1 x 1 conv, 2 x ... x 2 average pooling."""

    def __init__(self, in_chans: int, out_chans: int, *, ndim: int, norm: str,
                 rngs: nnx.Rngs):
        self.norm = make_norm(norm, in_chans, rngs=rngs)
        self.conv = conv_kernel(rngs, 1, in_chans, out_chans, ndim, fan="in")

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(conv(jax.nn.relu(self.norm(x)), self.conv[...], padding=0))


def _layout(block_config, growth_rate, num_init_features, func):
    """``(growth_rate, block_config, num_init_features)`` from the arguments."""
    if isinstance(block_config, str):
        if block_config not in DENSENET_LAYOUTS:
            raise ValueError(f"{func}: block_config must be one of {sorted(DENSENET_LAYOUTS)} "
                             f"or a tuple of layers per block, got {block_config!r}")
        growth, blocks, init = DENSENET_LAYOUTS[block_config]
    else:
        if (not isinstance(block_config, (tuple, list)) or not block_config
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                           for n in block_config)):
            raise ValueError(f"{func}: block_config must be a name ({sorted(DENSENET_LAYOUTS)})"
                             f" or a non-empty tuple of positive layer counts, got "
                             f"{block_config!r}")
        growth, blocks, init = 32, tuple(block_config), 64
    growth = growth if growth_rate is None else growth_rate
    init = init if num_init_features is None else num_init_features
    check_positive_int(growth, "growth_rate", func)
    check_positive_int(init, "num_init_features", func)
    return growth, blocks, init


class DenseNet(nnx.Module):
    """DenseNet-BC backbone (torchvision's layout, module docstring): images -> last feature
    map.

    Args:
        in_chans: input channels.
        growth_rate: channels each dense layer adds (keyword-only); ``None`` takes the named
            layout's (32 for DenseNet-121 and for a tuple ``block_config``, 12 for
            ``"small"``).
        block_config: layers per dense block, a tuple, or a name of
            :data:`DENSENET_LAYOUTS` (``"densenet121"``, ``"densenet169"``, ``"densenet201"``,
            ``"densenet161"``, ``"small"``).
        num_init_features: channels of the stem; ``None`` takes the named layout's (64 for
            DenseNet-121 and for a tuple, 24 for ``"small"``).
        bn_size: the bottleneck's width in units of ``growth_rate`` (4).
        compression: the fraction of channels a transition keeps, in ``(0, 1]`` (0.5).
        ndim: spatial axes, 1, 2 or 3.
        norm: ``"batch"`` (the paper's), ``"instance"`` or ``"group"``.
        rngs: ``nnx.Rngs`` (``params`` stream).

    Attributes: ``ndim``, ``in_chans``, ``out_features`` (the backbone contract of
    :class:`mskjax.nets.Classifier`), ``growth_rate``, ``block_config``,
    ``num_init_features``, ``bn_size``, ``compression``, ``norm``, ``downsamplings``
    (``len(block_config) + 1``).

    Call: ``(batch, *spatial, in_chans)`` float -> ``(batch, *feature_shape(spatial),
    out_features)``, non-negative (after the final ReLU); every spatial size at least
    ``2 ** downsamplings``.
    """

    def __init__(self, in_chans: int, *, growth_rate: int | None = None,
                 block_config=(6, 12, 24, 16), num_init_features: int | None = None,
                 bn_size: int = 4, compression: float = 0.5, ndim: int = 2,
                 norm: str = "batch", rngs: nnx.Rngs):
        func = _FUNC
        check_positive_int(in_chans, "in_chans", func)
        growth_rate, block_config, num_init_features = _layout(
            block_config, growth_rate, num_init_features, func)
        check_positive_int(bn_size, "bn_size", func)
        check_interval(compression, "compression", func, low=0.0, high=1.0, high_open=False)
        check_positive_int(ndim, "ndim", func)
        if ndim > 3:
            raise ValueError(f"{func}: ndim must be 1, 2 or 3, got {ndim}")
        check_norm(norm, func)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.ndim, self.norm = in_chans, ndim, norm
        self.growth_rate, self.block_config = growth_rate, block_config
        self.num_init_features, self.bn_size = num_init_features, bn_size
        self.compression = float(compression)
        self.downsamplings = len(block_config) + 1
        self.conv0 = conv_kernel(rngs, 7, in_chans, num_init_features, ndim, fan="in")
        self.norm0 = make_norm(norm, num_init_features, rngs=rngs)
        blocks, transitions, chans = [], [], num_init_features
        for i, count in enumerate(block_config):
            layers = []
            for _ in range(count):
                layers.append(_DenseLayer(chans, growth_rate=growth_rate, bn_size=bn_size,
                                          ndim=ndim, norm=norm, rngs=rngs))
                chans += growth_rate
            blocks.append(nnx.List(layers))
            if i < len(block_config) - 1:
                kept = math.floor(chans * self.compression)
                if kept < 1:
                    raise ValueError(f"{func}: compression={compression} leaves no channels "
                                     f"of {chans} after block {i}")
                transitions.append(_Transition(chans, kept, ndim=ndim, norm=norm, rngs=rngs))
                chans = kept
        self.blocks, self.transitions = nnx.List(blocks), nnx.List(transitions)
        self.norm5 = make_norm(norm, chans, rngs=rngs)
        self.out_features = chans

    def feature_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape of the feature map for an input of spatial shape ``spatial``."""
        out = []
        for n in spatial:
            n = out_size(out_size(n, 7, 2, 3), 3, 2, 1)
            for _ in self.block_config[1:]:
                n //= 2
            out.append(n)
        return tuple(out)

    def __call__(self, x: jax.Array) -> jax.Array:
        check_backbone_input(x, func=_FUNC, ndim=self.ndim, in_chans=self.in_chans,
                             downsamplings=self.downsamplings)
        x = jax.nn.relu(self.norm0(conv_strided(x, self.conv0[...], stride=2, padding=3)))
        x = max_pool(x)
        for i, block in enumerate(self.blocks):
            features = [x]
            for layer in block:
                features.append(layer(jnp.concatenate(features, axis=-1)))
            x = jnp.concatenate(features, axis=-1)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return jax.nn.relu(self.norm5(x))
