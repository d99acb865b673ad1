"""Training examples for reconstruction nets: on-device augmentation and undersampling.

A training example starts as one fully sampled multi-coil k-space slice ``(coils, rows, cols)``
(complex64, centred orthonormal FFTs as in :mod:`mskjax.fourier`, phase encoding along the last
axis). :func:`augment_recon_example` turns it, from one ``jax.random`` key and entirely on the
device, into what a reconstruction net trains on: augmented, undersampled k-space, the ``(cols,)``
mask and the root-sum-of-squares target. Every option is static, so one jitted step serves every
key without recompiling; batch with ``jax.vmap`` over keys and examples.

Augmentations, in the order applied (each can be switched off; each draws from its own
sub-key, so switching one off leaves the draws of the others unchanged):

1. ``coils``: new receive coils. The coil images are combined by root-sum-of-squares and the
   object ``m = rss(x)`` is given new birdcage sensitivities (the model of
   :func:`mskjax.coils.birdcage_maps`, normalised so that ``sum_c |S_c|^2 = 1``) with the ring
   rotated by a random angle in ``[0, 2 pi)`` and a random radius in ``coil_radius``:
   ``x_c <- S_c m``. The root-sum-of-squares image is unchanged (noise already in the data
   included); the original image phase is dropped (the object becomes real before ``phase``).
2. ``phase``: ``"global"`` multiplies every coil image by ``exp(i phi0)``, ``phi0`` uniform in
   ``[0, 2 pi)``; ``"smooth"`` also by a random smooth phase ``exp(i phi(r))``, a quadratic
   polynomial over the normalised grid (the model of :func:`mskjax.sim.smooth_phase`).
   Neither changes the root-sum-of-squares image.
3. ``flip``: reverses the order of the rows (``"rows"``, an up-down flip of the image), of the
   columns (``"columns"``, left-right) or each of the two (``"both"``), each independently with
   probability 1/2. Done on the coil images, so it is an exact image flip for even and odd sizes.
4. ``scale``: multiplies everything by ``s``, log-uniform in ``scale = (low, high)``.
5. ``noise_snr_db``: adds circularly symmetric complex Gaussian noise to every k-space sample,
   with standard deviation ``sigma = signal / 10 ** (snr / 20)`` per complex sample
   (``E|n|^2 = sigma^2``) for ``snr`` uniform in ``noise_snr_db = (low, high)`` dB, where
   ``signal`` is the mean of the root-sum-of-squares image over the pixels above 10 % of its
   maximum (the SNR of :func:`mskjax.sim.simulate_kspace`). The noise is added on top of the
   noise the data already carry.

The target is the root-sum-of-squares of the augmented coil images *before* the added noise
(after steps 1 to 4): the net learns to remove the added noise, while the data's own noise stays
in the target as in fastMRI's ``reconstruction_rss``. It is centre-cropped (or zero-padded) to
``crop``, the convention of fastMRI's ``center_crop`` and of :func:`mskjax.io.make_kspace_set`.
Finally the mask is drawn and applied: unsampled entries are exactly zero.

The masks are fastMRI's: :func:`draw_equispaced_mask` gives exactly
:func:`mskjax.sampling.equispaced_mask` for the drawn offset, :func:`draw_random_mask` follows
``RandomMaskFunc`` (with JAX's generator instead of numpy's). For evaluation with fastMRI's very
masks, :func:`fastmri_eval_example` runs on the host with the per-file seed
``tuple(map(ord, fname))``.

This module needs only JAX (no flax or optax). The examples are :class:`ReconExample` tuples
whose fields ``kspace``, ``mask``, ``target`` and ``extra`` carry the names and meaning of the
same fields of :class:`mskjax.pipeline.Sample` (``mskjax.pipeline.Sample(**example._asdict())``
converts one), so a step written for the batches of :func:`mskjax.io.fastmri_batches` reads
either.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import (as_array, check_complex, check_finite, check_interval, check_ndim,
                       check_positive_int)
from ..coils import rss
from ..fourier import fft2c, ifft2c
from ..sampling import equispaced_mask, random_mask

_PREFIX = "mskjax.train."
_MASKS = ("equispaced", "random")
_FLIPS = {"rows": (True, False), "columns": (False, True), "both": (True, True)}
_PHASES = ("global", "smooth")
_NUM_KEYS = 7  # mask, coils, global phase, smooth phase, flip, scale, noise


class ReconExample(NamedTuple):
    """One training or evaluation example of a reconstruction net.

    Attributes:
        kspace: complex ``(coils, rows, cols)`` undersampled k-space (unsampled entries 0).
        mask: bool ``(cols,)`` sampling mask along the phase-encode (last) axis.
        target: float ``(crop_rows, crop_cols)`` root-sum-of-squares reference image.
        extra: dict with ``num_low_frequencies`` (int32 scalar, the fully sampled centre lines)
            and ``noise_std`` (the standard deviation of the added noise per complex k-space
            sample; 0 without added noise).
    """

    kspace: Any
    mask: Any
    target: Any
    extra: Any


# --------------------------------------------------------------------------- validation


def _num_cols(shape, func: str) -> int:
    if (isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) < 1
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                       for n in shape)):
        raise ValueError(f"{func}: shape must be a non-empty tuple of positive ints (the "
                         f"k-space shape, phase encoding last), got {shape!r}")
    return int(shape[-1])


def _centre_lines(num_cols: int, center_fraction, func: str) -> tuple[np.ndarray, int]:
    """fastMRI's fully sampled centre: ``round(cols * fraction)`` lines from ``(cols-n+1)//2``."""
    check_interval(center_fraction, "center_fraction", func, low=0, high=1)
    num_low = round(num_cols * float(center_fraction))
    centre = np.zeros(num_cols, dtype=bool)
    start = (num_cols - num_low + 1) // 2
    centre[start:start + num_low] = True
    return centre, num_low


def _range(value, name: str, func: str, *, positive: bool = False) -> tuple[float, float]:
    """A ``(low, high)`` pair of finite reals with ``low <= high`` (``low > 0`` if positive)."""
    ok = (isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        for v in value))
    if ok:
        low, high = float(value[0]), float(value[1])
        ok = low <= high and (low > 0 or not positive)
    if not ok:
        bound = "0 < low <= high" if positive else "low <= high"
        raise ValueError(f"{func}: {name} must be None or a pair (low, high) of finite reals "
                         f"with {bound}, got {value!r}")
    return low, high


def _choice(value, name: str, allowed, func: str):
    """``None`` (also for ``False``) or one of ``allowed``."""
    if value is None or value is False:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{func}: {name} must be None, False or one of {list(allowed)}, got "
                         f"{value!r}")
    return value


def _crop_size(crop, shape, func: str) -> tuple[int, int]:
    if crop is None:
        return tuple(shape)
    if (not isinstance(crop, (tuple, list)) or len(crop) != 2 or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
            for n in crop)):
        raise ValueError(f"{func}: crop must be None or (rows, cols) positive ints, got {crop!r}")
    return int(crop[0]), int(crop[1])


def _check_kspace(kspace, func: str):
    kspace = as_array(kspace, "kspace", func)
    check_ndim(kspace, "kspace", func, ndim=3, layout="(coils, rows, cols)")
    check_complex(kspace, "kspace", func)
    return kspace


# --------------------------------------------------------------------------- masks


def draw_equispaced_mask(key: jax.Array, shape: Sequence[int], *, center_fraction: float,
                         acceleration: int) -> tuple[jax.Array, int]:
    """fastMRI's equispaced mask with a random offset, drawn on the device.

    ``round(cols * center_fraction)`` centre lines plus every ``acceleration``-th line from an
    offset uniform in ``[0, acceleration)``: for the drawn offset ``o`` the mask equals
    ``mskjax.sampling.equispaced_mask(shape, center_fraction=..., acceleration=..., offset=o)``
    (so fastMRI's ``EquiSpacedMaskFunc``). Jittable and vmappable over keys; ``shape``,
    ``center_fraction`` and ``acceleration`` are static.

    Args:
        key: a ``jax.random`` key.
        shape: the complex k-space shape, e.g. ``(coils, rows, cols)``; ``cols = shape[-1]``.
        center_fraction: fraction of fully sampled centre lines, in (0, 1).
        acceleration: the spacing of the outer lines, an integer >= 1.

    Returns:
        ``(mask, num_low_frequencies)``: a bool ``(cols,)`` array and a Python int.
    """
    func = _PREFIX + "draw_equispaced_mask"
    num_cols = _num_cols(shape, func)
    if isinstance(acceleration, numbers.Real) and not isinstance(acceleration, numbers.Integral):
        raise ValueError(f"{func}: acceleration must be an integer >= 1 (the spacing of the "
                         f"lines), got {acceleration!r}; draw_random_mask takes real values")
    check_positive_int(acceleration, "acceleration", func)
    centre, num_low = _centre_lines(num_cols, center_fraction, func)
    offset = jax.random.randint(key, (), 0, int(acceleration))
    lines = jnp.arange(num_cols) % int(acceleration) == offset
    return jnp.asarray(centre) | lines, num_low


def draw_random_mask(key: jax.Array, shape: Sequence[int], *, center_fraction: float,
                     acceleration: float) -> tuple[jax.Array, int]:
    """fastMRI's random mask, drawn on the device.

    ``num_low = round(cols * center_fraction)`` centre lines are kept and every other line
    independently with probability ``(cols / acceleration - num_low) / (cols - num_low)``, as in
    fastMRI's ``RandomMaskFunc`` (about ``cols / acceleration`` lines on average), with JAX's
    random generator. Jittable and vmappable over keys; the other arguments are static.

    Args:
        key: a ``jax.random`` key.
        shape: the complex k-space shape; ``cols = shape[-1]``.
        center_fraction: fraction of fully sampled centre lines, in (0, 1).
        acceleration: the target acceleration, a real number >= 1.

    Returns:
        ``(mask, num_low_frequencies)``: a bool ``(cols,)`` array and a Python int.
    """
    func = _PREFIX + "draw_random_mask"
    num_cols = _num_cols(shape, func)
    check_interval(acceleration, "acceleration", func, low=1, low_open=False)
    centre, num_low = _centre_lines(num_cols, center_fraction, func)
    if num_low == num_cols:
        raise ValueError(f"{func}: center_fraction {center_fraction!r} keeps all {num_cols} "
                         f"columns; nothing is left to sample")
    probability = (num_cols / acceleration - num_low) / (num_cols - num_low)
    return jnp.asarray(centre) | (jax.random.uniform(key, (num_cols,)) < probability), num_low


# --------------------------------------------------------------------------- augmentations


def _grid(n: int):
    """Normalised coordinates ``(i - n/2) / (n/2)``, spanning ``[-1, 1)``."""
    return (jnp.arange(n, dtype=jnp.float32) - n / 2) / (n / 2)


def _rotated_birdcage(num_coils: int, rows: int, cols: int, radius, rotation):
    """Normalised 2D birdcage maps ``(coils, rows, cols)`` with the coil ring rotated.

    Coil ``c`` sits at ``radius * (cos a_c, sin a_c)``, ``a_c = 2 pi c / coils + rotation``, in
    the normalised ``(x, y)`` plane and has sensitivity ``exp(i (atan2(x - x_c, y_c - y) - a_c))
    / dist_c``, scaled to unit root-sum-of-squares; with ``rotation = 0`` these are
    ``mskjax.coils.birdcage_maps((coils, rows, cols), radius=radius)``. ``radius`` and
    ``rotation`` may be traced.
    """
    angle = jnp.arange(num_coils, dtype=jnp.float32) * (2 * np.pi / num_coils) + rotation
    angle = angle[:, None, None]
    dx = _grid(cols)[None, None, :] - radius * jnp.cos(angle)
    dy = _grid(rows)[None, :, None] - radius * jnp.sin(angle)
    magnitude = jax.lax.rsqrt(dx ** 2 + dy ** 2)
    magnitude = magnitude * jax.lax.rsqrt(jnp.sum(magnitude ** 2, axis=0))
    phase = jnp.arctan2(dx, -dy) - angle
    return jax.lax.complex(magnitude * jnp.cos(phase), magnitude * jnp.sin(phase))


def _smooth_phase(key, rows: int, cols: int, max_radians: float = np.pi):
    """A random quadratic phase over the normalised grid (``mskjax.sim.smooth_phase``'s model).

    ``sum_k a_k t_k`` over the terms ``1, y, x, y^2, x y, x^2`` with ``a_k`` uniform in
    ``[-1, 1) * max_radians / sqrt(6)``.
    """
    y, x = jnp.meshgrid(_grid(rows), _grid(cols), indexing="ij")
    terms = [jnp.ones((rows, cols), jnp.float32), y, x, y * y, y * x, x * x]
    coefficients = jax.random.uniform(key, (len(terms),), minval=-1.0, maxval=1.0)
    coefficients = coefficients * max_radians / np.sqrt(len(terms))
    return sum(c * t for c, t in zip(coefficients, terms))


def _log_uniform(key, low: float, high: float):
    return jnp.exp(jax.random.uniform(key, (), minval=math.log(low), maxval=math.log(high)))


def _crop_or_pad(image, size):
    """Centre-crop or zero-pad the last two axes to ``size`` (start ``(n - m) // 2``)."""
    for axis, m in zip((-2, -1), size):
        n = image.shape[axis]
        if n > m:
            start = (n - m) // 2
            image = jax.lax.slice_in_dim(image, start, start + m, axis=image.ndim + axis)
        elif n < m:
            widths = [(0, 0)] * image.ndim
            widths[axis] = ((m - n) // 2, m - n - (m - n) // 2)
            image = jnp.pad(image, widths)
    return image


def _signal(image):
    """Mean of ``image`` over its pixels above 10 % of its maximum (0 for a zero image)."""
    inside = image > 0.1 * jnp.max(image)
    return jnp.sum(jnp.where(inside, image, 0)) / jnp.maximum(jnp.sum(inside), 1)


def augment_recon_example(key: jax.Array, kspace: ArrayLike, *, acceleration: float,
                          center_fraction: float, mask: str = "equispaced",
                          flip: str | None = "columns", phase: str | None = "smooth",
                          coils: bool = True, coil_radius: tuple[float, float] = (1.5, 2.5),
                          noise_snr_db: tuple[float, float] | None = (20.0, 40.0),
                          scale: tuple[float, float] | None = (0.5, 2.0),
                          crop: tuple[int, int] | None = None) -> ReconExample:
    """Augment and undersample one fully sampled example on the device (module docstring).

    Jittable with every option static (``functools.partial`` or ``static_argnames``): a new
    key does not recompile. Batch with ``jax.vmap(f)(keys, kspaces)``.

    Args:
        key: a ``jax.random`` key; split into one sub-key per augmentation and one for the mask.
        kspace: complex ``(coils, rows, cols)`` fully sampled k-space (centred, orthonormal).
        acceleration: an integer >= 1 for ``mask="equispaced"``, a real >= 1 for ``"random"``.
        center_fraction: fraction of fully sampled centre lines, in (0, 1).
        mask: ``"equispaced"`` (:func:`draw_equispaced_mask`, default) or ``"random"``
            (:func:`draw_random_mask`).
        flip: ``"columns"`` (default, left-right), ``"rows"`` (up-down), ``"both"``, or
            None/False; each enabled axis is flipped with probability 1/2.
        phase: ``"smooth"`` (default: a global and a smooth random phase), ``"global"``, or
            None/False.
        coils: replace the coil sensitivities by randomly rotated birdcage maps (default True).
        coil_radius: ``(low, high)`` range of the birdcage radius in normalised units (the field
            of view spans ``[-1, 1)``; above ``sqrt(2)`` every coil is outside it); default
            ``(1.5, 2.5)``.
        noise_snr_db: ``(low, high)`` SNR range in dB of the added noise (default
            ``(20, 40)``), or None for no added noise.
        scale: ``(low, high)`` range of the log-uniform intensity scale, ``0 < low``; default
            ``(0.5, 2.0)``; None for no scaling.
        crop: ``(rows, cols)`` of the target (centre crop or zero pad); None keeps the k-space
            size.

    Returns:
        :class:`ReconExample`: ``kspace`` the augmented k-space with the mask applied (the
        input's dtype, unsampled entries exactly 0), ``mask`` bool ``(cols,)``, ``target`` the
        real root-sum-of-squares of the augmented noise-free coil images cropped to ``crop``,
        ``extra`` with ``num_low_frequencies`` and ``noise_std``.
    """
    func = _PREFIX + "augment_recon_example"
    kspace = _check_kspace(kspace, func)
    check_finite(kspace, "kspace", func)
    mask = _choice(mask, "mask", _MASKS, func)
    if mask is None:
        raise ValueError(f"{func}: mask must be one of {list(_MASKS)}, got None")
    flip = _choice(flip, "flip", _FLIPS, func)
    phase = _choice(phase, "phase", _PHASES, func)
    if not isinstance(coils, bool):
        raise ValueError(f"{func}: coils must be True or False, got {coils!r}")
    radius = _range(coil_radius, "coil_radius", func, positive=True) if coils else None
    snr_db = None if noise_snr_db is None else _range(noise_snr_db, "noise_snr_db", func)
    scale = None if scale is None else _range(scale, "scale", func, positive=True)
    num_coils, rows, cols = kspace.shape
    size = _crop_size(crop, (rows, cols), func)
    draw = draw_equispaced_mask if mask == "equispaced" else draw_random_mask
    keys = jax.random.split(key, _NUM_KEYS)
    sampled, num_low = draw(keys[0], kspace.shape, center_fraction=center_fraction,
                            acceleration=acceleration)
    kspace = jnp.asarray(kspace)
    images = ifft2c(kspace)
    in_image_domain = coils or phase is not None or flip is not None
    if coils:
        k_radius, k_rotation = jax.random.split(keys[1])
        maps = _rotated_birdcage(
            num_coils, rows, cols,
            jax.random.uniform(k_radius, (), minval=radius[0], maxval=radius[1]),
            jax.random.uniform(k_rotation, (), maxval=2 * np.pi))
        images = maps.astype(images.dtype) * rss(images, axis=0)
    if phase is not None:
        angle = jax.random.uniform(keys[2], (), maxval=2 * np.pi)
        if phase == "smooth":
            angle = angle + _smooth_phase(keys[3], rows, cols)
        images = images * jax.lax.complex(jnp.cos(angle), jnp.sin(angle)).astype(images.dtype)
    if flip is not None:
        enabled = _FLIPS[flip]
        flips = jax.random.bernoulli(keys[4], 0.5, (2,))
        for axis, on in zip((1, 2), enabled):
            if on:
                images = jnp.where(flips[axis - 1], jnp.flip(images, axis=axis), images)
    clean = fft2c(images) if in_image_domain else kspace
    if scale is not None:
        factor = _log_uniform(keys[5], *scale)
        images = images * factor
        clean = clean * factor

    target = rss(images, axis=0)
    noise_std = jnp.zeros((), target.dtype)
    noisy = clean
    if snr_db is not None:
        k_snr, k_noise = jax.random.split(keys[6])
        snr = jax.random.uniform(k_snr, (), minval=snr_db[0], maxval=snr_db[1])
        noise_std = (_signal(target) / 10 ** (snr / 20)).astype(target.dtype)
        # drawn flat and reshaped: the same numbers for the key, much faster to compile on CPU
        noise = jax.random.normal(k_noise, (clean.size,), clean.dtype).reshape(clean.shape)
        noisy = clean + noise_std * noise
    masked = jnp.where(sampled, noisy, jnp.zeros((), noisy.dtype)).astype(kspace.dtype)
    extra = {"num_low_frequencies": jnp.asarray(num_low, jnp.int32), "noise_std": noise_std}
    return ReconExample(masked, sampled, _crop_or_pad(target, size), extra)


def fastmri_eval_example(kspace: ArrayLike, *, fname: str, acceleration: float,
                         center_fraction: float, mask: str = "equispaced",
                         crop: tuple[int, int] | None = None) -> ReconExample:
    """Undersample one fully sampled example with fastMRI's deterministic mask for a file.

    Host side (numpy): the mask is :func:`mskjax.sampling.equispaced_mask` (or
    :func:`mskjax.sampling.random_mask`) with fastMRI's per-file seed
    ``tuple(map(ord, fname))``, so every slice of a file gets fastMRI's own mask, as in
    :func:`mskjax.io.fastmri_batches`. No augmentation.

    Args:
        kspace: complex ``(coils, rows, cols)`` fully sampled k-space.
        fname: the file name (e.g. ``"file1000001.h5"``, without folders), the mask's seed.
        acceleration: an integer >= 1 for ``"equispaced"``, a real >= 1 for ``"random"``.
        center_fraction: fraction of fully sampled centre lines, in (0, 1).
        mask: ``"equispaced"`` (default) or ``"random"``.
        crop: ``(rows, cols)`` of the target (centre crop or zero pad); None keeps the size.

    Returns:
        :class:`ReconExample` of numpy arrays, with the fields of :func:`augment_recon_example`
        (``noise_std`` 0): the masked k-space (unsampled entries exactly 0), the mask, the
        root-sum-of-squares of the fully sampled k-space cropped to ``crop``.
    """
    func = _PREFIX + "fastmri_eval_example"
    kspace = _check_kspace(kspace, func)
    check_finite(kspace, "kspace", func)
    if not isinstance(fname, str) or not fname:
        raise ValueError(f"{func}: fname must be a non-empty file name, got {fname!r}")
    mask = _choice(mask, "mask", _MASKS, func)
    if mask is None:
        raise ValueError(f"{func}: mask must be one of {list(_MASKS)}, got None")
    size = _crop_size(crop, kspace.shape[1:], func)
    make = equispaced_mask if mask == "equispaced" else random_mask
    sampled, num_low = make(kspace.shape, center_fraction=center_fraction,
                            acceleration=acceleration, seed=tuple(map(ord, fname)))
    kspace = np.asarray(kspace)
    target = np.asarray(_crop_or_pad(rss(ifft2c(jnp.asarray(kspace)), axis=0), size))
    masked = np.where(sampled, kspace, np.zeros((), kspace.dtype))
    extra = {"num_low_frequencies": np.asarray(num_low, np.int32),
             "noise_std": np.zeros((), target.dtype)}
    return ReconExample(masked, sampled, target, extra)
