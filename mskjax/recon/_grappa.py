"""GRAPPA: k-space interpolation of regularly undersampled Cartesian data (Griswold et al. 2002).

Conventions:

- ``kspace`` is ``(coils, *spatial)`` with 2 or 3 spatial axes (``(coils, ky, kx)`` or
  ``(coils, kz, ky, kx)``), centred, with exact zeros at the samples that were not acquired.
  A location counts as acquired when any coil is non-zero there.
- The acquisition is a regular lattice: along spatial axis ``d`` the acquired positions are
  ``y_d = o_d (mod R_d)``, with acceleration ``R = (R_1, ..., R_n)`` (``R_d = 1`` for a fully
  sampled axis) and offset ``0 <= o_d < R_d``. The offset is found from the data (also under
  ``jit``): the residue class ``o`` with the largest fraction of acquired samples. Samples off
  the lattice (a calibration region inside the k-space, extra lines) may be present too; they
  are kept, never used as sources. A matrix size that ``R_d`` does not divide is fine: the
  last cell is partial.
- Each missing sample has an offset ``delta`` from the lattice point of its cell
  (``0 <= delta_d < R_d``, not all zero); there are ``prod(R) - 1`` offsets, and GRAPPA fits
  one set of weights per offset. The sources of a target are the lattice samples of every coil
  inside a window of ``kernel_size`` samples around it: along axis ``d`` the window covers the
  offsets ``-(k_d // 2) ... k_d - k_d // 2 - 1`` from the target (centred for odd ``k_d``,
  one more sample before than after for even ``k_d``; pygrappa's window). Sources beyond the
  edge of k-space are zero.
- The weights solve, per offset, the Tikhonov-regularised least squares problem
  ``min_W ||A W - B||^2 + lam ||W||^2`` on the calibration region, with ``A`` (windows x
  sources*coils) the sources and ``B`` (windows x coils) the targets, through the normal
  equations ``(A^H A + lam I) W = A^H B``, where ``lam = lamda * trace(A^H A) / n``
  (``n = sources * coils``): ``lamda`` is relative to the mean eigenvalue of ``A^H A``. The
  rows of ``A`` are the calibration windows: every position ``p`` of the calibration region
  such that the sources of every offset (``p + q R`` over the box of lattice steps ``q`` that
  the windows of all offsets span) and the whole cell ``p + delta`` lie inside it, so every
  offset is fitted on the same windows.
"""

from __future__ import annotations

import functools
import itertools
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from .._checks import (_is_concrete, as_array, check_complex, check_finite, check_interval,
                       check_ndim)

_FUNC = "mskjax.recon.grappa"
_HIGHEST = lax.Precision.HIGHEST


def grappa(kspace: ArrayLike, calib: ArrayLike, *, kernel_size: int | Sequence[int] = (5, 5),
           lamda: float = 0.01, acceleration: int | Sequence[int] | None = None,
           keep_calib: bool = False) -> jax.Array:
    """GRAPPA reconstruction of regularly undersampled multi-coil Cartesian k-space.

    Fits one set of kernel weights per missing-sample offset in the acceleration cell on the
    calibration (ACS) region, fills every missing sample of every coil with them, and keeps
    the acquired samples as they are. See the module docstring for the lattice, the window
    and the regularisation.

    Args:
        kspace: complex ``(coils, ky, kx)`` (or ``(coils, kz, ky, kx)``) centred k-space with
            zeros at the unacquired samples, acquired on a regular lattice.
        calib: complex ``(coils, cy, cx)`` (``(coils, cz, cy, cx)``) fully sampled calibration
            region, same coils and dtype as ``kspace``, no larger than it on any axis. It
            must hold at least one full kernel window plus an acceleration cell per axis, and
            at least as many windows as each target has unknown weights.
        kernel_size: window size per spatial axis in k-space samples, an int (every axis) or
            a tuple of one int per spatial axis (keyword-only; default ``(5, 5)``, so 3D data
            needs three ints or an int). For good results the window should reach an acquired
            sample on either side of every missing one, ``kernel_size[d] >= 2 * R_d - 1``.
        lamda: Tikhonov weight relative to ``trace(A^H A) / n`` (keyword-only, ``>= 0``;
            default 0.01).
        acceleration: ``(R_y, R_x)`` (one int per spatial axis, ``R_d = 1`` for an axis that
            is not undersampled) (keyword-only). Default ``None``: inferred from the non-zero
            pattern of ``kspace`` as the lattice with the most points that lies entirely on
            acquired samples; it must hold at least half of the acquired samples and be the
            only such lattice, otherwise a ValueError says the pattern is not a regular
            lattice. Inference needs concrete data: under ``jit`` or ``vmap`` pass it.
        keep_calib: also write ``calib`` into the centre of the output (keyword-only; default
            False), at ``n_d // 2 - c_d // 2 ... n_d // 2 - c_d // 2 + c_d - 1`` along each
            axis (the centred-FFT centre ``n_d // 2``). Use it when ``calib`` is the centre of
            this same scan but ``kspace`` holds zeros there.

    Returns:
        Complex ``(coils, *spatial)`` k-space of ``kspace``'s dtype: the acquired samples
        unchanged, every other sample filled. ``mskjax.recon.zero_filled`` of it is the
        root-sum-of-squares image.

    Raises:
        TypeError: non-array or real ``kspace``/``calib``; acceleration left to inference
            under tracing.
        ValueError: bad shapes (calib larger than the data, other coils or dtype), non-finite
            values, bad ``kernel_size``/``lamda``/``acceleration``, a sampling pattern that is
            not a regular lattice (or not fully acquired on the given acceleration's
            lattice), a window holding no acquired sample for some missing offset, or a
            calibration region too small for the kernel and the acceleration, a calibration
            region without signal (all zeros) or one whose kernel weights cannot be fitted
            (a singular system: the filled k-space would not be finite).

    Under ``jit`` and ``vmap`` (with ``acceleration`` given) all sizes are static and the
    lattice offset is found in the graph; ``lamda`` is passed on as an array, so a new value
    does not recompile. Value checks (finiteness, the lattice, a calibration region with
    signal) only run on concrete arrays; under ``jit`` a calibration region without signal
    fills every missing sample with NaN (the acquired samples are kept), so the failure stays
    visible downstream instead of passing for zeros.
    """
    kspace = as_array(kspace, "kspace", _FUNC)
    calib = as_array(calib, "calib", _FUNC)
    check_ndim(kspace, "kspace", _FUNC, ndim=(3, 4),
               layout="(coils, ky, kx) or (coils, kz, ky, kx)")
    check_complex(kspace, "kspace", _FUNC)
    check_complex(calib, "calib", _FUNC)
    ndim = kspace.ndim - 1
    spatial = tuple(kspace.shape[1:])
    check_ndim(calib, "calib", _FUNC, ndim=kspace.ndim,
               layout=f"(coils, *spatial) with {ndim} spatial axes like kspace")
    if calib.shape[0] != kspace.shape[0]:
        raise ValueError(f"{_FUNC}: calib must have the {kspace.shape[0]} coils of kspace, "
                         f"got shape {tuple(calib.shape)}")
    if jnp.result_type(calib) != jnp.result_type(kspace):
        raise ValueError(f"{_FUNC}: calib must have kspace's dtype "
                         f"{jnp.result_type(kspace)}, got {jnp.result_type(calib)}")
    cshape = tuple(calib.shape[1:])
    if any(c > n for c, n in zip(cshape, spatial)) or min(cshape) < 1:
        raise ValueError(f"{_FUNC}: calib must be no larger than the k-space {spatial} on "
                         f"every spatial axis, got calib {cshape}")
    check_finite(kspace, "kspace", _FUNC)
    check_finite(calib, "calib", _FUNC)
    kernel = _sizes(kernel_size, ndim, "kernel_size")
    check_interval(lamda, "lamda", _FUNC, low=0, low_open=False)
    if not isinstance(keep_calib, (bool, np.bool_)):
        raise TypeError(f"{_FUNC}: keep_calib must be a bool, got {keep_calib!r}")
    concrete = _is_concrete(kspace)
    if acceleration is None:
        if not concrete:
            raise TypeError(f"{_FUNC}: acceleration must be given when kspace is traced "
                            "(under jit or vmap); it is inferred only from concrete k-space")
        accel = _infer_lattice(_acquired_host(kspace))
    else:
        accel = _sizes(acceleration, ndim, "acceleration")
        if any(r > n for r, n in zip(accel, spatial)):
            raise ValueError(f"{_FUNC}: acceleration must not exceed the matrix size "
                             f"{spatial} on any axis, got {accel}")
        if concrete:
            _check_lattice(_acquired_host(kspace), accel)
    if _is_concrete(calib) and not np.any(np.asarray(calib) != 0):
        raise ValueError(f"{_FUNC}: the calibration region calib holds no signal (all zeros), "
                         "so there are no kernel weights to fit; pass the fully sampled "
                         "centre of k-space")
    plan = _plan(accel, kernel, cshape, kspace.shape[0])
    real = jnp.finfo(jnp.result_type(kspace)).dtype
    out = _grappa(jnp.asarray(kspace), jnp.asarray(calib), jnp.asarray(lamda, real),
                  plan=plan, keep_calib=bool(keep_calib))
    if concrete and _is_concrete(calib) and not bool(jnp.all(jnp.isfinite(out))):
        raise ValueError(f"{_FUNC}: the kernel weights could not be fitted (a singular "
                         "calibration system: too little signal in calib for the kernel, or "
                         "lamda=0); pass a larger calibration region or lamda > 0")
    return out


# -- static plan -------------------------------------------------------------------------------

class _Plan(NamedTuple):
    """Static description of the interpolation (hashable: a jit static argument)."""

    accel: tuple      # R_d
    qlo: tuple        # the source box along axis d: lattice steps qlo_d ... qhi_d from a cell
    qhi: tuple
    targets: tuple    # the missing offsets delta, row-major, (0, ..., 0) excluded
    masks: tuple      # per target, per box entry: is it a source (inside the window)?
    calib_lo: tuple   # first calibration reference position along axis d
    calib_count: tuple  # number of calibration reference positions along axis d


def _window_steps(delta, r, k):
    """Lattice steps q with ``q * r - delta`` inside the window of size ``k`` (axis-wise)."""
    h = k // 2
    return -((h - delta) // r), (delta + k - h - 1) // r  # ceil((delta - h) / r), floor(...)


def _plan(accel, kernel, cshape, coils) -> _Plan:
    ndim = len(accel)
    targets = tuple(d for d in itertools.product(*(range(r) for r in accel)) if any(d))
    if not targets:
        return _Plan(accel, (0,) * ndim, (0,) * ndim, (), (), (0,) * ndim, (1,) * ndim)
    qlo, qhi = [], []
    for d in range(ndim):
        steps = [_window_steps(delta, accel[d], kernel[d]) for delta in range(accel[d])]
        for delta, (lo, hi) in enumerate(steps):
            if lo > hi:
                raise ValueError(
                    f"{_FUNC}: kernel_size {kernel} is too small for acceleration {accel}: "
                    f"along spatial axis {d} the window of {kernel[d]} samples around a "
                    f"missing sample at offset {delta} holds no acquired sample; use "
                    f"kernel_size[{d}] >= {2 * accel[d] - 1}")
        qlo.append(min(lo for lo, _ in steps))
        qhi.append(max(hi for _, hi in steps))
    box = list(itertools.product(*(range(lo, hi + 1) for lo, hi in zip(qlo, qhi))))
    masks = []
    for delta in targets:
        inside = []
        for q in box:
            ok = True
            for d in range(ndim):
                lo, hi = _window_steps(delta[d], accel[d], kernel[d])
                ok &= lo <= q[d] <= hi
            inside.append(ok)
        masks.append(tuple(inside))
    # Reference positions p of the calibration windows: sources p + q R and targets p + delta
    # must all lie inside the calibration region.
    lo = tuple(-qlo[d] * accel[d] for d in range(ndim))
    hi = tuple(min(cshape[d] - 1 - qhi[d] * accel[d], cshape[d] - accel[d]) for d in range(ndim))
    count = tuple(hi[d] - lo[d] + 1 for d in range(ndim))
    need = tuple(lo[d] + max(qhi[d] * accel[d], accel[d] - 1) + 1 for d in range(ndim))
    unknowns = coils * max(sum(m) for m in masks)
    if min(count) < 1 or int(np.prod(count)) < unknowns:
        raise ValueError(
            f"{_FUNC}: calib of spatial shape {cshape} is too small for kernel_size {kernel} "
            f"and acceleration {accel}: it needs at least {need} samples per axis and at least "
            f"{unknowns} calibration windows (one per unknown weight of a target), got "
            f"{max(int(np.prod([max(c, 0) for c in count])), 0)} windows")
    return _Plan(tuple(accel), tuple(qlo), tuple(qhi), targets, tuple(masks), lo, count)


def _sizes(value, ndim, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * ndim
    try:
        out = tuple(value)
    except TypeError:
        raise ValueError(f"{_FUNC}: {name} must be an int or a tuple of {ndim} ints, got "
                         f"{value!r}") from None
    if len(out) != ndim or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                   and v >= 1 for v in out):
        raise ValueError(f"{_FUNC}: {name} must be {ndim} positive ints (one per spatial "
                         f"axis), got {value!r}")
    return tuple(int(v) for v in out)


# -- the sampling lattice (host side) ----------------------------------------------------------

def _acquired_host(kspace):
    return np.any(np.asarray(kspace) != 0, axis=0) if _is_concrete(kspace) else None


def _class_sizes(shape, accel):
    """Number of positions in each residue class ``o`` (an array of shape ``accel``)."""
    per_axis = [-(-(n - np.arange(r)) // r) for n, r in zip(shape, accel)]
    return functools.reduce(np.multiply.outer, per_axis)


def _lattices(mask, need):
    """Yield ``(R, o, points)`` of the product lattices inside ``mask`` with >= need points."""
    if mask.ndim == 0:
        if mask:
            yield (), (), 1
        return
    n, rest = mask.shape[0], int(np.prod(mask.shape[1:]))
    for r in range(1, n + 1):
        if -(-n // r) * rest < need:
            break
        for o in range(r):
            points = -(-(n - o) // r)
            sub = np.all(mask[o::r], axis=0)
            if points * rest < need or not np.any(sub):
                continue
            for rr, oo, p in _lattices(sub, need / points):
                yield (r, *rr), (o, *oo), points * p


def _infer_lattice(mask):
    acquired = int(mask.sum())
    if acquired == 0:
        raise ValueError(f"{_FUNC}: kspace has no non-zero sample, nothing to interpolate from")
    found = list(_lattices(mask, acquired / 2))
    if not found:
        raise ValueError(
            f"{_FUNC}: the non-zero pattern of kspace is not a regular lattice: no lattice "
            f"y_d = o_d (mod R_d) of acquired samples holds at least half of the {acquired} "
            "acquired samples; GRAPPA needs regular (equispaced) undersampling")
    best = max(p for _, _, p in found)
    top = [(r, o) for r, o, p in found if p == best]
    if len(top) > 1:
        raise ValueError(
            f"{_FUNC}: the non-zero pattern of kspace is not a single regular lattice: "
            f"lattices with accelerations and offsets {top} fit it equally well; pass "
            "acceleration explicitly")
    return top[0][0]


def _check_lattice(mask, accel):
    """ValueError unless the lattice offset :func:`_grappa` picks is fully acquired."""
    fraction = _class_counts(mask, accel, np) / _class_sizes(mask.shape, accel)
    offset = np.unravel_index(int(np.argmax(fraction)), accel)
    if fraction[offset] < 1:
        size = int(_class_sizes(mask.shape, accel)[offset])
        raise ValueError(
            f"{_FUNC}: kspace is not acquired on a lattice of acceleration {accel}: the best "
            f"offset {tuple(int(o) for o in offset)} has only "
            f"{int(round(fraction[offset] * size))} of its {size} samples non-zero")


def _class_counts(mask, accel, xp):
    """Acquired samples per residue class: an array of shape ``accel``."""
    shape = mask.shape
    cells = tuple(-(-n // r) for n, r in zip(shape, accel))
    padded = xp.pad(mask, [(0, c * r - n) for c, r, n in zip(cells, accel, shape)])
    split = padded.reshape(tuple(x for cr in zip(cells, accel) for x in cr))
    return xp.sum(split, axis=tuple(range(0, 2 * len(shape), 2)), dtype=xp.int32)


# -- the computation ---------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("plan", "keep_calib"))
def _grappa(kspace, calib, lamda, *, plan, keep_calib):
    spatial = kspace.shape[1:]
    acquired = jnp.any(kspace != 0, axis=0)
    if plan.targets:
        # The lattice offset: the residue class with the largest fraction of acquired samples.
        counts = _class_counts(acquired, plan.accel, jnp)
        fraction = counts / jnp.asarray(_class_sizes(spatial, plan.accel), jnp.float32)
        offset = jnp.stack(jnp.unravel_index(jnp.argmax(fraction), plan.accel))
        weights = _fit(calib, lamda, plan)
        filled = _interpolate(kspace, weights, offset, plan)
        out = jnp.where(acquired, kspace, filled)
    else:
        out = kspace
    if keep_calib:
        start = tuple(n // 2 - c // 2 for n, c in zip(spatial, calib.shape[1:]))
        index = (slice(None),) + tuple(slice(s, s + c) for s, c in zip(start, calib.shape[1:]))
        out = out.at[index].set(calib)
    return out


def _box(plan):
    return list(itertools.product(*(range(lo, hi + 1) for lo, hi in zip(plan.qlo, plan.qhi))))


def _fit(calib, lamda, plan):
    """Kernel weights ``(targets, box * coils, coils)`` from the calibration region."""
    coils = calib.shape[0]
    lo, count, accel = plan.calib_lo, plan.calib_count, plan.accel

    def window(start):
        index = (slice(None),) + tuple(slice(s, s + c) for s, c in zip(start, count))
        return calib[index].reshape(coils, -1)                      # (coils, windows)

    sources = jnp.concatenate(
        [window([low + q * r for low, q, r in zip(lo, qs, accel)]) for qs in _box(plan)])
    sources = sources.T                                             # (windows, box * coils)
    targets = jnp.stack(
        [window([low + d for low, d in zip(lo, delta)]).T for delta in plan.targets])
    mask = np.repeat(np.asarray(plan.masks, dtype=bool), coils, axis=1)  # (targets, n)
    gram = jnp.matmul(sources.conj().T, sources, precision=_HIGHEST)
    rhs = jnp.einsum("wn,twc->tnc", sources.conj(), targets, precision=_HIGHEST)
    m = jnp.asarray(mask)
    diag = jnp.real(jnp.diagonal(gram))
    reg = lamda * jnp.sum(jnp.where(m, diag, 0), axis=1) / mask.sum(axis=1)   # (targets,)
    normal = gram * (m[:, :, None] & m[:, None, :])
    normal = normal + jax.vmap(jnp.diag)(jnp.where(m, reg[:, None], 1).astype(gram.dtype))
    weights = jnp.linalg.solve(normal, rhs * m[:, :, None])
    # No signal in a target's source windows: NaN weights (visible under jit), never zeros.
    energy = jnp.sum(jnp.where(m, diag, 0), axis=1)
    return jnp.where((energy > 0)[:, None, None], weights, jnp.asarray(jnp.nan, weights.dtype))


def _interpolate(kspace, weights, offset, plan):
    """Every sample of the lattice cells, the missing ones from the weights: ``kspace``'s shape."""
    coils, spatial = kspace.shape[0], kspace.shape[1:]
    accel, ndim = plan.accel, len(plan.accel)
    # Move the lattice onto multiples of R in a zero-padded grid of whole cells.
    cells = tuple(-(-(n + r - 1) // r) for n, r in zip(spatial, accel))
    shift = (jnp.asarray(accel) - offset) % jnp.asarray(accel)
    padded = jnp.zeros((coils,) + tuple(c * r for c, r in zip(cells, accel)), kspace.dtype)
    padded = lax.dynamic_update_slice(padded, kspace, (0, *shift))
    split = padded.reshape((coils,) + tuple(x for cr in zip(cells, accel) for x in cr))
    lattice = split[(slice(None),) + (slice(None), 0) * ndim]       # (coils, *cells)
    # Sources: the lattice shifted by every step q of the box (zero beyond the edge).
    pad = [(0, 0)] + [(-lo, hi) for lo, hi in zip(plan.qlo, plan.qhi)]
    framed = jnp.pad(lattice, pad)
    sources = jnp.concatenate([
        framed[(slice(None),) + tuple(slice(q - lo, q - lo + c)
                                      for q, lo, c in zip(qs, plan.qlo, cells))]
        .reshape(coils, -1)
        for qs in _box(plan)])                                      # (box * coils, cells)
    missing = jnp.einsum("tnc,nx->tcx", weights, sources, precision=_HIGHEST)
    every = jnp.concatenate([lattice.reshape(1, coils, -1), missing])  # (prod R, coils, cells)
    every = every.reshape(accel + (coils,) + cells)
    order = (ndim,) + tuple(x for d in range(ndim) for x in (ndim + 1 + d, d))
    grid = every.transpose(order).reshape(padded.shape)
    return lax.dynamic_slice(grid, (0, *shift), kspace.shape)
