"""Variable-density Poisson-disc masks for 3D Cartesian imaging, drawn on the host by sigpy."""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .._checks import check_interval
from ._common import calibration_slices, check_calib, check_seed_int, check_shape, sample_budget

# sigpy's Poisson disc cannot pack samples closer than one grid step, which caps the density at
# roughly 0.8 of the grid (0.6 with the corners cropped). Below this acceleration the request
# may be out of reach; it is then checked up front, because sigpy's search only gives up after
# about a thousand full-density draws.
_CHECK_REACH_BELOW = 3.0


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


def _densest_acceleration(shape, calib, crop_corner: bool, seed: int) -> float | None:
    """The acceleration of sigpy's densest pattern (its search's limit), or None if unknown."""
    try:
        from sigpy.mri.samp import _poisson
    except ImportError:
        return None
    ny, nx = shape
    unit = np.ones(shape)
    mask = _poisson(nx, ny, 30, unit, unit, calib, seed)
    if crop_corner:  # the normalised radius sigpy crops at, with the calibration box removed
        y, x = np.mgrid[:ny, :nx]
        x = np.maximum(abs(x - nx / 2) - calib[-1] / 2, 0)
        y = np.maximum(abs(y - ny / 2) - calib[-2] / 2, 0)
        mask = mask * (np.hypot(x / x.max(), y / y.max()) < 1)
    return nx * ny / max(float(mask.sum()), 1.0)


def poisson_disc(shape, *, acceleration, calib=(0, 0), seed=0, crop_corner=True):
    """A 2D variable-density Poisson-disc mask over the two phase-encode axes ``(ky, kz)``.

    Wraps ``sigpy.mri.poisson``: samples keep a minimum distance that grows with the k-space
    radius r, ``1 + s r`` grid steps, and the slope ``s`` is searched until the achieved
    acceleration is within 0.1 of ``acceleration``. Runs on the host (numba). numpy's global
    random state and numba's, which sigpy reseeds, are left as they were.

    Args:
        shape: ``(ky, kz)``, two positive ints.
        acceleration: the target ``prod(shape) / samples``, a real number > 1. Very low values
            (below about 1.3, or 1.7 with ``crop_corner``) are out of a Poisson disc's reach.
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

    import sigpy.mri

    with _global_random_states_kept():
        if acceleration < _CHECK_REACH_BELOW:
            densest = _densest_acceleration(shape, calib, bool(crop_corner), seed)
            if densest is not None and densest - acceleration >= 0.1:
                raise ValueError(
                    f"{func}: acceleration {acceleration!r} is out of reach on {shape} with "
                    f"crop_corner={bool(crop_corner)}: the densest Poisson disc gives about "
                    f"{densest:.2f}"
                )
        try:
            mask = sigpy.mri.poisson(shape, acceleration, calib=calib, dtype=np.float32,
                                     crop_corner=bool(crop_corner), seed=seed)
        except ValueError as error:
            raise ValueError(
                f"{func}: sigpy found no Poisson disc with acceleration {acceleration!r} on "
                f"{shape} (calib {calib}, crop_corner={bool(crop_corner)}): {error}"
            ) from None
    mask = np.asarray(mask) != 0
    mask[calibration_slices(shape, calib)] = True
    return mask
