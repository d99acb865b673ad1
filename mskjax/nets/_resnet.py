"""ResNet (He et al. 2016) as a classifier backbone, in torchvision's layout, 1 to 3 spatial axes.

Layout (``torchvision.models.resnet``; in 2D, ``width=64``, ``norm="batch"``, the same
arithmetic as ``resnet18``, ``resnet34``, ``resnet50``, ... up to the last feature map):

- stem: 7 x ... x 7 convolution with stride 2 and 3 zeros of padding (``in_chans`` ->
  ``width``), norm, ReLU, 3 x ... x 3 max pooling with stride 2 and padding 1;
- stages ``i = 0 .. len(layers) - 1`` of ``layers[i]`` residual blocks with ``width * 2**i``
  planes, the first block of every stage but the first with stride 2:

  - ``"basic"`` (ResNet-18/34): 3 x 3 conv (stride), norm, ReLU, 3 x 3 conv, norm; output
    ``planes`` channels;
  - ``"bottleneck"`` (ResNet-50 and deeper, torchvision's "v1.5", stride in the 3 x 3
    convolution): 1 x 1 conv, norm, ReLU, 3 x 3 conv (stride), norm, ReLU, 1 x 1 conv to
    ``4 * planes``, norm;

  the shortcut is the identity, or a 1 x 1 convolution with the block's stride and a norm
  where the stride or the channels change; the block ends with ReLU of the sum;
- no pooling and no fully connected layer: the output is the last feature map, ``(batch,
  *spatial / 32, out_features)`` with ``out_features = width * 2**(len(layers) - 1)`` (times 4
  for bottlenecks): 512 for ResNet-18/34, 2048 for ResNet-50 at ``width=64``.

Every convolution is without bias; each stride-2 step maps ``n`` pixels to ``ceil(n / 2)``
as in PyTorch (:mod:`mskjax.nets._downsample`). The input must be at least ``2 ** (len(layers)
+ 1)`` pixels (32 for four stages) along every axis. Weights are initialised as torchvision
initialises them: convolutions Kaiming-normal in fan-out mode (``std = sqrt(2 / (out *
window))``), norms scale 1 and offset 0. ``norm`` is batch, instance or group normalisation
(:mod:`mskjax.nets._norm` states the trade-off). Attribute names follow torchvision's state
dict (``conv1``, ``bn1``, ``stages[i][j].conv1``, ``.downsample_conv``, ``.downsample_bn``),
so that copying a torchvision model's weights is a rename (OIHW -> HWIO for kernels).
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from .._checks import check_positive_int
from ._blocks import normal_init
from ._conv import conv
from ._downsample import check_backbone_input, conv_strided, max_pool, out_size
from ._norm import check_norm, make_norm

#: Named layouts: ``name -> (block, layers)``.
RESNET_LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}

#: Residual block kinds and their channel expansion.
RESNET_BLOCKS = {"basic": 1, "bottleneck": 4}

_FUNC = "mskjax.nets.ResNet"


def conv_kernel(rngs: nnx.Rngs, window: int, cin: int, cout: int, ndim: int, *,
                fan: str = "out") -> nnx.Param:
    """A ``(*(window,) * ndim, cin, cout)`` kernel, Kaiming-normal for ReLU nets: ``std =
    sqrt(2 / fan)`` with ``fan = cout * window**ndim`` (``"out"``) or ``cin * window**ndim``
    (``"in"``)."""
    taps = window ** ndim
    std = math.sqrt(2.0 / ((cout if fan == "out" else cin) * taps))
    return nnx.Param(normal_init(rngs.params(), (window,) * ndim + (cin, cout), std))


class _Block(nnx.Module):
    """One residual block, ``"basic"`` or ``"bottleneck"`` (module docstring)."""

    def __init__(self, in_chans: int, planes: int, *, kind: str, stride: int, ndim: int,
                 norm: str, rngs: nnx.Rngs):
        self.kind, self.stride = kind, stride
        out_chans = planes * RESNET_BLOCKS[kind]
        if kind == "basic":
            self.conv1 = conv_kernel(rngs, 3, in_chans, planes, ndim)
            self.bn1 = make_norm(norm, planes, rngs=rngs)
            self.conv2 = conv_kernel(rngs, 3, planes, planes, ndim)
            self.bn2 = make_norm(norm, planes, rngs=rngs)
        else:
            self.conv1 = conv_kernel(rngs, 1, in_chans, planes, ndim)
            self.bn1 = make_norm(norm, planes, rngs=rngs)
            self.conv2 = conv_kernel(rngs, 3, planes, planes, ndim)
            self.bn2 = make_norm(norm, planes, rngs=rngs)
            self.conv3 = conv_kernel(rngs, 1, planes, out_chans, ndim)
            self.bn3 = make_norm(norm, out_chans, rngs=rngs)
        if stride != 1 or in_chans != out_chans:
            self.downsample_conv = conv_kernel(rngs, 1, in_chans, out_chans, ndim)
            self.downsample_bn = make_norm(norm, out_chans, rngs=rngs)
        else:
            self.downsample_conv = self.downsample_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        relu = jax.nn.relu
        if self.kind == "basic":
            out = relu(self.bn1(conv_strided(x, self.conv1[...], stride=self.stride,
                                             padding=1)))
            out = self.bn2(conv(out, self.conv2[...], padding=1))
        else:
            out = relu(self.bn1(conv(x, self.conv1[...], padding=0)))
            out = relu(self.bn2(conv_strided(out, self.conv2[...], stride=self.stride,
                                             padding=1)))
            out = self.bn3(conv(out, self.conv3[...], padding=0))
        if self.downsample_conv is None:
            shortcut = x
        else:
            shortcut = self.downsample_bn(conv_strided(x, self.downsample_conv[...],
                                                       stride=self.stride, padding=0))
        return relu(out + shortcut)


def _layout(layers, block, func):
    """``(block, layers)`` from the ``layers`` and ``block`` arguments."""
    if isinstance(layers, str):
        if layers not in RESNET_LAYOUTS:
            raise ValueError(f"{func}: layers must be one of {sorted(RESNET_LAYOUTS)} or a "
                             f"tuple of blocks per stage, got {layers!r}")
        named_block, layers = RESNET_LAYOUTS[layers]
        if block not in (None, named_block):
            raise ValueError(f"{func}: the named layout has {named_block!r} blocks, got "
                             f"block={block!r}")
        return named_block, layers
    if (not isinstance(layers, (tuple, list)) or not layers
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                       for n in layers)):
        raise ValueError(f"{func}: layers must be a name ({sorted(RESNET_LAYOUTS)}) or a "
                         f"non-empty tuple of positive block counts, got {layers!r}")
    block = "basic" if block is None else block
    if block not in RESNET_BLOCKS:
        raise ValueError(f"{func}: block must be one of {tuple(RESNET_BLOCKS)}, got {block!r}")
    return block, tuple(layers)


class ResNet(nnx.Module):
    """ResNet backbone (torchvision's layout, module docstring): images -> last feature map.

    Args:
        in_chans: input channels (1 for a magnitude image, 2 for a complex one, 3 for RGB).
        layers: blocks per stage, a tuple such as ``(2, 2, 2, 2)`` (keyword-only), or a name:
            ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``, ``"resnet152"``
            (:data:`RESNET_LAYOUTS`).
        block: ``"basic"`` or ``"bottleneck"``; ``None`` takes the named layout's, or
            ``"basic"`` for a tuple.
        width: channels of the stem and the first stage (64 in the paper; 16 makes a net of
            1/16 of the weights for small data sets and CPUs).
        ndim: spatial axes, 1, 2 or 3 (3: a 3D ResNet with 7 x 7 x 7 stem).
        norm: ``"batch"`` (the paper's), ``"instance"`` or ``"group"``.
        rngs: ``nnx.Rngs`` (``params`` stream).

    Attributes: ``ndim``, ``in_chans``, ``out_features`` (the backbone contract of
    :class:`mskjax.nets.Classifier`), ``block``, ``layers``, ``width``, ``norm``,
    ``downsamplings`` (stride-2 steps, ``len(layers) + 1``).

    Call: ``(batch, *spatial, in_chans)`` float -> ``(batch, *feature_shape(spatial),
    out_features)``; every spatial size at least ``2 ** downsamplings``.
    """

    def __init__(self, in_chans: int, *, layers=(2, 2, 2, 2), block: str | None = None,
                 width: int = 64, ndim: int = 2, norm: str = "batch", rngs: nnx.Rngs):
        func = _FUNC
        check_positive_int(in_chans, "in_chans", func)
        check_positive_int(width, "width", func)
        check_positive_int(ndim, "ndim", func)
        if ndim > 3:
            raise ValueError(f"{func}: ndim must be 1, 2 or 3, got {ndim}")
        check_norm(norm, func)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        block, layers = _layout(layers, block, func)
        self.in_chans, self.ndim, self.width, self.norm = in_chans, ndim, width, norm
        self.block, self.layers = block, layers
        self.downsamplings = len(layers) + 1
        self.conv1 = conv_kernel(rngs, 7, in_chans, width, ndim)
        self.bn1 = make_norm(norm, width, rngs=rngs)
        stages, chans = [], width
        for i, count in enumerate(layers):
            planes = width * 2 ** i
            blocks = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(_Block(chans, planes, kind=block, stride=stride, ndim=ndim,
                                     norm=norm, rngs=rngs))
                chans = planes * RESNET_BLOCKS[block]
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.out_features = chans

    def feature_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape of the feature map for an input of spatial shape ``spatial``."""
        out = []
        for n in spatial:
            n = out_size(out_size(n, 7, 2, 3), 3, 2, 1)
            for _ in self.layers[1:]:
                n = out_size(n, 3, 2, 1)
            out.append(n)
        return tuple(out)

    def __call__(self, x: jax.Array) -> jax.Array:
        check_backbone_input(x, func=_FUNC, ndim=self.ndim, in_chans=self.in_chans,
                             downsamplings=self.downsamplings)
        x = jax.nn.relu(self.bn1(conv_strided(x, self.conv1[...], stride=2, padding=3)))
        x = max_pool(x)
        for stage in self.stages:
            for blk in stage:
                x = blk(x)
        return x
