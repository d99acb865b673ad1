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
per compartment, then over compartments. It is the subject's anatomical width: it is measured
in this canonical, beam-aligned position whatever the positioning of the image.

Options (all off by default, see ``_radiograph_realism`` and :data:`REALISTIC_RADIOGRAPH`)
spread the features of each grade over a range that overlaps the adjacent grades, and add
positioning, blur, scatter, varying exposure with quantum and electronic noise, and a display
window.
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
from ._geometry import BONES, bone_index, femur, fibula, fields, paint, patella, tibia
from ._phantom import (FIELD_OF_VIEW_MM, _subject, check_grade, check_key, evaluate_grid,
                       grid_config, to_knee_frame, to_scanner)
from ._radiograph_realism import (check_realism, detect, display_window, draw_acquisition,
                                  is_default, realism_arrays)
from ._xray import attenuation

@dataclasses.dataclass(frozen=True)
class KneeRadiograph:
    """An AP knee radiograph.

    Fields:
        image: float32 ``(rows, cols)`` line integral of attenuation (dimensionless), rows
            superior to inferior, columns patient right to left.
        grade: int32 ``()`` Kellgren-Lawrence-like grade 0..4.
        joint_space_width: float32 ``(2,)`` measured minimum width (mm), medial and lateral.
        minimum_joint_space_width: float32 ``()`` the smaller of the two (mm).
        anatomy: the subject's :class:`KneeAnatomy` (landmarks in the position the radiograph
            is taken in, not the MR phantom's random pose: the canonical one without
            positioning options; with them, ``rotation`` and ``translation`` are the drawn
            positioning and the landmarks follow it). Its ``joint_space_narrowing``,
            ``osteophyte_size`` and ``subchondral_sclerosis`` are the drawn features.
        pixel_size: static pixel size (mm).
        acquisition: ``None`` without realism options; else a dict of what was drawn for the
            image: ``severity`` float32 ``(3,)`` (the continuous grades of the narrowing,
            osteophytes and sclerosis), ``rotation`` ``(3,)`` degrees (flexion, axial
            rotation, in-plane tilt), ``shift`` ``(2,)`` mm (left-right, superior-inferior),
            ``magnification`` ``()``, ``photons`` ``()`` (1 without noise) and ``window``
            ``(2,)`` (display level and width, in the image's units).
    """

    image: Any
    grade: Any
    joint_space_width: Any
    minimum_joint_space_width: Any
    anatomy: KneeAnatomy
    pixel_size: float = 0.0
    acquisition: Any = None


jax.tree_util.register_dataclass(
    KneeRadiograph,
    data_fields=["image", "grade", "joint_space_width", "minimum_joint_space_width", "anatomy",
                 "acquisition"],
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


def _bone_widths(anatomy, lay, mirror):
    """:func:`_measure_joint_space` for traced subjects: the same columns and steps, evaluating
    the four bones' distances only."""
    y = ((240 - 1) / 2.0 - jnp.arange(240, dtype=jnp.float32))[None, :, None] * 0.1
    z = (17.5 - jnp.arange(36, dtype=jnp.float32))[None, None, :] * 2.0
    widths = []
    for i in (0, 1):
        half = 0.4 * anatomy.condyle_semi_axes[i, 0]
        x = ((jnp.arange(7, dtype=jnp.float32) - 3.0) * (half / 3.0)
             + anatomy.condyle_centres[i, 0])[:, None, None]
        xk, yk, zk = to_knee_frame(anatomy, mirror, x, y, z, pose=0.0)
        xk, yk, zk = jnp.broadcast_arrays(xk, yk, zk)
        bone = bone_index(dict(femur=femur(anatomy, lay, xk, yk, zk),
                               tibia=tibia(anatomy, lay, xk, yk, zk),
                               patella=patella(lay, xk, yk, zk), fibula=fibula(lay, xk, yk, zk)))
        low = jnp.where(bone == BONES.index("femur"), y, jnp.inf).min(axis=(1, 2))
        high = jnp.where(bone == BONES.index("tibia"), y, -jnp.inf).max(axis=(1, 2))
        widths.append(jnp.min(low - high))
    return jnp.stack(widths)


def _line_integral(anatomy, lay, config, shape, depth_samples, offset=0.0):
    """Line integral of attenuation (dimensionless) ``(rows, cols)`` along the
    anterior-posterior axis, the grid's points as broadcast coordinate vectors; ``offset``
    (``(rows, cols)`` or a scalar, in ray steps) shifts each ray's samples along the ray."""
    rows, cols = shape
    d, c = config["voxel_size"], config["centre"]
    x = ((jnp.arange(cols, dtype=jnp.float32) - (cols - 1) / 2.0) * d[0] + c[0])[None, :, None]
    y = (c[1] - (jnp.arange(rows, dtype=jnp.float32) - (rows - 1) / 2.0) * d[1])[:, None, None]
    k = jnp.arange(depth_samples, dtype=jnp.float32) - (depth_samples - 1) / 2.0
    z = c[2] - (k[None, None, :] + jnp.asarray(offset, jnp.float32)[..., None]) * d[2]
    xk, yk, zk = to_knee_frame(anatomy, config["mirror"], x, y, z, pose=config["pose"])
    xk, yk, zk = jnp.broadcast_arrays(xk, yk, zk)
    fd = fields(anatomy, lay, xk, yk, zk)
    mu = attenuation(fd, paint(fd), config["ray_step"])
    return (mu.sum(axis=-1) * (d[2] / 10.0)).astype(jnp.float32)


def radiograph_core(key, grade, params, shape, depth_samples):
    """One radiograph with the realism of ``params`` (from ``realism_arrays``): ``(image,
    widths, anatomy, acquisition)``. Pure and traceable (vmap it over keys and grades).

    Two changes to the default projection's sampling (which stays as it was): the bones'
    edges ramp over the smaller of the ray step and the pixel (in the object's plane), not the
    ray step, which on coarse steps smears surfaces parallel to the beam (the tibial plateau)
    across the joint space; and each ray's samples are shifted along it by its own random
    fraction of a step (``fold_in(key, 12)``), an unbiased estimate that turns the sampling
    error into a fine grain instead of rings that follow the tissue outlines. Root-mean-square
    error of the line integral (2 to 4 through the knee) against 384 samples per ray, 128 x 128
    pixels of 1.2 mm: 0.04 at 48 samples per ray, 0.03 at 64, 0.025 at 96 (0.08 at 48 with
    the ray step's ramp)."""
    acquisition = draw_acquisition(key, grade, params)
    depth = FIELD_OF_VIEW_MM / depth_samples
    config = grid_config((shape[1], shape[0], depth_samples), (1.0, 1.0, depth), pose=0.0,
                         ray_step=depth)
    mirror = params["mirror"]
    magnification = acquisition["magnification"]
    pixel = params["pixel_size"] / magnification
    config = dict(config, mirror=mirror, voxel_size=jnp.stack([pixel, pixel, jnp.float32(depth)]),
                  ray_step=jnp.minimum(jnp.float32(depth), params["edge_ramp"] / magnification))
    anatomy, lay, _, _ = _subject(key, grade, config, acquisition["severity"])
    widths = _bone_widths(anatomy, lay, mirror)
    # The knee frame is mirrored before it is translated: a left knee's shift changes sign.
    translation = jnp.concatenate([acquisition["shift"] * jnp.stack([mirror, 1.0]),
                                   jnp.zeros((1,), jnp.float32)])
    posed = anatomy.replace(rotation=acquisition["rotation"], translation=translation)
    flip = jnp.stack([mirror, 1.0, 1.0])
    posed = posed.replace(
        condyle_centres=to_scanner(posed, mirror, anatomy.condyle_centres * flip),
        patella_centre=to_scanner(posed, mirror, anatomy.patella_centre * flip))
    offset = params["depth_jitter"] * jax.random.uniform(
        jax.random.fold_in(key, 12), shape, jnp.float32, -0.5, 0.5)
    line = _line_integral(posed, lay, dict(config, pose=jnp.float32(1.0)), shape, depth_samples,
                          offset)
    image = detect(line, key, acquisition, params)
    window = display_window(image, acquisition.pop("window_jitter"), params["window"])
    return image, widths, posed, dict(acquisition, window=window)


_radiograph_core = sdf.jit(radiograph_core, static_argnums=(3, 4))


@sdf.jit
def _quantum_noise(line, key, photons):
    counts = jax.random.poisson(key, photons * jnp.exp(-line))
    return -jnp.log(jnp.maximum(counts, 0.5) / photons).astype(jnp.float32)


@sdf.jit
def _draw_grade(key):
    return jax.random.randint(jax.random.fold_in(key, 5), (), 0, 5)


def check_detector_shape(shape, func: str) -> tuple[int, int]:
    """``(rows, cols)`` of a detector as ints >= 8; TypeError/ValueError naming ``func``."""
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{func}: shape must be (rows, cols), got {shape!r}") from None
    if len(shape) != 2:
        raise ValueError(f"{func}: shape must be (rows, cols), got {shape}")
    for n in shape:
        check_positive_int(n, "each size in shape", func, minimum=8)
    return tuple(int(n) for n in shape)


def knee_radiograph(key: jax.Array, *, grade: int | None = None,
                    shape: Sequence[int] = (256, 256), pixel_size: float = 0.6,
                    depth_samples: int = 96,
                    photons: float | tuple[float, float] | None = None, side: str = "right",
                    variation: float = 0.0, blur_fwhm: float = 0.0,
                    scatter_to_primary: float = 0.0, scatter_fwhm: float = 50.0,
                    tilt: float = 0.0, flexion: float = 0.0, axial_rotation: float = 0.0,
                    shift: float = 0.0, magnification: float | tuple[float, float] = 1.0,
                    detector_noise: float = 0.0, window: float = 0.0) -> KneeRadiograph:
    """An anteroposterior radiograph of a phantom knee with osteoarthritis of a given grade.

    Without the realism options (``variation`` to ``window``; all off by default) the grade's
    features are those of :data:`KL_GRADE_TABLE` and the image is the clean parallel-beam
    projection; ``**REALISTIC_RADIOGRAPH`` turns them all on. Their models are stated in
    ``mskjax.sim._radiograph_realism``. With any of them, one compiled function serves every
    setting of the options for a given ``shape`` and ``depth_samples``.

    Args:
        key: a ``jax.random`` key (the same key gives the same subject as
            :func:`knee_phantom`).
        grade: Kellgren-Lawrence-like grade 0..4 (keyword-only); ``None`` draws it uniformly.
        shape: ``(rows, cols)`` of the detector.
        pixel_size: detector pixel size in mm (the knee frame is 1:1, no magnification).
        depth_samples: samples along each ray over the 160 mm anterior-posterior extent.
        photons: mean photon count per pixel without attenuation for Poisson noise; ``None``
            for a noiseless image; a range ``(low, high)`` draws it log-uniformly per image.
        side: ``"right"`` or ``"left"`` knee.
        variation: spread of each feature's continuous grade around ``grade`` (grades, 0..4).
        blur_fwhm: full width at half maximum (mm) of the Gaussian point-spread function.
        scatter_to_primary: scatter-to-primary ratio of the low-pass scatter.
        scatter_fwhm: full width at half maximum (mm) of the scatter kernel.
        tilt: in-plane rotation drawn in ``[-tilt, tilt]`` degrees.
        flexion: flexion off the beam-aligned position drawn in ``[-flexion, flexion]`` degrees.
        axial_rotation: internal/external rotation drawn in ``[-value, value]`` degrees.
        shift: translation along rows and columns drawn in ``[-shift, shift]`` mm.
        magnification: a factor, or a range ``(low, high)`` to draw it from uniformly.
        detector_noise: standard deviation (photons) of Gaussian electronic noise (needs
            ``photons``).
        window: jitter of the display window (widths), recorded in ``acquisition``.

    Returns:
        :class:`KneeRadiograph` (image, grade, joint-space widths in mm, anatomy, and with
        realism options what was drawn in ``acquisition``).
    """
    func = "mskjax.sim.knee_radiograph"
    check_key(key, func)
    shape = check_detector_shape(shape, func)
    check_positive_int(depth_samples, "depth_samples", func, minimum=8)
    if not (isinstance(pixel_size, numbers.Real) and not isinstance(pixel_size, bool)
            and np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"{func}: pixel_size must be a finite number > 0 (mm), got "
                         f"{pixel_size!r}")
    if side not in ("right", "left"):
        raise ValueError(f"{func}: side must be 'right' or 'left', got {side!r}")
    options = check_realism(dict(
        photons=photons, variation=variation, blur_fwhm=blur_fwhm,
        scatter_to_primary=scatter_to_primary, scatter_fwhm=scatter_fwhm, tilt=tilt,
        flexion=flexion, axial_rotation=axial_rotation, shift=shift,
        magnification=magnification, detector_noise=detector_noise, window=window), func)
    grade = _draw_grade(key) if grade is None else check_grade(grade, "grade", func)
    rows, cols = (int(n) for n in shape)
    if not is_default(options):
        params = realism_arrays(options, (rows, cols), float(pixel_size), side)
        image, widths, anatomy, acquisition = _radiograph_core(
            key, grade, params, (rows, cols), int(depth_samples))
        return KneeRadiograph(image=image, grade=jnp.asarray(grade, jnp.int32),
                              joint_space_width=widths, minimum_joint_space_width=widths.min(),
                              anatomy=anatomy, pixel_size=float(pixel_size),
                              acquisition=acquisition)
    photons = None if options["photons"] is None else options["photons"][0]
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
