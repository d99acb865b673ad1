"""A seeded, procedural 3D knee phantom with exact labels, for segmentation and detection.

Axes and units. The volume's axes are ``(left-right, superior-inferior, anterior-posterior)``,
so ``labels[i]`` is a sagittal slice, ``labels[:, j]`` an axial one and ``labels[:, :, k]`` a
coronal one. Scanner coordinates are in mm with the origin at the centre of the field of view:
``x`` grows towards the patient's left with index ``i``, ``y`` is superior and falls with index
``j`` (row 0 is the top of a sagittal or coronal image), ``z`` is anterior and falls with index
``k`` (column 0 of a sagittal image is anterior, as radiologists display it):

    x_i = (i - (n0 - 1) / 2) * d0 + c0,  y_j = ((n1 - 1) / 2 - j) * d1 + c1,
    z_k = ((n2 - 1) / 2 - k) * d2 + c2

with ``c = centre`` (default 0). By default the field of view is 160 mm along every axis
(``voxel_size = 160 / shape``), so a different ``shape`` gives the same knee at another
resolution: the anatomy is a set of smooth implicit surfaces (signed distances of ellipsoids,
rounded discs and capsules combined with smooth minima) evaluated at the voxel centres, with no
partial-volume averaging.

A right knee has its medial compartment towards ``+x``; ``side="left"`` mirrors it. The knee is
in extension, centred near the origin, and each subject is rotated by a few degrees and shifted
by a few mm (see :class:`KneeAnatomy`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import check_positive_int
from . import _sdf as sdf
from ._anatomy import KneeAnatomy, draw_anatomy
from ._geometry import KNEE_LABELS, bone_index, fields, layout, paint
from ._pathology import (PATHOLOGY_SITES, KneePathology, apply_pathology, draw_pathology,
                         effusion_severity, parse_pathology, pathology_flags)
from ._xray import attenuation

#: Names of the three axes of a phantom volume.
AXES = ("left-right", "superior-inferior", "anterior-posterior")
#: Default field of view along each axis (mm).
FIELD_OF_VIEW_MM = 160.0


@dataclasses.dataclass(frozen=True)
class KneePhantom:
    """One simulated knee.

    Fields:
        labels: int32 ``(*spatial)`` tissue labels, values of :data:`KNEE_LABELS`.
        anatomy: the :class:`KneeAnatomy` drawn for this subject.
        pathology: the :class:`KneePathology` (masks, presence, sites).
        voxel_size: static ``(3,)`` or ``(2,)`` voxel size in mm, one per axis of ``labels``.
        axes: static names of the axes of ``labels`` (a subset of :data:`AXES`).
        tissue_names: static tuple, ``tissue_names[label]`` is the tissue's name.
        evaluation: what evaluating the same knee at other points of its grid takes (the
            subject's layout and pathology draws, the grid settings and the slice index, all
            arrays), used by ``render(partial_volume=...)``; ``None`` for a phantom built by
            hand.
    """

    labels: Any
    anatomy: KneeAnatomy
    pathology: KneePathology
    evaluation: Any = None
    voxel_size: tuple = ()
    axes: tuple = AXES
    tissue_names: tuple = tuple(KNEE_LABELS)

    def replace(self, **changes) -> KneePhantom:
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(KneePhantom,
                                 data_fields=["labels", "anatomy", "pathology", "evaluation"],
                                 meta_fields=["voxel_size", "axes", "tissue_names"])


def check_key(key, func):
    """Raise TypeError unless ``key`` is one jax.random key (typed, or raw uint32 ``(2,)``)."""
    ok = hasattr(key, "dtype") and (
        (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ())
        or (key.dtype == jnp.uint32 and key.shape == (2,)))
    if not ok:
        raise TypeError(
            f"{func}: key must be one jax.random key (vmap over a batch of keys), got "
            f"{getattr(key, 'dtype', type(key).__name__)} of shape {getattr(key, 'shape', ())}")


def _check_grid(shape, voxel_size, slice_axis, slice_index, func):
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{func}: shape must be a sequence of 3 ints, got {shape!r}") from None
    if len(shape) != 3:
        raise ValueError(f"{func}: shape must be 3 ints (left-right, superior-inferior, "
                         f"anterior-posterior), got {shape}")
    for n in shape:
        check_positive_int(n, "each size in shape", func)
    shape = tuple(int(n) for n in shape)
    if voxel_size is None:
        voxel_size = tuple(FIELD_OF_VIEW_MM / n for n in shape)
    elif isinstance(voxel_size, numbers.Real):
        voxel_size = (voxel_size,) * 3
    try:
        if isinstance(voxel_size, str):
            raise TypeError
        voxel_size = tuple(voxel_size)
    except TypeError:
        raise TypeError(f"{func}: voxel_size must be None, a number or 3 numbers (mm), got "
                        f"{voxel_size!r}") from None
    if len(voxel_size) != 3 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v > 0
            for v in voxel_size):
        raise ValueError(f"{func}: voxel_size must be 3 finite positive numbers (mm), got "
                         f"{voxel_size!r}")
    voxel_size = tuple(float(v) for v in voxel_size)
    if (slice_axis is None) != (slice_index is None):
        raise ValueError(f"{func}: give both slice_axis and slice_index for a 2D slice, or "
                         f"neither, got slice_axis={slice_axis!r}, slice_index={slice_index!r}")
    if slice_axis is not None:
        if isinstance(slice_axis, bool) or not isinstance(slice_axis, numbers.Integral) or not (
                -3 <= slice_axis < 3):
            raise ValueError(f"{func}: slice_axis must be 0, 1 or 2, got {slice_axis!r}")
        slice_axis = int(slice_axis) % 3
        n = shape[slice_axis]
        if isinstance(slice_index, bool) or not isinstance(slice_index, numbers.Integral) or not (
                -n <= slice_index < n):
            raise ValueError(f"{func}: slice_index must be an int in [-{n}, {n}) for axis "
                             f"{slice_axis} of shape {shape}, got {slice_index!r}")
        slice_index = int(slice_index) % n
    return shape, voxel_size, slice_axis, slice_index


#: Points per call of the compiled evaluation. Every grid, slice and radiograph is evaluated in
#: chunks of this many points by one compiled function, so a new shape costs no compilation.
CHUNK = 1 << 16


def to_knee_frame(anatomy, mirror, x, y, z, *, pose=1.0):
    """Scanner coordinates -> the knee's own frame (see ``_geometry``).

    ``mirror`` is -1 for a left knee, 1 for a right one; ``pose`` scales the subject's rotation
    and translation (0 puts the knee in the canonical position).
    """
    x = x * mirror
    r = sdf.rotation_matrix(anatomy.rotation * pose)
    t = anatomy.translation * pose
    dx, dy, dz = x - t[0], y - t[1], z - t[2]
    return (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)


def to_scanner(anatomy, mirror, points, *, pose=1.0):
    """Knee-frame points ``(..., 3)`` -> scanner coordinates."""
    out = points @ sdf.rotation_matrix(anatomy.rotation * pose).T + anatomy.translation * pose
    return out * jnp.stack([mirror, 1.0, 1.0])


def grid_config(shape, voxel_size, *, slice_axis=None, centre=(0.0, 0.0, 0.0), side="right",
                spec=None, pose=1.0, ray_step=1.0, conspicuity=None):
    """The settings of one evaluation, all as arrays (so none of them triggers a compilation):
    grid ``shape`` and ``voxel_size`` (mm), ``centre`` (mm), ``mirror`` (-1 for a left knee),
    ``pose``, pathology ``probability``, ``site`` and ``conspicuity`` (NaN: the default draws;
    ``conspicuity`` is a dict name -> value), grid ``spacing`` for thin pathologies (infinite
    along a sliced axis) and the ``ray_step`` (mm) of radiographs."""
    spec = spec if spec is not None else parse_pathology(None, "")
    conspicuity = conspicuity or {}
    spacing = jnp.stack([jnp.float32(jnp.inf) if axis == slice_axis else jnp.float32(d)
                         for axis, d in enumerate(voxel_size)])
    return dict(shape=jnp.asarray(shape, jnp.float32),
                voxel_size=jnp.stack([jnp.float32(d) for d in voxel_size]),
                centre=jnp.asarray(centre, jnp.float32),
                mirror=jnp.float32(-1.0 if side == "left" else 1.0), pose=jnp.float32(pose),
                probability=jnp.asarray([p for _, p, _ in spec], jnp.float32),
                site=jnp.asarray([s for _, _, s in spec], jnp.int32),
                conspicuity=jnp.stack([jnp.asarray(conspicuity.get(n, jnp.nan), jnp.float32)
                                       for n, _, _ in spec]),
                spacing=spacing, ray_step=jnp.float32(ray_step))


@sdf.jit
def _subject(key, kl_grade, config, severity=None):
    """The subject's scalar parameters: anatomy (with its landmarks in scanner coordinates),
    derived layout, pathology draws and the per-subject pathology labels. ``severity`` (float
    ``(3,)``, optional) places the osteoarthritic features at continuous grades (see
    ``draw_anatomy``)."""
    key_anatomy, key_pathology = jax.random.split(key)
    anatomy = draw_anatomy(key_anatomy, kl_grade, severity)
    spec = tuple(zip(PATHOLOGY_SITES, config["probability"], config["site"],
                     config["conspicuity"]))
    draws = draw_pathology(key_pathology, spec)
    lay = layout(anatomy, effusion_severity(draws))
    mirror, pose = config["mirror"], config["pose"]
    centres = jnp.stack([jnp.stack([lay["xc"][i], lay["yc"][i], lay["zc"]]) for i in (0, 1)])
    patella = jnp.stack([lay["xp"], lay["yp"], lay["zp"]])
    anatomy = anatomy.replace(condyle_centres=to_scanner(anatomy, mirror, centres, pose=pose),
                              patella_centre=to_scanner(anatomy, mirror, patella, pose=pose))
    present = pathology_flags(draws)[0]
    conspicuity = {name: jnp.where(present[name], draws[name]["conspicuity"], jnp.nan)
                   for name in PATHOLOGY_SITES}
    return anatomy, lay, draws, (*pathology_flags(draws), conspicuity)


def _evaluate(anatomy, lay, draws, config, index):
    """Labels, pathology masks, bone index and X-ray attenuation at the grid points of integer
    ``index`` ``(3, n)`` (voxel indices along the three axes)."""
    n, d, c = config["shape"], config["voxel_size"], config["centre"]
    centred = (index.astype(jnp.float32) - (n[:, None] - 1.0) / 2.0) * d[:, None]
    x, y, z = centred[0] + c[0], c[1] - centred[1], c[2] - centred[2]
    xk, yk, zk = to_knee_frame(anatomy, config["mirror"], x, y, z, pose=config["pose"])
    fd = fields(anatomy, lay, xk, yk, zk)
    labels = paint(fd)
    rotation = (sdf.rotation_matrix(anatomy.rotation * config["pose"])
                * jnp.stack([config["mirror"], 1.0, 1.0])[:, None])
    labels, masks = apply_pathology(anatomy, lay, fd, labels, draws, xk, yk, zk, rotation,
                                    config["spacing"])
    return dict(labels=labels, masks=masks, bone=bone_index(fd),
                attenuation=attenuation(fd, labels, config["ray_step"]))


_evaluate_compiled = sdf.jit(_evaluate)


def evaluate_grid(anatomy, lay, draws, config, shape, slice_axis=None, slice_index=0,
                  outputs=("labels", "masks")):
    """The ``outputs`` of :func:`_evaluate` on a grid of ``shape`` (with ``slice_axis`` fixed at
    ``slice_index`` and squeezed out), shaped like the grid.

    Concrete inputs go through one compiled function in chunks of :data:`CHUNK` points, the
    same for every grid; traced inputs (inside ``jit`` or ``vmap``) are evaluated in one piece.
    """
    grid = tuple(1 if axis == slice_axis else n for axis, n in enumerate(shape))
    index = np.indices(grid, dtype=np.int32).reshape(3, -1)
    if slice_axis is not None:
        index[slice_axis] = slice_index
    out_shape = tuple(n for axis, n in enumerate(grid) if axis != slice_axis)
    traced = any(isinstance(leaf, jax.core.Tracer)
                 for leaf in jax.tree.leaves((anatomy, lay, draws, config)))
    if traced:
        out = _evaluate_compiled(anatomy, lay, draws, config, jnp.asarray(index))
        return jax.tree.map(lambda a: a.reshape(out_shape), {k: out[k] for k in outputs})
    total = index.shape[1]
    padded = np.zeros((3, -(-total // CHUNK) * CHUNK), np.int32)
    padded[:, :total] = index
    pieces = []
    for i in range(0, padded.shape[1], CHUNK):
        out = _evaluate_compiled(anatomy, lay, draws, config, padded[:, i:i + CHUNK])
        pieces.append({k: out[k] for k in outputs})
    return jax.tree.map(
        lambda *parts: jnp.asarray(np.concatenate([np.asarray(p) for p in parts])[:total]
                                   .reshape(out_shape)), *pieces)


def knee_phantom(key: jax.Array, *, shape: Sequence[int] = (64, 128, 128),
                 voxel_size: float | Sequence[float] | None = None,
                 centre: Sequence[float] = (0.0, 0.0, 0.0), slice_axis: int | None = None,
                 slice_index: int | None = None,
                 pathology: str | Sequence[str] | Mapping[str, float | bool | str] | None = None,
                 kl_grade: int | ArrayLike = 0, side: str = "right",
                 conspicuity: float | ArrayLike | Mapping[str, float | ArrayLike] | None = None
                 ) -> KneePhantom:
    """Draw one knee: integer tissue labels, its anatomy and its pathologies.

    The same key always gives the same subject; the anatomy depends on the key only, so
    changing ``shape``, ``voxel_size``, ``pathology`` or ``kl_grade`` shows the same knee
    differently (pathologies and osteoarthritic changes are drawn from separate streams).
    Compiled once for every shape, slice and setting (the grid is evaluated in chunks of
    :data:`CHUNK` points by one compiled function); vmap over keys for a batch, or jit it.

    Args:
        key: a ``jax.random`` key.
        shape: ``(left-right, superior-inferior, anterior-posterior)`` voxels (keyword-only).
        voxel_size: mm per voxel along each axis, a number or 3 numbers; default
            ``160 / shape`` (a 160 mm field of view).
        centre: scanner coordinates (mm) of the centre of the volume, to zoom in on a region
            (e.g. ``anatomy.condyle_centres[0]`` of a first, coarse call).
        slice_axis, slice_index: give both to compute only that slice of the ``shape`` volume;
            the labels are then 2D with the remaining two axes (e.g. ``slice_axis=0`` gives a
            sagittal ``(superior-inferior, anterior-posterior)`` image).
        pathology: ``None`` (healthy), ``"random"`` (each pathology with its probability in
            :data:`DEFAULT_PATHOLOGY_PROBABILITIES`), a pathology name or a list of names
            (forced present, random site), or a dict mapping names to a probability in
            ``[0, 1]``, a bool, or a site name from :data:`PATHOLOGY_SITES` (forced, at that
            site). Pathologies not named are absent.
        kl_grade: Kellgren-Lawrence-like osteoarthritis grade 0..4 (joint-space narrowing,
            osteophytes, subchondral sclerosis; see :data:`KL_GRADE_TABLE`), an int or an int
            array (traced values are clipped to 0..4).
        side: ``"right"`` or ``"left"`` knee.
        conspicuity: ``None`` (sizes and contrasts drawn as stated in
            ``mskjax.sim._pathology``), a number in [0, 1] for every pathology, or a dict
            mapping pathology names to such numbers (the others drawn the default way): scales
            the size and the contrast of each pathology that is present, from invisible (0)
            to as conspicuous as the defaults (1); see ``mskjax.sim._pathology``. A float
            scalar array may be traced.

    Returns:
        :class:`KneePhantom` with ``labels`` int32 ``shape`` (or the 2D slice),
        ``anatomy`` and ``pathology``.
    """
    func = "mskjax.sim.knee_phantom"
    check_key(key, func)
    shape, voxel_size, slice_axis, slice_index = _check_grid(shape, voxel_size, slice_axis,
                                                             slice_index, func)
    spec = parse_pathology(pathology, func)
    kl_grade = check_grade(kl_grade, "kl_grade", func)
    if side not in ("right", "left"):
        raise ValueError(f"{func}: side must be 'right' or 'left', got {side!r}")
    centre = _check_centre(centre, func)
    conspicuity = check_conspicuity(conspicuity, func)
    config = grid_config(shape, voxel_size, slice_axis=slice_axis, centre=centre, side=side,
                         spec=spec, conspicuity=conspicuity)
    anatomy, lay, draws, (present, site, kind, drawn) = _subject(key, kl_grade, config)
    out = evaluate_grid(anatomy, lay, draws, config, shape, slice_axis,
                        0 if slice_index is None else slice_index)
    kept = tuple(i for i in range(3) if i != slice_axis)
    pathology = KneePathology(masks=out["masks"], present=present, site=site, kind=kind,
                              conspicuity=drawn)
    evaluation = dict(layout=lay, draws=draws, config=config,
                      slice_index=jnp.int32(0 if slice_index is None else slice_index))
    return KneePhantom(labels=out["labels"], anatomy=anatomy, pathology=pathology,
                       evaluation=evaluation, voxel_size=tuple(voxel_size[i] for i in kept),
                       axes=tuple(AXES[i] for i in kept))


def subvoxel_samples(phantom, factor, func):
    """Labels and pathology masks of ``phantom`` at ``factor`` evenly spaced points per voxel
    along each axis of its labels (the centres of the sub-voxels of a ``factor`` times finer
    grid), stacked on a leading axis of ``factor ** ndim`` samples: ``(labels, masks)`` with
    labels int32 ``(factor ** ndim, *spatial)`` and masks a dict of such boolean arrays.

    The sliced axis of a 2D phantom is not sampled (the slice stays infinitely thin). Each
    sample is the grid of the phantom shifted by a fraction of a voxel (through the grid's
    centre), so it costs one evaluation of the phantom and no new compilation. Thin pathologies
    keep the width they have on the phantom's own grid."""
    evaluation = getattr(phantom, "evaluation", None)
    if evaluation is None:
        raise ValueError(f"{func}: partial_volume > 1 needs a KneePhantom from "
                         f"mskjax.sim.knee_phantom (labels alone cannot be re-evaluated "
                         f"between voxel centres)")
    config = evaluation["config"]
    slice_axis = next((i for i, name in enumerate(AXES) if name not in phantom.axes), None)
    kept = [i for i in range(3) if i != slice_axis]
    shape = [1] * 3
    for axis, n in zip(kept, phantom.labels.shape):
        shape[axis] = n
    sign = jnp.asarray([1.0, -1.0, -1.0], jnp.float32)  # index -> scanner direction per axis
    labels, masks = [], []
    for offset in np.ndindex(*(factor,) * len(kept)):
        shift = [jnp.float32(0.0)] * 3
        for axis, o in zip(kept, offset):
            shift[axis] = jnp.float32((o + 0.5) / factor - 0.5)
        if slice_axis is not None:  # the slice's index becomes a shift of the grid's centre
            shift[slice_axis] = jnp.asarray(evaluation["slice_index"], jnp.float32)
        centre = config["centre"] + sign * jnp.stack(shift) * config["voxel_size"]
        out = evaluate_grid(phantom.anatomy, evaluation["layout"], evaluation["draws"],
                            dict(config, centre=centre), tuple(shape), slice_axis, 0)
        labels.append(out["labels"])
        masks.append(out["masks"])
    return jnp.stack(labels), jax.tree.map(lambda *m: jnp.stack(m), *masks)


def _check_centre(centre, func):
    try:
        values = np.asarray(centre, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{func}: centre must be 3 numbers (mm), got {centre!r}") from None
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise ValueError(f"{func}: centre must be 3 finite numbers (mm), got {centre!r}")
    return tuple(float(v) for v in values)


def check_conspicuity(conspicuity, func):
    """``conspicuity`` of :func:`knee_phantom` as a dict name -> float32 scalar."""
    if conspicuity is None:
        return {}
    if not isinstance(conspicuity, Mapping):
        conspicuity = {name: conspicuity for name in PATHOLOGY_SITES}
    out = {}
    for name, value in conspicuity.items():
        if name not in PATHOLOGY_SITES:
            raise ValueError(f"{func}: unknown pathology {name!r} in conspicuity; expected "
                             f"some of {list(PATHOLOGY_SITES)}")
        if isinstance(value, jax.core.Tracer) or (
                hasattr(value, "dtype") and not isinstance(value, np.generic)):
            if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
                raise TypeError(f"{func}: conspicuity[{name!r}] must be a number in [0, 1] or a "
                                f"float scalar array, got {value.dtype} of shape {value.shape}")
            if not isinstance(value, jax.core.Tracer) and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{func}: conspicuity[{name!r}] must be in [0, 1], got "
                                 f"{float(value)!r}")
            out[name] = jnp.asarray(value, jnp.float32)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                0.0 <= float(value) <= 1.0):
            raise ValueError(f"{func}: conspicuity[{name!r}] must be a number in [0, 1], got "
                             f"{value!r}")
        out[name] = jnp.float32(value)
    return out


def check_grade(grade, name, func):
    """An int 0..4, or an integer array (returned as int32)."""
    if isinstance(grade, numbers.Integral) and not isinstance(grade, bool):
        if not 0 <= grade <= 4:
            raise ValueError(f"{func}: {name} must be an int in 0..4, got {grade!r}")
        return jnp.int32(grade)
    if hasattr(grade, "dtype") and jnp.issubdtype(grade.dtype, jnp.integer) and grade.shape == ():
        return grade.astype(jnp.int32)
    raise TypeError(f"{func}: {name} must be an int in 0..4 or an integer scalar array, got "
                    f"{grade!r}")
