"""The end-to-end variational network (Sriram et al. 2020), as ``fastmri.models.VarNet``.

One example at a time: k-space complex ``(coils, rows, cols)``, a mask broadcasting to it (a
fastMRI ``(cols,)`` phase-encode vector, ``(rows, cols)``, ``(1, rows, cols)`` or the full
shape), output the root-sum-of-squares image ``(rows, cols)`` float32 at the full k-space size.
Batch with ``jax.vmap``. Inside, the U-Nets see channels-last ``(batch, rows, cols, 2)``
(real, imaginary).

The computation:

1. Sensitivity maps. The k-space outside the ``num_low_frequencies`` centre columns is zeroed
   (``mask_center``), each coil image ``ifft2c`` goes through a :class:`NormUNet` (coils as its
   batch), and the results are divided by their root-sum-of-squares. Without a given
   ``num_low_frequencies`` the centre width is read from the mask as fastMRI does: the sampled
   run around column ``cols // 2`` of the mask's centre row, made symmetric (twice the shorter
   side), at least 1. (As in fastMRI, a run reaching the edge counts as 0, so a fully sampled
   mask gives width 1: pass ``num_low_frequencies`` for such masks.)
2. ``num_cascades`` cascades, each ``k <- k - w * M (k - k0) - S(R(S^H k))`` with the learned
   weight ``w`` (initially 1), ``S = linop.Sense(maps)`` (coil expansion and centred FFT), its
   adjoint ``S^H`` (``linop.Sense(maps).H``), the mask ``M`` (``linop.apply_mask``), the measured
   k-space ``k0`` and a :class:`NormUNet` ``R``. The cascades' weights are stacked on a leading
   axis and run unrolled (or by ``lax.scan``, see :data:`UNROLL`; always by ``lax.scan``
   with a ``remat`` policy).
3. The root-sum-of-squares of ``ifft2c(k)`` over the coils.

:class:`NormUNet` normalises the real and the imaginary channel of each example by their mean
and (unbiased) standard deviation, zero-pads rows and columns to multiples of 16 (split evenly,
the extra one after), runs the U-Net, crops, and undoes the normalisation. Where fastMRI would
divide by zero (an all-zero image, an all-zero set of coil images) the result is zero instead of
NaN: zero k-space gives a zero image.

Memory (``remat``, see :func:`mskjax.nets._varnet.remat_policy`): ``"cascade"`` wraps the
sensitivity net and each cascade in ``jax.checkpoint`` (the backward pass stores their inputs
and runs each forward again), ``"block"`` wraps each U-Net level of the sensitivity net and of
every cascade (a level's :class:`~mskjax.nets.ConvBlock` going down, the bottom block, a
level's transposed convolution, concatenation and block going up), ``"cascade+block"`` both.
With a policy the cascades run in ``lax.scan`` (unrolled, XLA may schedule the recomputation
early, where it saves nothing). The maths is the same under every policy;
``benchmarks/memory.py`` measures what each saves and costs. A training step of the published
size (12 cascades, chans 18) on 15 coils x 640 x 368, batch 1, XLA CPU (analysed / measured
peak): 10.2 / 11.8 GB without remat, 4.7 / 5.5 GB with ``"cascade"``, 5.9 / 6.6 GB with
``"block"``, 4.7 / 5.6 GB with ``"cascade+block"``. With one cascade every policy needs 3.9 GB:
the sensitivity U-Net on 15 coils, whose checkpoint (one call outside any loop) saved nothing
on the CPU backend.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import coils, linop
from .._checks import as_array, check_complex, check_ndim, check_positive_int
from ..fourier import ifft2c
from ._blocks import avg_pool, pad_to
from ._conv import conv
from ._unet import UNet
from ._varnet import remat_policy

_FUNC = "mskjax.nets.E2EVarNet"


def _checkpointed(fn, *modules):
    """``fn(*modules, *args)`` as a function of ``args`` inside ``jax.checkpoint``, the
    modules' parameters passed in as arguments (so that they are differentiated, not
    closed over)."""
    split = [nnx.split(m) for m in modules]

    @jax.checkpoint
    def run(states, *args):
        return fn(*(nnx.merge(g, s) for (g, _), s in zip(split, states)), *args)

    states = tuple(s for _, s in split)
    return lambda *args: run(states, *args)


def _unet_by_levels(unet: UNet, x: jax.Array) -> jax.Array:
    """``unet(x)`` with ``jax.checkpoint`` around each level (``x`` checked by the caller)."""
    skips = []
    for block in unet.down:
        x = _checkpointed(lambda b, h: b(h), block)(x)
        skips.append(x)
        x = avg_pool(x)
    x = _checkpointed(lambda b, h: b(h), unet.bottom)(x)

    def up_level(transpose, block, h, skip):
        h = pad_to(transpose(h), skip.shape[1:-1])
        return block(jnp.concatenate([h, skip], axis=-1))

    for transpose, block in zip(unet.up_transpose, unet.up):
        x = _checkpointed(up_level, transpose, block)(x, skips.pop())
    return conv(x, unet.head_kernel[...], padding=0) + unet.head_bias[...]


def _safe_divisor(x):
    return jnp.where(x > 0, x, jnp.ones((), x.dtype))


class NormUNet(nnx.Module):
    """A :class:`UNet` on complex images with per-example normalisation (fastMRI's NormUnet).

    Args:
        chans: U-Net channels after the first convolution.
        num_pools: U-Net levels.
        rngs: ``nnx.Rngs`` (keyword-only).

    Call: complex ``(batch, rows, cols)`` -> complex ``(batch, rows, cols)``; with
    ``remat_levels=True`` each U-Net level runs inside ``jax.checkpoint`` (the same values).
    """

    def __init__(self, chans: int, num_pools: int, *, rngs: nnx.Rngs):
        self.unet = UNet(2, 2, chans=chans, num_pool_layers=num_pools, rngs=rngs)

    def __call__(self, images: jax.Array, *, remat_levels: bool = False) -> jax.Array:
        x = jnp.stack([jnp.real(images), jnp.imag(images)], axis=-1).astype(jnp.float32)
        rows, cols = x.shape[1:3]
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        var = jnp.sum((x - mean) ** 2, axis=(1, 2), keepdims=True) / max(rows * cols - 1, 1)
        std = jnp.where(var > 0, jnp.sqrt(_safe_divisor(var)), jnp.zeros((), x.dtype))
        x = (x - mean) / _safe_divisor(std)
        widths = [((-n % 16) // 2, (-n % 16) - (-n % 16) // 2) for n in (rows, cols)]
        x = jnp.pad(x, [(0, 0), *widths, (0, 0)])
        x = _unet_by_levels(self.unet, x) if remat_levels else self.unet(x)
        x = x[:, widths[0][0]:widths[0][0] + rows, widths[1][0]:widths[1][0] + cols]
        x = x * std + mean
        return jax.lax.complex(x[..., 0], x[..., 1])


class Cascade(nnx.Module):
    """One cascade: soft data consistency plus a :class:`NormUNet` refinement in k-space."""

    def __init__(self, chans: int, num_pools: int, *, rngs: nnx.Rngs):
        self.regularizer = NormUNet(chans, num_pools, rngs=rngs)
        self.dc_weight = nnx.Param(jnp.ones((), jnp.float32))

    def __call__(self, kspace, ref_kspace, mask, sense: linop.Sense, *,
                 remat_levels: bool = False):
        soft_dc = linop.apply_mask(mask, kspace - ref_kspace) * self.dc_weight[...]
        refined = self.regularizer(sense.H(kspace)[None], remat_levels=remat_levels)[0]
        return kspace - soft_dc - sense(refined).astype(kspace.dtype)


def _stack(*arrays):
    if isinstance(arrays[0], jax.ShapeDtypeStruct):  # built by shapes_only()
        return jax.ShapeDtypeStruct((len(arrays), *arrays[0].shape), arrays[0].dtype)
    if any(isinstance(a, jax.core.Tracer) for a in arrays):
        return jnp.stack(arrays)
    return jax.device_put(np.stack([np.asarray(a) for a in arrays]))  # no compile per shape


def _stack_modules(modules):
    """One module whose parameters are those of ``modules`` stacked on a leading axis."""
    graphdef, _ = nnx.split(modules[0])
    states = [nnx.state(m) for m in modules]
    return nnx.merge(graphdef, jax.tree.map(_stack, *states))


def _is_traced(x):
    return isinstance(x, jax.core.Tracer)


def _check_num_low_frequencies(value, cols):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_FUNC}: num_low_frequencies must be an integer or None, got {value!r}")
    if isinstance(value, numbers.Integral):
        if not 0 <= value <= cols:
            raise ValueError(f"{_FUNC}: num_low_frequencies must be in [0, {cols}] (0 or None: "
                             f"read from the mask), got {value}")
        return int(value)
    value = as_array(value, "num_low_frequencies", _FUNC)
    if np.shape(value) != () or not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(f"{_FUNC}: num_low_frequencies must be an integer scalar or None, got "
                        f"{value.dtype} of shape {np.shape(value)}")
    if not _is_traced(value):
        return _check_num_low_frequencies(int(value), cols)
    return value


def _check_inputs(kspace, mask, num_low_frequencies):
    """Validated ``(kspace, mask, line, num_low)``; ``line`` is the mask's sampled columns
    (its centre row) as numpy when the mask's values are known (also while jit traces a
    function that closes over it), else None."""
    kspace = as_array(kspace, "kspace", _FUNC)
    check_ndim(kspace, "kspace", _FUNC, ndim=3, layout="(coils, rows, cols) for one example "
               "(batch with jax.vmap)")
    check_complex(kspace, "kspace", _FUNC)
    mask = as_array(mask, "mask", _FUNC)
    known = not _is_traced(mask)
    if not known and not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.floating)):
        mask = mask != 0
    values = np.asarray(mask) if known else None
    mask = linop.check_mask(mask, kspace.shape, _FUNC)
    line = None
    if known:
        line = np.broadcast_to(values, kspace.shape)[0, kspace.shape[-2] // 2] != 0
    num_low = _check_num_low_frequencies(num_low_frequencies, kspace.shape[-1])
    return jnp.asarray(kspace), mask, line, num_low


def _centre_width(line, xp=jnp):
    """fastMRI's centre width from a sampled-columns line: twice the shorter sampled run on
    either side of ``cols // 2`` (the left run ends before it, the right one starts at it),
    at least 1. ``xp``: numpy for a known mask, jax.numpy for a traced one."""
    cent = line.shape[0] // 2
    sampled = line.astype(xp.int8)
    left = xp.argmin(sampled[:cent][::-1])
    right = xp.argmin(sampled[cent:])
    return xp.maximum(2 * xp.minimum(left, right), 1)


#: Unroll the cascades into straight-line code (default) or loop with ``lax.scan`` (smaller
#: programs and faster compilation for many cascades; slower gradients on CPU). With a
#: ``remat`` policy other than ``"none"`` the cascades always run in ``lax.scan``.
UNROLL = True


class E2EVarNet(nnx.Module):
    """End-to-end variational network: learned sensitivity maps and unrolled cascades.

    Args:
        num_cascades: number of cascades (keyword-only, like every option).
        sens_chans: channels of the sensitivity U-Net's first level.
        sens_pools: levels of the sensitivity U-Net.
        chans: channels of each cascade U-Net's first level.
        pools: levels of each cascade U-Net.
        mask_center: keep only the centre (low-frequency) columns for the sensitivity maps.
        remat: what the backward pass recomputes instead of storing
            (:func:`mskjax.nets._varnet.remat_policy`), the same values under every policy:

            - ``"none"`` (default, or ``False``): everything stored;
            - ``"cascade"`` (or ``True``): ``jax.checkpoint`` around the sensitivity net and
              around each cascade: their inputs are stored (one k-space per cascade) and each
              runs forward again in the backward pass, so the peak holds the arrays of one
              cascade at a time;
            - ``"block"``: ``jax.checkpoint`` around each U-Net level (down block, bottom block,
              up level) of the sensitivity net and of every cascade: the levels' inputs and
              outputs are stored, their convolution, normalisation and activation arrays
              recomputed; data consistency stored as without remat;
            - ``"cascade+block"``: both, nested: the least memory for about two more forward
              passes of the U-Nets.
        rngs: ``nnx.Rngs`` for the initial weights.

    Call ``model(kspace, mask, *, num_low_frequencies=None)`` on ONE example:

    - ``kspace``: complex ``(coils, rows, cols)``, the measured (masked) k-space;
    - ``mask``: boolean or 0/1 (or real weights), broadcasting to ``kspace``: ``(cols,)``,
      ``(rows, cols)``, ``(1, rows, cols)`` or ``(coils, rows, cols)``;
    - ``num_low_frequencies``: the number of centre columns for the sensitivity maps; None or 0
      reads it from the mask (fastMRI's rule); an int, or an integer scalar array under
      ``vmap``.

    Returns the root-sum-of-squares image ``(rows, cols)`` float32. Batches:
    ``jax.vmap(model)(kspace, mask)`` over ``(batch, coils, rows, cols)`` (with
    ``in_axes=(0, None)`` for one shared mask), or ``jax.vmap`` of a pure function of the state
    from ``nnx.split(model)``. Works under ``jax.jit``; a traced mask is read with ``jnp``
    (no value checks on it).
    """

    def __init__(self, *, num_cascades: int = 12, sens_chans: int = 8, sens_pools: int = 4,
                 chans: int = 18, pools: int = 4, mask_center: bool = True,
                 remat: bool | str = "none", rngs: nnx.Rngs):
        for name, value in (("num_cascades", num_cascades), ("sens_chans", sens_chans),
                            ("sens_pools", sens_pools), ("chans", chans), ("pools", pools)):
            check_positive_int(value, name, _FUNC)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{_FUNC}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.num_cascades, self.sens_chans, self.sens_pools = num_cascades, sens_chans, sens_pools
        self.chans, self.pools = chans, pools
        self.mask_center, self.remat = bool(mask_center), remat_policy(remat, _FUNC)
        self.sens_net = NormUNet(sens_chans, sens_pools, rngs=rngs)
        self.cascades = _stack_modules([Cascade(chans, pools, rngs=rngs)
                                        for _ in range(num_cascades)])

    # -- sensitivity maps ----------------------------------------------------------------------

    def _low_frequency_kspace(self, kspace, mask, line, num_low):
        if not self.mask_center:
            return kspace
        rows, cols = kspace.shape[-2:]
        read_from_mask = num_low is None or (isinstance(num_low, int) and num_low == 0)
        if line is not None:  # a known mask: checked and measured on the host
            if read_from_mask and not line[cols // 2]:
                raise ValueError(
                    f"{_FUNC}: the mask samples no centre (low-frequency) columns: column "
                    f"{cols // 2} of {cols} (row {rows // 2}) is not sampled, and the "
                    "sensitivity maps are estimated from the sampled centre; sample it or pass "
                    "num_low_frequencies")
            derived = int(_centre_width(line, np))
        else:
            derived = _centre_width(jnp.broadcast_to(mask, kspace.shape)[0, rows // 2] != 0)
        if read_from_mask:
            width = derived
        elif isinstance(num_low, int):
            width = num_low
        else:
            width = jnp.where(num_low > 0, num_low, derived)
        start = (cols - width + 1) // 2
        columns = jnp.arange(cols)
        keep = (columns >= start) & (columns < start + width)
        return jnp.where(keep, kspace, jnp.zeros((), kspace.dtype))

    def _maps(self, kspace, mask, line, num_low):
        coil_images = ifft2c(self._low_frequency_kspace(kspace, mask, line, num_low))
        policy = remat_policy(self.remat, _FUNC)
        levels = policy in ("block", "cascade+block")
        if policy in ("cascade", "cascade+block"):
            maps = _checkpointed(lambda net, x: net(x, remat_levels=levels),
                                 self.sens_net)(coil_images)
        else:
            maps = self.sens_net(coil_images, remat_levels=levels)
        norm = coils.rss(maps, axis=0)
        return jnp.where(norm > 0, maps / _safe_divisor(norm).astype(maps.dtype),
                         jnp.zeros((), maps.dtype))

    def sensitivity_maps(self, kspace: jax.Array, mask: jax.Array, *,
                         num_low_frequencies: int | jax.Array | None = None) -> jax.Array:
        """The estimated coil sensitivity maps, complex ``(coils, rows, cols)``, normalised to
        root-sum-of-squares 1 (arguments as for the call)."""
        kspace, mask, line, num_low = _check_inputs(kspace, mask, num_low_frequencies)
        return self._maps(kspace, mask, line, num_low)

    # -- the network ---------------------------------------------------------------------------

    def __call__(self, kspace: jax.Array, mask: jax.Array, *,
                 num_low_frequencies: int | jax.Array | None = None) -> jax.Array:
        kspace, mask, line, num_low = _check_inputs(kspace, mask, num_low_frequencies)
        sense = linop.Sense(self._maps(kspace, mask, line, num_low))
        graphdef, state = nnx.split(self.cascades)
        policy = remat_policy(self.remat, _FUNC)
        levels = policy in ("block", "cascade+block")

        def cascade(current, params):
            return nnx.merge(graphdef, params)(current, kspace, mask, sense,
                                               remat_levels=levels), None

        if policy in ("cascade", "cascade+block"):
            cascade = jax.checkpoint(cascade)
        if UNROLL and policy == "none":
            # A Python loop over the stacked weights: on CPU, XLA runs the backward pass of
            # convolutions inside a lax.scan body several times slower than unrolled. With
            # remat the cascades run in lax.scan: in straight-line code XLA's scheduler is free
            # to recompute the checkpointed forward passes early, where they save nothing
            # (measured on CPU), while a scan's backward pass runs one cascade at a time.
            prediction = kspace
            for i in range(self.num_cascades):
                prediction, _ = cascade(prediction, jax.tree_util.tree_map(lambda a: a[i], state))
        else:
            prediction, _ = jax.lax.scan(cascade, kspace, state)
        return coils.rss(ifft2c(prediction), axis=0)

    def apply_sample(self, sample):
        """The pipeline protocol: ``sample.image = model(sample.kspace, sample.mask)``.

        ``num_low_frequencies`` is read from ``sample.extra["num_low_frequencies"]`` when
        ``sample.extra`` is a mapping holding it (as fastMRI's data sets provide).
        """
        for field in ("kspace", "mask"):
            if getattr(sample, field) is None:
                raise ValueError(f"{_FUNC}.apply_sample: the sample has no {field}; an earlier "
                                 "stage or the input sample must set it")
        extra = sample.extra
        num_low = extra.get("num_low_frequencies") if isinstance(extra, Mapping) else None
        image = self(sample.kspace, sample.mask, num_low_frequencies=num_low)
        return sample.replace(image=image)

