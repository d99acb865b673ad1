"""A set of simulated knee radiographs with Kellgren-Lawrence grades, for training and testing
graders: one compiled radiograph per subject (the same as :func:`knee_radiograph` of that
subject), normalised for display, with the drawn features.

Images are float32 ``(num, rows, cols)``: the radiograph ``-log(I / I0)`` (bone bright) mapped
through its display window, ``(image - level) / width + 0.5``, so that its 1st to 99th
percentile span about ``[0, 1]`` (before the window's jitter; nothing is clipped). Grades are
int32 ``(num,)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int
from ._phantom import check_key
from ._radiograph import _radiograph_core, check_detector_shape
from ._radiograph_realism import check_realism, realism_arrays


def _check_grades(grades, num, key, func):
    if grades is None:
        return np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (num,), 0, 5), np.int32)
    if isinstance(grades, str):
        if grades != "balanced":
            raise ValueError(f"{func}: grades must be None, 'balanced' or {num} ints in 0..4, "
                             f"got {grades!r}")
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), num))
        return (np.arange(num) % 5)[order].astype(np.int32)
    try:
        values = np.asarray(grades)
    except (TypeError, ValueError):
        values = np.asarray(None)
    if (values.shape != (num,) or not np.issubdtype(values.dtype, np.integer)
            or np.any(values < 0) or np.any(values > 4)):
        raise ValueError(f"{func}: grades must be None, 'balanced' or {num} ints in 0..4, got "
                         f"{grades!r}")
    return values.astype(np.int32)


def radiograph_set(key: jax.Array, num: int, *, shape: Sequence[int] = (128, 128),
                   grades: str | Sequence[int] | None = None, pixel_size: float = 1.2,
                   depth_samples: int = 48, side: str = "right", progress: bool = True,
                   **realism) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``num`` AP knee radiographs of different subjects with their grades and features.

    Subject ``i`` is ``knee_radiograph(jax.random.split(key, num)[i], grade=grades[i],
    shape=shape, pixel_size=pixel_size, depth_samples=depth_samples, side=side, **realism)``
    (its image normalised by its display window). One function is compiled per ``shape`` and
    ``depth_samples`` and called once per subject (on two CPU cores this is faster than
    vmapping it over subjects, which multiplies the working set), with a progress bar.

    Args:
        key: a ``jax.random`` key.
        num: number of subjects.
        shape: ``(rows, cols)`` of the detector (keyword-only, like every option).
        grades: ``None`` to draw each grade uniformly from 0..4, ``"balanced"`` for equal
            counts of each grade (``num // 5`` or one more) in random order, or ``num`` ints.
        pixel_size: detector pixel size (mm).
        depth_samples: samples along each ray over the 160 mm anterior-posterior extent.
        side: ``"right"`` or ``"left"`` knees.
        progress: show a tqdm progress bar (needs tqdm).
        **realism: the realism options of :func:`knee_radiograph` (``variation``,
            ``blur_fwhm``, ``scatter_to_primary``, ``scatter_fwhm``, ``tilt``, ``flexion``,
            ``axial_rotation``, ``shift``, ``magnification``, ``photons``,
            ``detector_noise``, ``window``), e.g. ``**REALISTIC_RADIOGRAPH``.

    Returns:
        ``(images, grades, features)``: numpy float32 ``(num, rows, cols)``, int32 ``(num,)``,
        and a dict of numpy float32 arrays with a leading axis of ``num``:
        ``minimum_joint_space_width`` ``(num,)`` and ``joint_space_width`` ``(num, 2)`` (mm,
        medial and lateral, measured as :func:`knee_radiograph` does), the drawn
        ``joint_space_narrowing`` ``(num, 2)``, ``osteophyte_size`` and
        ``subchondral_sclerosis`` (mm), ``severity`` ``(num, 3)`` (their continuous grades),
        ``rotation`` ``(num, 3)`` (degrees: flexion, axial rotation, tilt), ``shift``
        ``(num, 2)`` (mm), ``magnification``, ``photons`` and ``window`` ``(num, 2)`` (level,
        width of the raw image).
    """
    func = "mskjax.sim.radiograph_set"
    check_key(key, func)
    check_positive_int(num, "num", func)
    shape = check_detector_shape(shape, func)
    check_positive_int(depth_samples, "depth_samples", func, minimum=8)
    if not (isinstance(pixel_size, numbers.Real) and not isinstance(pixel_size, bool)
            and np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"{func}: pixel_size must be a finite number > 0 (mm), got "
                         f"{pixel_size!r}")
    if side not in ("right", "left"):
        raise ValueError(f"{func}: side must be 'right' or 'left', got {side!r}")
    options = check_realism(realism, func)
    grades = _check_grades(grades, int(num), key, func)
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError as err:
            raise ImportError(f"{func}: progress=True needs tqdm (pip install tqdm), or pass "
                              f"progress=False", name="tqdm") from err
    params = realism_arrays(options, shape, float(pixel_size), side)
    keys = jax.random.split(key, int(num))
    images = np.empty((int(num),) + shape, np.float32)
    names = ("minimum_joint_space_width", "joint_space_width", "joint_space_narrowing",
             "osteophyte_size", "subchondral_sclerosis", "severity", "rotation", "shift",
             "magnification", "photons", "window")
    features = {name: [] for name in names}
    bar = tqdm(total=int(num), unit="image", desc="radiographs") if progress else None
    for i in range(int(num)):
        image, widths, anatomy, acquisition = _radiograph_core(
            keys[i], jnp.int32(grades[i]), params, shape, int(depth_samples))
        level, width = np.asarray(acquisition["window"], np.float32)
        images[i] = (np.asarray(image) - level) / width + np.float32(0.5)
        drawn = dict(acquisition, minimum_joint_space_width=widths.min(),
                     joint_space_width=widths,
                     joint_space_narrowing=anatomy.joint_space_narrowing,
                     osteophyte_size=anatomy.osteophyte_size,
                     subchondral_sclerosis=anatomy.subchondral_sclerosis)
        for name in names:
            features[name].append(np.asarray(drawn[name], np.float32))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return images, grades, {name: np.stack(values) for name, values in features.items()}
