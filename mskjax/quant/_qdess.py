"""The analytic qDESS T2 of Sveinsson et al. from the two echoes of double-echo steady state.

Sveinsson B, Chaudhari AS, Gold GE, Hargreaves BA, "A simple analytic method for estimating T2
in the knee from DESS", Magn Reson Imaging 2017;38:63-70. The formula, its diffusion term and
its thresholds are those of DOSMA 0.1.2 (``dosma.scan_sequences.mri.qdess.QDess.
generate_t2_map``), so that maps agree with DOSMA's.

Conventions and units:

- ``echo1`` is S+ (the FID-like first echo, at ``te``), ``echo2`` is S- (the echo-like second
  echo), real magnitude images of the same shape ``(*spatial)``.
- ``tr``, ``te`` and ``t1`` in ms; ``tg`` (the spoiler gradient's duration) in microseconds and
  ``gl_area`` (its area) in GE's header unit, both as GE stores them in the private tags
  (0019,10B6) and (0019,10B7) (see :func:`mskjax.io.read_qdess_parameters`); ``flip_angle`` in
  degrees; ``diffusivity`` in m^2/s. The T2 map is in ms.
- With ``TR``, ``TE``, ``Tg`` and ``T1`` in seconds and ``a`` the flip angle::

      Gl  = gl_area / tg * 100                      (tg in microseconds)
      dkL = 2 pi 4258 Gl Tg                         (gamma in rad / (G s))
      E   = exp(-TR / T1 - TR dkL^2 D)
      k   = sin(a / 2)^2 (1 + E) / (1 - cos(a) E)
      c1  = (TR - Tg / 3) dkL^2 D
      T2  = -2 (TR - TE) / (log((S- / S+) / k) + c1)     (x 1000 for ms)

- DOSMA's thresholds are options here, and a voxel they reject is flagged rather than set to
  0 silently: ``t2_range`` (DOSMA's ``nan_bounds``, default the closed interval [0, 100] ms),
  ``suppress_fat`` (valid only where ``S+ > 0.15 max(S+)``) and ``suppress_fluid`` (valid only
  where ``S+ - beta S- > 0.1 max(S+ - beta S-)``). Unlike DOSMA, the map is not rounded to one
  decimal, and voxels where either echo is not positive are flagged (DOSMA takes the absolute
  value of the ratio, and returns T2 = 0 where S- = 0).
- Where a voxel is not valid, ``t2`` is 0 (never NaN).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import _is_concrete, as_array, check_finite

#: Gyromagnetic ratio of 1H in rad / (G s), as DOSMA writes it.
GAMMA_RAD_PER_GAUSS_S = 4258.0 * 2.0 * math.pi
#: DOSMA's thresholds of ``suppress_fat`` and ``suppress_fluid`` (fractions of the maximum).
FAT_FRACTION_OF_MAX = 0.15
FLUID_FRACTION_OF_MAX = 0.1


class QDessT2(NamedTuple):
    """A qDESS T2 map (a pytree).

    Attributes:
        t2: ``(*spatial)`` T2 in ms; 0 where not valid.
        valid: ``(*spatial)`` bool: both echoes positive and finite, inside ``mask``, T2 finite
            and inside ``t2_range`` (or positive, without a range), and not removed by
            ``suppress_fat`` / ``suppress_fluid``.
    """

    t2: jax.Array
    valid: jax.Array


def _number(value, name, func, *, low=None, low_open=True, high=None, high_open=True,
            unit=""):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        raise ValueError(f"{func}: {name} must be a finite number in {interval}{unit}, got "
                         f"{value!r}")
    return float(value)


def _echo(x, name, func):
    x = as_array(x, name, func)
    dtype = jnp.result_type(x)
    if dtype == jnp.bool_ or not jnp.issubdtype(dtype, jnp.number):
        raise TypeError(f"{func}: {name} must be a real image, got {dtype}")
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{func}: {name} must be a real magnitude image, got {dtype}; take "
                        "jnp.abs of complex images first")
    check_finite(x, name, func)
    return x


def qdess_constants(*, tr: float, te: float, flip_angle: float, gl_area: float, tg: float,
                    t1: float = 1200.0, diffusivity: float = 1.25e-9) -> tuple[float, float]:
    """``(k, c1)`` of the qDESS T2 formula (see the module docstring), in float64."""
    tr_s, tg_s, t1_s = tr * 1e-3, tg * 1e-6, t1 * 1e-3
    alpha = math.radians(flip_angle)
    gl = gl_area / (tg_s * 1e6) * 100
    dkl = GAMMA_RAD_PER_GAUSS_S * gl * tg_s
    e = math.exp(-tr_s / t1_s - tr_s * dkl ** 2 * diffusivity)
    k = math.sin(alpha / 2) ** 2 * (1 + e) / (1 - math.cos(alpha) * e)
    c1 = (tr_s - tg_s / 3) * dkl ** 2 * diffusivity
    return k, c1


def _k_of_map(t1, *, tr, flip_angle, gl_area, tg, diffusivity):
    """``k`` of the formula for a T1 map (ms), in the map's dtype."""
    tr_s, tg_s = tr * 1e-3, tg * 1e-6
    alpha = math.radians(flip_angle)
    dkl = GAMMA_RAD_PER_GAUSS_S * (gl_area / (tg_s * 1e6) * 100) * tg_s
    e = jnp.exp(-tr_s / (t1 * 1e-3) - tr_s * dkl ** 2 * diffusivity)
    return math.sin(alpha / 2) ** 2 * (1 + e) / (1 - math.cos(alpha) * e)


def qdess_t2(echo1: ArrayLike, echo2: ArrayLike, *, tr: float, te: float, flip_angle: float,
             gl_area: float, tg: float, t1: float | ArrayLike = 1200.0,
             diffusivity: float = 1.25e-9,
             t2_range: tuple[float, float] | None = (0.0, 100.0), suppress_fat: bool = False,
             suppress_fluid: bool = False, beta: float = 1.2,
             mask: ArrayLike | None = None) -> QDessT2:
    """The qDESS T2 map of Sveinsson et al. 2017, as DOSMA computes it.

    Pure ``jax.numpy``: it runs under ``jit`` (the sequence parameters are static numbers).

    Args:
        echo1: ``(*spatial)`` S+, the first echo (real magnitude, float or integer).
        echo2: ``(*spatial)`` S-, the second echo, same shape.
        tr: repetition time in ms (keyword-only, as all below).
        te: echo time of S+ in ms, ``0 <= te < tr``.
        flip_angle: degrees, in (0, 180).
        gl_area: spoiler gradient area, GE private tag (0019,10B6), >= 0 (0: no diffusion
            term).
        tg: spoiler gradient duration in microseconds, GE private tag (0019,10B7), > 0.
        t1: assumed T1 in ms, a number or an array broadcastable to the echoes' shape (a
            T1 map); DOSMA uses the tissue's expected T1, 1200 ms for femoral cartilage.
        diffusivity: assumed diffusivity in m^2/s (>= 0).
        t2_range: ``(low, high)`` ms, the closed interval of valid T2 (DOSMA's ``nan_bounds``);
            ``None``: any positive finite T2 is valid.
        suppress_fat: valid only where ``S+ > 0.15 max(S+)`` (DOSMA's option).
        suppress_fluid: valid only where ``S+ - beta S- > 0.1 max(S+ - beta S-)``.
        beta: the fluid-nulling weight of ``suppress_fluid``.
        mask: optional ``(*spatial)`` bool: voxels outside are not valid.

    Returns:
        A :class:`QDessT2`: ``t2`` ``(*spatial)`` in ms (float32, or float64 for float64 input
        with x64 on; 0 where not valid) and the bool ``valid`` map.

    Raises:
        TypeError: complex, boolean or non-numeric echoes.
        ValueError: echoes of different shapes, NaN or infinite echoes (concrete arrays),
            sequence parameters out of range.
    """
    func = "mskjax.quant.qdess_t2"
    echo1 = _echo(echo1, "echo1", func)
    echo2 = _echo(echo2, "echo2", func)
    if tuple(echo1.shape) != tuple(echo2.shape):
        raise ValueError(f"{func}: echo1 and echo2 must have the same shape, got "
                         f"{tuple(echo1.shape)} and {tuple(echo2.shape)}")
    tr = _number(tr, "tr", func, low=0, unit=" ms")
    te = _number(te, "te", func, low=0, low_open=False, high=tr, unit=" ms")
    flip_angle = _number(flip_angle, "flip_angle", func, low=0, high=180, unit=" degrees")
    gl_area = _number(gl_area, "gl_area", func, low=0, low_open=False)
    tg = _number(tg, "tg", func, low=0, unit=" microseconds")
    t1_map = None
    if np.ndim(t1) == 0 and _is_concrete(t1):
        scalar = t1.item() if hasattr(t1, "item") and not isinstance(t1, numbers.Real) else t1
        t1 = _number(scalar, "t1", func, low=0, unit=" ms")
    else:
        t1_map = as_array(t1, "t1", func)
        try:
            fits = (np.broadcast_shapes(tuple(t1_map.shape), tuple(echo1.shape))
                    == tuple(echo1.shape))
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"{func}: a t1 map must broadcast to the echoes' shape "
                             f"{tuple(echo1.shape)}, got {tuple(t1_map.shape)}")
        if _is_concrete(t1_map):
            values = np.asarray(t1_map)
            if not (np.all(np.isfinite(values)) and np.all(values > 0)):
                raise ValueError(f"{func}: a t1 map must hold finite times > 0 ms")
        t1 = 1200.0  # for the scalar constants below; k is then taken from the map
    diffusivity = _number(diffusivity, "diffusivity", func, low=0, low_open=False,
                          unit=" m^2/s")
    beta = _number(beta, "beta", func)
    if t2_range is not None:
        try:
            low, high = t2_range
        except (TypeError, ValueError) as err:
            raise ValueError(f"{func}: t2_range must be (low, high) in ms or None, got "
                             f"{t2_range!r}") from err
        low = _number(low, "t2_range[0]", func)
        high = _number(high, "t2_range[1]", func)
        if not low < high:
            raise ValueError(f"{func}: t2_range must have low < high, got {t2_range!r}")
    if mask is not None:
        mask = as_array(mask, "mask", func)
        if tuple(mask.shape) != tuple(echo1.shape):
            raise ValueError(f"{func}: mask must have the echoes' shape {tuple(echo1.shape)}, "
                             f"got {tuple(mask.shape)}")

    dtype = jnp.result_type(echo1, echo2)
    dtype = (jnp.zeros((), dtype).dtype if jnp.issubdtype(dtype, jnp.floating)
             and jnp.finfo(dtype).bits >= 64 else jnp.dtype(jnp.float32))
    s1 = jnp.asarray(echo1, dtype)
    s2 = jnp.asarray(echo2, dtype)
    k, c1 = qdess_constants(tr=tr, te=te, flip_angle=flip_angle, gl_area=gl_area, tg=tg, t1=t1,
                            diffusivity=diffusivity)
    if t1_map is not None:
        k = _k_of_map(jnp.asarray(t1_map, dtype), tr=tr, flip_angle=flip_angle,
                      gl_area=gl_area, tg=tg, diffusivity=diffusivity)
    positive = (s1 > 0) & (s2 > 0) & jnp.isfinite(s1) & jnp.isfinite(s2)
    ratio = jnp.where(positive, s2, 1) / jnp.where(positive, s1, 1)
    denominator = jnp.log(ratio / k) + c1
    t2 = -2000.0 * (tr * 1e-3 - te * 1e-3) / jnp.where(denominator != 0, denominator, 1)
    valid = positive & (denominator != 0) & jnp.isfinite(t2)
    if t2_range is None:
        valid &= t2 > 0
    else:
        valid &= (t2 >= low) & (t2 <= high)
    if suppress_fat:
        valid &= s1 > FAT_FRACTION_OF_MAX * jnp.max(s1)
    if suppress_fluid:
        nulled = s1 - beta * s2
        valid &= nulled > FLUID_FRACTION_OF_MAX * jnp.max(nulled)
    if mask is not None:
        if _is_concrete(mask):
            mask = np.asarray(mask) != 0
        valid &= jnp.asarray(mask).astype(bool)
    return QDessT2(t2=jnp.where(valid, t2, jnp.zeros((), dtype)), valid=valid)
