"""Sliding-window inference: a net that takes fixed-size tiles, run over a larger volume, the
overlapping tiles blended with Gaussian weights (as nnU-Net and MONAI do).

Tiles. Along each spatial axis of size ``n`` (after padding to at least the window ``w``) the
tiles start at ``0, s, 2 s, ...`` with the step ``s = max(1, int(w * (1 - overlap)))``, and the
last one is moved back to end flush with the volume (``n - w``), as MONAI's
``sliding_window_inference`` places them; every voxel is covered. A volume smaller than the
window along an axis is padded there with ``pad_value``, evenly on both sides, and the result
cropped back.

Blending. Each tile's prediction is weighted by a Gaussian centred on the tile,
``exp(-(i - (w - 1) / 2)^2 / (2 sigma^2))`` along each axis with ``sigma = sigma_scale * w``
(nnU-Net's 1/8), normalised to 1 at the centre (values that underflow are raised to the
smallest positive weight, as nnU-Net does), so that a voxel's result comes mostly from tiles in
which it lies far from the border, where the net saw the most context. The result is the
weighted sum over the tiles divided by the sum of the weights: the weights normalise, so a
``predict`` that commutes with cropping returns its own result exactly (to round-off).
``sigma_scale=None`` weighs every voxel of a tile equally.

Memory. Two paths, chosen by the type of ``volume``:

- a numpy array (on the host; e.g. a memory-mapped file larger than the accelerator's memory):
  a Python loop cuts ``batch_size`` tiles at a time on the host, moves only them to the
  device, and accumulates the weighted predictions in a numpy array on the host. Peak device
  memory is one batch of tiles and their predictions. ``predict`` is called as given (pass a
  jitted function); every call has the same shape (a short last batch is padded with copies of
  its last tile, whose predictions are dropped), so it compiles once.
- a JAX array (or a tracer, under ``jit``): the same tiles in a ``lax.scan`` over batches,
  accumulated on the device; jittable and differentiable, for use inside a pipeline.

Arrays are channels-last: ``volume`` ``(*spatial, channels)`` (one example, no batch axis),
``predict`` maps ``(batch, *window, channels)`` to ``(batch, *window, num_classes)``, and the
result is ``(*spatial, num_classes)`` float32 (or float64 when ``predict`` returns it).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_interval, check_positive_int

_FUNC = "mskjax.nets.sliding_window_inference"


def tile_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start indices of the tiles along one axis of ``size >= window`` voxels (module doc)."""
    if size <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    count = -(-(size - window) // step) + 1
    return sorted({min(i * step, size - window) for i in range(count)})


def gaussian_weights(window: Sequence[int], sigma_scale: float | None) -> np.ndarray:
    """The blending weights of one tile, float32 ``window``, 1 at the centre (module doc)."""
    if sigma_scale is None:
        return np.ones(tuple(window), np.float32)
    weights = np.ones((), np.float64)
    for w in window:
        i = np.arange(w) - (w - 1) / 2
        weights = np.multiply.outer(weights, np.exp(-0.5 * (i / (sigma_scale * w)) ** 2))
    weights = (weights / weights.max()).astype(np.float32)
    return np.maximum(weights, weights[weights > 0].min())


def _check_args(volume, window, overlap, sigma_scale, batch_size, num_classes):
    if not hasattr(volume, "shape") or not hasattr(volume, "dtype"):
        raise TypeError(f"{_FUNC}: volume must be an array (*spatial, channels), got "
                        f"{type(volume).__name__}")
    if jnp.iscomplexobj(volume):
        raise TypeError(f"{_FUNC}: volume must be real, got {volume.dtype}")
    if isinstance(window, numbers.Integral):
        window = (window,) * (volume.ndim - 1)
    try:
        window = tuple(window)
    except TypeError:
        raise TypeError(f"{_FUNC}: window must be a tuple of ints, got {window!r}") from None
    if volume.ndim < 2 or len(window) != volume.ndim - 1:
        raise ValueError(f"{_FUNC}: volume must be (*spatial, channels) with one spatial axis "
                         f"per window entry {window}, got shape {tuple(volume.shape)}")
    for w in window:
        check_positive_int(w, "window", _FUNC)
    window = tuple(int(w) for w in window)
    check_interval(overlap, "overlap", _FUNC, low=0.0, high=1.0, low_open=False)
    if sigma_scale is not None:
        check_interval(sigma_scale, "sigma_scale", _FUNC, low=0.0)
    check_positive_int(batch_size, "batch_size", _FUNC)
    if num_classes is not None:
        check_positive_int(num_classes, "num_classes", _FUNC)
    return window


def _check_output(out, batch, window, num_classes):
    expected = (batch, *window, num_classes) if num_classes is not None else None
    shape = tuple(out.shape)
    if len(shape) != len(window) + 2 or shape[:-1] != (batch, *window) or (
            expected is not None and shape != expected):
        want = expected if expected is not None else (batch, *window, "num_classes")
        raise ValueError(f"{_FUNC}: predict must map (batch, *window, channels) to "
                         f"{want}, got {shape}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{_FUNC}: predict must return floating point scores, got {out.dtype}")


def sliding_window_inference(predict: Callable[[jax.Array], jax.Array], volume, *,
                             window: int | Sequence[int], overlap: float = 0.5,
                             sigma_scale: float | None = 0.125, batch_size: int = 1,
                             num_classes: int | None = None, pad_value: float = 0.0):
    """Run ``predict`` over overlapping tiles of ``volume`` and blend them (module docstring).

    Args:
        predict: ``(batch_size, *window, channels)`` -> ``(batch_size, *window,
            num_classes)`` float (logits or probabilities; they are averaged as they are).
        volume: ``(*spatial, channels)`` real, one example. A numpy array takes the host
            path (tiles moved to the device one batch at a time, the result accumulated on the
            host); a JAX array the jittable device path.
        window: tile size, one int per spatial axis or one int for all (keyword-only).
        overlap: fraction of a tile shared with the next, in ``[0, 1)``.
        sigma_scale: Gaussian ``sigma / window`` (nnU-Net's 0.125); None for equal weights.
        batch_size: tiles per call of ``predict``.
        num_classes: output channels; default taken from ``predict``'s output.
        pad_value: value of the padding of axes shorter than the window.

    Returns:
        ``(*spatial, num_classes)``: a numpy array on the host path, a JAX array on the device
        path.
    """
    if not callable(predict):
        raise TypeError(f"{_FUNC}: predict must be callable, got {type(predict).__name__}")
    if isinstance(volume, (list, tuple)):
        volume = np.asarray(volume)
    window = _check_args(volume, window, overlap, sigma_scale, batch_size, num_classes)
    spatial = tuple(volume.shape[:-1])
    pads = [((max(w - n, 0)) // 2, max(w - n, 0) - max(w - n, 0) // 2)
            for n, w in zip(spatial, window)]
    padded = tuple(n + a + b for n, (a, b) in zip(spatial, pads))
    starts = list(itertools.product(*[tile_starts(n, w, overlap)
                                      for n, w in zip(padded, window)]))
    weights = gaussian_weights(window, sigma_scale)
    total = np.zeros(padded, np.float32)
    for start in starts:
        total[tuple(slice(s, s + w) for s, w in zip(start, window))] += weights
    crop = tuple(slice(a, a + n) for (a, _), n in zip(pads, spatial))
    if isinstance(volume, np.ndarray):
        return _on_host(predict, volume, window, pads, padded, starts, weights, total, crop,
                        batch_size, num_classes, pad_value)
    return _on_device(predict, jnp.asarray(volume), window, pads, starts, weights, total, crop,
                      batch_size, num_classes, pad_value)


def _on_host(predict, volume, window, pads, padded, starts, weights, total, crop, batch_size,
             num_classes, pad_value):
    if any(a or b for a, b in pads):
        volume = np.pad(volume, pads + [(0, 0)], constant_values=pad_value)
    out = None
    for first in range(0, len(starts), batch_size):
        group = starts[first:first + batch_size]
        regions = [tuple(slice(s, s + w) for s, w in zip(start, window)) for start in group]
        tiles = [volume[region] for region in regions]
        tiles += [tiles[-1]] * (batch_size - len(tiles))
        result = predict(jnp.asarray(np.stack(tiles)))
        _check_output(result, batch_size, window, num_classes)
        result = np.asarray(result)
        if out is None:
            dtype = np.result_type(result.dtype, np.float32)
            out = np.zeros((*padded, result.shape[-1]), dtype)
        for region, tile in zip(regions, result):
            out[region] += tile * weights[..., None]
    out /= total[..., None]
    return out[crop]


def _on_device(predict, volume, window, pads, starts, weights, total, crop, batch_size,
               num_classes, pad_value):
    if any(a or b for a, b in pads):
        volume = jnp.pad(volume, pads + [(0, 0)], constant_values=pad_value)
    channels = volume.shape[-1]
    probe = jax.eval_shape(predict, jax.ShapeDtypeStruct((batch_size, *window, channels),
                                                         volume.dtype))
    _check_output(probe, batch_size, window, num_classes)
    classes = probe.shape[-1]
    dtype = jnp.result_type(probe.dtype, jnp.float32)
    batches = math.ceil(len(starts) / batch_size)
    extra = batches * batch_size - len(starts)
    table = np.asarray(starts + [starts[-1]] * extra, np.int32).reshape(batches, batch_size, -1)
    valid = np.arange(batches * batch_size).reshape(batches, batch_size) < len(starts)
    weights = jnp.asarray(weights, dtype)[..., None]

    def body(acc, inputs):
        group, keep = inputs
        tiles = jax.vmap(lambda s: jax.lax.dynamic_slice(
            volume, (*s, 0), (*window, channels)))(group)
        result = predict(tiles).astype(dtype)
        for j in range(batch_size):
            index = (*group[j], 0)
            region = jax.lax.dynamic_slice(acc, index, (*window, classes))
            update = region + jnp.where(keep[j], result[j] * weights, 0)
            acc = jax.lax.dynamic_update_slice(acc, update, index)
        return acc, None

    acc = jnp.zeros((*volume.shape[:-1], classes), dtype)
    acc, _ = jax.lax.scan(body, acc, (jnp.asarray(table), jnp.asarray(valid)))
    return (acc / jnp.asarray(total, dtype)[..., None])[crop]
