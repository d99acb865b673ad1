"""DeepResolve: a 3D residual CNN that restores thin slices from a thick-slice volume.

Layout (Chaudhari et al., "Super-resolution musculoskeletal MRI using deep learning", Magn.
Reson. Med. 2018): the input is the thick-slice volume already interpolated to the thin-slice
grid (tricubic, :func:`mskjax.recon.tricubic_upsample`); ``depth`` 3 x 3 x 3 convolutions
with bias, each followed by ReLU except the last, map it ``in_chans`` -> ``features`` -> ...
-> ``features`` -> ``in_chans``, and the input is added back to the output: the net learns the
residual (the detail interpolation misses), so a net with a last layer of zeros is the
identity. All convolutions keep the size (one voxel of zero padding). The paper used 20
layers of 64 filters (about 2.0 million weights, ``depth=20, features=64``); the defaults here,
``depth=8, features=16`` (about 42 thousand weights), train in minutes on a CPU.

Convolutions are initialised Kaiming-normal (fan-in, for ReLU), biases 0. ``remat=True``
rematerialises each layer in the backward pass (``jax.checkpoint``): the activations of one
layer are kept instead of all of them, for large patches or deep nets.

Call: ``(batch, d, h, w, in_chans)`` float32 (any spatial size) -> the same shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_positive_int
from ._conv import conv
from ._resnet import conv_kernel
from ._stage import image_through_net

_FUNC = "mskjax.nets.DeepResolve"


def _layer(x, kernel, bias, relu: bool):
    x = conv(x, kernel, padding=1) + bias.astype(x.dtype)
    return jax.nn.relu(x) if relu else x


class DeepResolve(nnx.Module):
    """3D residual CNN for thick-to-thin-slice super-resolution (module docstring).

    Args:
        in_chans: channels of the input and output (1 for a magnitude volume).
        depth: number of 3 x 3 x 3 convolutions, >= 2 (keyword-only; paper: 20).
        features: channels of the hidden layers (keyword-only; paper: 64).
        remat: rematerialise each layer in the backward pass (keyword-only).
        rngs: ``nnx.Rngs`` (``params`` stream).

    Attributes: ``in_chans``, ``depth``, ``features``, ``remat``. Params: ``kernels``
    (``(3, 3, 3, in, out)`` each) and ``biases`` (``(out,)``), in order.

    Call: ``(batch, d, h, w, in_chans)`` -> ``x + residual(x)``, the same shape and dtype.
    """

    def __init__(self, in_chans: int = 1, *, depth: int = 8, features: int = 16,
                 remat: bool = False, rngs: nnx.Rngs):
        func = _FUNC
        check_positive_int(in_chans, "in_chans", func)
        check_positive_int(depth, "depth", func, minimum=2)
        check_positive_int(features, "features", func)
        if not isinstance(remat, bool):
            raise TypeError(f"{func}: remat must be a bool, got {type(remat).__name__}")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{func}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.in_chans, self.depth, self.features, self.remat = in_chans, depth, features, remat
        widths = [in_chans] + [features] * (depth - 1) + [in_chans]
        self.kernels = nnx.List([conv_kernel(rngs, 3, a, b, 3, fan="in")
                                 for a, b in zip(widths[:-1], widths[1:])])
        self.biases = nnx.List([nnx.Param(jnp.zeros((b,), jnp.float32)) for b in widths[1:]])

    def __call__(self, x: jax.Array) -> jax.Array:
        func = _FUNC
        if not isinstance(x, (jax.Array, jax.core.Tracer)) and not hasattr(x, "shape"):
            raise TypeError(f"{func}: x must be an array, got {type(x).__name__}")
        if x.ndim != 5 or x.shape[-1] != self.in_chans:
            raise ValueError(f"{func}: x must be (batch, d, h, w, {self.in_chans}), got shape "
                             f"{tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{func}: x must be floating point, got {x.dtype}")
        layer = jax.checkpoint(_layer, static_argnums=(3,)) if self.remat else _layer
        h = x
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            h = layer(h, kernel[...], bias[...], i < self.depth - 1)
        return x + h

    def apply_sample(self, sample):
        """The pipeline protocol: ``sample.image``, a real ``(d, h, w)`` volume on the thin-slice
        grid (the thick-slice volume interpolated, e.g. by :func:`mskjax.recon.tricubic_upsample`)
        with ``in_chans == 1``, through the net; the result replaces ``sample.image``."""
        return sample.replace(image=image_through_net(self, sample, 3, "mskjax.nets.DeepResolve"))

