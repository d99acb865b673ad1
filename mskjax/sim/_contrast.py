"""MR contrasts of the knee phantom from the signal equations, as pure functions of the maps.

Every function takes :class:`TissueMaps` (times in ms, angles in degrees) and returns real,
non-negative float32 magnitudes on the scale of the proton density (joint fluid PD = 1), shaped
``(*spatial)`` or ``(echoes, *spatial)``. A voxel's signal is the sum of its water component
(``PD * (1 - FF)``) and its fat component (``PD * FF``), each with its own relaxation times;
the two are added in phase (no chemical-shift phase, no off-resonance). Ideal fat suppression
removes the fat component. No B1 transmit or B0 inhomogeneity, no diffusion, no stimulated
echoes. :func:`render` evaluates them at the voxel centres and optionally adds partial volume,
receive bias, Gibbs ringing, Rician noise and marrow texture (``mskjax.sim._realism``).

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

import dataclasses
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
from ._phantom import AXES, check_key, subvoxel_samples
from ._realism import (MARROW_LABELS, bias_field, check_realism, reference_signal,
                       trabecular_field, truncate_kspace)
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
           partial_volume: int = 1, bias: float = 0.0, snr: float | None = None,
           gibbs: float | None = None, trabecular: float = 0.0,
           **sequence: Any) -> jax.Array:
    """An MR image of a phantom (or a label array) in one of :data:`CONTRASTS`.

    The defaults give the clean image: the signal equations at the voxel centres. The other
    options add the imperfections of a real scan (see ``mskjax.sim._realism`` for the models),
    in this order: ``texture`` and ``trabecular`` on the tissue parameters, the signal,
    ``partial_volume`` averaging, ``bias``, ``gibbs`` truncation, then ``noise`` or ``snr``.
    :data:`REALISTIC_RENDERING` holds realistic settings for training data.

    Args:
        phantom_or_labels: a :class:`KneePhantom` (its pathologies are rendered) or an integer
            label array.
        contrast: ``"t1_spgr"`` (T1-weighted SPGR), ``"pd_fs"`` (fat-suppressed PD fast spin
            echo), ``"mese"`` (multi-echo spin echo), ``"qdess"`` (S+, S-) or ``"t1rho"``
            (keyword-only).
        key: a ``jax.random`` key; needed when ``texture``, ``noise``, ``snr``, ``bias`` or
            ``trabecular`` is set.
        texture: relative standard deviation of a smooth proton-density texture.
        noise: standard deviation of complex Gaussian noise added before taking the magnitude
            (Rician magnitude noise), on the proton-density scale (joint fluid PD = 1).
        parameters: tissue parameter overrides, as in :func:`tissue_maps` (e.g. from
            :func:`jitter_parameters`).
        partial_volume: samples per voxel along each axis of the image (1: none). The
            phantom's labels are re-evaluated at ``partial_volume ** ndim`` points of each
            voxel, each is rendered and the signals averaged. Needs a :class:`KneePhantom`.
        bias: amplitude of a smooth multiplicative receive-coil bias ``exp(bias * f)``,
            ``f`` spanning [-1, 1] over the field of view (0: none).
        snr: Rician noise such that the noise-free foreground's mean magnitude (first echo,
            non-background labels) is ``snr`` times the standard deviation of each complex
            channel (None: none; exclusive with ``noise``).
        gibbs: fraction of k-space kept along the last two spatial axes (zero-filled), in
            (0, 1]; None or 1: no truncation.
        trabecular: relative amplitude of a band-pass, superior-inferior oriented texture of
            the bone marrow's proton density (femur, tibia, patella, fibula).
        **sequence: sequence parameters of the contrast's function (``tr``, ``te``,
            ``flip_angle``, ``echo_times``, ...).

    Returns:
        float32 ``(*spatial)`` or ``(echoes, *spatial)``.
    """
    return render_checked(phantom_or_labels, contrast=contrast, key=key, texture=texture,
                          noise=noise, parameters=parameters, partial_volume=partial_volume,
                          bias=bias, snr=snr, gibbs=gibbs, trabecular=trabecular, **sequence)


def render_checked(phantom_or_labels, *, contrast, key, texture, noise, parameters,
                   partial_volume, bias, snr, gibbs, trabecular, noise_key=None, samples=None,
                   func="mskjax.sim.render", **sequence):
    """:func:`render`, with the noise drawn from ``noise_key`` when given (the fields from
    ``key``: several contrasts of one subject share texture and bias, not noise), and the
    sub-voxel samples of :func:`subvoxel_samples` when already computed."""
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
    partial_volume, bias, snr, gibbs, trabecular = check_realism(
        partial_volume=partial_volume, bias=bias, snr=snr, gibbs=gibbs, trabecular=trabecular,
        noise=noise, func=func)
    random = {"noise": noise, "snr": snr, "bias": bias, "trabecular": trabecular}
    random = [name for name, value in random.items() if value]
    if random and key is None:
        raise ValueError(f"{func}: texture and noise need a key, as do snr, bias and "
                         f"trabecular; got {', '.join(random)} without one")
    texture = check_texture(texture, key, func)
    if key is not None and (random or texture):
        check_key(key, func)
    labels, pathology = _labels_of(phantom_or_labels, func)
    if partial_volume == 1:
        samples = None
    else:
        if pathology is None:
            raise ValueError(f"{func}: partial_volume > 1 needs a KneePhantom (a label array "
                             f"cannot be re-evaluated between voxel centres), got a label "
                             f"array")
        if samples is None:
            samples = subvoxel_samples(phantom_or_labels, partial_volume, func)
    if snr is not None and not isinstance(labels, jax.core.Tracer) and not bool(
            jnp.any(labels != 0)):
        raise ValueError(f"{func}: snr is defined by the foreground's signal, and these labels "
                         f"are all background; give noise instead")
    axes = getattr(phantom_or_labels, "axes", AXES if labels.ndim == 3 else ())
    grain_axis = axes.index(AXES[1]) if AXES[1] in axes else None
    table = jnp.asarray(parameter_table(parameters, func=func))
    frozen = tuple(sorted((name, _freeze(value)) for name, value in sequence.items()))
    return _render(labels, pathology, table, key, samples, noise_key, contrast=contrast,
                   sequence=frozen, texture=texture, noise=float(noise), snr=snr, bias=bias,
                   gibbs=gibbs, trabecular=trabecular, grain_axis=grain_axis)


def _freeze(value):
    """A sequence parameter as a hashable value (tuples of floats for sequences)."""
    if isinstance(value, (bool, numbers.Number)):
        return value
    array = np.asarray(value)
    return tuple(float(v) for v in array.ravel()) if array.ndim else array.item()


@functools.partial(sdf.jit, static_argnames=("contrast", "sequence", "texture", "noise", "snr",
                                              "bias", "gibbs", "trabecular", "grain_axis"))
def _render(labels, pathology, table, key, samples=None, noise_key=None, *, contrast, sequence,
            texture, noise, snr=None, bias=0.0, gibbs=None, trabecular=0.0, grain_axis=None):
    signal = functools.partial(CONTRASTS[contrast], **dict(sequence))
    noisy = bool(noise) or snr is not None
    # One draw of normal deviates for the texture and the noise (one generator to compile).
    size = labels.size if texture else 0
    shape = jax.eval_shape(lambda: signal(maps_from_labels(labels, None, table, None, 0.0))).shape
    if texture or noisy:
        separate = noise_key is not None
        count = size + (2 * int(np.prod(shape)) if noisy and not separate else 0)
        deviates = jax.random.normal(key, (count,), jnp.float32)
        if noisy and separate:
            deviates = jnp.concatenate([deviates, jax.random.normal(
                noise_key, (2 * int(np.prod(shape)),), jnp.float32)])
    white = deviates[:size].reshape(labels.shape) if texture else None
    grain = (trabecular_field(jax.random.fold_in(key, 1), labels.shape, grain_axis)
             if trabecular else None)

    def image_of(tissue, pathology):
        maps = maps_from_labels(tissue, pathology, table, white, texture)
        if trabecular:
            marrow = jnp.isin(tissue, jnp.asarray(MARROW_LABELS))
            factor = jnp.where(marrow, jnp.maximum(1.0 + trabecular * grain, 0.0), 1.0)
            maps = maps.replace(proton_density=maps.proton_density * factor)
        return signal(maps)

    if samples is None:
        image = image_of(labels, pathology)
    else:  # the partial-volume average, one sub-voxel sample at a time
        def add(total, sample):
            tissue, masks = sample
            return total + image_of(tissue, dataclasses.replace(pathology, masks=masks)), None

        total, _ = jax.lax.scan(add, jnp.zeros(shape, jnp.float32), samples)
        image = total / samples[0].shape[0]
    if bias:
        image = image * bias_field(jax.random.fold_in(key, 2), labels.shape, bias)
    if gibbs is not None:
        image = truncate_kspace(image, gibbs, labels.ndim)
    if noisy:
        sigma = noise if snr is None else reference_signal(image, labels) / snr
        n = deviates[size:].reshape((2, *image.shape)) * sigma
        image = jnp.sqrt((jnp.real(image) + n[0]) ** 2 + (jnp.imag(image) + n[1]) ** 2)
    return jnp.abs(image).astype(jnp.float32)
