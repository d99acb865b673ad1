"""Relaxometry: voxel-wise mono-exponential fits for T2 (multi-echo) and T1rho (spin-lock) maps.

Conventions:

- ``images`` is ``(len(times), *spatial)``: one real magnitude image per echo or spin-lock
  time, stacked on the first axis. ``times`` are in ms (any unit works; the time constant comes
  back in the same unit). Integer images (DICOM) are fitted in float32; float64 images in
  float64 when JAX's 64-bit mode is on.
- The model ``"mono_exponential"`` is ``S(t) = A exp(-t / T)``: ``T`` is T2 for spin-echo
  trains and T1rho for spin-lock preparations, ``A`` the signal extrapolated to ``t = 0``.
- An echo is *usable* in a voxel when its signal is finite, positive and, with
  ``noise_floor``, above the floor. Both methods fit the usable echoes only (the noise floor
  excludes echoes; it does not model the Rician bias).
- ``"log_linear"``: least squares of ``log S = log A - t / T`` (closed form, weighted 0/1).
  ``"nonlinear"``: least squares on the linear signal by Levenberg-Marquardt, started from the
  log-linear fit (from ``T = max(times)`` where that fit is not decaying).
- Every voxel gets a :class:`FitStatus`; ``valid`` is ``status == VALID``. Where a voxel is
  not valid, ``time_constant``, ``amplitude`` and ``r2`` are 0 (never NaN): read them together
  with ``valid``.
"""

from __future__ import annotations

import enum
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_finite, check_positive_int

MODELS = ("mono_exponential",)
METHODS = ("log_linear", "nonlinear")

#: Levenberg-Marquardt settings: the damping starts at ``LM_DAMPING_START``; an accepted step
#: divides it by ``LM_DAMPING_FACTOR`` (not below ``LM_DAMPING_MIN``), a rejected step
#: multiplies it by the same factor. Past ``LM_DAMPING_MAX`` no step lowers the cost at
#: working precision: the voxel has reached its minimum.
LM_DAMPING_START = 1e-3
LM_DAMPING_FACTOR = 10.0
LM_DAMPING_MIN = 1e-12
LM_DAMPING_MAX = 1e12
#: Cost changes below ``ROUNDING * eps * cost`` are treated as rounding (see
#: ``_levenberg_marquardt``).
ROUNDING = 16.0
#: Levenberg-Marquardt steps that all voxels of a chunk take together before the voxels that
#: have not converged are gathered into buckets of at most ``LEFTOVER_BUCKET`` and continued.
LM_FIRST_STAGE = 16
LEFTOVER_BUCKET = 1024
#: Voxels are fitted in chunks of this many (padded to a power of two, at least
#: ``MIN_BUCKET``), so that a new image size rarely compiles a new kernel.
CHUNK = 1 << 16
MIN_BUCKET = 256


class FitStatus(enum.IntEnum):
    """Why a voxel's fit is or is not valid (``RelaxationFit.status``, int8).

    The first reason that applies, in this order, is recorded.

    - ``VALID`` (0): a decaying fit with a positive amplitude, a time constant in range, a
      converged iteration and (with ``min_r2``) a good enough fit.
    - ``MASKED`` (1): outside ``mask``.
    - ``TOO_FEW_TIMES`` (2): fewer than two distinct usable times (signal not finite, not
      positive, or at or below ``noise_floor``).
    - ``NOT_DECAYING`` (3): the fitted rate ``1 / T`` is zero or negative (a flat or growing
      signal), or not finite.
    - ``NONPOSITIVE_AMPLITUDE`` (4): ``A <= 0`` or not finite.
    - ``OUT_OF_RANGE`` (5): ``T`` outside ``time_constant_range``.
    - ``NOT_CONVERGED`` (6): Levenberg-Marquardt used ``max_iterations`` without converging.
    - ``LOW_R2`` (7): ``r2 < min_r2``.
    """

    VALID = 0
    MASKED = 1
    TOO_FEW_TIMES = 2
    NOT_DECAYING = 3
    NONPOSITIVE_AMPLITUDE = 4
    OUT_OF_RANGE = 5
    NOT_CONVERGED = 6
    LOW_R2 = 7


class RelaxationFit(NamedTuple):
    """A relaxation map (a pytree: it can be jitted and saved).

    Attributes:
        time_constant: ``(*spatial)`` ``T`` in the unit of ``times`` (ms); 0 where not valid.
        amplitude: ``(*spatial)`` ``A``, the signal at ``t = 0``; 0 where not valid.
        r2: ``(*spatial)`` coefficient of determination ``1 - SS_res / SS_tot`` of the fitted
            curve against the usable echoes, on the linear signal; 0 where not valid.
        valid: ``(*spatial)`` bool, ``status == FitStatus.VALID``.
        status: ``(*spatial)`` int8 :class:`FitStatus` code.
    """

    time_constant: jax.Array
    amplitude: jax.Array
    r2: jax.Array
    valid: jax.Array
    status: jax.Array


# ---------------------------------------------------------------------------------------------
# One voxel: t, s, w are (times,); w marks the usable echoes.


def _log_linear(t, s, w):
    """Closed-form least squares of ``log s = log A - R t`` over the usable echoes."""
    wf = w.astype(s.dtype)
    n = wf.sum()
    y = jnp.where(w, jnp.log(jnp.where(w, s, 1)), 0)
    n_safe = jnp.maximum(n, 1)
    t_mean = (wf * t).sum() / n_safe
    y_mean = (wf * y).sum() / n_safe
    dt = wf * (t - t_mean)
    stt = (dt * (t - t_mean)).sum()
    sty = (dt * (y - y_mean)).sum()
    enough = (n >= 2) & (stt > 0)
    slope = sty / jnp.where(enough, stt, 1)
    return -slope, y_mean - slope * t_mean, enough


def _cost(t, s, wf, amplitude, rate):
    residual = wf * (amplitude * jnp.exp(-rate * t) - s)
    return 0.5 * jnp.sum(residual * residual)


class _LMState(NamedTuple):
    """Levenberg-Marquardt state of one voxel (of every voxel, under vmap)."""

    amplitude: jax.Array
    rate: jax.Array
    damping: jax.Array
    cost: jax.Array
    done: jax.Array
    converged: jax.Array
    steps: jax.Array


def _lm_start(t, s, w, amplitude, rate):
    wf = w.astype(s.dtype)
    return _LMState(amplitude, rate, jnp.asarray(LM_DAMPING_START, s.dtype),
                    _cost(t, s, wf, amplitude, rate), jnp.bool_(False), jnp.bool_(False),
                    jnp.int32(0))


def _lm_run(t, s, w, state, max_steps, xtol):
    """Levenberg-Marquardt steps minimising ``sum_usable (A exp(-R t) - s)^2`` over ``(A, R)``
    (unconstrained) until converged or ``state.steps == max_steps``.

    The step solves ``(J^T J + lam diag(J^T J)) d = -J^T r`` (Marquardt's scaling, 2x2 in
    closed form). Converged: a step with ``lam <= 1`` (close to Gauss-Newton) below ``xtol``
    relative to each parameter (the rate relative to ``|R| + 1 / max(t)``, so that a rate
    near 0 converges too), whether or not it lowered the cost; or a damping past
    ``LM_DAMPING_MAX`` (no step lowers the cost at working precision).
    """
    wf = w.astype(s.dtype)
    dtype = s.dtype
    # the rate of a decay as slow as the longest time: the scale of a negligible rate change
    rate_scale = 1 / jnp.maximum(jnp.max(wf * t), 1e-30)

    def cond(state):
        return (state.steps < max_steps) & ~state.done

    def body(state):
        a, r, lam, cost = state.amplitude, state.rate, state.damping, state.cost
        e = jnp.exp(-r * t)
        residual = wf * (a * e - s)
        ja = wf * e
        jr = -wf * a * t * e
        h11, h12, h22 = jnp.sum(ja * ja), jnp.sum(ja * jr), jnp.sum(jr * jr)
        g1, g2 = jnp.sum(ja * residual), jnp.sum(jr * residual)
        m11, m22 = h11 * (1 + lam), h22 * (1 + lam)
        det = m11 * m22 - h12 * h12
        det_safe = jnp.where(det > 0, det, 1)
        da = (-g1 * m22 + g2 * h12) / det_safe
        dr = (-g2 * m11 + g1 * h12) / det_safe
        degenerate = ~(det > 0) | ~jnp.isfinite(da) | ~jnp.isfinite(dr)
        a_new, r_new = a + da, r + dr
        cost_new = _cost(t, s, wf, a_new, r_new)
        # Near the minimum the cost changes by less than its own rounding: there a
        # Gauss-Newton-like step (lam <= 1) whose predicted decrease is below that level is
        # accepted, so the gradient, not the cost's precision, fixes the result.
        predicted = -(g1 * da + g2 * dr) - 0.5 * (h11 * da * da + 2 * h12 * da * dr
                                                    + h22 * dr * dr)
        level = ROUNDING * jnp.finfo(dtype).eps * cost
        unmeasurable = ((lam <= 1) & (predicted <= level)
                        & (jnp.abs(cost_new - cost) <= level))
        accept = (~degenerate & jnp.isfinite(cost_new)
                  & ((cost_new < cost) | unmeasurable))
        small = ((jnp.abs(da) <= xtol * (jnp.abs(a) + xtol))
                 & (jnp.abs(dr) <= xtol * (jnp.abs(r) + rate_scale)))
        lam_new = jnp.where(accept, jnp.maximum(lam / LM_DAMPING_FACTOR, LM_DAMPING_MIN),
                            lam * LM_DAMPING_FACTOR)
        converged = (small & (lam <= 1)) | (lam_new > LM_DAMPING_MAX)
        return _LMState(jnp.where(accept, a_new, a), jnp.where(accept, r_new, r),
                        lam_new.astype(dtype), jnp.where(accept, cost_new, cost),
                        converged | degenerate, converged, state.steps + 1)

    return jax.lax.while_loop(cond, body, state)


def _prepare(t, s, w):
    """The log-linear fit and the Levenberg-Marquardt start of one voxel."""
    s = jnp.where(w, s, 0)  # echoes left out must not carry NaN into the sums
    rate, log_amplitude, enough = _log_linear(t, s, w)
    amplitude = jnp.exp(log_amplitude)
    wf = w.astype(s.dtype)
    decaying = enough & jnp.isfinite(rate) & (rate > 0) & jnp.isfinite(amplitude)
    t_max = jnp.max(jnp.where(w, t, 0))
    rate0 = jnp.where(decaying, rate, 1 / jnp.maximum(t_max, 1e-30))
    # the best amplitude for that rate (linear least squares in A)
    e0 = jnp.exp(-rate0 * t)
    amp0 = jnp.where(decaying, amplitude,
                     (wf * e0 * s).sum() / jnp.maximum((wf * e0 * e0).sum(), 1e-30))
    return s, amplitude, rate, enough, _lm_start(t, s, w, amp0, rate0)


def _finish(t, s, w, amplitude, rate, enough, converged, inside, low, high, min_r2):
    """r2, the :class:`FitStatus` of each voxel and the filled outputs."""
    s = jnp.where(w, s, 0)
    wf = w.astype(s.dtype)
    n = jnp.maximum(wf.sum(-1), 1)
    fitted = amplitude[..., None] * jnp.exp(-rate[..., None] * t)
    ss_res = jnp.sum(wf * (fitted - s) ** 2, -1)
    s_mean = jnp.sum(wf * s, -1) / n
    ss_tot = jnp.sum(wf * (s - s_mean[..., None]) ** 2, -1)
    r2 = jnp.where(ss_tot > 0, 1 - ss_res / jnp.where(ss_tot > 0, ss_tot, 1), 0)
    time_constant = 1 / jnp.where(rate > 0, rate, 1)
    checks = [
        (~inside, FitStatus.MASKED),
        (~enough, FitStatus.TOO_FEW_TIMES),
        (~jnp.isfinite(rate) | ~(rate > 0), FitStatus.NOT_DECAYING),
        (~jnp.isfinite(amplitude) | ~(amplitude > 0), FitStatus.NONPOSITIVE_AMPLITUDE),
        (~(time_constant > low) | ~(time_constant <= high), FitStatus.OUT_OF_RANGE),
        (~converged, FitStatus.NOT_CONVERGED),
    ]
    if min_r2 is not None:
        checks.append((~(r2 >= min_r2), FitStatus.LOW_R2))
    status = jnp.zeros(rate.shape, jnp.int8)
    for bad, code in reversed(checks):  # the first reason in the list wins
        status = jnp.where(bad, jnp.int8(code), status)
    valid = status == FitStatus.VALID
    zero = jnp.zeros((), amplitude.dtype)
    return RelaxationFit(time_constant=jnp.where(valid, time_constant, zero),
                         amplitude=jnp.where(valid, amplitude, zero),
                         r2=jnp.where(valid, r2, zero), valid=valid, status=status)


_vmapped_prepare = jax.vmap(_prepare, in_axes=(None, 0, 0))
_vmapped_run = jax.vmap(_lm_run, in_axes=(None, 0, 0, 0, None, None))
_prepare_jit = jax.jit(_vmapped_prepare)
_run_jit = jax.jit(_vmapped_run, static_argnums=5)
_finish_jit = jax.jit(_finish, static_argnums=10)


def _fit_traced(t, s, w, inside, low, high, min_r2, *, nonlinear, max_iterations, xtol):
    """Every voxel of ``(voxels, times)`` signals in one trace (under the caller's ``jit``)."""
    s, amplitude, rate, enough, state = _vmapped_prepare(t, s, w)
    converged = jnp.ones(rate.shape, bool)
    if nonlinear:
        state = _vmapped_run(t, s, w, state, max_iterations, xtol)
        amplitude, rate, converged = state.amplitude, state.rate, state.converged
    return _finish(t, s, w, amplitude, rate, enough, converged, inside, low, high, min_r2)


def _fit_host(t, s, w, low, high, min_r2, *, nonlinear, max_iterations, xtol):
    """Fit ``(bucket, times)`` host signals (padding included) in stages.

    A vmapped loop runs as long as its slowest voxel, so all voxels take
    ``LM_FIRST_STAGE`` steps together; the few that have not converged are then gathered into
    buckets of at most ``LEFTOVER_BUCKET`` (the first stage's size for small fits, so no new
    compilation) and continued to ``max_iterations``.
    """
    s, amplitude, rate, enough, state = _prepare_jit(t, s, w)
    converged = np.ones(rate.shape, bool)
    if nonlinear:
        state = jax.tree.map(np.array, jax.device_get(
            _run_jit(t, s, w, state, min(LM_FIRST_STAGE, max_iterations), xtol)))
        s_host, w_host = np.asarray(s), np.asarray(w)
        size = s_host.shape[0]
        left = np.flatnonzero(~state.done & (state.steps < max_iterations))
        bucket = min(size, LEFTOVER_BUCKET)
        for begin in range(0, left.size, bucket):
            index = left[begin:begin + bucket]
            pad = np.concatenate([index, np.full(bucket - index.size, index[0])])
            part = jax.tree.map(lambda x: x[pad], state)
            part = jax.device_get(_run_jit(t, s_host[pad], w_host[pad], part, max_iterations,
                                           xtol))
            for field, value in zip(state, part):
                field[index] = value[:index.size]
        amplitude, rate, converged = state.amplitude, state.rate, state.converged
    inside = np.ones(rate.shape, bool)
    return _finish_jit(t, s, w, amplitude, rate, enough, converged, inside, low, high, min_r2)


# ---------------------------------------------------------------------------------------------
# Checks


def _check_times(times, count, func):
    if isinstance(times, jax.core.Tracer):
        raise TypeError(f"{func}: times must be concrete numbers (the echo or spin-lock times "
                        "of the sequence), not a traced array; pass them as a static argument")
    try:
        values = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{func}: times must be a 1D sequence of numbers (ms), got "
                        f"{times!r}") from err
    if values.ndim != 1:
        raise ValueError(f"{func}: times must be 1D (one time per image), got shape "
                         f"{values.shape}")
    if values.size != count:
        raise ValueError(f"{func}: times has {values.size} entries but images has {count} "
                         f"images on its first axis; images must be (len(times), *spatial)")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{func}: times must be finite and >= 0 (ms), got {values.tolist()}")
    if np.unique(values).size < 2:
        raise ValueError(f"{func}: times must hold at least two distinct values, got "
                         f"{values.tolist()}")
    return values


def _check_option(value, name, choices, func):
    if value not in choices:
        raise ValueError(f"{func}: {name} must be one of {list(choices)}, got {value!r}")


def _real_number(value, name, func):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{func}: {name} must be a finite number, got {value!r}")
    return float(value)


def _check_range(value, times, func):
    if value is None:
        return 0.0, 10.0 * float(times.max())
    try:
        low, high = value
    except (TypeError, ValueError) as err:
        raise ValueError(f"{func}: time_constant_range must be (low, high), got "
                         f"{value!r}") from err
    low = _real_number(low, "time_constant_range[0]", func)
    high = _real_number(high, "time_constant_range[1]", func)
    if not 0 <= low < high:
        raise ValueError(f"{func}: time_constant_range must satisfy 0 <= low < high, got "
                         f"{value!r}")
    return low, high


def _dtype(images, func):
    dtype = jnp.result_type(images)
    if dtype == jnp.bool_:
        raise TypeError(f"{func}: images must be real numbers, got {dtype}")
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{func}: images must be real magnitude images, got {dtype}; take "
                        "jnp.abs of complex images first")
    if not jnp.issubdtype(dtype, jnp.number):
        raise TypeError(f"{func}: images must be real numbers, got {dtype}")
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits >= 64:
        return jnp.zeros((), dtype).dtype  # float64 with x64 on, float32 otherwise
    return jnp.dtype(jnp.float32)


def _bucket(n: int) -> int:
    if n >= CHUNK:
        return CHUNK
    return max(MIN_BUCKET, 1 << max(n - 1, 0).bit_length())


# ---------------------------------------------------------------------------------------------
# Public


def fit_relaxation(images: ArrayLike, times, *, model: str = "mono_exponential",
                   method: str = "nonlinear", mask: ArrayLike | None = None,
                   noise_floor: float | None = None,
                   time_constant_range: tuple[float, float] | None = None,
                   min_r2: float | None = None, max_iterations: int = 100) -> RelaxationFit:
    """Fit ``S(t) = A exp(-t / T)`` in every voxel: a T2 map (multi-echo spin echo) or a T1rho
    map (spin-lock times).

    With concrete arrays (the usual call), the voxels inside ``mask`` with at least two usable
    echoes are gathered, fitted in chunks padded to a power of two (a jitted, vmapped kernel
    that is compiled once per chunk size) and scattered back. Under ``jit`` every voxel is
    fitted and the mask is applied to the status only.

    Args:
        images: ``(len(times), *spatial)`` real magnitude images (float or integer).
        times: the echo (or spin-lock) times in ms, one per image, at least two distinct,
            all >= 0. Concrete numbers.
        model: ``"mono_exponential"`` (keyword-only, as every option below).
        method: ``"nonlinear"`` (Levenberg-Marquardt on the signal, default) or
            ``"log_linear"`` (linear least squares on the log signal).
        mask: optional ``(*spatial)`` bool: voxels to fit; the others get status ``MASKED``.
        noise_floor: optional signal level; echoes at or below it are left out of a voxel's
            fit (no Rician-bias model). Echoes that are zero, negative or not finite are always
            left out.
        time_constant_range: ``(low, high)``: a fit is valid only for ``low < T <= high``.
            Default ``(0, 10 * max(times))``.
        min_r2: optional: fits with ``r2 < min_r2`` are flagged ``LOW_R2`` (DOSMA uses 0.9 for
            T1rho).
        max_iterations: Levenberg-Marquardt iterations per voxel at most.

    Returns:
        A :class:`RelaxationFit` of ``(*spatial)`` maps in the images' float dtype (float32 for
        integer images): ``time_constant`` (ms), ``amplitude``, ``r2``, ``valid``, ``status``.

    Raises:
        TypeError: complex, boolean or non-numeric images; traced times.
        ValueError: times that do not match the images (count, not 1D, not finite, negative,
            fewer than two distinct); a mask of another shape; images with NaN or infinity
            (concrete arrays; under ``jit`` such echoes are left out of the fit); bad options.
    """
    func = "mskjax.quant.fit_relaxation"
    images = as_array(images, "images", func)
    dtype = _dtype(images, func)
    if images.ndim < 2:
        raise ValueError(f"{func}: images must be (len(times), *spatial), at least 2D, got "
                         f"shape {tuple(images.shape)}")
    t = _check_times(times, images.shape[0], func)
    _check_option(model, "model", MODELS, func)
    _check_option(method, "method", METHODS, func)
    check_positive_int(max_iterations, "max_iterations", func)
    floor = None if noise_floor is None else _real_number(noise_floor, "noise_floor", func)
    low, high = _check_range(time_constant_range, t, func)
    if min_r2 is not None:
        min_r2 = _real_number(min_r2, "min_r2", func)
        if min_r2 > 1:
            raise ValueError(f"{func}: min_r2 must be <= 1, got {min_r2}")
    spatial = tuple(images.shape[1:])
    if mask is not None:
        mask = as_array(mask, "mask", func)
        if tuple(mask.shape) != spatial:
            raise ValueError(f"{func}: mask must have the images' spatial shape {spatial}, got "
                             f"{tuple(mask.shape)}")
        if jnp.issubdtype(jnp.result_type(mask), jnp.complexfloating):
            raise TypeError(f"{func}: mask must be boolean, got {jnp.result_type(mask)}")
    xtol = 1e-12 if dtype == jnp.float64 else 1e-6
    options = dict(nonlinear=method == "nonlinear", max_iterations=int(max_iterations),
                   xtol=xtol, min_r2=min_r2)

    if not (_is_concrete(images) and (mask is None or _is_concrete(mask))):
        s = jnp.asarray(images, dtype).reshape(images.shape[0], -1).T
        usable = jnp.isfinite(s) & (s > 0)
        if floor is not None:
            usable &= s > floor
        inside = (jnp.ones(s.shape[0], bool) if mask is None
                  else jnp.asarray(mask).reshape(-1).astype(bool))
        flat = _fit_traced(jnp.asarray(t, dtype), s, usable, inside, low, high, **options)
        return jax.tree.map(lambda x: x.reshape(spatial), flat)

    check_finite(images, "images", func)
    host = np.asarray(images).reshape(images.shape[0], -1).T.astype(np.dtype(dtype))
    usable = host > 0
    if floor is not None:
        usable &= host > floor
    inside = np.ones(host.shape[0], bool) if mask is None else np.asarray(mask).reshape(-1) != 0
    # voxels with at least two distinct usable times
    distinct = np.zeros(host.shape[0], bool)
    first = np.argmax(usable, axis=1)
    t_first = t[first]
    for k in range(t.size):
        distinct |= usable[:, k] & (t[k] != t_first)
    todo = np.flatnonzero(inside & distinct)

    size = host.shape[0]
    out_t = np.zeros(size, np.dtype(dtype))
    out_a = np.zeros(size, np.dtype(dtype))
    out_r2 = np.zeros(size, np.dtype(dtype))
    status = np.where(inside, np.int8(FitStatus.TOO_FEW_TIMES), np.int8(FitStatus.MASKED))
    status = status.astype(np.int8)
    bucket = _bucket(todo.size)
    t_dev = jnp.asarray(t, dtype)
    for start in range(0, todo.size, bucket):
        index = todo[start:start + bucket]
        pad = bucket - index.size
        s = np.pad(host[index], ((0, pad), (0, 0)))
        w = np.pad(usable[index], ((0, pad), (0, 0)))
        chunk = jax.device_get(_fit_host(t_dev, s, w, low, high, **options))
        n = index.size
        out_t[index] = chunk.time_constant[:n]
        out_a[index] = chunk.amplitude[:n]
        out_r2[index] = chunk.r2[:n]
        status[index] = chunk.status[:n]
    status = status.reshape(spatial)
    return RelaxationFit(time_constant=jnp.asarray(out_t.reshape(spatial)),
                         amplitude=jnp.asarray(out_a.reshape(spatial)),
                         r2=jnp.asarray(out_r2.reshape(spatial)),
                         valid=jnp.asarray(status == FitStatus.VALID),
                         status=jnp.asarray(status))
