"""The PatchGAN discriminator (Isola et al. 2017, as in pix2pix and CycleGAN), channels-last.

Layers, for ``num_layers = n``: a 4 x ... x 4 stride-2 convolution with bias and LeakyReLU(0.2);
``n - 1`` more stride-2 convolutions, each followed by instance normalisation and
LeakyReLU(0.2); one stride-1 convolution with instance normalisation and LeakyReLU(0.2); a
final stride-1 convolution with bias to one channel. Every convolution has a 4 x ... x 4
window and one pixel of zero padding on each side (PyTorch's ``padding=1``); channels double
from ``chans`` at each layer up to ``8 * chans``. With ``n = 3`` every output pixel sees a
70 x 70 patch of the input (the "70 x 70 PatchGAN") and scores it: the output is a map of
unbounded scores, one per patch, for a least-squares or logistic GAN loss.

This is CycleGAN's ``NLayerDiscriminator`` with ``norm_layer=InstanceNorm2d`` (no affine
parameters): the convolutions in front of an instance norm have no bias here, since the norm
removes any per-channel constant exactly. Sizes: each stride-2 layer maps ``n`` pixels to
``n // 2`` and each stride-1 layer to ``n - 1``, as in PyTorch, so the score map has
``n // 2 ** num_layers - 2`` pixels along an axis of ``n`` and the input needs at least
``3 * 2 ** num_layers`` pixels along every spatial axis (checked). Arrays are ``(batch, *spatial, channels)``
float32; ``ndim`` spatial axes (1, 2 or 3).

A stride-2 convolution is computed by :func:`mskjax.nets.conv` on the space-to-depth
rearrangement of its input (each 2 x ... x 2 block of pixels becomes one pixel with
``2 ** ndim`` times the channels) with the kernel rearranged to a 2 x ... x 2 window, so that it
shares the convolution's gradient rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_positive_int
from ._blocks import instance_norm, leaky_relu, uniform_init
from ._conv import conv

WINDOW = 4


def _space_to_depth(x: jax.Array) -> jax.Array:
    """``(batch, *(2 * m), c)`` -> ``(batch, *m, 2 ** ndim * c)``, channel order (offsets, c)."""
    ndim = x.ndim - 2
    spatial = x.shape[1:-1]
    shape = [x.shape[0]]
    for n in spatial:
        shape += [n // 2, 2]
    x = x.reshape(*shape, x.shape[-1])
    blocks = [1 + 2 * a for a in range(ndim)]
    offsets = [2 + 2 * a for a in range(ndim)]
    x = jnp.transpose(x, (0, *blocks, *offsets, x.ndim - 1))
    return x.reshape(x.shape[0], *(n // 2 for n in spatial), -1)


def _block_kernel(kernel: jax.Array) -> jax.Array:
    """A ``(*(4,) * ndim, in, out)`` kernel as ``(*(2,) * ndim, 2 ** ndim * in, out)`` acting on
    the space-to-depth input: window index ``k = 2 * block + offset``."""
    ndim = kernel.ndim - 2
    cin, cout = kernel.shape[-2:]
    k = kernel.reshape(*(s for _ in range(ndim) for s in (2, 2)), cin, cout)
    blocks = [2 * a for a in range(ndim)]
    offsets = [2 * a + 1 for a in range(ndim)]
    k = jnp.transpose(k, (*blocks, *offsets, 2 * ndim, 2 * ndim + 1))
    return k.reshape(*(2,) * ndim, 2 ** ndim * cin, cout)


def conv_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """4 x ... x 4 convolution with stride 2 and one pixel of zero padding on each side, as
    ``torch.nn.Conv2d(kernel_size=4, stride=2, padding=1)``: ``n`` pixels -> ``n // 2``.

    Args:
        x: ``(batch, *spatial, in)``.
        kernel: ``(*(4,) * ndim, in, out)``.

    Returns:
        ``(batch, *(spatial // 2), out)``.
    """
    spatial = x.shape[1:-1]
    # One zero in front; behind, as many as make the padded length even (the last window of
    # PyTorch's symmetric padding never reaches a second trailing zero).
    widths = [(0, 0)] + [(1, 1 if n % 2 == 0 else 0) for n in spatial] + [(0, 0)]
    x = _space_to_depth(jnp.pad(x, widths))
    return conv(x, _block_kernel(kernel), padding="VALID")


def _score_shape(spatial: tuple[int, ...], num_layers: int) -> tuple[int, ...]:
    """Spatial shape of the score map of a :class:`PatchDiscriminator` for input ``spatial``."""
    out = []
    for n in spatial:
        for _ in range(num_layers):
            n //= 2
        out.append(n - 2)
    return tuple(out)


class PatchDiscriminator(nnx.Module):
    """PatchGAN discriminator: a map of real-or-fake scores, one per overlapping patch.

    Args:
        in_chans: input channels.
        chans: channels of the first convolution (keyword-only); doubled at each following
            layer, at most ``8 * chans``.
        num_layers: stride-2 convolutions (3 gives the 70 x 70 PatchGAN in 2D).
        rngs: ``nnx.Rngs`` (``params`` stream).
        ndim: number of spatial axes, 1, 2 or 3.

    Call ``model(x)``: ``x`` ``(batch, *spatial, in_chans)`` real -> scores ``(batch,
    *spatial', 1)`` float32 with ``spatial' = spatial // 2 ** num_layers - 2`` (see
    ``score_shape``), which must be at least 1 along every axis. Scores are unbounded
    (no sigmoid). Weights are initialised as PyTorch initialises convolutions (uniform in
    ``+-1/sqrt(fan_in)``).
    """

    def __init__(self, in_chans: int, *, chans: int = 64, num_layers: int = 3,
                 rngs: nnx.Rngs, ndim: int = 2):
        func = "mskjax.nets.PatchDiscriminator"
        check_positive_int(in_chans, "in_chans", func)
        check_positive_int(chans, "chans", func)
        check_positive_int(num_layers, "num_layers", func)
        check_positive_int(ndim, "ndim", func)
        if ndim > 3:
            raise ValueError(f"{func}: ndim must be 1, 2 or 3, got {ndim}")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.chans, self.num_layers, self.ndim = in_chans, chans, num_layers, ndim
        window = (WINDOW,) * ndim
        taps = WINDOW ** ndim
        widths = [in_chans] + [chans * min(2 ** i, 8) for i in range(num_layers + 1)] + [1]

        def kernel(cin, cout):
            return nnx.Param(uniform_init(rngs.params(), (*window, cin, cout), cin * taps))

        # widths[i] -> widths[i + 1]: num_layers stride-2 layers, then two stride-1 layers.
        self.kernels = nnx.List([kernel(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.first_bias = nnx.Param(uniform_init(rngs.params(), (widths[1],),
                                                 widths[0] * taps))
        self.last_bias = nnx.Param(uniform_init(rngs.params(), (1,), widths[-2] * taps))

    def score_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape of the score map for an input of spatial shape ``spatial``."""
        return _score_shape(tuple(spatial), self.num_layers)

    @property
    def receptive_field(self) -> int:
        """Input pixels along each axis that one score sees (70 for ``num_layers=3``)."""
        return _receptive_field(self.num_layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        func = "mskjax.nets.PatchDiscriminator"
        if x.ndim != self.ndim + 2 or x.shape[-1] != self.in_chans:
            raise ValueError(f"{func}: x must be (batch, *spatial, {self.in_chans}) with "
                             f"{self.ndim} spatial axes, got shape {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{func}: x must be real floating point (a complex image enters as "
                            f"two channels, real and imaginary), got {x.dtype}")
        out = _score_shape(tuple(x.shape[1:-1]), self.num_layers)
        if min(out) < 1:
            least = 2 ** self.num_layers * 3
            raise ValueError(f"{func}: with num_layers={self.num_layers} every spatial size "
                             f"must be at least {least} (the score map would be {out}), got "
                             f"shape {tuple(x.shape)}")
        x = jnp.asarray(x, jnp.float32)
        kernels = [k[...] for k in self.kernels]
        x = leaky_relu(conv_stride2(x, kernels[0]) + self.first_bias[...])
        for kernel in kernels[1:self.num_layers]:
            x = leaky_relu(instance_norm(conv_stride2(x, kernel)))
        x = leaky_relu(instance_norm(conv(x, kernels[-2], padding=1)))
        return conv(x, kernels[-1], padding=1) + self.last_bias[...]


def _receptive_field(num_layers: int) -> int:
    """Pixels along each axis that one score of a :class:`PatchDiscriminator` sees."""
    field = 1
    for stride in [1, 1] + [2] * num_layers:  # from the output backwards
        field = (field - 1) * stride + WINDOW
    return field

