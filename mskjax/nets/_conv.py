"""Convolutions for the nets: channels-last, one function per operation, any spatial rank.

Layouts: inputs ``(batch, *spatial, channels)``; kernels ``(*window, in, out)`` (flax's HWIO
order). Every convolution of every net goes through these functions, so their speed (and any
custom gradient that makes them faster on a given backend) is decided in one place.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _dimension_numbers(ndim: int):
    spatial = "DHW"[-ndim:] if ndim <= 3 else None
    if spatial is None:
        raise ValueError(f"mskjax.nets: convolutions take 1 to 3 spatial axes, got {ndim}")
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def conv(x: jax.Array, kernel: jax.Array, *, padding: str | int = "SAME") -> jax.Array:
    """Stride-1 convolution (cross-correlation, as in PyTorch and flax).

    Args:
        x: ``(batch, *spatial, in)``.
        kernel: ``(*window, in, out)``.
        padding: ``"SAME"`` (zero padding keeping the size, odd windows), ``"VALID"``, or an
            int: zeros on both sides of every spatial axis.

    Returns:
        ``(batch, *spatial', out)``.
    """
    ndim = kernel.ndim - 2
    if isinstance(padding, int):
        padding = [(padding, padding)] * ndim
    return jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), window_strides=(1,) * ndim, padding=padding,
        dimension_numbers=_dimension_numbers(ndim))


def conv_transpose(x: jax.Array, kernel: jax.Array, *, stride: int = 2) -> jax.Array:
    """Transposed convolution with ``kernel`` size equal to ``stride`` (no overlap), as
    ``torch.nn.ConvTranspose2d(kernel_size=s, stride=s)``: each input pixel becomes an
    ``s x s`` block, ``out[s*i + a] = sum_c x[i, c] * kernel[a, c, :]``.

    Args:
        x: ``(batch, *spatial, in)``.
        kernel: ``(*([stride] * ndim), in, out)``.

    Returns:
        ``(batch, *(stride * spatial), out)``.
    """
    ndim = kernel.ndim - 2
    if kernel.shape[:ndim] != (stride,) * ndim:
        raise ValueError(f"mskjax.nets.conv_transpose: kernel window must be {(stride,) * ndim}, "
                         f"got {kernel.shape[:ndim]}")
    # Non-overlapping: one matmul per input pixel, then interleave the blocks.
    blocks = jnp.einsum("...i,...io->...o", x[..., None, :], kernel.reshape(-1, *kernel.shape[-2:])
                        .astype(x.dtype)[(None,) * (ndim + 1)])
    batch, spatial, out = x.shape[0], x.shape[1:-1], kernel.shape[-1]
    blocks = blocks.reshape(batch, *spatial, *([stride] * ndim), out)
    order = [0]
    for a in range(ndim):
        order += [1 + a, 1 + ndim + a]
    blocks = blocks.transpose(*order, 1 + 2 * ndim)
    return blocks.reshape(batch, *(stride * n for n in spatial), out)
