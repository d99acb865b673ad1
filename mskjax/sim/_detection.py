"""Detection data with known truth and graded conspicuity: one 2D slice through a lesion (or
through the same place of a knee without it), MRNet-like three-plane multi-slice scans, and a
whole set from a seed in one call.

Every example is drawn from one key: the knee (anatomy, side, Kellgren-Lawrence grade 0..4),
its tissue parameters (:func:`jitter_parameters`), the target pathology's presence (1 in 2 by
default) and its conspicuity ``c`` (uniform in [0, 1] by default; it scales the size and the
contrast of the pathology together, from invisible at 0 to the phantom's defaults at 1, see
``mskjax.sim._pathology``), the other pathologies as distractors (each with its probability in
:data:`DEFAULT_PATHOLOGY_PROBABILITIES`, independent of the label), and the noise level (SNR
uniform in [10, 30] by default, as defined by :func:`render`). The site and shape of the target
are drawn the same way whether it is present or not, so that a negative is the same knee seen
at the same place, without the lesion.

Rendering (``realistic=True``): partial volume over 2 x 2 x 2 samples per voxel (through the
slice thickness too), smooth proton-density texture, trabecular marrow texture, receive-coil
bias, Gibbs ringing in-plane (:data:`REALISTIC_RENDERING`), then Rician noise at the drawn SNR.
``realistic=False`` keeps only the noise. Images are float32, divided by their 99th percentile
(each view of a multi-view example by its own), like :func:`segmentation_example`.

Planes and display orientation (``(rows, cols)``): sagittal ``(superior-inferior,
anterior-posterior)``, coronal ``(superior-inferior, left-right)``, axial
``(anterior-posterior, left-right)``; row 0 is superior (anterior for axial), column 0 anterior
(sagittal) or the patient's right. Slices of a stack run right to left (sagittal), anterior to
posterior (coronal) and superior to inferior (axial).

Conspicuity measured on the image, as contrast-to-noise ratios over ``sigma``, the standard
deviation of each complex noise channel, signed (positive when the lesion is brighter), NaN
when there is no lesion in the image:

* ``cnr``: the lesion's own signal change, ``mean over the mask of (image - lesion-free
  image)``, both noise-free: the same knee, texture and bias rendered with the target at
  conspicuity 0. It is 0 at conspicuity 0 and grows with it.
* ``cnr_surround``: ``mean(mask) - mean(reference)`` on the noise-free image, ``reference``
  the voxels of the host tissue (the lesion's cartilage plate, the torn meniscus, the
  oedematous bone, as labelled without the lesion) within 5 mm of the mask and outside it:
  what a reader compares, including partial volume at the tissue's edges and texture, so it is
  not 0 at conspicuity 0.
* ``cnr_measured``: the same as ``cnr_surround`` on the noisy image.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import distance_transform_edt

from ._contrast import render_checked
from ._geometry import KNEE_LABELS as L
from ._jitter import jitter_parameters
from ._pathology import (DEFAULT_PATHOLOGY_PROBABILITIES, parse_pathology, pathology_centre,
                         pathology_shape)
from ._phantom import (_subject, check_key, evaluate_grid, grid_config, knee_phantom,
                       to_scanner)
from ._realism import REALISTIC_RENDERING, reference_signal, truncate_kspace

#: Pathologies that :func:`lesion_detection_example` and :func:`multiview_example` can target.
DETECTION_PATHOLOGIES = ("cartilage_lesion", "meniscal_tear", "bone_marrow_oedema")
#: Plane name -> the phantom axis its slices cut (left-right, superior-inferior,
#: anterior-posterior).
PLANES = {"sagittal": 0, "coronal": 2, "axial": 1}
#: Knee-frame point (mm) the field of view is centred on, before the random shift: the joint's
#: centre, a little above the tibial plateau.
_JOINT = (0.0, 5.0, 0.0)
#: Largest random shift (mm, along each axis) of the field of view's centre.
_SHIFT_MM = 5.0
#: Reference region of the contrast-to-noise ratio: host tissue within this distance (mm).
_RING_MM = 5.0
#: Least cross-section (mm^2) of the target at conspicuity 1 in the slice of a 2D example; a
#: knee whose slice shows less (a lesion in a sliver of thin cartilage) is drawn again.
MINIMUM_AREA_MM2 = {"cartilage_lesion": 5.0, "meniscal_tear": 2.0, "bone_marrow_oedema": 10.0}
#: Draws of the knee before giving up on showing the target (only a field of view that misses
#: the joint gets there).
_ATTEMPTS = 20
_CONTRASTS = ("pd_fs", "t1_spgr")


class DetectionExample(NamedTuple):
    """The output of :func:`lesion_detection_example` (module docstring for the conventions).

    Attributes:
        image: float32 ``(rows, cols)``, the noisy image over its 99th percentile.
        clean: float32 ``(rows, cols)``, the same image without noise, on the same scale.
        label: int32 ``()``, 1 when the pathology is present.
        mask: bool ``(rows, cols)``, the pathology in this slice (at the voxel centres of the
            slice's mid-plane); all False when absent.
        labels: int32 ``(rows, cols)`` tissue labels of the knee without the target pathology
            (so they say nothing of the label; distractors keep their labels).
        conspicuity: float32 ``()``, the drawn conspicuity; NaN when absent.
        parameters: dict of float32 arrays, the pathology's drawn size and contrast
            (:func:`mskjax.sim._pathology.pathology_shape`: ``radius``, ``depth``, ``fill``,
            ``rim_change`` of a cartilage lesion; ``width``, ``extent``, ``fill`` of a tear;
            ``radii``, ``change`` of oedema); NaN when absent.
        site: int32 ``()``, index into ``PATHOLOGY_SITES[pathology]``, drawn for negatives too
            (where the lesion would have been).
        slice_position: float32 ``()``, scanner coordinate (mm) of the slice along the sliced
            axis (module docstring of ``mskjax.sim._phantom``).
        snr: float32 ``()``, the drawn signal-to-noise ratio.
        noise: float32 ``()``, the noise's standard deviation per channel on the image's scale.
        cnr: float32 ``()``, the lesion's contrast-to-noise ratio against the same knee
            without it (module docstring); NaN when absent.
        cnr_surround: float32 ``()``, contrast-to-noise ratio against the surrounding host
            tissue on the noise-free image; NaN when absent.
        cnr_measured: float32 ``()``, the same on the noisy image; NaN when absent.
    """

    image: jax.Array
    clean: jax.Array
    label: jax.Array
    mask: jax.Array
    labels: jax.Array
    conspicuity: jax.Array
    parameters: dict
    site: jax.Array
    slice_position: jax.Array
    snr: jax.Array
    noise: jax.Array
    cnr: jax.Array
    cnr_surround: jax.Array
    cnr_measured: jax.Array


class MultiViewExample(NamedTuple):
    """The output of :func:`multiview_example`; tuples hold (sagittal, coronal, axial).

    Attributes:
        views: three float32 ``(slices, size, size)`` stacks, each over its 99th percentile.
        label: int32 ``()``, 1 when the pathology is present.
        masks: three bool ``(slices, size, size)`` masks of the pathology (one may be empty
            where a thin pathology falls between the samples of a coarse grid).
        labels: three int32 ``(slices, size, size)`` tissue labels without the target.
        conspicuity: float32 ``()``, NaN when absent.
        parameters: dict of float32 arrays as in :class:`DetectionExample`.
        site: int32 ``()``, drawn for negatives too.
        snr: float32 ``(3,)`` drawn per view.
        noise: float32 ``(3,)`` noise standard deviation per view, on each view's scale.
        cnr, cnr_surround, cnr_measured: float32 ``(3,)`` the contrast-to-noise ratios of
            :class:`DetectionExample` per view; NaN when absent or when a view's mask is
            empty.
    """

    views: tuple
    label: jax.Array
    masks: tuple
    labels: tuple
    conspicuity: jax.Array
    parameters: dict
    site: jax.Array
    snr: jax.Array
    noise: jax.Array
    cnr: jax.Array
    cnr_surround: jax.Array
    cnr_measured: jax.Array


# ----------------------------------------------------------------------------- checks


def _number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


def _check_range(value, name, func, *, low, high, open_low=False):
    """A number or a ``(low, high)`` pair within the bounds, as a pair of floats."""
    pair = (value, value) if _number(value) else value
    try:
        a, b = pair
    except (TypeError, ValueError):
        a = b = None
    ok = _number(a) and _number(b) and a <= b and b <= high and (a > low if open_low else
                                                                 a >= low)
    if not ok:
        bound = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
        raise ValueError(f"{func}: {name} must be a number in {bound} or a (low, high) range "
                         f"within it, got {value!r}")
    return float(a), float(b)


def _check_common(func, *, pathology, present, conspicuity, contrasts, realistic, snr,
                  distractors, kl_grade, side):
    if pathology not in DETECTION_PATHOLOGIES:
        raise ValueError(f"{func}: pathology must be one of {list(DETECTION_PATHOLOGIES)}, got "
                         f"{pathology!r}")
    if present is not None and not isinstance(present, bool):
        raise TypeError(f"{func}: present must be None (drawn) or a bool, got {present!r}")
    conspicuity = None if conspicuity is None else _check_range(
        conspicuity, "conspicuity", func, low=0.0, high=1.0)
    for c in contrasts:
        if c not in _CONTRASTS:
            raise ValueError(f"{func}: contrast must be one of {list(_CONTRASTS)}, got {c!r}")
    for name, flag in (("realistic", realistic), ("distractors", distractors)):
        if not isinstance(flag, bool):
            raise TypeError(f"{func}: {name} must be a bool, got {flag!r}")
    snr = _check_range(snr, "snr", func, low=0.0, high=np.inf, open_low=True)
    if not (kl_grade == "random" or (isinstance(kl_grade, numbers.Integral)
                                     and not isinstance(kl_grade, bool) and 0 <= kl_grade <= 4)):
        raise ValueError(f"{func}: kl_grade must be an int in 0..4 or 'random', got "
                         f"{kl_grade!r}")
    if side not in ("right", "left", "random"):
        raise ValueError(f"{func}: side must be 'right', 'left' or 'random', got {side!r}")
    return conspicuity, snr


def _check_length(value, name, func):
    if not _number(value) or value <= 0:
        raise ValueError(f"{func}: {name} must be a finite number > 0 (mm), got {value!r}")
    return float(value)


def _check_size(value, name, func, minimum=8):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- the subject


def _uniform(key, bounds):
    low, high = bounds
    return low if low == high else float(jax.random.uniform(key, (), jnp.float32, low, high))


@functools.partial(jax.jit, static_argnames=("name",))
def _locate(anatomy, lay, draws, mirror, name):
    """Scanner coordinates of the target's centre and of the joint, its site and shape."""
    point = pathology_centre(anatomy, lay, draws, name)
    points = to_scanner(anatomy, mirror, jnp.stack([point, jnp.asarray(_JOINT, jnp.float32)]))
    return points[0], points[1], draws[name]["site"], pathology_shape(draws, name)


def _draw_subject(key, func, *, pathology, present, conspicuity, snr_range, distractors,
                  kl_grade, side, jitter, views, attempt=0):
    """Everything an example draws from its key before rendering; ``attempt > 0`` draws
    another knee (anatomy and pathology draws) and keeps the rest."""
    keys = jax.random.split(key, 10)
    if attempt:
        keys = keys.at[0].set(jax.random.fold_in(keys[0], attempt))
    if kl_grade == "random":
        kl_grade = int(jax.random.randint(keys[1], (), 0, 5))
    if side == "random":
        side = ("right", "left")[int(jax.random.bernoulli(keys[2]))]
    if present is None:
        present = bool(jax.random.bernoulli(keys[3]))
    c = _uniform(keys[4], conspicuity if conspicuity is not None else (0.0, 1.0))
    spec = {name: p for name, p in DEFAULT_PATHOLOGY_PROBABILITIES.items()} if distractors else {}
    spec[pathology] = present
    config = grid_config((1, 1, 1), (1.0, 1.0, 1.0), side=side,
                         spec=parse_pathology(spec, func), conspicuity={pathology: jnp.float32(c)})
    anatomy, lay, draws, _ = _subject(keys[0], jnp.int32(kl_grade), config)
    target, joint, site, shape = _locate(anatomy, lay, draws, config["mirror"], pathology)
    shift = jax.random.uniform(keys[5], (3,), jnp.float32, -_SHIFT_MM, _SHIFT_MM)
    snr = [_uniform(jax.random.fold_in(keys[6], v), snr_range) for v in range(views)]
    nan = np.float32(np.nan)
    parameters = {k: (np.asarray(v, np.float32) if present
                      else np.full(np.shape(v), nan, np.float32)) for k, v in shape.items()}
    return dict(phantom_key=keys[0], render_key=keys[7], noise_key=keys[8], kl_grade=kl_grade,
                side=side, present=present, conspicuity=c, spec=spec,
                target=np.asarray(target, np.float64), centre=np.asarray(joint + shift,
                                                                          np.float64),
                site=int(site), parameters=parameters, snr=snr,
                jitter=jitter_parameters(keys[9], scale=jitter))


def _host(pathology, site):
    """Label of the tissue that holds the pathology at ``site``."""
    if pathology == "cartilage_lesion":
        return L[("femoral_cartilage", "femoral_cartilage", "tibial_cartilage",
                  "tibial_cartilage", "patellar_cartilage")[site]]
    if pathology == "meniscal_tear":
        return L[("medial_meniscus", "lateral_meniscus")[site]]
    return L["femur"] if site < 2 else L["tibia"]


def _shows_target(subject, *, pathology, plane, rows, cols, pixel, centre):
    """Whether the subject's slice shows :data:`MINIMUM_AREA_MM2` of the target at
    conspicuity 1 (mid-plane of the slice, voxel centres), whether or not it is present."""
    shape, voxel, _ = _plane_grid(plane, rows, cols, 1, pixel, 1.0)
    spec = dict(subject["spec"], **{pathology: True})
    phantom = knee_phantom(subject["phantom_key"], shape=shape, voxel_size=voxel,
                           centre=tuple(centre), slice_axis=PLANES[plane], slice_index=0,
                           pathology=spec, kl_grade=subject["kl_grade"], side=subject["side"],
                           conspicuity={pathology: 1.0})
    area = float(jnp.sum(phantom.pathology.masks[pathology])) * pixel * pixel
    return area >= MINIMUM_AREA_MM2[pathology]


# ----------------------------------------------------------------------------- one view


def _plane_grid(plane, rows, cols, slices, pixel, thickness):
    """The phantom grid (shape, voxel size) of a stack of ``slices`` slices of
    ``rows x cols`` in ``plane``, and the permutation of its axes to (slices, rows, cols)."""
    if plane == "sagittal":  # (LR, SI, AP) = (slices, rows, cols)
        return (slices, rows, cols), (thickness, pixel, pixel), (0, 1, 2)
    if plane == "coronal":  # (LR, SI, AP) = (cols, rows, slices)
        return (cols, rows, slices), (pixel, pixel, thickness), (2, 1, 0)
    return (cols, slices, rows), (pixel, thickness, pixel), (1, 2, 0)  # axial


@functools.partial(jax.jit, static_argnames=("gibbs",))
def _finish(image, lesion_free, labels, key, snr, *, gibbs):
    """Truncate k-space in-plane (the last two axes), add Rician noise at ``snr`` and
    normalise: (noisy, clean, clean lesion-free, sigma), all on the noisy image's scale."""

    def prepare(x):
        return truncate_kspace(x, gibbs, 2) if gibbs is not None else x.astype(jnp.complex64)

    z = prepare(image)
    clean, clean_free = jnp.abs(z), jnp.abs(prepare(lesion_free))
    sigma = reference_signal(clean, labels) / snr
    n = jax.random.normal(key, (2, *z.shape), jnp.float32) * sigma
    noisy = jnp.sqrt((jnp.real(z) + n[0]) ** 2 + (jnp.imag(z) + n[1]) ** 2)
    scale = jnp.percentile(noisy, 99.0)
    scale = jnp.where(scale > 0, scale, 1.0)
    return noisy / scale, clean / scale, clean_free / scale, sigma / scale


def _cnr(clean, clean_free, noisy, sigma, mask, healthy, host, spacing):
    """Contrast-to-noise ratios of the mask (module docstring): against the lesion-free image,
    and against the host tissue within :data:`_RING_MM` on the noise-free and the noisy
    image; NaN without a mask (or, for the last two, without a reference region)."""
    nan = np.float32(np.nan)
    if not mask.any():
        return nan, nan, nan
    own = np.float32((clean[mask] - clean_free[mask]).mean() / sigma)
    near = distance_transform_edt(~mask, sampling=spacing) <= _RING_MM
    reference = near & ~mask & (healthy == host)
    if not reference.any():
        return own, nan, nan
    return (own, *(np.float32((image[mask].mean() - image[reference].mean()) / sigma)
                   for image in (clean, noisy)))


def _fine_samples(phantom, factor):
    """The sub-voxel samples of :func:`mskjax.sim._phantom.subvoxel_samples` for a 3D
    phantom, in one evaluation of the grid ``factor`` times finer (whose points are the
    sub-voxel centres), with the thin pathologies as wide as on the phantom's own grid."""
    evaluation = phantom.evaluation
    shape = tuple(int(n) for n in phantom.labels.shape)
    fine = tuple(factor * n for n in shape)
    config = dict(evaluation["config"], shape=jnp.asarray(fine, jnp.float32),
                  voxel_size=evaluation["config"]["voxel_size"] / factor)
    out = evaluate_grid(phantom.anatomy, evaluation["layout"], evaluation["draws"], config, fine)

    def split(a):  # (f n0, f n1, f n2) -> (f ** 3, n0, n1, n2), offsets in np.ndindex order
        a = a.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
        return a.transpose(1, 3, 5, 0, 2, 4).reshape(factor ** 3, *shape)

    return split(out["labels"]), {k: split(m) for k, m in out["masks"].items()}


def _displayed(phantom, samples, perm):
    """The phantom (labels, masks, axes, voxel size) and its sub-voxel samples with their axes
    permuted by ``perm``; the result can be rendered (with the samples) but not re-evaluated."""
    def move(a, lead=0):
        return jnp.transpose(a, tuple(range(lead)) + tuple(lead + p for p in perm))

    pathology = dataclasses.replace(
        phantom.pathology, masks={k: move(m) for k, m in phantom.pathology.masks.items()})
    phantom = phantom.replace(labels=move(phantom.labels), pathology=pathology, evaluation=None,
                              axes=tuple(phantom.axes[p] for p in perm),
                              voxel_size=tuple(phantom.voxel_size[p] for p in perm))
    if samples is not None:
        labels, masks = samples
        samples = (move(labels, 1), {k: move(m, 1) for k, m in masks.items()})
    return phantom, samples


def _view(subject, func, *, pathology, plane, rows, cols, slices, pixel, thickness, centre,
          contrast, realistic, index):
    """One stack of slices of the subject, rendered, noisy and measured (dict of numpy)."""
    shape, voxel, perm = _plane_grid(plane, rows, cols, slices, pixel, thickness)
    phantom = knee_phantom(subject["phantom_key"], shape=shape, voxel_size=voxel,
                           centre=tuple(centre), pathology=subject["spec"],
                           kl_grade=subject["kl_grade"], side=subject["side"],
                           conspicuity={pathology: subject["conspicuity"]})
    options = dict(texture=0.0, noise=0.0, partial_volume=1, bias=0.0, snr=None, gibbs=None,
                   trabecular=0.0)
    if realistic:
        options.update({k: v for k, v in REALISTIC_RENDERING.items() if k != "snr"})
    gibbs = options.pop("gibbs")
    samples = (_fine_samples(phantom, options["partial_volume"])
               if options["partial_volume"] > 1 else None)
    # Rendered in display order (slices, rows, cols), so that every plane of one size shares
    # one compiled renderer; the axes' names keep the trabecular grain superior-inferior.
    phantom, samples = _displayed(phantom, samples, perm)
    render = functools.partial(render_checked, contrast=contrast,
                               key=jax.random.fold_in(subject["render_key"], index),
                               parameters=subject["jitter"], func=func, gibbs=None,
                               samples=samples, **options)
    image = render(phantom)
    lesion_free = image
    if subject["present"]:  # the same knee, texture and bias, with the target invisible
        free = dict(phantom.pathology.conspicuity, **{pathology: jnp.float32(0.0)})
        lesion_free = render(phantom.replace(
            pathology=dataclasses.replace(phantom.pathology, conspicuity=free)))
    noisy, clean, clean_free, sigma = (np.asarray(a) for a in _finish(
        image, lesion_free, phantom.labels, jax.random.fold_in(subject["noise_key"], index),
        jnp.float32(subject["snr"][index]), gibbs=gibbs))
    mask = np.asarray(phantom.pathology.masks[pathology])
    labels = np.asarray(phantom.labels)
    host = _host(pathology, subject["site"])
    healthy = np.where(mask, host, labels).astype(np.int32)
    cnr = _cnr(clean, clean_free, noisy, float(sigma), mask, healthy, host,
               (thickness, pixel, pixel))
    return dict(image=noisy, clean=clean, mask=mask, labels=healthy, noise=np.float32(sigma),
                cnr=cnr[0], cnr_surround=cnr[1], cnr_measured=cnr[2])


# ----------------------------------------------------------------------------- public


def lesion_detection_example(key: jax.Array, *, pathology: str = "cartilage_lesion",
                             present: bool | None = None,
                             conspicuity: float | Sequence[float] | None = None,
                             shape: Sequence[int] = (128, 128), contrast: str = "pd_fs",
                             realistic: bool = True, plane: str = "sagittal",
                             field_of_view: float = 100.0, slice_thickness: float = 3.0,
                             snr: float | Sequence[float] = (10.0, 30.0),
                             distractors: bool = True, kl_grade: int | str = "random",
                             side: str = "random", jitter: float = 0.1) -> DetectionExample:
    """One 2D slice for lesion detection, drawn from ``key`` (module docstring).

    The slice passes through the centre of the target pathology (its would-be centre when it
    is absent: site and shape are drawn the same way), so the slice position does not tell
    positives from negatives; the field of view is centred on the joint, shifted by up to
    5 mm along each axis. For a fixed key, ``present`` and ``conspicuity`` change only the
    lesion: the knee, the slice, the texture and the noise stay the same.

    Runs on the host; the phantom and rendering are compiled once for every setting.

    Args:
        key: a ``jax.random`` key.
        pathology: one of :data:`DETECTION_PATHOLOGIES` (keyword-only).
        present: force the pathology present (True) or absent (False); None draws it with
            probability 1/2.
        conspicuity: a number in [0, 1], or a ``(low, high)`` range to draw it from
            uniformly; None: uniform in [0, 1].
        shape: ``(rows, cols)`` of the image, each >= 8.
        contrast: ``"pd_fs"`` (fat-suppressed proton density FSE) or ``"t1_spgr"``.
        realistic: partial volume, textures, bias and Gibbs ringing (module docstring); False
            for noise only.
        plane: ``"sagittal"``, ``"coronal"`` or ``"axial"``.
        field_of_view: in-plane extent of the image (mm) along its longer side; square pixels.
        slice_thickness: mm (partial volume across it when ``realistic``).
        snr: a number or a ``(low, high)`` range to draw it from uniformly, > 0.
        distractors: the other pathologies with their default probabilities (independent of
            the label); False for none.
        kl_grade: osteoarthritis grade 0..4 or ``"random"`` (uniform).
        side: ``"right"``, ``"left"`` or ``"random"``.
        jitter: ``scale`` of :func:`jitter_parameters`.

    Returns:
        :class:`DetectionExample`.
    """
    func = "mskjax.sim.lesion_detection_example"
    check_key(key, func)
    conspicuity, snr = _check_common(
        func, pathology=pathology, present=present, conspicuity=conspicuity,
        contrasts=(contrast,), realistic=realistic, snr=snr, distractors=distractors,
        kl_grade=kl_grade, side=side)
    try:
        rows, cols = shape
    except (TypeError, ValueError):
        raise ValueError(f"{func}: shape must be (rows, cols), got {shape!r}") from None
    rows, cols = (_check_size(n, "each size in shape", func) for n in (rows, cols))
    if plane not in PLANES:
        raise ValueError(f"{func}: plane must be one of {list(PLANES)}, got {plane!r}")
    pixel = _check_length(field_of_view, "field_of_view", func) / max(rows, cols)
    thickness = _check_length(slice_thickness, "slice_thickness", func)
    axis = PLANES[plane]
    for attempt in range(_ATTEMPTS):
        subject = _draw_subject(key, func, pathology=pathology, present=present,
                                conspicuity=conspicuity, snr_range=snr, distractors=distractors,
                                kl_grade=kl_grade, side=side, jitter=jitter, views=1,
                                attempt=attempt)
        centre = subject["centre"].copy()
        centre[axis] = subject["target"][axis]
        if _shows_target(subject, pathology=pathology, plane=plane, rows=rows, cols=cols,
                         pixel=pixel, centre=centre):
            break
    else:
        raise ValueError(
            f"{func}: no slice of {_ATTEMPTS} knees showed {MINIMUM_AREA_MM2[pathology]} mm^2 "
            f"of the {pathology} (at conspicuity 1) in a {field_of_view} mm field of view of "
            f"{rows} x {cols} pixels; the field of view must cover the joint")
    view = _view(subject, func, pathology=pathology, plane=plane, rows=rows, cols=cols,
                 slices=1, pixel=pixel, thickness=thickness, centre=centre, contrast=contrast,
                 realistic=realistic, index=0)
    present = subject["present"]
    nan = np.float32(np.nan)
    return DetectionExample(
        image=view["image"][0], clean=view["clean"][0], label=np.int32(present),
        mask=view["mask"][0], labels=view["labels"][0],
        conspicuity=np.float32(subject["conspicuity"]) if present else nan,
        parameters=subject["parameters"], site=np.int32(subject["site"]),
        slice_position=np.float32(centre[axis]), snr=np.float32(subject["snr"][0]),
        noise=view["noise"], cnr=view["cnr"] if present else nan,
        cnr_surround=view["cnr_surround"] if present else nan,
        cnr_measured=view["cnr_measured"] if present else nan)


def multiview_example(key: jax.Array, *, pathology: str = "meniscal_tear",
                      present: bool | None = None,
                      conspicuity: float | Sequence[float] | None = None, slices: int = 16,
                      size: int = 64, contrasts: Sequence[str] = ("pd_fs", "t1_spgr", "pd_fs"),
                      realistic: bool = True, field_of_view: float = 100.0,
                      coverage: float = 80.0, snr: float | Sequence[float] = (10.0, 30.0),
                      distractors: bool = True, kl_grade: int | str = "random",
                      side: str = "random", jitter: float = 0.1) -> MultiViewExample:
    """Three multi-slice scans of one knee (sagittal, coronal, axial), MRNet-like, drawn from
    ``key`` (module docstring).

    Each plane is its own thick-slice acquisition of the same knee and tissue parameters
    (``coverage / slices`` mm slices, ``field_of_view / size`` mm pixels), with its own
    contrast, texture, noise and SNR. Every stack is centred on the joint (shifted by up to
    5 mm, the same for the three), whatever the label.

    Args:
        key: a ``jax.random`` key.
        pathology: one of :data:`DETECTION_PATHOLOGIES` (keyword-only).
        present, conspicuity, realistic, snr, distractors, kl_grade, side, jitter: as in
            :func:`lesion_detection_example` (the SNR drawn per view).
        slices: slices per stack (>= 2).
        size: rows and columns of each slice (>= 8).
        contrasts: three of ``"pd_fs"``, ``"t1_spgr"``, for the sagittal, coronal and axial
            stacks (default: sagittal PD-FS, coronal T1-weighted, axial PD-FS).
        field_of_view: in-plane extent (mm).
        coverage: extent of each stack across its slices (mm).

    Returns:
        :class:`MultiViewExample`.
    """
    func = "mskjax.sim.multiview_example"
    check_key(key, func)
    if isinstance(contrasts, str) or len(tuple(contrasts)) != 3:
        raise ValueError(f"{func}: contrasts must be three contrast names (sagittal, coronal, "
                         f"axial), got {contrasts!r}")
    conspicuity, snr = _check_common(
        func, pathology=pathology, present=present, conspicuity=conspicuity,
        contrasts=tuple(contrasts), realistic=realistic, snr=snr, distractors=distractors,
        kl_grade=kl_grade, side=side)
    slices = _check_size(slices, "slices", func, minimum=2)
    size = _check_size(size, "size", func)
    pixel = _check_length(field_of_view, "field_of_view", func) / size
    thickness = _check_length(coverage, "coverage", func) / slices
    subject = _draw_subject(key, func, pathology=pathology, present=present,
                            conspicuity=conspicuity, snr_range=snr, distractors=distractors,
                            kl_grade=kl_grade, side=side, jitter=jitter, views=3)
    views = [_view(subject, func, pathology=pathology, plane=plane, rows=size, cols=size,
                   slices=slices, pixel=pixel, thickness=thickness, centre=subject["centre"],
                   contrast=contrast, realistic=realistic, index=i)
             for i, (plane, contrast) in enumerate(zip(PLANES, contrasts))]
    present = subject["present"]
    nan = np.float32(np.nan)

    def per_view(name):
        return np.asarray([v[name] if present else nan for v in views], np.float32)

    return MultiViewExample(
        views=tuple(v["image"] for v in views), label=np.int32(present),
        masks=tuple(v["mask"] for v in views), labels=tuple(v["labels"] for v in views),
        conspicuity=np.float32(subject["conspicuity"]) if present else nan,
        parameters=subject["parameters"], site=np.int32(subject["site"]),
        snr=np.asarray(subject["snr"], np.float32),
        noise=np.asarray([v["noise"] for v in views], np.float32), cnr=per_view("cnr"),
        cnr_surround=per_view("cnr_surround"), cnr_measured=per_view("cnr_measured"))


#: Kinds of :func:`detection_set` and the function each calls.
SET_KINDS = {"lesion": lesion_detection_example, "multiview": multiview_example}
_VIEW_NAMES = tuple(PLANES)


def detection_set(*, num_subjects: int, seed: int = 0, kind: str = "lesion",
                  first_subject: int = 0, progress: bool = True, **options: Any) -> dict:
    """Draw ``num_subjects`` detection examples in one call, one subject per key, stacked.

    Subject ``s`` (for ``s`` in ``first_subject .. first_subject + num_subjects - 1``) is
    drawn from ``jax.random.fold_in(jax.random.key(seed), s)``, so a subject index names one
    knee: sets built with the same seed and disjoint subject ranges share no knee, and the
    split by subject is explicit. The arrays are laid out as
    :func:`mskjax.io.write_classification_set` takes them, e.g.::

        train = detection_set(num_subjects=800, seed=0)
        test = detection_set(num_subjects=200, seed=0, first_subject=800)
        mskjax.io.write_classification_set("lesions", {"train": train, "test": test},
                                           task="binary", num_classes=2,
                                           source="simulated knee MR, cartilage lesions",
                                           settings={"seed": 0, "kind": "lesion"})

    Runs on the host, one example at a time, with a tqdm progress bar.

    Args:
        num_subjects: examples to draw, >= 1 (keyword-only).
        seed: the integer seed of the set, >= 0.
        kind: ``"lesion"`` (:func:`lesion_detection_example`) or ``"multiview"``
            (:func:`multiview_example`).
        first_subject: index of the first subject, >= 0.
        progress: show the progress bar.
        **options: options of the example function (``pathology``, ``conspicuity``, ``shape``,
            ``snr``, ...).

    Returns:
        dict of numpy arrays with a leading axis of ``num_subjects``: ``label`` int32,
        ``subject`` int64, ``conspicuity``, ``site``, ``snr``, ``noise``, ``cnr``,
        ``cnr_surround``, ``cnr_measured`` and the pathology's ``parameters`` (by their
        names); for ``"lesion"`` also ``image``, ``mask``, ``labels`` and ``slice_position``;
        for ``"multiview"`` the views ``sagittal``, ``coronal``, ``axial`` and their
        ``mask_<view>`` and ``labels_<view>`` (per-view numbers ``(n, 3)``). The noise-free
        image of a 2D example is left out.
    """
    func = "mskjax.sim.detection_set"
    from tqdm.auto import tqdm

    for name, value, minimum in (("num_subjects", num_subjects, 1), ("seed", seed, 0),
                                 ("first_subject", first_subject, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    if kind not in SET_KINDS:
        raise ValueError(f"{func}: kind must be one of {list(SET_KINDS)}, got {kind!r}")
    if "key" in options:
        raise TypeError(f"{func}: the keys come from seed and the subject index; got key=")
    make = SET_KINDS[kind]
    base = jax.random.key(int(seed))
    subjects = range(int(first_subject), int(first_subject) + int(num_subjects))
    columns: dict[str, list] = {}
    for subject in tqdm(subjects, desc=f"{kind} examples", disable=not progress):
        example = make(jax.random.fold_in(base, subject), **options)
        row = {name: value for name, value in example._asdict().items()
               if name not in ("clean", "parameters", "views", "masks", "labels")}
        row.update(example.parameters)
        if kind == "lesion":
            row.update(image=example.image, mask=example.mask, labels=example.labels)
        else:
            for i, view in enumerate(_VIEW_NAMES):
                row[view] = example.views[i]
                row[f"mask_{view}"] = example.masks[i]
                row[f"labels_{view}"] = example.labels[i]
        row["subject"] = np.int64(subject)
        for name, value in row.items():
            columns.setdefault(name, []).append(np.asarray(value))
    return {name: np.stack(values) for name, values in columns.items()}
