"""MR contrasts of the knee phantom from the signal equations, as pure functions of the maps.

Every function takes :class:`TissueMaps` (times in ms, angles in degrees) and returns real,
non-negative float32 magnitudes on the scale of the proton density (joint fluid PD = 1), shaped
``(*spatial)`` or ``(echoes, *spatial)``. A voxel's signal is the sum of its water component
(``PD * (1 - FF)``) and its fat component (``PD * FF``), each with its own relaxation times;
the two are added in phase (no chemical-shift phase, no off-resonance). Ideal fat suppression
removes the fat component. No B1 or B0 inhomogeneity, no diffusion, no stimulated echoes, no
partial volume.

Signal models:
    * Spoiled gradient echo (steady state, T2* taken equal to T2, which overstates the signal
      of short-T2* tissue):
      ``S = M0 sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE / T2)``, ``E1 = exp(-TR / T1)``.
    * Fast spin echo (one effective echo time, full refocusing):
      ``S = M0 (1 - exp(-TR / T1)) exp(-TE_eff / T2)``.
    * Multi-echo spin echo (T2 mapping, long TR): ``S_n = M0 (1 - exp(-TR / T1))
      exp(-TE_n / T2)``, a mono-exponential decay per component.
    * qDESS, the two echoes of double-echo steady state. ``S+`` is the steady-state FISP (FID)
      signal of unbalanced SSFP (Zur Y, Stokar S, Bendel P, "An analysis of fast imaging
      sequences with steady-state transverse magnetization refocusing", Magn Reson Med
      1988;6:175-193; as used for DESS by Bruder H et al., Magn Reson Med 1988;7:35-42):
      ``S+ = M0 tan(a/2) (1 - (E1 - cos a) r) exp(-TE / T2)`` with
      ``r = (1 - E2^2) / sqrt(p^2 - q^2)``, ``p = 1 - E1 cos a - E2^2 (E1 - cos a)``,
      ``q = E2 (1 - E1) (1 + cos a)``, ``E2 = exp(-TR / T2)``. ``S-`` follows from ``S+`` by the
      approximate echo ratio of Sveinsson B, Chaudhari AS, Gold GE, Hargreaves BA, "A simple
      analytic method for estimating T2 in the knee from DESS", Magn Reson Imaging
      2017;38:63-70 (diffusion neglected):
      ``S- = S+ sin^2(a/2) (1 + E1) / (1 - cos(a) E1) exp(-2 (TR - TE) / T2)``, so their analytic
      estimate ``T2 = -2 (TR - TE) / log((S- / S+) / k)``, ``k = sin^2(a/2) (1 + E1) /
      (1 - cos(a) E1)``, returns the water T2 exactly where there is no fat.
    * T1rho-prepared, fat-suppressed readout with full recovery: ``S_n = M0 exp(-TSL_n /
      T1rho)``.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from . import _sdf as sdf
from ._tissues import (TissueMaps, _labels_of, check_texture, maps_from_labels,
                       parameter_table)

if TYPE_CHECKING:
    from ._phantom import KneePhantom


def _check_time(value, name, func, *, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{func}: {name} must be a finite number {bound} (ms), got {value!r}")
    return float(value)


def _check_flip(value, func):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or not 0 < value < 180:
        raise ValueError(f"{func}: flip_angle must be in (0, 180) degrees, got {value!r}")
    return float(np.deg2rad(value))


def _check_times(values, name, func):
    try:
        times = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{func}: {name} must be a sequence of times (ms), got {values!r}")
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"{func}: {name} must be a non-empty 1D sequence of finite times >= 0 "
                         f"(ms), got {values!r}")
    return jnp.asarray(times, jnp.float32)


def _check_maps(maps, func):
    if not isinstance(maps, TissueMaps):
        raise TypeError(f"{func}: maps must be TissueMaps (from mskjax.sim.tissue_maps), got "
                        f"{type(maps).__name__}")


def _components(maps, fat_suppressed):
    """(weight, t1, t2) of the water and (unless suppressed) fat components."""
    water = (maps.proton_density * (1.0 - maps.fat_fraction), maps.t1, maps.t2)
    if fat_suppressed:
        return (water,)
    return water, (maps.proton_density * maps.fat_fraction, maps.t1_fat, maps.t2_fat)


def _spgr(weight, t1, t2, tr, te, alpha):
    e1 = jnp.exp(-tr / t1)
    return weight * jnp.sin(alpha) * (1.0 - e1) / (1.0 - jnp.cos(alpha) * e1) * jnp.exp(-te / t2)


def spoiled_gradient_echo(maps: TissueMaps, *, tr: float = 20.0, te: float = 4.0,
                          flip_angle: float = 30.0, fat_suppressed: bool = False) -> jax.Array:
    """T1-weighted spoiled gradient echo (SPGR / FLASH) in the steady state.

    Args:
        maps: :class:`TissueMaps`.
        tr, te: repetition and echo time (ms, keyword-only).
        flip_angle: degrees.
        fat_suppressed: remove the fat component (as in fat-suppressed 3D SPGR for cartilage).

    Returns:
        float32 ``(*spatial)``.
    """
    func = "mskjax.sim.spoiled_gradient_echo"
    _check_maps(maps, func)
    tr, te = _check_time(tr, "tr", func), _check_time(te, "te", func, allow_zero=True)
    alpha = _check_flip(flip_angle, func)
    return sum(_spgr(w, t1, t2, tr, te, alpha) for w, t1, t2 in _components(maps, fat_suppressed))


def fast_spin_echo(maps: TissueMaps, *, tr: float = 3000.0, te: float = 30.0,
                   fat_suppressed: bool = True) -> jax.Array:
    """Fast spin echo at an effective echo time; by default fat-suppressed proton density.

    Args:
        maps: :class:`TissueMaps`.
        tr: repetition time (ms, keyword-only).
        te: effective echo time (ms).
        fat_suppressed: remove the fat component (default True: PD-weighted fat-suppressed).

    Returns:
        float32 ``(*spatial)``.
    """
    func = "mskjax.sim.fast_spin_echo"
    _check_maps(maps, func)
    tr, te = _check_time(tr, "tr", func), _check_time(te, "te", func, allow_zero=True)
    return sum(w * (1.0 - jnp.exp(-tr / t1)) * jnp.exp(-te / t2)
               for w, t1, t2 in _components(maps, fat_suppressed))


def multi_echo_spin_echo(maps: TissueMaps, *, tr: float = 2000.0,
                         echo_times: Sequence[float] = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                                                        70.0, 80.0),
                         fat_suppressed: bool = False) -> jax.Array:
    """Multi-echo spin echo for T2 mapping: ``S_n = PD (1 - exp(-TR/T1)) exp(-TE_n/T2)``.

    Args:
        maps: :class:`TissueMaps`.
        tr: repetition time (ms, keyword-only).
        echo_times: the echo times (ms), a 1D sequence.
        fat_suppressed: remove the fat component (then a log-linear fit returns the water T2).

    Returns:
        float32 ``(echoes, *spatial)``.
    """
    func = "mskjax.sim.multi_echo_spin_echo"
    _check_maps(maps, func)
    tr = _check_time(tr, "tr", func)
    te = _check_times(echo_times, "echo_times", func)
    te = te.reshape((-1,) + (1,) * jnp.ndim(maps.proton_density))
    return sum(w * (1.0 - jnp.exp(-tr / t1)) * jnp.exp(-te / t2)
               for w, t1, t2 in _components(maps, fat_suppressed))


def qdess(maps: TissueMaps, *, tr: float = 20.0, te: float = 6.0, flip_angle: float = 20.0,
          fat_suppressed: bool = False) -> jax.Array:
    """The two echoes of quantitative double-echo steady state (S+ then S-).

    Args:
        maps: :class:`TissueMaps`.
        tr, te: repetition time and echo time of each echo (ms, keyword-only; ``te < tr / 2``).
        flip_angle: degrees.
        fat_suppressed: remove the fat component.

    Returns:
        float32 ``(2, *spatial)``: ``[S+, S-]``.
    """
    func = "mskjax.sim.qdess"
    _check_maps(maps, func)
    tr, te = _check_time(tr, "tr", func), _check_time(te, "te", func, allow_zero=True)
    if not te < tr / 2:
        raise ValueError(f"{func}: te must be shorter than tr / 2, got te={te}, tr={tr}")
    alpha = _check_flip(flip_angle, func)
    plus, minus = 0.0, 0.0
    cos = jnp.cos(alpha)
    for w, t1, t2 in _components(maps, fat_suppressed):
        e1, e2 = jnp.exp(-tr / t1), jnp.exp(-tr / t2)
        p = 1.0 - e1 * cos - e2 * e2 * (e1 - cos)
        q = e2 * (1.0 - e1) * (1.0 + cos)
        r = (1.0 - e2 * e2) / jnp.sqrt(jnp.maximum(p * p - q * q, 1e-12))
        s = w * jnp.tan(alpha / 2) * (1.0 - (e1 - cos) * r) * jnp.exp(-te / t2)
        ratio = (jnp.sin(alpha / 2) ** 2 * (1.0 + e1) / (1.0 - cos * e1)
                 * jnp.exp(-2.0 * (tr - te) / t2))
        plus, minus = plus + s, minus + s * ratio
    return jnp.stack([plus, minus])


def t1rho_prepared(maps: TissueMaps, *,
                   spin_lock_times: Sequence[float] = (0.0, 10.0, 20.0, 40.0, 60.0)) -> jax.Array:
    """Spin-lock (T1rho) prepared, fat-suppressed images: ``S_n = PD_water exp(-TSL_n/T1rho)``.

    Args:
        maps: :class:`TissueMaps`.
        spin_lock_times: durations of the spin lock (ms, keyword-only).

    Returns:
        float32 ``(len(spin_lock_times), *spatial)``.
    """
    func = "mskjax.sim.t1rho_prepared"
    _check_maps(maps, func)
    tsl = _check_times(spin_lock_times, "spin_lock_times", func)
    tsl = tsl.reshape((-1,) + (1,) * jnp.ndim(maps.proton_density))
    return maps.proton_density * (1.0 - maps.fat_fraction) * jnp.exp(-tsl / maps.t1rho)


#: Contrast name -> signal function used by :func:`render`.
CONTRASTS = {
    "t1_spgr": spoiled_gradient_echo,
    "pd_fs": fast_spin_echo,
    "mese": multi_echo_spin_echo,
    "qdess": qdess,
    "t1rho": t1rho_prepared,
}


def render(phantom_or_labels: KneePhantom | ArrayLike, *, contrast: str = "pd_fs",
           key: jax.Array | None = None, texture: float = 0.0, noise: float = 0.0,
           parameters: Mapping[str, Mapping[str, float]] | None = None,
           **sequence: Any) -> jax.Array:
    """An MR image of a phantom (or a label array) in one of :data:`CONTRASTS`.

    Args:
        phantom_or_labels: a :class:`KneePhantom` (its pathologies are rendered) or an integer
            label array.
        contrast: ``"t1_spgr"`` (T1-weighted SPGR), ``"pd_fs"`` (fat-suppressed PD fast spin
            echo), ``"mese"`` (multi-echo spin echo), ``"qdess"`` (S+, S-) or ``"t1rho"``
            (keyword-only).
        key: a ``jax.random`` key; needed when ``texture`` or ``noise`` is positive.
        texture: relative standard deviation of a smooth proton-density texture.
        noise: standard deviation of complex Gaussian noise added before taking the magnitude
            (Rician magnitude noise), on the proton-density scale (joint fluid PD = 1).
        parameters: tissue parameter overrides, as in :func:`tissue_maps`.
        **sequence: sequence parameters of the contrast's function (``tr``, ``te``,
            ``flip_angle``, ``echo_times``, ...).

    Returns:
        float32 ``(*spatial)`` or ``(echoes, *spatial)``.
    """
    func = "mskjax.sim.render"
    if contrast not in CONTRASTS:
        raise ValueError(f"{func}: unknown contrast {contrast!r}; expected one of "
                         f"{list(CONTRASTS)}")
    allowed = set(inspect.signature(CONTRASTS[contrast]).parameters) - {"maps"}
    unknown = sorted(set(sequence) - allowed)
    if unknown:
        raise TypeError(f"{func}: unknown sequence parameters {unknown} for contrast "
                        f"{contrast!r}; expected some of {sorted(allowed)}")
    if isinstance(noise, bool) or not (isinstance(noise, numbers.Real) and np.isfinite(noise)
                                       and noise >= 0):
        raise ValueError(f"{func}: noise must be a finite number >= 0, got {noise!r}")
    texture = check_texture(texture, key, func)
    if noise and key is None:
        raise ValueError(f"{func}: texture and noise need a key")
    labels, pathology = _labels_of(phantom_or_labels, func)
    table = jnp.asarray(parameter_table(parameters, func=func))
    frozen = tuple(sorted((name, _freeze(value)) for name, value in sequence.items()))
    return _render(labels, pathology, table, key, contrast=contrast, sequence=frozen,
                   texture=texture, noise=float(noise))


def _freeze(value):
    """A sequence parameter as a hashable value (tuples of floats for sequences)."""
    if isinstance(value, (bool, numbers.Number)):
        return value
    array = np.asarray(value)
    return tuple(float(v) for v in array.ravel()) if array.ndim else array.item()


@functools.partial(sdf.jit, static_argnames=("contrast", "sequence", "texture", "noise"))
def _render(labels, pathology, table, key, *, contrast, sequence, texture, noise):
    signal = functools.partial(CONTRASTS[contrast], **dict(sequence))
    # One draw of normal deviates for the texture and the noise (one generator to compile).
    size = labels.size if texture else 0
    if texture or noise:
        shape = jax.eval_shape(lambda: signal(maps_from_labels(labels, None, table, None, 0.0)))
        count = size + (2 * int(np.prod(shape.shape)) if noise else 0)
        deviates = jax.random.normal(key, (count,), jnp.float32)
    white = deviates[:size].reshape(labels.shape) if texture else None
    image = signal(maps_from_labels(labels, pathology, table, white, texture))
    if noise:
        n = deviates[size:].reshape((2, *image.shape)) * noise
        image = jnp.sqrt((image + n[0]) ** 2 + n[1] ** 2)
    return image.astype(jnp.float32)
