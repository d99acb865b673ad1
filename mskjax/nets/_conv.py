"""Convolutions for the nets: channels-last, one function per operation, any spatial rank.

Layouts: inputs ``(batch, *spatial, channels)``; kernels ``(*window, in, out)`` (flax's HWIO
order). Every convolution of every net goes through these functions, so their speed (and the
custom gradient that makes them faster on a given backend) is decided in one place.

Gradient of :func:`conv`. XLA differentiates a convolution into two convolutions: one for the
input (the forward convolution with the flipped kernel) and one for the kernel, whose "window"
is the whole image. On XLA's CPU backend two things make that slow: the kernel convolution is
2 to 5 times slower than oneDNN's in PyTorch for the nets' shapes (fastMRI's 18 channels, one
image), and inside a loop body (the cascades of an unrolled net under ``lax.scan``) both run
10 to 20 times slower than at the top level, because JAX's transpose rules hand them operands
with transposed dimension specs that XLA only normalises outside loops.

On CPU :func:`conv` therefore carries a ``jax.custom_jvp`` (ordinary operations, so ``grad``,
``jvp``, ``vmap``, ``jit``, ``jax.checkpoint`` and higher orders all work):

- the input tangent is written with an ``OI`` kernel spec, so that its transpose, the input
  gradient, is a convolution with plain ``N..C / ..IO / N..C`` specs;
- the kernel tangent ``conv(x, dkernel)`` is written in one of two forms, chosen per shape by
  :func:`_matmul_is_faster`: (a) one matrix product, ``x`` shifted along some window axes and
  stacked on the channel axis, times the reshaped ``dkernel``, the result shifted along the
  other axes and summed, which reverse mode turns into ``dkernel = X^T G`` (``X`` the stacked
  shifted input, ``G`` the stacked shifted cotangent: 3 + 3 copies instead of 9 for a 3 x 3
  window, the split copying the fewest values), for large images tile by tile (a few output
  rows at a time in a ``lax.scan``, :data:`TILE_BYTES` of copies per tile, so that they stay
  in cache: memory bandwidth, not arithmetic, limits this step on CPU); or (b) XLA's own
  kernel-gradient convolution, with operands laid out so that it has plain specs.

Only ``x`` is kept for the backward pass (the stacked or transposed copies are rebuilt there).
Values and gradients equal XLA's to float32 round-off. Forward mode (``jax.jvp``) is correct
everywhere but meets the slow loop-body path for the input tangent (its ``OI`` spec).

:data:`KERNEL_GRADIENT`, read when a call is traced (a function jitted or scanned before a
change keeps its trace), picks the rule: ``"auto"`` (default: the custom JVP on the CPU
backend, each kernel gradient in the form measured faster there; XLA's differentiation
elsewhere), ``"matmul"`` (the custom JVP with form (a) everywhere) or ``"xla"``
(``lax.conv_general_dilated`` differentiated by JAX, for comparisons).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

#: Kernel-gradient rule: ``"auto"``, ``"matmul"`` or ``"xla"`` (read when a call is traced).
KERNEL_GRADIENT = "auto"

#: Below this many pixels in the batch ``"auto"`` keeps XLA's kernel gradient.
MATMUL_MIN_PIXELS = 256

#: Bytes of stacked shifted copies per tile of the matrix-product kernel gradient (a tile of
#: output rows at a time when the whole image needs more; about a core's L2 cache).
TILE_BYTES = 2 * 2**20


def _dimension_numbers(ndim: int):
    spatial = "DHW"[-ndim:] if 1 <= ndim <= 3 else None
    if spatial is None:
        raise ValueError(f"mskjax.nets: convolutions take 1 to 3 spatial axes, got {ndim}")
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def _explicit_padding(padding, window: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    func = "mskjax.nets.conv"
    if isinstance(padding, str):
        if padding.upper() == "SAME":  # lax's convention: the odd pixel goes at the end
            return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in window)
        if padding.upper() == "VALID":
            return tuple((0, 0) for _ in window)
        raise ValueError(f'{func}: padding must be "SAME", "VALID", an int or (low, high) '
                         f"pairs, got {padding!r}")
    if isinstance(padding, (int, jnp.integer)) and not isinstance(padding, bool):
        if padding < 0:
            raise ValueError(f"{func}: padding must be >= 0, got {padding}")
        return tuple((int(padding), int(padding)) for _ in window)
    if isinstance(padding, Sequence) and len(padding) == len(window) and all(
            isinstance(p, Sequence) and len(p) == 2 for p in padding):
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
        if min(min(p) for p in pads) < 0:
            raise ValueError(f"{func}: padding must be >= 0, got {padding}")
        return pads
    raise ValueError(f'{func}: padding must be "SAME", "VALID", an int or {len(window)} '
                     f"(low, high) pairs, got {padding!r}")


def _plain(x, kernel, pads):
    ndim = kernel.ndim - 2
    return lax.conv_general_dilated(x, kernel, window_strides=(1,) * ndim, padding=pads,
                                    dimension_numbers=_dimension_numbers(ndim))


def _out_spatial(spatial, pads, window):
    return tuple(n + lo + hi - k + 1 for n, (lo, hi), k in zip(spatial, pads, window))


def _split_cost(window, cin, cout, on_input):
    taps_in = math.prod(k for k, s in zip(window, on_input) if s)
    taps_out = math.prod(k for k, s in zip(window, on_input) if not s)
    return taps_in * cin + taps_out * cout


def _split(window, cin, cout, *, first_on_input=False) -> tuple[bool, ...]:
    """Which window axes to shift on the input side (the others on the cotangent side): the
    split that copies the fewest values, ``prod(window[in]) * cin + prod(window[out]) * cout``
    per pixel; ties keep the matrix product square-ish. ``first_on_input`` forces the first
    axis to the input side (tiling along it)."""
    choices = [c for c in itertools.product((False, True), repeat=len(window))
               if c[0] or not first_on_input]
    return min(choices, key=lambda c: (_split_cost(window, cin, cout, c),
                                       abs(math.prod(k for k, s in zip(window, c) if s) * cin
                                           - math.prod(k for k, s in zip(window, c) if not s)
                                           * cout)))


def _shift_widths(taps, pads, spatial, out_spatial, axes):
    """``lax.pad`` widths (negative ones crop) moving an array from the input grid to the
    output grid along ``axes`` for the window offsets ``taps`` (output pixel ``p`` sees input
    pixel ``p + t - low``); other axes untouched."""
    widths = [(0, 0, 0)]
    for t, (lo, _), n, m, moved in zip(taps, pads, spatial, out_spatial, axes):
        widths.append((lo - t, m - n - lo + t, 0) if moved else (0, 0, 0))
    return widths + [(0, 0, 0)]


def _offsets(window, axes):
    """Every combination of window offsets along ``axes`` (0 along the others)."""
    for combo in itertools.product(*(range(window[a]) for a in axes)):
        taps = [0] * len(window)
        for a, t in zip(axes, combo):
            taps[a] = t
        yield taps


def _tile_product(x, matrix, window, cout, pads, on_input):
    """``conv(x, dkernel)`` for one tile of ``x`` (with its own padding ``pads``) as one
    matrix product with ``matrix``, the kernel reshaped to ``(taps_in * in, taps_out * out)``.
    """
    ndim = len(window)
    spatial = x.shape[1:-1]
    out_spatial = _out_spatial(spatial, pads, window)
    in_axes = [a for a in range(ndim) if on_input[a]]
    out_axes = [a for a in range(ndim) if not on_input[a]]
    zero = jnp.zeros((), x.dtype)
    shifted = [lax.pad(x, zero, _shift_widths(t, pads, spatial, out_spatial, on_input))
               for t in _offsets(window, in_axes)]
    stacked = shifted[0] if len(shifted) == 1 else jnp.concatenate(shifted, axis=-1)
    grid = stacked.shape[:-1]
    product = lax.dot_general(stacked, matrix, (((x.ndim - 1,), (0,)), ((), ())))
    if not out_axes:
        return product
    moved = tuple(not a for a in on_input)
    total = None
    # lax.split, whose transpose is a concatenation (the stacked, shifted cotangent)
    blocks = lax.split(product, [cout] * (matrix.shape[1] // cout), axis=product.ndim - 1)
    for block, taps in zip(blocks, _offsets(window, out_axes)):
        part = lax.pad(block, zero, _shift_widths(taps, pads, grid[1:], out_spatial, moved))
        total = part if total is None else total + part
    return total


@functools.partial(jax.checkpoint, static_argnums=(2, 3, 4))
def _kernel_tangent(x, dkernel, pads, on_input, rows):
    """``conv(x, dkernel)`` written as matrix products, linear in ``dkernel``.

    The window axes are split in two (``on_input``): copies of ``x`` shifted along the first
    kind are stacked on the channel axis (``X``, ``taps_in * in`` channels); the product with
    the kernel reshaped to ``(taps_in * in, taps_out * out)`` is then shifted along the other
    axes, one ``out`` block per offset, and summed. Reverse mode transposes this into: stack
    the cotangent ``g`` shifted back along the second kind of axes (``G``), and
    ``dkernel = X^T G``, one ``(taps_in * in) x (taps_out * out)`` product over the pixels.

    With ``rows``, this runs tile by tile, ``rows`` output rows (first spatial axis, whose
    shifts are then on the input side) of one example at a time in a ``lax.scan``, so that the
    stacked copies of a tile stay in cache instead of going through memory: reverse mode
    accumulates ``X_tile^T G_tile`` over the tiles. Only ``x`` is kept for the backward pass
    (``jax.checkpoint``: the stacked copies are rebuilt there).
    """
    ndim = x.ndim - 2
    window, (cin, cout) = dkernel.shape[:ndim], dkernel.shape[ndim:]
    in_axes = [a for a in range(ndim) if on_input[a]]
    out_axes = [a for a in range(ndim) if not on_input[a]]
    matrix = dkernel.transpose(*in_axes, ndim, *out_axes, ndim + 1).reshape(
        math.prod(window[a] for a in in_axes) * cin, -1)
    # Barriers keep XLA from fusing the producers of x (and, transposed, of the cotangent)
    # into the stacking, which would recompute them once per shifted copy.
    x = lax.optimization_barrier(x)
    if rows is None:
        return lax.optimization_barrier(_tile_product(x, matrix, window, cout, pads, on_input))
    batch, spatial = x.shape[0], x.shape[1:-1]
    out_spatial = _out_spatial(spatial, pads, window)
    tiles = -(-out_spatial[0] // rows)
    needed = tiles * rows + window[0] - 1  # input rows, the halo included
    low = pads[0][0]
    padded = lax.pad(x, jnp.zeros((), x.dtype),
                     [(0, 0, 0), (low, needed - spatial[0] - low, 0)] + [(0, 0, 0)] * ndim)
    tile_pads = ((0, 0), *pads[1:])

    def tile(carry, index):
        start = (index // tiles, (index % tiles) * rows) + (0,) * ndim
        piece = lax.dynamic_slice(padded, start,
                                  (1, rows + window[0] - 1, *padded.shape[2:]))
        return carry, _tile_product(piece, matrix, window, cout, tile_pads, on_input)

    _, out = lax.scan(jax.checkpoint(tile), None, jnp.arange(batch * tiles))
    out = out.reshape(batch, tiles * rows, *out.shape[3:])[:, :out_spatial[0]]
    return lax.optimization_barrier(out)


def _tile_rows(out_shape, window, values_per_pixel):
    """Output rows per tile of the kernel gradient: about :data:`TILE_BYTES` of stacked copies
    per tile; None (no tiling) when all of them fit in that. ``out_shape`` is
    ``(batch, *out_spatial)``."""
    rows, rest = out_shape[1], math.prod(out_shape[2:])
    per_row = rest * values_per_pixel * 4
    if out_shape[0] * rows * per_row <= TILE_BYTES:
        return None
    return max(1, min(rows, TILE_BYTES // per_row))


@functools.partial(jax.checkpoint, static_argnums=(2,))
def _kernel_tangent_conv(x, dkernel, pads):
    """``conv(x, dkernel)`` as a convolution whose operands are laid out so that its transpose
    with respect to the kernel (XLA's own kernel gradient, reverse mode) has plain
    ``N..C / ..IO / N..C`` dimension specs: the input as ``(in, *spatial, batch)``, the kernel as
    ``(in, *window, out)``, the result as ``(*spatial, batch, out)``. XLA's CPU backend runs
    the kernel-gradient convolution JAX derives from ``lax.conv_general_dilated`` fast at the
    top level but 5 to 20 times slower inside a loop body (``lax.scan``), where its operands
    keep their transposed specs."""
    ndim = x.ndim - 2
    spatial = "DHW"[-ndim:]
    moved = lax.conv_general_dilated(
        jnp.swapaxes(x, 0, -1), jnp.moveaxis(dkernel, -2, 0), (1,) * ndim, pads,
        dimension_numbers=(f"C{spatial}N", f"I{spatial}O", f"{spatial}NC"))
    return jnp.moveaxis(moved, -2, 0)


def _rule(x, kernel) -> str | None:
    """The kernel-gradient rule of one call: "matmul", "conv" (XLA's convolution, inside the
    custom JVP) or None (no custom JVP: XLA differentiates ``lax.conv_general_dilated``)."""
    rule = KERNEL_GRADIENT
    if rule not in ("auto", "matmul", "xla"):
        raise ValueError('mskjax.nets.conv: KERNEL_GRADIENT must be "auto", "matmul" or "xla", '
                         f"got {rule!r}")
    if rule == "xla":
        return None
    if rule == "matmul":
        return "matmul"
    if jax.default_backend() != "cpu":
        return None
    faster = _matmul_is_faster(math.prod(x.shape[:-1]), kernel.shape[:-2], *kernel.shape[-2:])
    return "matmul" if faster else "conv"


def _matmul_is_faster(pixels: int, window, cin: int, cout: int) -> bool:
    """Measured on XLA's CPU backend (YNNPACK convolutions and Eigen/YNNPACK matrix products,
    2 AVX-512 cores): its own kernel gradient is the faster one for a few input channels (the
    first layer of a net), and for channel counts that are multiples of 8 when they are few
    (8) or the image is large (over 2**18 pixels in the batch); the matrix product wins
    everywhere else, by 1.3 to 4 times (fastMRI's 18 channels, every 1 x 1 convolution)."""
    if pixels < MATMUL_MIN_PIXELS:
        return False
    if math.prod(window) == 1:
        return True
    if cin <= 4:
        return False
    if cin % 8 or cout % 8:
        return True
    return min(cin, cout) >= 16 and pixels <= 2**18


def _input_tangent(dx, kernel, pads):
    """``conv(dx, kernel)`` with the kernel handed over as ``(*window, out, in)`` under an
    ``OI`` dimension spec: JAX's transpose (reverse mode) swaps the spec, so the input
    gradient is a convolution with a plain ``(*window, in, out)`` (``IO``) kernel, which XLA's
    CPU backend runs at full speed everywhere; given an ``OI`` kernel inside a loop body
    (``lax.scan``) it falls back to a path 10 to 20 times slower."""
    ndim = kernel.ndim - 2
    spatial = "DHW"[-ndim:]
    return lax.conv_general_dilated(dx, jnp.swapaxes(kernel, -1, -2), (1,) * ndim, pads,
                                    dimension_numbers=(f"N{spatial}C", f"{spatial}OI",
                                                       f"N{spatial}C"))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv_custom(x, kernel, pads, plan):
    return _plain(x, kernel, pads)


def _conv_custom_jvp(pads, plan, primals, tangents):
    rule, on_input, rows = plan
    x, kernel = primals
    dx, dkernel = tangents
    out = _plain(x, kernel, pads)
    dout = None
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        dout = _input_tangent(dx, kernel, pads)
    if not isinstance(dkernel, jax.custom_derivatives.SymbolicZero):
        if rule == "matmul":
            part = _kernel_tangent(x, dkernel, pads, on_input, rows)
        else:
            part = _kernel_tangent_conv(x, dkernel, pads)
        dout = part if dout is None else dout + part
    if dout is None:
        dout = jnp.zeros_like(out)
    return out, dout


_conv_custom.defjvp(_conv_custom_jvp, symbolic_zeros=True)


def _plan(rule, x_shape, kernel_shape, pads):
    """The static part of one custom convolution: (rule, on_input, rows)."""
    ndim = len(kernel_shape) - 2
    window, (cin, cout) = tuple(kernel_shape[:ndim]), kernel_shape[ndim:]
    on_input, rows = _split(window, cin, cout), None
    if rule == "matmul":
        first = _split(window, cin, cout, first_on_input=True)
        out_shape = (x_shape[0], *_out_spatial(x_shape[1:-1], pads, window))
        rows = _tile_rows(out_shape, window, _split_cost(window, cin, cout, first))
        if rows is not None:
            on_input = first
    return rule, on_input, rows


def conv(x: jax.Array, kernel: jax.Array, *, padding: str | int = "SAME") -> jax.Array:
    """Stride-1 convolution (cross-correlation, as in PyTorch and flax).

    Args:
        x: ``(batch, *spatial, in)``, 1 to 3 spatial axes.
        kernel: ``(*window, in, out)``; cast to ``x.dtype``.
        padding: ``"SAME"`` (zero padding keeping the size; for an even window the extra zero
            goes at the end, as in ``lax``), ``"VALID"``, an int (zeros on both sides of every
            spatial axis) or one ``(low, high)`` pair per spatial axis.

    Returns:
        ``(batch, *spatial', out)``, equal to ``lax.conv_general_dilated`` (the gradient with
        respect to ``kernel`` is computed differently, see the module docstring).
    """
    ndim = kernel.ndim - 2
    _dimension_numbers(ndim)
    if x.ndim != ndim + 2 or x.shape[-1] != kernel.shape[-2]:
        raise ValueError(f"mskjax.nets.conv: x must be (batch, *spatial, {kernel.shape[-2]}) "
                         f"with {ndim} spatial axes for a kernel of shape "
                         f"{tuple(kernel.shape)}, got shape {tuple(x.shape)}")
    pads = _explicit_padding(padding, tuple(kernel.shape[:ndim]))
    kernel = kernel.astype(x.dtype)
    rule = _rule(x, kernel)
    if rule is None:
        return _plain(x, kernel, pads)
    return _conv_custom(x, kernel, pads, _plan(rule, x.shape, kernel.shape, pads))


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
    _dimension_numbers(ndim)
    if kernel.shape[:ndim] != (stride,) * ndim:
        raise ValueError(f"mskjax.nets.conv_transpose: kernel window must be {(stride,) * ndim}, "
                         f"got {kernel.shape[:ndim]}")
    if x.ndim != ndim + 2 or x.shape[-1] != kernel.shape[-2]:
        raise ValueError(f"mskjax.nets.conv_transpose: x must be (batch, *spatial, "
                         f"{kernel.shape[-2]}) with {ndim} spatial axes for a kernel of shape "
                         f"{tuple(kernel.shape)}, got shape {tuple(x.shape)}")
    # Non-overlapping: one (in, taps * out) matrix product for all pixels, then interleave.
    cin, cout = kernel.shape[-2:]
    taps = stride ** ndim
    matrix = jnp.moveaxis(kernel.reshape(taps, cin, cout), 0, 1).reshape(cin, taps * cout)
    blocks = lax.dot_general(x, matrix.astype(x.dtype), (((x.ndim - 1,), (0,)), ((), ())))
    batch, spatial = x.shape[0], x.shape[1:-1]
    blocks = blocks.reshape(batch, *spatial, *([stride] * ndim), cout)
    order = [0]
    for a in range(ndim):
        order += [1 + a, 1 + ndim + a]
    blocks = blocks.transpose(*order, 1 + 2 * ndim)
    return blocks.reshape(batch, *(stride * n for n in spatial), cout)
