"""Building blocks of the U-Net family, for any number of spatial axes (``ndim``, 2 by default).

Layouts: activations ``(batch, *spatial, channels)`` float32; convolution kernels
``(*window, in, out)`` (HWIO for 2D), held as ``nnx.Param``. Every convolution goes through
:func:`mskjax.nets.conv` / :func:`mskjax.nets.conv_transpose`.

The blocks compute what the fastMRI PyTorch U-Net computes (``fastmri.models.unet``):

- instance normalisation without affine parameters, biased variance, ``eps = 1e-5``
  (``torch.nn.InstanceNorm2d``);
- LeakyReLU with slope 0.2;
- channel dropout (``torch.nn.Dropout2d``): one keep/drop decision per example and channel,
  shared over the spatial axes, survivors scaled by ``1 / (1 - p)``. It is an ``nnx.Dropout``,
  so ``model.eval()`` turns it off and ``model.train()`` on; with ``drop_prob == 0`` it is the
  identity and holds no random state.

Initialisation follows PyTorch's default for convolutions (uniform in ``+-1/sqrt(fan_in)``,
i.e. Kaiming-uniform with ``a = sqrt(5)``), with PyTorch's fan-in convention for transposed
convolutions (``out * window``).
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import check_interval, check_positive_int
from ._conv import conv, conv_transpose

_MIN_DRAW = 1 << 16
_SHAPES_ONLY = contextvars.ContextVar("mskjax_nets_shapes_only", default=False)


@contextlib.contextmanager
def shapes_only():
    """Within this context :func:`uniform_init` returns ``jax.ShapeDtypeStruct`` placeholders:
    a net is built without computing (or drawing) its weights, to be filled in by a loader."""
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def uniform_init(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    """Uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in))``, float32 (PyTorch's default).

    The numbers are the first ``prod(shape)`` of one draw of a power-of-two length (at least
    2**16), so that building a net compiles the random generator for a few lengths instead of
    once per weight shape; a concrete key gives the same values as a traced one.
    """
    if _SHAPES_ONLY.get():
        return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
    bound = 1.0 / math.sqrt(fan_in)
    size = math.prod(shape)
    draw = jax.random.uniform(key, (max(_MIN_DRAW, 1 << max(size - 1, 0).bit_length()),),
                              jnp.float32, -bound, bound)
    if isinstance(draw, jax.core.Tracer):
        return draw[:size].reshape(shape)
    return jax.device_put(np.asarray(draw)[:size].reshape(shape))


def normal_init(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
    """Normal with mean 0 and standard deviation ``std``, float32; drawn as
    :func:`uniform_init` draws (the first ``prod(shape)`` of a power-of-two draw)."""
    if _SHAPES_ONLY.get():
        return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
    size = math.prod(shape)
    draw = std * jax.random.normal(key, (max(_MIN_DRAW, 1 << max(size - 1, 0).bit_length()),),
                                   jnp.float32)
    if isinstance(draw, jax.core.Tracer):
        return draw[:size].reshape(shape)
    return jax.device_put(np.asarray(draw)[:size].reshape(shape))


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Normalise each example and channel over the spatial axes (no affine parameters).

    Args:
        x: ``(batch, *spatial, channels)``.
        eps: added to the biased variance.

    Returns:
        ``(x - mean) / sqrt(var + eps)``, the shape of ``x``.
    """
    axes = tuple(range(1, x.ndim - 1))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=axes, keepdims=True)
    return centred * jax.lax.rsqrt(var + eps)


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with negative slope 0.2."""
    return jax.nn.leaky_relu(x, negative_slope=0.2)


def avg_pool(x: jax.Array) -> jax.Array:
    """Average over non-overlapping 2 x ... x 2 windows of ``(batch, *spatial, channels)``.

    An odd trailing row (column, slice) is dropped, as ``torch.nn.functional.avg_pool2d(x, 2)``
    does: each spatial size ``n`` becomes ``n // 2``.
    """
    spatial = x.shape[1:-1]
    x = x[(slice(None),) + tuple(slice(0, 2 * (n // 2)) for n in spatial)]
    shape = [x.shape[0]]
    for n in spatial:
        shape += [n // 2, 2]
    x = x.reshape(*shape, x.shape[-1])
    return jnp.mean(x, axis=tuple(2 + 2 * a for a in range(len(spatial))))


def pad_to(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    """Reflect-pad ``(batch, *spatial', channels)`` at the end of each spatial axis to
    ``spatial`` (the U-Net's odd-size fix: an upsampled map one short of its skip connection).
    """
    widths = [(0, 0)] + [(0, want - have) for have, want in zip(x.shape[1:-1], spatial)]
    if not any(after for _, after in widths):
        return x
    return jnp.pad(x, widths + [(0, 0)], mode="reflect")


def _check_sizes(func: str, in_chans, out_chans, ndim):
    check_positive_int(in_chans, "in_chans", func)
    check_positive_int(out_chans, "out_chans", func)
    check_positive_int(ndim, "ndim", func)
    if ndim > 3:
        raise ValueError(f"{func}: ndim must be 1, 2 or 3, got {ndim}")


class ConvBlock(nnx.Module):
    """Two times (3 x ... x 3 convolution without bias, instance norm, LeakyReLU(0.2), channel
    dropout).

    Args:
        in_chans: input channels.
        out_chans: output channels.
        drop_prob: channel dropout probability in ``[0, 1)`` (keyword-only).
        rngs: ``nnx.Rngs`` for the kernels (``params`` stream) and dropout (``dropout``).
        ndim: number of spatial axes.

    Call: ``(batch, *spatial, in_chans)`` -> ``(batch, *spatial, out_chans)``.
    """

    def __init__(self, in_chans: int, out_chans: int, *, drop_prob: float, rngs: nnx.Rngs,
                 ndim: int = 2):
        func = "mskjax.nets.ConvBlock"
        _check_sizes(func, in_chans, out_chans, ndim)
        check_interval(drop_prob, "drop_prob", func, low=0.0, high=1.0, low_open=False)
        self.in_chans, self.out_chans, self.ndim, self.drop_prob = (
            in_chans, out_chans, ndim, float(drop_prob))
        window = (3,) * ndim
        self.kernel1 = nnx.Param(uniform_init(rngs.params(), (*window, in_chans, out_chans),
                                              in_chans * 3 ** ndim))
        self.kernel2 = nnx.Param(uniform_init(rngs.params(), (*window, out_chans, out_chans),
                                              out_chans * 3 ** ndim))
        self.dropout = nnx.Dropout(self.drop_prob, broadcast_dims=tuple(range(1, ndim + 1)),
                                   rngs=rngs if self.drop_prob > 0 else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        for kernel in (self.kernel1, self.kernel2):
            x = self.dropout(leaky_relu(instance_norm(conv(x, kernel[...], padding=1))))
        return x


class TransposeConvBlock(nnx.Module):
    """2 x ... x 2 stride-2 transposed convolution without bias, instance norm, LeakyReLU(0.2).

    Args:
        in_chans: input channels.
        out_chans: output channels.
        rngs: ``nnx.Rngs`` for the kernel (keyword-only).
        ndim: number of spatial axes.

    Call: ``(batch, *spatial, in_chans)`` -> ``(batch, *(2 * spatial), out_chans)``.
    """

    def __init__(self, in_chans: int, out_chans: int, *, rngs: nnx.Rngs, ndim: int = 2):
        _check_sizes("mskjax.nets.TransposeConvBlock", in_chans, out_chans, ndim)
        self.in_chans, self.out_chans, self.ndim = in_chans, out_chans, ndim
        self.kernel = nnx.Param(uniform_init(rngs.params(), (*(2,) * ndim, in_chans, out_chans),
                                             out_chans * 2 ** ndim))

    def __call__(self, x: jax.Array) -> jax.Array:
        return leaky_relu(instance_norm(conv_transpose(x, self.kernel[...], stride=2)))
