"""Variable-density Poisson-disc masks for 3D Cartesian imaging, drawn on the host by sigpy."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence

import numpy as np

from .._checks import check_interval
from ._common import calibration_slices, check_calib, check_seed_int, check_shape, sample_budget

# sigpy's Poisson disc cannot pack samples closer than one grid step, which caps the density at
# roughly 0.8 of the grid (0.6 with the corners cropped). Below this acceleration the request
# may be out of reach; it is then checked up front, because sigpy's search only gives up after
# about a thousand full-density draws.
_CHECK_REACH_BELOW = 3.0
_MAX_ATTEMPTS = 30  # sigpy.mri.poisson's default, which poisson_disc uses
_TOLERANCE = 0.1  # sigpy.mri.poisson's default tolerance on the acceleration
_MAX_BISECTIONS = 200  # far beyond the ~60 halvings that exhaust float64 between 0 and max(shape)


@contextlib.contextmanager
def _global_random_states_kept():
    """Restore numpy's global RandomState, and numba's, which sigpy reseeds, on exit."""
    numpy_state = np.random.get_state()
    try:  # numba keeps its own generator for np.random inside compiled code
        from numba import _helperlib

        pointer = _helperlib.rnd_get_np_state_ptr()
        numba_state = _helperlib.rnd_get_state(pointer)
    except (ImportError, AttributeError):
        numba_state = None
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        if numba_state is not None:
            _helperlib.rnd_set_state(pointer, numba_state)


def _densest_pattern(ny: int, nx: int, cy: int, cx: int, seed: int,
                     max_attempts: int) -> np.ndarray:
    """Bridson's Poisson disc at the smallest distance, one grid step everywhere, on the host.

    This is the pattern ``sigpy.mri.poisson`` draws when its slope search reaches 0, step for
    step: the calibration box, one seeding of the global random state (numba's, when jitted),
    and the same sequence of draws (a random active sample; up to ``max_attempts`` candidates
    in the annulus 1 to 2 steps around it, uniform in area; a candidate is kept if no sampled
    grid point lies closer than one step, and stored at its integer part). So its sample count
    is the limit of that search for the same seed. Returns a float mask ``(ny, nx)``.
    """
    mask = np.zeros((ny, nx))
    mask[int(ny / 2 - cy / 2): int(ny / 2 + cy / 2), int(nx / 2 - cx / 2): int(nx / 2 + cx / 2)] = 1
    np.random.seed(seed)
    xs = np.empty(nx * ny, np.int32)  # the active list
    ys = np.empty(nx * ny, np.int32)
    xs[0] = np.random.randint(0, nx)
    ys[0] = np.random.randint(0, ny)
    active = 1
    while nx * ny > active > 0:
        i = np.random.randint(0, active)
        px = xs[i]
        py = ys[i]
        found = False
        attempt = 0
        qx = qy = 0.0
        while not found and attempt < max_attempts:
            distance = (np.random.random() * 3 + 1) ** 0.5
            angle = 2 * np.pi * np.random.random()
            qx = px + distance * np.cos(angle)
            qy = py + distance * np.sin(angle)
            if 0 <= qx < nx and 0 <= qy < ny:
                found = True
                # The window bounds are written as sigpy rounds them (qx + 1.0 + 1, not + 2).
                for x in range(max(int(qx - 1.0), 0), min(int(qx + 1.0 + 1), nx)):
                    for y in range(max(int(qy - 1.0), 0), min(int(qy + 1.0 + 1), ny)):
                        if mask[y, x] == 1 and (qx - x) ** 2 + (qy - y) ** 2 < 1:
                            found = False
                            break
                    if not found:
                        break
            attempt += 1
        if found:
            xs[active] = int(qx)
            ys[active] = int(qy)
            mask[int(qy), int(qx)] = 1
            active += 1
        else:
            xs[i] = xs[active - 1]
            ys[i] = ys[active - 1]
            active -= 1
    return mask


@functools.cache
def _densest_pattern_jit():
    """:func:`_densest_pattern` compiled with numba (which sigpy needs anyway), or None."""
    try:
        import numba
    except ImportError:
        return None
    try:
        return numba.njit(cache=True)(_densest_pattern)
    except RuntimeError:  # no writable cache folder
        return numba.njit(_densest_pattern)


def _densest_acceleration(shape, calib, crop_corner: bool, seed: int) -> float | None:
    """The acceleration of sigpy's densest pattern (its search's limit), or None if unknown.

    Reseeds numba's global random state: call it inside :func:`_global_random_states_kept`.
    """
    kernel = _densest_pattern_jit()
    if kernel is None:
        return None
    ny, nx = shape
    mask = kernel(ny, nx, calib[0], calib[1], seed, _MAX_ATTEMPTS)
    if crop_corner:  # the normalised radius sigpy crops at, with the calibration box removed
        y, x = np.mgrid[:ny, :nx]
        x = np.maximum(abs(x - nx / 2) - calib[-1] / 2, 0)
        y = np.maximum(abs(y - ny / 2) - calib[-2] / 2, 0)
        mask = mask * (np.hypot(x / x.max(), y / y.max()) < 1)
    return nx * ny / max(float(mask.sum()), 1.0)


def _slope_search(shape, acceleration, calib, crop_corner: bool, seed: int, kernel):
    """``sigpy.mri.poisson``'s search, step for step on sigpy's own pattern kernel, but with a
    bounded number of bisections: sigpy's loop never ends when no slope gives an acceleration
    within its tolerance (the achieved acceleration jumps between two neighbouring slopes).
    Returns the float mask sigpy returns whenever sigpy's search ends, or None."""
    ny, nx = shape
    y, x = np.mgrid[:ny, :nx]
    x = np.maximum(abs(x - nx / 2) - calib[-1] / 2, 0)
    x /= x.max()
    y = np.maximum(abs(y - ny / 2) - calib[-2] / 2, 0)
    y /= y.max()
    r = np.sqrt(x**2 + y**2)
    slope_max, slope_min = max(nx, ny), 0
    for _ in range(_MAX_BISECTIONS):
        if not slope_min < slope_max:
            break
        slope = (slope_max + slope_min) / 2
        radius_x = np.clip((1 + r * slope) * nx / max(nx, ny), 1, None)
        radius_y = np.clip((1 + r * slope) * ny / max(nx, ny), 1, None)
        mask = kernel(nx, ny, _MAX_ATTEMPTS, radius_x, radius_y, calib, seed)
        if crop_corner:
            mask *= r < 1
        actual = nx * ny / np.sum(mask)
        if abs(actual - acceleration) < _TOLERANCE:
            return mask
        if actual < acceleration:
            slope_min = slope
        else:
            slope_max = slope
    return None


def poisson_disc(shape: Sequence[int], *, acceleration: float,
                 calib: int | Sequence[int] = (0, 0), seed: int | None = 0,
                 crop_corner: bool = True) -> np.ndarray:
    """A 2D variable-density Poisson-disc mask over the two phase-encode axes ``(ky, kz)``.

    Wraps ``sigpy.mri.poisson``: samples keep a minimum distance that grows with the k-space
    radius r, ``1 + s r`` grid steps, and the slope ``s`` is searched until the achieved
    acceleration is within 0.1 of ``acceleration``. Runs on the host (numba). numpy's global
    random state and numba's, which sigpy reseeds, are left as they were.

    Args:
        shape: ``(ky, kz)``, two positive ints.
        acceleration: the target ``prod(shape) / samples``, a real number > 1. Very low values
            (below about 1.3, or 1.7 with ``crop_corner``) are out of a Poisson disc's reach, and
            and on a small grid some values are skipped by every density (20 on 16 x 16): both
            are a ValueError.
        calib: the fully sampled calibration box ``(cy, cz)`` (or one int for both), each in
            ``[0, n)``. Box indices on an axis of size n start at ``n // 2 - c // 2`` (the box
            holds the k-space centre ``n // 2``). For an odd ``c`` on an even axis sigpy's own
            box sits one index lower and stays sampled too.
        seed: an int in [0, 2**32), or None for a fresh draw.
        crop_corner: drop the samples outside the ellipse inscribed in the grid.

    Returns:
        a numpy bool array of ``shape`` (True = sampled).
    """
    func = "mskjax.sampling.poisson_disc"
    shape = check_shape(shape, func, ndim=2)
    check_interval(acceleration, "acceleration", func, low=1)
    calib = check_calib(calib, shape, func, strictly_inside=True)
    seed = check_seed_int(seed, func)
    if not isinstance(crop_corner, (bool, np.bool_)):
        raise TypeError(f"{func}: crop_corner must be a bool, got {crop_corner!r}")
    if math.prod(calib) > sample_budget(shape, acceleration):
        raise ValueError(
            f"{func}: the calibration box {calib} ({math.prod(calib)} samples) exceeds the "
            f"{sample_budget(shape, acceleration)} samples of acceleration {acceleration!r} "
            f"on {shape}"
        )
    if seed is None:
        seed = int(np.random.default_rng().integers(2**32))

    try:
        import sigpy.mri
        import sigpy.mri.samp
    except ImportError as err:  # an optional dependency
        raise ImportError("mskjax.sampling.poisson_disc draws with sigpy: pip install "
                          "'mskjax[poisson]'", name="sigpy") from err

    with _global_random_states_kept():
        if acceleration < _CHECK_REACH_BELOW:
            densest = _densest_acceleration(shape, calib, bool(crop_corner), seed)
            if densest is not None and densest - acceleration >= 0.1:
                raise ValueError(
                    f"{func}: acceleration {acceleration!r} is out of reach on {shape} with "
                    f"crop_corner={bool(crop_corner)}: the densest Poisson disc gives about "
                    f"{densest:.2f}"
                )
        kernel = getattr(sigpy.mri.samp, "_poisson", None)
        if kernel is not None:
            mask = _slope_search(shape, acceleration, calib, bool(crop_corner), seed, kernel)
            if mask is None:
                raise ValueError(
                    f"{func}: no Poisson disc with acceleration {acceleration!r} on {shape} "
                    f"(calib {calib}, crop_corner={bool(crop_corner)}): the achieved "
                    "acceleration jumps past it between neighbouring densities; try a nearby "
                    "value or a larger grid")
        else:  # another sigpy's internals: its own search (which may not end, see above)
            try:
                mask = sigpy.mri.poisson(shape, acceleration, calib=calib, dtype=np.float32,
                                         crop_corner=bool(crop_corner), seed=seed)
            except ValueError as error:
                raise ValueError(
                    f"{func}: sigpy found no Poisson disc with acceleration {acceleration!r} "
                    f"on {shape} (calib {calib}, crop_corner={bool(crop_corner)}): {error}"
                ) from None
    mask = np.asarray(mask) != 0
    mask[calibration_slices(shape, calib)] = True
    return mask
