"""The fastMRI Cartesian masks, reproduced bit for bit with numpy on the host.

Each function mirrors one ``MaskFunc`` of ``fastmri.data.subsample`` called with a single
``(center_fraction, acceleration)`` pair: the same ``numpy.random.RandomState`` calls in the same
order (first the ``randint(1)`` that picks the pair, then the draws of the mask), the same
Python rounding and the same seeding (an int or a tuple of ints, ``None`` for fresh entropy).
So ``mask, n = random_mask(shape, center_fraction=0.08, acceleration=4, seed=s)`` equals
``RandomMaskFunc([0.08], [4])((*shape, 2), seed=s)`` with the trailing real/imaginary axis of
fastMRI's k-space tensors, which makes fastMRI's ``shape[-2]`` our ``shape[-1]``.

Where fastMRI itself fails (a division by zero, ``randint`` with an empty range, a slice with a
float or zero step) these functions raise a ValueError that says why, before drawing anything.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from .._checks import check_interval, check_positive_int
from ._common import check_shape, seed_value

_PREFIX = "mskjax.sampling."


# --------------------------------------------------------------------------- validation


def _columns(shape, func: str) -> int:
    return check_shape(shape, func)[-1]


def _center_fraction(center_fraction, func: str) -> float:
    check_interval(center_fraction, "center_fraction", func, low=0, high=1)
    return float(center_fraction)


def _real_acceleration(acceleration, func: str) -> int | float:
    check_interval(acceleration, "acceleration", func, low=1, low_open=False)
    # Keep ints as ints so every expression is evaluated as fastMRI evaluates it.
    return int(acceleration) if isinstance(acceleration, numbers.Integral) else float(acceleration)


def _integer_acceleration(acceleration, func: str) -> int:
    if isinstance(acceleration, numbers.Real) and not isinstance(acceleration, numbers.Integral):
        raise ValueError(
            f"{func}: acceleration must be an integer >= 1 (it is the step between sampled "
            f"lines), got {acceleration!r}; the fraction variants accept real accelerations"
        )
    check_positive_int(acceleration, "acceleration", func, minimum=1)
    return int(acceleration)


def _offset(offset, spacing: int, func: str) -> int | None:
    """``None``, or an int in ``[0, spacing)``: the range fastMRI draws a random offset from."""
    if offset is None:
        return None
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or not (
        0 <= offset < spacing
    ):
        raise ValueError(
            f"{func}: offset must be None or an int in [0, {spacing}) (the spacing of the "
            f"sampled lines), got {offset!r}"
        )
    return int(offset)


def _random_state(seed, func: str) -> np.random.RandomState:
    """A RandomState seeded as fastMRI seeds it: ``None``, an int, or a tuple of ints."""
    if seed is None:
        return np.random.RandomState()
    values = [seed_value(v, func)
              for v in (seed if isinstance(seed, (tuple, list)) else (seed,))]
    valid = len(values) > 0 and all(v is not None and 0 <= v < 2**32 for v in values)
    if not valid:
        raise ValueError(
            f"{func}: seed must be None, an int in [0, 2**32) or a non-empty tuple of such "
            f"ints, got {seed!r}"
        )
    if isinstance(seed, (tuple, list)):
        return np.random.RandomState(values)
    return np.random.RandomState(values[0])


# --------------------------------------------------------------------------- mask parts


def _start(rng: np.random.RandomState) -> None:
    # fastMRI first picks one (center_fraction, acceleration) pair with rng.randint(len(pairs));
    # with one pair numpy draws nothing, but the call keeps the sequence identical.
    rng.randint(1)


def _center_mask(num_cols: int, num_low_frequencies: int) -> np.ndarray:
    mask = np.zeros(num_cols, dtype=bool)
    pad = (num_cols - num_low_frequencies + 1) // 2
    mask[pad:pad + num_low_frequencies] = True
    return mask


def _magic_lines(num_cols: int, spacing: int, offset: int | None, rng) -> np.ndarray:
    """Equispaced lines with the negative half offset from the positive half (Defazio 2019)."""
    if offset is None:
        offset = rng.randint(0, high=spacing)
    if offset % 2 == 0:
        offset_pos, offset_neg = offset + 1, offset + 2
    else:
        offset_pos, offset_neg = offset + 2, offset - 1
    poslen = (num_cols + 1) // 2
    positive = np.zeros(poslen, dtype=bool)
    negative = np.zeros(num_cols - poslen, dtype=bool)
    positive[offset_pos::spacing] = True
    negative[offset_neg::spacing] = True
    return np.fft.fftshift(np.concatenate((positive, negative[::-1])))


# --------------------------------------------------------------------------- public


def random_mask(shape: Sequence[int], *, center_fraction: float, acceleration: float,
                seed: int | Sequence[int] | None = None) -> tuple[np.ndarray, int]:
    """The fastMRI random mask: a fully sampled centre plus random phase-encode lines.

    ``num_low = round(cols * center_fraction)`` centre lines are kept and every other line is
    drawn independently with probability ``(cols / acceleration - num_low) / (cols - num_low)``,
    so about ``cols / acceleration`` lines are sampled on average (only the centre when it alone
    exceeds that). Identical to ``fastmri.data.subsample.RandomMaskFunc``.

    Args:
        shape: the complex k-space shape, e.g. ``(coils, rows, cols)`` or ``(rows, cols)``; the
            phase-encode axis is the last one, ``cols = shape[-1]``.
        center_fraction: fraction of lines in the fully sampled centre, in (0, 1).
        acceleration: target acceleration, a real number >= 1.
        seed: an int in [0, 2**32), a tuple of such ints (e.g. the bytes of a file name), or
            None for a fresh non-deterministic draw.

    Returns:
        ``(mask, num_low_frequencies)``: a numpy bool vector ``(cols,)`` (True = sampled) that
        broadcasts against the k-space, and the number of centre lines (a Python int).
    """
    func = _PREFIX + "random_mask"
    num_cols = _columns(shape, func)
    fraction = _center_fraction(center_fraction, func)
    acceleration = _real_acceleration(acceleration, func)
    rng = _random_state(seed, func)
    num_low = round(num_cols * fraction)
    if num_low == num_cols:
        raise ValueError(
            f"{func}: center_fraction {center_fraction!r} keeps all {num_cols} columns "
            f"(round({num_cols} * {center_fraction!r}) = {num_low}); nothing is left to sample"
        )
    _start(rng)
    prob = (num_cols / acceleration - num_low) / (num_cols - num_low)
    mask = _center_mask(num_cols, num_low) | (rng.uniform(size=num_cols) < prob)
    return mask, num_low


def _integer_spacing_setup(shape, center_fraction, acceleration, seed, offset, func):
    """Validate the arguments of the integer-spacing families and seed their generator.

    Returns ``(num_cols, num_low, acceleration, offset, rng)`` with ``rng`` already past the
    draw fastMRI makes to choose the (centre fraction, acceleration) pair.
    """
    num_cols = _columns(shape, func)
    fraction = _center_fraction(center_fraction, func)
    acceleration = _integer_acceleration(acceleration, func)
    offset = _offset(offset, acceleration, func)
    rng = _random_state(seed, func)
    _start(rng)
    return num_cols, round(num_cols * fraction), acceleration, offset, rng


def equispaced_mask(shape: Sequence[int], *, center_fraction: float, acceleration: int,
                    seed: int | Sequence[int] | None = None,
                    offset: int | None = None) -> tuple[np.ndarray, int]:
    """The fastMRI equispaced mask: a fully sampled centre plus every ``acceleration``-th line.

    Lines ``offset, offset + acceleration, ...`` are sampled on top of the
    ``round(cols * center_fraction)`` centre lines, so the true acceleration is below
    ``acceleration``. Identical to ``fastmri.data.subsample.EquiSpacedMaskFunc``.

    Args:
        shape: the complex k-space shape; ``cols = shape[-1]`` is the phase-encode axis.
        center_fraction: fraction of lines in the fully sampled centre, in (0, 1).
        acceleration: the spacing of the lines, an integer >= 1 (fastMRI slices with it).
        seed: an int in [0, 2**32), a tuple of such ints, or None for fresh entropy.
        offset: the first sampled line, an int in ``[0, acceleration)``; None draws it.

    Returns:
        ``(mask, num_low_frequencies)``: a numpy bool vector ``(cols,)`` and a Python int.
    """
    num_cols, num_low, acceleration, offset, rng = _integer_spacing_setup(
        shape, center_fraction, acceleration, seed, offset, _PREFIX + "equispaced_mask")
    if offset is None:
        offset = rng.randint(0, high=acceleration)
    lines = np.zeros(num_cols, dtype=bool)
    lines[offset::acceleration] = True
    return _center_mask(num_cols, num_low) | lines, num_low


def equispaced_fraction_mask(shape: Sequence[int], *, center_fraction: float,
                             acceleration: float, seed: int | Sequence[int] | None = None,
                             offset: int | None = None) -> tuple[np.ndarray, int]:
    """The fastMRI equispaced mask whose spacing is adjusted to reach ``acceleration``.

    With ``num_low = round(cols * center_fraction)`` centre lines the outer lines are placed at
    ``round(offset + i * a)`` for ``i = 0, 1, ...`` below ``cols - 1`` with the real spacing
    ``a = acceleration * (cols - num_low) / (cols - num_low * acceleration)``, so the lines are
    only approximately equispaced (fastMRI issue 54) and the last column is never an outer
    line. Identical to ``fastmri.data.subsample.EquispacedMaskFractionFunc``.

    Args:
        shape: the complex k-space shape; ``cols = shape[-1]`` is the phase-encode axis.
        center_fraction: fraction of lines in the fully sampled centre, in (0, 1).
        acceleration: a real number >= 1 with ``num_low * acceleration < cols`` (otherwise the
            centre alone meets the target and fastMRI fails).
        seed: an int in [0, 2**32), a tuple of such ints, or None for fresh entropy.
        offset: the first outer line, an int in ``[0, round(a))``; None draws it.

    Returns:
        ``(mask, num_low_frequencies)``: a numpy bool vector ``(cols,)`` and a Python int.
    """
    func = _PREFIX + "equispaced_fraction_mask"
    num_cols = _columns(shape, func)
    fraction = _center_fraction(center_fraction, func)
    acceleration = _real_acceleration(acceleration, func)
    num_low = round(num_cols * fraction)
    denominator = num_low * acceleration - num_cols
    if denominator >= 0:
        raise ValueError(
            f"{func}: the {num_low} centre lines already reach the target of "
            f"{num_cols} / {acceleration!r} lines; lower center_fraction or acceleration"
        )
    spacing = (acceleration * (num_low - num_cols)) / denominator
    offset = _offset(offset, round(spacing), func)
    rng = _random_state(seed, func)
    _start(rng)
    if offset is None:
        offset = rng.randint(0, high=round(spacing))
    lines = np.zeros(num_cols, dtype=bool)
    lines[np.around(np.arange(offset, num_cols - 1, spacing)).astype(np.uint)] = True
    return _center_mask(num_cols, num_low) | lines, num_low


def magic_mask(shape: Sequence[int], *, center_fraction: float, acceleration: int,
               seed: int | Sequence[int] | None = None,
               offset: int | None = None) -> tuple[np.ndarray, int]:
    """The fastMRI "magic" mask: equispaced lines offset between the two halves of k-space.

    Offset sampling (Defazio 2019, arXiv:1912.01101) exploits approximate conjugate symmetry:
    the negative half of k-space is sampled on lines that complement the positive half. The
    ``round(cols * center_fraction)`` centre lines are added. Identical to
    ``fastmri.data.subsample.MagicMaskFunc``.

    Args:
        shape: the complex k-space shape; ``cols = shape[-1]`` is the phase-encode axis.
        center_fraction: fraction of lines in the fully sampled centre, in (0, 1).
        acceleration: the spacing of the lines, an integer >= 1 (fastMRI slices with it).
        seed: an int in [0, 2**32), a tuple of such ints, or None for fresh entropy.
        offset: an int in ``[0, acceleration)``; None draws it.

    Returns:
        ``(mask, num_low_frequencies)``: a numpy bool vector ``(cols,)`` and a Python int.
    """
    num_cols, num_low, acceleration, offset, rng = _integer_spacing_setup(
        shape, center_fraction, acceleration, seed, offset, _PREFIX + "magic_mask")
    lines = _magic_lines(num_cols, acceleration, offset, rng)
    return _center_mask(num_cols, num_low) | lines, num_low


def magic_fraction_mask(shape: Sequence[int], *, center_fraction: float, acceleration: float,
                        seed: int | Sequence[int] | None = None,
                        offset: int | None = None) -> tuple[np.ndarray, int]:
    """The fastMRI "magic" mask with the spacing adjusted to reach ``acceleration`` exactly.

    The number of centre lines is ``round(cols * center_fraction)`` bounded to
    ``[1, round(cols / acceleration)]``, and the remaining
    ``target = round(cols / acceleration) - num_low`` lines are placed with the integer spacing
    ``round(cols / target)`` as in :func:`magic_mask`. Identical to
    ``fastmri.data.subsample.MagicMaskFractionFunc``.

    Args:
        shape: the complex k-space shape; ``cols = shape[-1]`` is the phase-encode axis.
        center_fraction: fraction of lines in the fully sampled centre, in (0, 1).
        acceleration: a real number >= 1 that leaves ``target >= 1`` lines outside the centre
            (otherwise fastMRI fails).
        seed: an int in [0, 2**32), a tuple of such ints, or None for fresh entropy.
        offset: an int in ``[0, round(cols / target))``; None draws it.

    Returns:
        ``(mask, num_low_frequencies)``: a numpy bool vector ``(cols,)`` and a Python int (the
        bounded number of centre lines).
    """
    func = _PREFIX + "magic_fraction_mask"
    num_cols = _columns(shape, func)
    fraction = _center_fraction(center_fraction, func)
    acceleration = _real_acceleration(acceleration, func)
    target = round(num_cols / acceleration)
    num_low = max(min(round(num_cols * fraction), target), 1)
    outer = target - num_low
    if outer <= 0:
        raise ValueError(
            f"{func}: the {num_low} centre lines already fill the target of "
            f"round({num_cols} / {acceleration!r}) = {target} lines; lower center_fraction or "
            "acceleration"
        )
    spacing = round(num_cols / outer)
    offset = _offset(offset, spacing, func)
    rng = _random_state(seed, func)
    _start(rng)
    lines = _magic_lines(num_cols, spacing, offset, rng)
    return _center_mask(num_cols, num_low) | lines, num_low
