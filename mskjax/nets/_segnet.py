"""SegNet (Badrinarayanan, Kendall and Cipolla 2017): an encoder-decoder that upsamples by
unpooling with the encoder's max-pooling indices, for 1 to 3 spatial axes.

Encoder: ``num_pool_layers`` levels of a :class:`ConvBlock` (the U-Net's block: two 3 x ... x 3
convolutions, instance norm, LeakyReLU) followed by 2 x ... x 2 max pooling that records where
in each window the maximum was (:func:`max_pool_with_indices`). Channels double at every level
from ``chans``. Decoder, in reverse: unpooling (:func:`max_unpool`: each value goes back to the
position its maximum came from, zeros elsewhere), then a :class:`ConvBlock` down to the
channels of the level above (``chans`` at the top). A 1 x ... x 1 convolution with bias maps
``chans`` to the class logits. Unlike the U-Net there are no skip connections: the pooling
indices are all the decoder gets from the encoder, which is SegNet's point (memory).

Odd sizes: pooling drops an odd trailing row (column, slice) as ``torch.nn.MaxPool2d(2)``
does (``n -> n // 2``), and unpooling restores the size before pooling, the dropped row filled
with zeros (as ``torch.nn.MaxUnpool2d(2)`` with ``output_size``); the decoder's convolutions
fill it in. Any size works, as long as each level keeps at least one voxel
(``min(spatial) >= 2 ** num_pool_layers``).

Arrays are ``(batch, *spatial, channels)`` float32. Indices are int8 offsets in the window,
row-major (``0 .. 2 ** ndim - 1``; in 2D ``2 * row + column``); :func:`max_pool_with_indices`
and :func:`max_unpool` are differentiable (the gradient of the pooled value flows to the
maximum) and jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_interval, check_positive_int
from ._blocks import ConvBlock, uniform_init
from ._conv import conv
from ._segmentation import segment_sample


def _windows(x, func):
    """``(batch, *spatial, C)`` -> ``(batch, *spatial // 2, C, 2 ** ndim)`` (trailing odd rows
    dropped), the window's entries in row-major order on the last axis."""
    if x.ndim < 3 or x.ndim > 5:
        raise ValueError(f"{func}: x must be (batch, *spatial, channels) with 1 to 3 spatial "
                         f"axes, got shape {tuple(x.shape)}")
    spatial = x.shape[1:-1]
    if min(spatial) < 2:
        raise ValueError(f"{func}: every spatial size must be at least 2, got {tuple(spatial)}")
    ndim = len(spatial)
    x = x[(slice(None),) + tuple(slice(0, 2 * (n // 2)) for n in spatial)]
    shape = [x.shape[0]]
    for n in spatial:
        shape += [n // 2, 2]
    x = x.reshape(*shape, x.shape[-1])
    # (b, n1, 2, n2, 2, ..., C) -> (b, n1, n2, ..., C, 2, 2, ...)
    coarse = [1 + 2 * a for a in range(ndim)]
    fine = [2 + 2 * a for a in range(ndim)]
    x = x.transpose(0, *coarse, 1 + 2 * ndim, *fine)
    return x.reshape(*x.shape[:ndim + 2], 2 ** ndim)


def max_pool_with_indices(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """2 x ... x 2 max pooling that also returns where each maximum was.

    Args:
        x: ``(batch, *spatial, channels)``, 1 to 3 spatial axes, each at least 2.

    Returns:
        ``(pooled, indices)``, both ``(batch, *(spatial // 2), channels)``: the maxima, and
        int8 offsets of the maxima within their windows, row-major (in 2D ``2 * row +
        column``); the first maximum where several tie (and the first NaN, as numpy's argmax).
        An odd trailing row is dropped, as ``torch.nn.MaxPool2d(2)`` does.
    """
    windows = _windows(x, "mskjax.nets.max_pool_with_indices")
    indices = jnp.argmax(windows, axis=-1)
    pooled = jnp.take_along_axis(windows, indices[..., None], axis=-1)[..., 0]
    return pooled, indices.astype(jnp.int8)


def max_unpool(x: jax.Array, indices: jax.Array, *, spatial: tuple[int, ...]) -> jax.Array:
    """Undo :func:`max_pool_with_indices`: each value back where its maximum was, zeros
    elsewhere.

    Args:
        x: ``(batch, *coarse, channels)`` values to place.
        indices: the offsets returned by :func:`max_pool_with_indices`, the shape of ``x``.
        spatial: the spatial shape before pooling (keyword-only); each coarse size must be
            ``spatial // 2``. An odd trailing row is filled with zeros.

    Returns:
        ``(batch, *spatial, channels)``, the dtype of ``x``. Linear in ``x``, so its gradient
        is the pooled gradient taken back at the recorded positions.
    """
    func = "mskjax.nets.max_unpool"
    spatial = tuple(int(n) for n in spatial)
    ndim = len(spatial)
    if x.ndim != ndim + 2 or tuple(x.shape[1:-1]) != tuple(n // 2 for n in spatial):
        raise ValueError(f"{func}: x must be (batch, *(spatial // 2), channels) for spatial "
                         f"{spatial}, got shape {tuple(x.shape)}")
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{func}: indices must have the shape of x {tuple(x.shape)}, got "
                         f"{tuple(indices.shape)}")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"{func}: indices must be integers, got {indices.dtype}")
    placed = jax.nn.one_hot(indices, 2 ** ndim, dtype=x.dtype) * x[..., None]
    batch, coarse, channels = x.shape[0], x.shape[1:-1], x.shape[-1]
    placed = placed.reshape(batch, *coarse, channels, *(2,) * ndim)
    # (b, n1, n2, ..., C, 2, 2, ...) -> (b, n1, 2, n2, 2, ..., C)
    order = [0]
    for a in range(ndim):
        order += [1 + a, 2 + ndim + a]
    placed = placed.transpose(*order, 1 + ndim)
    placed = placed.reshape(batch, *(2 * n for n in coarse), channels)
    widths = [(0, 0)] + [(0, n - 2 * (n // 2)) for n in spatial] + [(0, 0)]
    return jnp.pad(placed, widths)


class SegNet(nnx.Module):
    """SegNet: encoder with max-pooling indices, decoder that unpools with them, class logits.

    Args:
        in_chans: input channels.
        num_classes: output channels (class logits; background included).
        chans: channels of the first level (keyword-only); doubled at each level down.
        num_pool_layers: levels of pooling and unpooling.
        drop_prob: channel dropout probability of the blocks, in ``[0, 1)``.
        ndim: number of spatial axes, 1 to 3.
        rngs: ``nnx.Rngs`` (``params`` stream; ``dropout`` when ``drop_prob > 0``).

    Call ``model(x)``: ``x`` ``(batch, *spatial, in_chans)`` -> logits ``(batch, *spatial,
    num_classes)``; every spatial size at least ``2 ** num_pool_layers``.

    ``apply_sample(sample)`` (the :func:`mskjax.nets.stage` protocol) maps ``sample.image``
    (``(*spatial)`` for one channel, or ``(*spatial, in_chans)``) to ``sample.segmentation``,
    logits ``(*spatial, num_classes)``.
    """

    def __init__(self, in_chans: int, num_classes: int, *, chans: int = 32,
                 num_pool_layers: int = 4, drop_prob: float = 0.0, ndim: int = 2,
                 rngs: nnx.Rngs):
        func = "mskjax.nets.SegNet"
        check_positive_int(in_chans, "in_chans", func)
        check_positive_int(num_classes, "num_classes", func)
        check_positive_int(chans, "chans", func)
        check_positive_int(num_pool_layers, "num_pool_layers", func)
        check_positive_int(ndim, "ndim", func)
        if ndim > 3:
            raise ValueError(f"{func}: ndim must be 1, 2 or 3, got {ndim}")
        check_interval(drop_prob, "drop_prob", func, low=0.0, high=1.0, low_open=False)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.num_classes, self.chans = in_chans, num_classes, chans
        self.num_pool_layers, self.drop_prob, self.ndim = num_pool_layers, float(drop_prob), ndim

        def block(i, o):
            return ConvBlock(i, o, drop_prob=drop_prob, rngs=rngs, ndim=ndim)

        widths = [chans * 2 ** level for level in range(num_pool_layers)]
        self.encoder = nnx.List([block(i, o) for i, o in zip([in_chans] + widths[:-1], widths)])
        self.decoder = nnx.List([block(widths[level], widths[max(level - 1, 0)])
                                 for level in reversed(range(num_pool_layers))])
        self.head_kernel = nnx.Param(uniform_init(rngs.params(),
                                                  (*(1,) * ndim, chans, num_classes), chans))
        self.head_bias = nnx.Param(uniform_init(rngs.params(), (num_classes,), chans))

    def __call__(self, x: jax.Array) -> jax.Array:
        func = "mskjax.nets.SegNet"
        if x.ndim != self.ndim + 2 or x.shape[-1] != self.in_chans:
            raise ValueError(f"{func}: x must be (batch, *spatial, {self.in_chans}) with "
                             f"{self.ndim} spatial axes, got shape {tuple(x.shape)}")
        if jnp.iscomplexobj(x):
            raise TypeError(f"{func}: x must be real (a complex image enters as two channels, "
                            f"real and imaginary), got {x.dtype}")
        smallest = 2 ** self.num_pool_layers
        if min(x.shape[1:-1]) < smallest:
            raise ValueError(f"{func}: every spatial size must be at least 2 ** num_pool_layers "
                             f"= {smallest}, got {tuple(x.shape[1:-1])}")
        x = jnp.asarray(x, jnp.float32)
        trail = []
        for block in self.encoder:
            x = block(x)
            spatial = x.shape[1:-1]
            x, indices = max_pool_with_indices(x)
            trail.append((indices, spatial))
        for block in self.decoder:
            indices, spatial = trail.pop()
            x = block(max_unpool(x, indices, spatial=spatial))
        return conv(x, self.head_kernel[...], padding=0) + self.head_bias[...]

    def apply_sample(self, sample):
        """The pipeline protocol: ``sample.image`` -> ``sample.segmentation`` logits."""
        return segment_sample(self, sample, func="mskjax.nets.SegNet.apply_sample")
