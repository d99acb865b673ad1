"""The orthonormal Daubechies discrete wavelet transform as a linear operator.

Conventions:

- ``Wavelet(shape, wavelet="db4", levels=None, axes=None)`` maps an array of ``shape`` (1D, 2D
  or 3D, real or complex; any rank works) to one coefficient array of the padded shape. The
  transform runs along ``axes`` (default all axes); other axes are carried along untouched.
- Boundaries are periodic: each level is a circular convolution with the Daubechies low-pass
  and high-pass filters followed by downsampling by two, exactly PyWavelets'
  ``mode="periodization"``. Every level transforms only the previous approximation band, along
  all ``axes`` (the separable pyramid of ``pywt.wavedecn``).
- Layout (Mallat): the result equals ``pywt.coeffs_to_array(pywt.wavedecn(x, wavelet,
  mode="periodization", level=levels, axes=axes), axes=axes)[0]``. After each level the band
  that is low-pass along a subset of axes and high-pass along the others sits in the first or
  second half of the current block along each axis; the coarsest approximation is the low
  corner ``[:n_0 / 2**levels, :n_1 / 2**levels, ...]`` (see :attr:`Wavelet.approximation_shape`).
- ``levels=None`` takes PyWavelets' ``dwt_max_level``: the largest ``J`` with
  ``(filter_length - 1) * 2**J <= n`` for every transformed axis length ``n`` of ``shape``
  (``filter_length = 2 * N`` for ``dbN``). An explicit ``levels`` must lie in ``1..J``.
- Padding: an axis whose length is not a multiple of ``2**levels`` is zero-padded at its end to
  the next multiple, so ``oshape`` is the padded shape. ``W.H @ W`` is then still the identity
  (the adjoint is the inverse transform followed by the crop), while ``W @ W.H`` is the
  orthogonal projection onto coefficient arrays of signals that vanish in the padding. Without
  padding the operator is square and orthonormal: ``W.H`` is ``W``'s inverse and
  ``||W x|| == ||x||``.
- Filter coefficients are real constants, so the output has the input's dtype (complex64 stays
  complex64, float32 stays float32; float64 and complex128 work with JAX x64 enabled).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from .._checks import normalize_axes
from ._base import LinearOperator, _check_shape_tuple, static_field

# Daubechies' orthonormal scaling filters h_0..h_{2N-1} (the coefficients of the scaling
# equation phi(t) = sqrt(2) sum_k h_k phi(2t - k), normalised so that sum_k h_k = sqrt(2) and
# sum_k h_k^2 = 1), for N = 1..10 vanishing moments: I. Daubechies, "Orthonormal bases of
# compactly supported wavelets", Comm. Pure Appl. Math. 41 (1988) 909-996, and "Ten Lectures on
# Wavelets" (SIAM, 1992), Table 6.1 (the extremal-phase family). Given to double precision;
# tests/linop/test_wavelet.py checks them against PyWavelets.
_DAUBECHIES = {
    1: (0.7071067811865476, 0.7071067811865476),
    2: (0.48296291314453416, 0.8365163037378079, 0.2241438680420134, -0.12940952255126037),
    3: (0.33267055295008263, 0.8068915093110925, 0.45987750211849154, -0.13501102001025458,
        -0.08544127388202666, 0.03522629188570953),
    4: (0.2303778133088965, 0.7148465705529157, 0.6308807679298589, -0.027983769416859854,
        -0.18703481171909309, 0.030841381835560764, 0.0328830116668852, -0.010597401785069032),
    5: (0.16010239797419293, 0.6038292697971896, 0.7243085284377729, 0.13842814590132074,
        -0.24229488706638203, -0.032244869584638375, 0.07757149384004572,
        -0.006241490212798274, -0.012580751999081999, 0.0033357252854737712),
    6: (0.11154074335010947, 0.49462389039845306, 0.7511339080210954, 0.31525035170919763,
        -0.22626469396543983, -0.12976686756726194, 0.09750160558732304, 0.027522865530305727,
        -0.03158203931748603, 0.0005538422011614961, 0.004777257510945511,
        -0.0010773010853084796),
    7: (0.07785205408500918, 0.3965393194819173, 0.7291320908462351, 0.4697822874051931,
        -0.14390600392856498, -0.22403618499387498, 0.07130921926683026, 0.08061260915108308,
        -0.03802993693501441, -0.01657454163066688, 0.01255099855609984,
        0.0004295779729213665, -0.0018016407040474908, 0.00035371379997452024),
    8: (0.05441584224310401, 0.31287159091429995, 0.6756307362972898, 0.5853546836542067,
        -0.015829105256349306, -0.2840155429615469, 0.0004724845739132828,
        0.12874742662047847, -0.017369301001807547, -0.044088253930794755,
        0.013981027917398282, 0.008746094047405777, -0.004870352993451574,
        -0.00039174037337694705, 0.0006754494064505693, -0.00011747678412476953),
    9: (0.038077947363878345, 0.24383467461259034, 0.6048231236901112, 0.6572880780513005,
        0.13319738582500756, -0.2932737832791749, -0.09684078322297646, 0.14854074933810638,
        0.03072568147933338, -0.06763282906132997, 0.00025094711483145197,
        0.022361662123679096, -0.004723204757751397, -0.00428150368246343,
        0.0018476468830562265, 0.00023038576352319597, -0.0002519631889427101,
        3.93473203162716e-05),
    10: (0.026670057900555554, 0.1881768000776915, 0.5272011889317256, 0.6884590394536035,
         0.2811723436605775, -0.24984642432731538, -0.19594627437737705, 0.12736934033579325,
         0.09305736460357235, -0.07139414716639708, -0.029457536821875813,
         0.033212674059341, 0.0036065535669561697, -0.010733175483330575,
         0.001395351747052901, 0.001992405295185056, -0.0006858566949597116,
         -0.00011646685512928545, 9.358867032006959e-05, -1.3264202894521244e-05),
}

#: The wavelet names :class:`Wavelet` accepts: ``"haar"`` (the same as ``"db1"``) and ``"db1"``
#: to ``"db10"``.
WAVELETS = ("haar",) + tuple(f"db{n}" for n in _DAUBECHIES)


def scaling_filter(wavelet: str) -> tuple[float, ...]:
    """The scaling (low-pass reconstruction) filter ``h_0..h_{2N-1}`` of ``"dbN"`` or ``"haar"``."""
    return _DAUBECHIES[1 if wavelet == "haar" else int(wavelet[2:])]


@functools.lru_cache(maxsize=None)
def _taps(wavelet: str):
    """The taps ``(phase, shift, lo_c, hi_c)`` of one analysis step.

    With the sample pairs ``x_p[k] = x[2k + p]`` (``p`` = 0, 1) of an axis of length
    ``2 * half``, one step is ``lo[k] = sum lo_c * x_p[(k + shift) % half]`` and
    ``hi[k] = sum hi_c * x_p[(k + shift) % half]`` over the taps. This is PyWavelets' periodization,
    ``lo[k] = sum_j dec_lo[j] x[(2k + L/2 - j) % n]`` with ``dec_lo[j] = h[L-1-j]`` and
    ``dec_hi[j] = (-1)**(j+1) h[j]`` for the scaling filter ``h`` of length ``L``.
    """
    h = scaling_filter(wavelet)
    length = len(h)
    offsets = [length // 2 - j for j in range(length)]
    return tuple((o % 2, o // 2, h[length - 1 - j], (-1) ** (j + 1) * h[j])
                 for j, o in enumerate(offsets))


def _reach(wavelet: str) -> tuple[int, int]:
    """How many sample pairs the analysis taps reach below and above the output index."""
    shifts = [t[1] for t in _taps(wavelet)]
    return max(0, -min(shifts)), max(0, max(shifts))


def _wrap(x, axis: int, before: int, after: int):
    """Periodic padding of ``x`` along ``axis`` by at most its length on each side."""
    n = x.shape[axis]
    parts = [lax.slice_in_dim(x, n - before, n, 1, axis)] if before else []
    parts.append(x)
    if after:
        parts.append(lax.slice_in_dim(x, 0, after, 1, axis))
    return lax.concatenate(parts, axis) if len(parts) > 1 else x


def _window(x, axis: int, start: int, length: int):
    """``x[start : start + length]`` along ``axis``."""
    return lax.slice_in_dim(x, start, start + length, 1, axis)


def _analysis_level(block, axes: tuple, wavelet: str):
    """One level along every axis in ``axes``: each axis of length ``n`` becomes ``[lo | hi]``.

    The block is wrapped periodically along all ``axes`` once; the step along one axis then
    reads its own margin and carries the others' along, so no step copies its input first.
    """
    taps = _taps(wavelet)
    below, above = _reach(wavelet)
    x = block
    for a in axes:
        x = _wrap(x, a, 2 * below, 2 * above)
    for a in axes:
        half = block.shape[a] // 2
        pairs = x.reshape(x.shape[:a] + (x.shape[a] // 2, 2) + x.shape[a + 1:])
        lo = hi = None
        for phase, shift, lo_c, hi_c in taps:
            v = lax.index_in_dim(_window(pairs, a, below + shift, half), phase, a + 1,
                                 keepdims=False)
            lo = lo_c * v if lo is None else lo + lo_c * v
            hi = hi_c * v if hi is None else hi + hi_c * v
        x = lax.concatenate([lo, hi], a)
    return x


def _synthesis_level(block, axes: tuple, wavelet: str):
    """The inverse (and adjoint) of :func:`_analysis_level`.

    Every transformed axis ``n`` is viewed as ``(band, n / 2)`` and each band is wrapped
    periodically once; the axes are then synthesised from the last to the first, so that the
    positions of the axes still to do do not move.
    """
    taps = _taps(wavelet)
    below, above = _reach(wavelet)
    axes = sorted(axes)
    x = block
    for a in reversed(axes):
        x = x.reshape(x.shape[:a] + (2, block.shape[a] // 2) + x.shape[a + 1:])
        x = _wrap(x, a + 1, above, below)
    for i, a in reversed(list(enumerate(axes))):
        q = a + i  # the band axis of ``a``, after the earlier axes were split in two
        half = block.shape[a] // 2
        lo = lax.index_in_dim(x, 0, q, keepdims=False)
        hi = lax.index_in_dim(x, 1, q, keepdims=False)
        phases = [None, None]
        for phase, shift, lo_c, hi_c in taps:
            start = above - shift
            v = lo_c * _window(lo, q, start, half) + hi_c * _window(hi, q, start, half)
            phases[phase] = v if phases[phase] is None else phases[phase] + v
        x = jnp.stack(phases, axis=q + 1)
        x = x.reshape(x.shape[:q] + (2 * half,) + x.shape[q + 2:])
    return x


def _corner(shape, axes, level: int):
    """The low corner ``[:n >> level]`` along ``axes``: the block that ``level`` transforms."""
    return tuple(slice(0, n >> level) if a in axes else slice(None) for a, n in enumerate(shape))


# The whole multi-level transform is one jitted function per configuration, so that an eager
# call compiles once (instead of dispatching dozens of small operations); inside an outer jit,
# vmap or grad it is inlined like any other function. The optimisation barrier between levels
# keeps the compiler from recomputing a level inside the next one instead of reading it.
@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _forward(x, wavelet: str, levels: int, axes: tuple, oshape: tuple):
    """``levels`` levels of :func:`_analysis_level`, zero-padding ``x`` to ``oshape`` first."""
    if x.shape != oshape:
        x = jnp.pad(x, [(0, m - n) for n, m in zip(x.shape, oshape)])
    y = x
    for level in range(levels):
        corner = _corner(oshape, axes, level)
        block = _analysis_level(y if level == 0 else y[corner], axes, wavelet)
        y = block if level == 0 else y.at[corner].set(block)
        if level + 1 < levels:
            y = lax.optimization_barrier(y)
    return y


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _inverse(y, wavelet: str, levels: int, axes: tuple, ishape: tuple):
    """The inverse of :func:`_forward` (its adjoint): synthesis, then the crop to ``ishape``."""
    oshape = y.shape
    for level in reversed(range(levels)):
        corner = _corner(oshape, axes, level)
        block = _synthesis_level(y if level == 0 else y[corner], axes, wavelet)
        y = block if level == 0 else lax.optimization_barrier(y.at[corner].set(block))
    if oshape != ishape:
        y = y[tuple(slice(0, n) for n in ishape)]
    return y


def max_levels(shape, wavelet: str, axes) -> int:
    """PyWavelets' ``dwt_max_level``: the largest ``J`` with ``(L - 1) * 2**J <= n`` on all axes."""
    step = len(scaling_filter(wavelet)) - 1
    levels = []
    for a in axes:
        j = 0
        while step * 2 ** (j + 1) <= shape[a]:
            j += 1
        levels.append(j)
    return min(levels)


class Wavelet(LinearOperator):
    """Multi-level orthonormal Daubechies wavelet transform ``(*shape) -> (*padded_shape)``.

    Equals ``pywt.coeffs_to_array(pywt.wavedecn(x_padded, wavelet, mode="periodization",
    level=levels, axes=axes), axes=axes)[0]`` where ``x_padded`` is ``x`` zero-padded at the end
    of each transformed axis to a multiple of ``2**levels`` (see the module docstring).

    Args:
        shape: the array shape, e.g. ``(rows, cols)`` or ``(slices, rows, cols)``.
        wavelet: ``"db1"`` (``"haar"``) to ``"db10"`` (keyword-only); default ``"db4"``.
        levels: number of decomposition levels (keyword-only); default the largest at which the
            coarsest band is at least ``filter_length - 1`` long on every transformed axis.
        axes: axes to transform (keyword-only), in any order; default all axes.

    Attributes:
        ishape: ``shape``. oshape: ``shape`` with the transformed axes padded to multiples of
        ``2**levels``. approximation_shape: the shape of the coarsest approximation band, which
        occupies the low corner of the output.
    """

    wavelet: str = static_field()
    levels: int = static_field()
    axes: tuple = static_field()

    def __init__(self, shape: Sequence[int], *, wavelet: str = "db4", levels: int | None = None,
                 axes: int | Sequence[int] | None = None):
        func = "mskjax.linop.Wavelet"
        shape = _check_shape_tuple(shape, func)
        if not isinstance(wavelet, str):
            raise TypeError(f"{func}: wavelet must be a name such as 'db4', got "
                            f"{type(wavelet).__name__}")
        if wavelet not in WAVELETS:
            raise ValueError(f"{func}: wavelet must be one of {', '.join(WAVELETS)}, got "
                             f"{wavelet!r}")
        wavelet = "db1" if wavelet == "haar" else wavelet
        if isinstance(axes, (str, bytes)):
            raise TypeError(f"{func}: axes must be an int or a sequence of ints, got {axes!r}")
        axes = tuple(range(len(shape))) if axes is None else axes
        axes = tuple(sorted(normalize_axes(axes, len(shape), "axes", func)))
        if not axes:
            raise ValueError(f"{func}: axes must name at least one axis, got ()")
        length = len(scaling_filter(wavelet))
        most = max_levels(shape, wavelet, axes)
        if most < 1:
            lengths = tuple(shape[a] for a in axes)
            raise ValueError(
                f"{func}: the transformed axes (lengths {lengths}) must each be at least "
                f"{2 * (length - 1)} long for one level of {wavelet} (filter length {length}); "
                "transform fewer axes or use a shorter wavelet"
            )
        if levels is None:
            levels = most
        elif (isinstance(levels, bool) or not isinstance(levels, numbers.Integral)
              or not 1 <= levels <= most):
            raise ValueError(
                f"{func}: levels must be an integer from 1 to {most} for {wavelet} on axes of "
                f"lengths {tuple(shape[a] for a in axes)}, got {levels!r}"
            )
        multiple = 2 ** int(levels)
        oshape = tuple(-(-n // multiple) * multiple if a in axes else n
                       for a, n in enumerate(shape))
        self._set(wavelet=wavelet, levels=int(levels), axes=axes, ishape=shape, oshape=oshape)

    @property
    def approximation_shape(self) -> tuple:
        """Shape of the coarsest approximation band, the low corner of the output."""
        return tuple(n >> self.levels if a in self.axes else n
                     for a, n in enumerate(self.oshape))

    def _apply(self, x):
        return _forward(x, self.wavelet, self.levels, self.axes, self.oshape)

    def _adjoint(self, y):
        return _inverse(y, self.wavelet, self.levels, self.axes, self.ishape)

    def _normal(self, x):
        return x
