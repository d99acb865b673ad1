"""The fastMRI U-Net (Ronneberger et al. 2015, as in ``fastmri.models.Unet``), channels-last.

``num_pool_layers`` levels down (a :class:`ConvBlock`, then 2x average pooling), a bottom
:class:`ConvBlock`, and as many levels up (a :class:`TransposeConvBlock`, concatenation with the
skip connection, a :class:`ConvBlock`), then a 1 x 1 convolution with bias. Channels double at
every level down from ``chans``. Sizes need not be multiples of ``2 ** num_pool_layers``:
pooling drops an odd trailing row or column and the upsampled map is reflect-padded by one at
the end to meet its skip connection, as fastMRI does. Arrays are ``(batch, *spatial, channels)``
float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_interval, check_positive_int
from ._blocks import ConvBlock, TransposeConvBlock, avg_pool, pad_to, uniform_init
from ._conv import conv


class UNet(nnx.Module):
    """U-Net with instance norm, LeakyReLU and channel dropout (fastMRI's architecture).

    Args:
        in_chans: input channels.
        out_chans: output channels.
        chans: channels after the first convolution (keyword-only); doubled at each level.
        num_pool_layers: levels of down- and upsampling.
        drop_prob: channel dropout probability in ``[0, 1)``; active in training mode
            (``model.train()``, the default), off after ``model.eval()``.
        rngs: ``nnx.Rngs`` (``params`` stream for the weights, ``dropout`` for dropout).
        ndim: number of spatial axes (2; 1 and 3 work the same way).

    Call ``model(x)``: ``x`` ``(batch, *spatial, in_chans)`` float32 -> ``(batch, *spatial,
    out_chans)``. For a pure function, ``graphdef, state = nnx.split(model)`` and
    ``nnx.merge(graphdef, state)(x)`` inside ``jax.jit``.

    ``apply_sample(sample)`` is the pipeline protocol (:func:`mskjax.nets.stage`): it maps
    ``sample.image`` to ``sample.image``. For segmentation build ``UNet(in_chans, num_classes,
    ndim=2 or 3, ...)`` (logits out) and stage it as ``Segmenter(unet)``, which writes
    ``sample.segmentation`` (logits, probabilities or labels; optionally by sliding windows).
    """

    def __init__(self, in_chans: int, out_chans: int, *, chans: int = 32,
                 num_pool_layers: int = 4, drop_prob: float = 0.0, rngs: nnx.Rngs,
                 ndim: int = 2):
        func = "mskjax.nets.UNet"
        check_positive_int(in_chans, "in_chans", func)
        check_positive_int(out_chans, "out_chans", func)
        check_positive_int(chans, "chans", func)
        check_positive_int(num_pool_layers, "num_pool_layers", func)
        check_interval(drop_prob, "drop_prob", func, low=0.0, high=1.0, low_open=False)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.out_chans, self.chans = in_chans, out_chans, chans
        self.num_pool_layers, self.drop_prob, self.ndim = num_pool_layers, drop_prob, ndim

        def block(i, o):
            return ConvBlock(i, o, drop_prob=drop_prob, rngs=rngs, ndim=ndim)

        down = [block(in_chans, chans)]
        ch = chans
        for _ in range(num_pool_layers - 1):
            down.append(block(ch, 2 * ch))
            ch *= 2
        self.down = nnx.List(down)
        self.bottom = block(ch, 2 * ch)
        up_transpose, up = [], []
        for _ in range(num_pool_layers):
            up_transpose.append(TransposeConvBlock(2 * ch, ch, rngs=rngs, ndim=ndim))
            up.append(block(2 * ch, ch))
            ch //= 2
        self.up_transpose = nnx.List(up_transpose)
        self.up = nnx.List(up)
        self.head_kernel = nnx.Param(uniform_init(rngs.params(), (*(1,) * ndim, chans, out_chans),
                                                  chans))
        self.head_bias = nnx.Param(uniform_init(rngs.params(), (out_chans,), chans))

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != self.ndim + 2 or x.shape[-1] != self.in_chans:
            raise ValueError(
                f"mskjax.nets.UNet: x must be (batch, *spatial, {self.in_chans}) with "
                f"{self.ndim} spatial axes, got shape {tuple(x.shape)}")
        if jnp.iscomplexobj(x):
            raise TypeError(f"mskjax.nets.UNet: x must be real (a complex image enters as two "
                            f"channels, real and imaginary), got {x.dtype}")
        x = jnp.asarray(x, jnp.float32)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = avg_pool(x)
        x = self.bottom(x)
        for transpose, block in zip(self.up_transpose, self.up):
            skip = skips.pop()
            x = pad_to(transpose(x), skip.shape[1:-1])
            x = block(jnp.concatenate([x, skip], axis=-1))
        return conv(x, self.head_kernel[...], padding=0) + self.head_bias[...]

    def apply_sample(self, sample):
        """The pipeline protocol: ``sample.image`` through the net, one example, no batch axis.

        ``sample.image`` is a real ``(*spatial)`` image (``in_chans == 1``), real
        ``(*spatial, in_chans)`` channels, or a complex ``(*spatial)`` image as two channels
        (real, imaginary; ``in_chans == 2``). The output has the same form: ``(*spatial)`` when
        ``out_chans == 1``, complex ``(*spatial)`` for a complex input and ``out_chans == 2``,
        else ``(*spatial, out_chans)``.
        """
        func = "mskjax.nets.UNet.apply_sample"
        image = sample.image
        if image is None:
            raise ValueError(f"{func}: the sample has no image; an earlier stage or the input "
                             "sample must set it")
        image = jnp.asarray(image)
        is_complex = jnp.iscomplexobj(image)
        if is_complex and image.ndim == self.ndim:
            x = jnp.stack([image.real, image.imag], axis=-1)
        elif image.ndim == self.ndim:
            x = image[..., None]
        elif image.ndim == self.ndim + 1 and not is_complex:
            x = image
        else:
            raise ValueError(f"{func}: sample.image must be (*spatial) or (*spatial, channels) "
                             f"with {self.ndim} spatial axes, got shape {image.shape} "
                             f"({image.dtype})")
        if x.shape[-1] != self.in_chans:
            raise ValueError(f"{func}: the net takes {self.in_chans} input channels, got an "
                             f"image of shape {image.shape} ({image.dtype})")
        out = self(x[None])[0]
        if is_complex and self.out_chans == 2:
            out = jax.lax.complex(out[..., 0], out[..., 1])
        elif self.out_chans == 1:
            out = out[..., 0]
        return sample.replace(image=out)
