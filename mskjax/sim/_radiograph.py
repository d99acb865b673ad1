"""Anteroposterior knee radiographs of the phantom, with a Kellgren-Lawrence-like grade.

The image is the line integral of the linear attenuation coefficient along the knee's own
anterior-posterior axis (a parallel beam aligned with the tibial plateau, as a semi-flexed
beam-aligned view intends, so the subject's random pose is not applied; no magnification,
scatter, heel effect or detector blur), i.e. ``-log(I / I0)`` by Beer-Lambert, displayed with
bone bright. Rows run superior to inferior, columns from the patient's right to left (the
patient faces the viewer). Optional quantum noise draws Poisson counts from
``photons * exp(-line_integral)``.

Osteoarthritis grades follow :data:`KL_GRADE_TABLE`: joint-space narrowing (thinner cartilage
and menisci, the femur lowered onto the tibia, mostly medial), marginal osteophytes and
subchondral sclerosis grow with the grade; grade 0 is a healthy knee. The subject's anatomy
depends on the key only, so one key at grades 0..4 shows the same knee progressing.

The minimum joint-space width is measured the way it is read on a radiograph: for each column
over the central part of each condyle, the distance from the lowest point of the femur's
projection to the highest point of the tibia's, at 0.1 mm steps; the minimum over columns
per compartment, then over compartments.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int
from . import _sdf as sdf
from ._anatomy import KneeAnatomy
from ._geometry import BONES
from ._phantom import (FIELD_OF_VIEW_MM, _subject, check_grade, check_key, evaluate_grid,
                       grid_config)

@dataclasses.dataclass(frozen=True)
class KneeRadiograph:
    """An AP knee radiograph.

    Fields:
        image: float32 ``(rows, cols)`` line integral of attenuation (dimensionless), rows
            superior to inferior, columns patient right to left.
        grade: int32 ``()`` Kellgren-Lawrence-like grade 0..4.
        joint_space_width: float32 ``(2,)`` measured minimum width (mm), medial and lateral.
        minimum_joint_space_width: float32 ``()`` the smaller of the two (mm).
        anatomy: the subject's :class:`KneeAnatomy` (landmarks in the canonical position the
            radiograph is taken in, not the MR phantom's random pose).
        pixel_size: static pixel size (mm).
    """

    image: Any
    grade: Any
    joint_space_width: Any
    minimum_joint_space_width: Any
    anatomy: KneeAnatomy
    pixel_size: float = 0.0


jax.tree_util.register_dataclass(
    KneeRadiograph,
    data_fields=["image", "grade", "joint_space_width", "minimum_joint_space_width", "anatomy"],
    meta_fields=["pixel_size"])


def _measure_joint_space(anatomy, lay, draws, side):
    """Minimum femorotibial distance (mm) in the AP projection of the canonically posed knee,
    per compartment (medial, lateral): for 7 columns over the central 80 % of each condyle's
    width, the lowest femur point minus the highest tibia point along the beam, every 0.1 mm."""
    grid = (7, 240, 36)  # LR columns, SI 0.1 mm steps over 24 mm, AP 2 mm steps over 72 mm
    y = ((grid[1] - 1) / 2.0 - jnp.arange(grid[1])) * 0.1
    widths = []
    for i in (0, 1):
        half = 0.4 * anatomy.condyle_semi_axes[i, 0]
        config = grid_config(grid, (half / 3.0, 0.1, 2.0), side=side, pose=0.0,
                             centre=(anatomy.condyle_centres[i, 0], 0.0, 0.0))
        bone = evaluate_grid(anatomy, lay, draws, config, grid, outputs=("bone",))["bone"]
        low = jnp.where(bone == BONES.index("femur"), y[None, :, None], jnp.inf).min(axis=(1, 2))
        high = jnp.where(bone == BONES.index("tibia"), y[None, :, None], -jnp.inf).max(
            axis=(1, 2))
        widths.append(jnp.min(low - high))
    return jnp.stack(widths)


@sdf.jit
def _quantum_noise(line, key, photons):
    counts = jax.random.poisson(key, photons * jnp.exp(-line))
    return -jnp.log(jnp.maximum(counts, 0.5) / photons).astype(jnp.float32)


@sdf.jit
def _draw_grade(key):
    return jax.random.randint(jax.random.fold_in(key, 5), (), 0, 5)


def knee_radiograph(key: jax.Array, *, grade: int | None = None,
                    shape: Sequence[int] = (256, 256), pixel_size: float = 0.6,
                    depth_samples: int = 96, photons: float | None = None,
                    side: str = "right") -> KneeRadiograph:
    """An anteroposterior radiograph of a phantom knee with osteoarthritis of a given grade.

    Args:
        key: a ``jax.random`` key (the same key gives the same subject as
            :func:`knee_phantom`).
        grade: Kellgren-Lawrence-like grade 0..4 (keyword-only); ``None`` draws it uniformly.
        shape: ``(rows, cols)`` of the detector.
        pixel_size: detector pixel size in mm (the knee frame is 1:1, no magnification).
        depth_samples: samples along each ray over the 160 mm anterior-posterior extent.
        photons: mean photon count per pixel without attenuation for Poisson noise; ``None``
            for a noiseless image.
        side: ``"right"`` or ``"left"`` knee.

    Returns:
        :class:`KneeRadiograph` (image, grade, joint-space widths in mm, anatomy).
    """
    func = "mskjax.sim.knee_radiograph"
    check_key(key, func)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{func}: shape must be (rows, cols), got {shape!r}") from None
    if len(shape) != 2:
        raise ValueError(f"{func}: shape must be (rows, cols), got {shape}")
    for n in shape:
        check_positive_int(n, "each size in shape", func, minimum=8)
    check_positive_int(depth_samples, "depth_samples", func, minimum=8)
    if not (isinstance(pixel_size, numbers.Real) and not isinstance(pixel_size, bool)
            and np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"{func}: pixel_size must be a finite number > 0 (mm), got "
                         f"{pixel_size!r}")
    if photons is not None and not (isinstance(photons, numbers.Real) and np.isfinite(photons)
                                    and photons > 0):
        raise ValueError(f"{func}: photons must be None or a number > 0, got {photons!r}")
    if side not in ("right", "left"):
        raise ValueError(f"{func}: side must be 'right' or 'left', got {side!r}")
    grade = _draw_grade(key) if grade is None else check_grade(grade, "grade", func)
    rows, cols = (int(n) for n in shape)
    depth = FIELD_OF_VIEW_MM / depth_samples
    grid = (cols, rows, int(depth_samples))
    config = grid_config(grid, (pixel_size, pixel_size, depth), side=side, pose=0.0,
                         ray_step=depth)
    anatomy, lay, draws, _ = _subject(key, grade, config)
    mu = evaluate_grid(anatomy, lay, draws, config, grid, outputs=("attenuation",))
    line = (mu["attenuation"].sum(axis=-1) * (depth / 10.0)).T.astype(jnp.float32)
    if photons is not None:
        line = _quantum_noise(line, jax.random.fold_in(key, 6), jnp.float32(photons))
    widths = _measure_joint_space(anatomy, lay, draws, side)
    return KneeRadiograph(image=line, grade=jnp.asarray(grade, jnp.int32),
                          joint_space_width=widths, minimum_joint_space_width=widths.min(),
                          anatomy=anatomy, pixel_size=float(pixel_size))
