"""Downsampling for the classifier backbones: strided convolution and 3 x ... x 3 max pooling.

Layouts: inputs ``(batch, *spatial, channels)``, 1 to 3 spatial axes; kernels ``(*window, in,
out)``. Sizes follow PyTorch: a window ``k`` with stride ``s`` and ``p`` zeros on both sides
maps ``n`` pixels to ``(n + 2 p - k) // s + 1`` (for the layouts' ``k = 2 p + 1``, ``s = 2``:
``ceil(n / 2)``).

How each is computed, chosen by measurement on XLA's CPU backend (2 cores; forward and
gradient of a batch of 8):

- :func:`conv_strided` with a 1 x ... x 1 window takes every ``s``-th pixel and applies
  :func:`mskjax.nets.conv`. With a larger window in 1 or 2 spatial axes, or on an
  accelerator, it is ``lax.conv_general_dilated`` with ``window_strides`` (twice as fast as the
  alternative below in 2D). In 3D on CPU, XLA's gradient of a strided convolution is 80 to 200
  times slower than its forward pass (36 s for a 7 x 7 x 7 stem on 2 x 64**3 voxels), so there
  the convolution runs on the space-to-depth rearrangement of its zero-padded input (each
  ``s x ... x s`` block of pixels one pixel with ``s**ndim`` times the channels) with the kernel
  zero-padded to a multiple of ``s`` and rearranged to match: a stride-1 :func:`conv`, whose
  gradient is fast (0.23 s for that stem), for ``(ceil(k / s) * s / k) ** 3`` times the
  arithmetic (2.4 for ``k = 3``).
- :func:`max_pool` is separable: the maximum over a 3 x ... x 3 window is the maximum along
  each axis in turn, each a maximum of three strided slices of the ``-inf``-padded input (its
  gradient is 13 to 25 times faster than that of ``lax.reduce_window``). The gradient goes to
  the window's maximum (shared between exactly tied values).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._conv import conv


def out_size(n: int, window: int, stride: int, padding: int) -> int:
    """Pixels along an axis of ``n`` after a window ``window``, stride ``stride`` and
    ``padding`` zeros on both sides (PyTorch's rule)."""
    return (n + 2 * padding - window) // stride + 1


def _space_to_depth(x: jax.Array, s: int) -> jax.Array:
    """``(batch, *(s * m), c)`` -> ``(batch, *m, s**ndim * c)``, channel order (offsets, c)."""
    ndim = x.ndim - 2
    spatial = x.shape[1:-1]
    shape = [x.shape[0]]
    for n in spatial:
        shape += [n // s, s]
    x = x.reshape(*shape, x.shape[-1])
    x = jnp.transpose(x, (0, *(1 + 2 * a for a in range(ndim)),
                          *(2 + 2 * a for a in range(ndim)), x.ndim - 1))
    return x.reshape(x.shape[0], *(n // s for n in spatial), -1)


def _block_kernel(kernel: jax.Array, s: int) -> jax.Array:
    """``(*window, in, out)`` -> ``(*ceil(window / s), s**ndim * in, out)`` acting on the
    space-to-depth input: window index ``j = s * block + offset``, zeros past ``window``."""
    ndim = kernel.ndim - 2
    window, (cin, cout) = kernel.shape[:ndim], kernel.shape[ndim:]
    blocks = [-(-k // s) for k in window]
    kernel = jnp.pad(kernel, [(0, s * b - k) for b, k in zip(blocks, window)] + [(0, 0)] * 2)
    kernel = kernel.reshape(*(v for b in blocks for v in (b, s)), cin, cout)
    kernel = jnp.transpose(kernel, (*(2 * a for a in range(ndim)),
                                    *(2 * a + 1 for a in range(ndim)), 2 * ndim, 2 * ndim + 1))
    return kernel.reshape(*blocks, s ** ndim * cin, cout)


def conv_strided(x: jax.Array, kernel: jax.Array, *, stride: int, padding: int) -> jax.Array:
    """Convolution (cross-correlation) with a stride, as ``torch.nn.Conv2d(kernel_size=k,
    stride=stride, padding=padding)`` without bias.

    Args:
        x: ``(batch, *spatial, in)``, 1 to 3 spatial axes.
        kernel: ``(*window, in, out)``, cast to ``x.dtype``.
        stride: the step, the same along every axis (1 is :func:`mskjax.nets.conv`).
        padding: zeros on both sides of every spatial axis.

    Returns:
        ``(batch, *spatial', out)``, ``spatial' = (spatial + 2 padding - window) // stride + 1``
        along each axis (see :func:`out_size`).
    """
    ndim = kernel.ndim - 2
    window = kernel.shape[:ndim]
    if stride == 1:
        return conv(x, kernel, padding=padding)
    spatial = x.shape[1:-1]
    out = [out_size(n, k, stride, padding) for n, k in zip(spatial, window)]
    if min(out) < 1:
        raise ValueError(f"mskjax.nets.conv_strided: a {window} window with stride {stride} "
                         f"and padding {padding} leaves no pixels of an input of shape "
                         f"{tuple(x.shape)}")
    if all(k == 1 for k in window):
        if padding:
            x = jnp.pad(x, [(0, 0)] + [(padding, padding)] * ndim + [(0, 0)])
        taken = tuple(slice(0, stride * (m - 1) + 1, stride) for m in out)
        return conv(x[(slice(None),) + taken], kernel, padding="VALID")
    if ndim < 3 or jax.default_backend() != "cpu":
        spec = "DHW"[-ndim:]
        return lax.conv_general_dilated(
            x, kernel.astype(x.dtype), (stride,) * ndim, [(padding, padding)] * ndim,
            dimension_numbers=(f"N{spec}C", f"{spec}IO", f"N{spec}C"))
    # Padded so that output pixel o reads blocks o .. o + blocks - 1 of the padded input
    # (a negative high width crops what no window reaches).
    blocks = [-(-k // stride) for k in window]
    widths = [(0, 0, 0)] + [(padding, stride * (m - 1 + b) - n - padding, 0)
                            for n, m, b in zip(spatial, out, blocks)] + [(0, 0, 0)]
    x = _space_to_depth(lax.pad(x, jnp.zeros((), x.dtype), widths), stride)
    return conv(x, _block_kernel(kernel, stride), padding="VALID")


def max_pool(x: jax.Array, *, window: int = 3, stride: int = 2, padding: int = 1) -> jax.Array:
    """Max pooling, as ``torch.nn.MaxPool2d(window, stride, padding)`` (padding with ``-inf``,
    so a window never takes a padded value).

    Args:
        x: ``(batch, *spatial, channels)``.
        window, stride, padding: the same along every axis; ``padding <= window // 2``.

    Returns:
        ``(batch, *spatial', channels)``, ``spatial' = (spatial + 2 padding - window) //
        stride + 1``.
    """
    for axis in range(1, x.ndim - 1):
        n = x.shape[axis]
        m = out_size(n, window, stride, padding)
        if m < 1:
            raise ValueError(f"mskjax.nets.max_pool: a window of {window} leaves no pixels of "
                             f"an input of shape {tuple(x.shape)}")
        widths = [(0, 0, 0)] * x.ndim
        widths[axis] = (padding, stride * (m - 1) + window - n - padding, 0)
        padded = lax.pad(x, jnp.array(-jnp.inf, x.dtype), widths)
        pooled = None
        for offset in range(window):
            taken = lax.slice_in_dim(padded, offset, offset + stride * (m - 1) + 1, stride,
                                     axis=axis)
            pooled = taken if pooled is None else jnp.maximum(pooled, taken)
        x = pooled
    return x


def check_backbone_input(x, *, func: str, ndim: int, in_chans: int, downsamplings: int):
    """The static checks of a backbone's input: ``(batch, *spatial, in_chans)`` with ``ndim``
    spatial axes, real floating point, every spatial size at least ``2 ** downsamplings`` (so
    that each stride-2 step halves at least two pixels)."""
    if getattr(x, "ndim", None) != ndim + 2 or x.shape[-1] != in_chans:
        raise ValueError(f"{func}: x must be (batch, *spatial, {in_chans}) with {ndim} spatial "
                         f"axes, got shape {tuple(getattr(x, 'shape', ()))}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{func}: x must be real floating point (a complex image enters as two "
                        f"channels, real and imaginary), got {x.dtype}")
    least = 2 ** downsamplings
    if min(x.shape[1:-1]) < least:
        raise ValueError(f"{func}: every spatial size must be at least {least} (the net halves "
                         f"it {downsamplings} times), got shape {tuple(x.shape)}")
