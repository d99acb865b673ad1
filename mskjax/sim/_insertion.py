"""Lesions inserted into real knee magnitude images, with their exact masks.

Host-side (numpy, ``scipy.ndimage``; random numbers from a ``jax.random`` key). Images are
float ``(rows, cols)`` magnitude images; the output is float32. Lengths are in mm
(``pixel_size``, default 0.5 mm); centres are (row, col) in pixels.

Blending. With ``I`` the real image, ``T`` the lesion's intensity and ``w`` a weight in
[0, 1] (the lesion's contrast ``a`` times a soft-edged spatial profile ``p`` that is exactly 0
outside a bounded support), the lesion image is::

    I' = I + w (T - I) + sqrt(1 - (1 - w)^2) sigma n,      n ~ N(0, 1) white

so the real anatomy shows through as ``(1 - w) I``, and the real noise that the blend scales
down by ``1 - w`` is topped up to the image's own level ``sigma`` (estimated from the
background, :func:`background_noise_sigma`): the lesion is exactly as noisy as the tissue,
not smoother. ``sigma`` is the Gaussian noise level of a magnitude image where the signal is
well above the noise (SNR above about 3, true of the bright lesions here). Outside the support
(``mask``) the image is unchanged, bit for bit; at conspicuity 0 it is unchanged everywhere.
``T`` is one intensity per lesion: a level in units of the receive bias read from the image
(:func:`candidate_regions`: fluid ``F``, the 99th percentile of the body; marrow ``M``, the
median of the marrow, or of ``region`` when one is given) times the bias at the centre. Fluid
lesions (defect, cleft) are also made at least as bright as the 95th percentile of the
smoothed tissue within 10 mm, so that the fluid is never darker than the cartilage beside it.

Kinds, and how ``conspicuity`` ``c`` in [0, 1] sets them (``a = c`` for all kinds; ``u`` are
the lesion's own uniform draws, the same for every ``c`` with one key, so a key keeps its
place and shape while ``c`` grows it):

* ``"cartilage_defect"``: a focal loss or thinning of the cartilage filled with fluid
  (``T = F``), centred on the cartilage band: a disc of diameter ``2 + 8 c`` mm (soft edge
  0.5 mm) intersected with the band, reaching from the joint surface down to a depth of
  ``0.25 + 0.75 c`` of the local band thickness (soft edge 0.3 mm); ``c = 1`` is a full
  thickness defect 10 mm across.
* ``"marrow_oedema"``: an ill-defined region of subchondral marrow (centre in the subchondral
  marrow, confined to the marrow): an ellipse of outer diameter ``4 + 16 c`` mm, axis ratio
  ``0.6 + 0.4 u``, random orientation, its outline perturbed by up to 40 % with a smooth
  random field (5 mm); the profile is 1 inside 0.4 of the radius and falls smoothly to 0 at
  the outline, times a patchy factor between 0.5 and 1 (a smooth random field, 1.5 mm), so
  some trabecular texture shows through. Fat-suppressed images (default): oedema is bright,
  ``T = M + 0.5 (F - M)``. Without fat suppression (PD or T1), oedema is darker than fatty
  marrow: ``T = 0.5 M``.
* ``"meniscal_cleft"``: a thin linear bright (``T = F``) cleft inside the meniscus: a segment
  of length ``2 + 6 c`` mm and width ``0.4 + 0.6 c`` mm (soft edge 0.3 mm), centred at least
  1 mm inside the region, along the region's long axis within 10 mm +- 20 degrees (a
  horizontal cleavage on sagittal images), confined to the region. Axial slices above the joint line do not show the menisci, and no
  automatic meniscus finder is given: this kind needs ``region`` (the meniscus, e.g. drawn on
  a sagittal qDESS slice) and raises without it.

Every lesion is the connected piece of its support that holds the centre (or lies nearest to
it). Barely visible: at ``c = 0.1`` the core changes by ``0.1 (T - I)``, under one noise
standard deviation for most lesions on the axial knees (``InsertedLesion.contrast_to_noise``
reports it; ``benchmarks/lesion_insertion.py`` measures it).
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import numpy as np
from scipy import ndimage

from .._checks import check_spacing
from ._knee_regions import _check_image, _distance_mm, candidate_regions
from ._phantom import check_key

#: The lesion kinds :func:`insert_lesion` knows.
LESION_KINDS = ("cartilage_defect", "marrow_oedema", "meniscal_cleft")

_FUNC = "mskjax.sim.insert_lesion"


@dataclasses.dataclass(frozen=True)
class InsertedLesion:
    """A real image with an inserted lesion (numpy).

    Fields:
        image: float32 ``(rows, cols)``, the image with the lesion.
        mask: bool ``(rows, cols)``, exactly the pixels that changed (``weight > 0``).
        weight: float32 ``(rows, cols)``, the blend weight ``w`` in [0, 1].
        centre: float32 ``(2,)`` (row, col) pixel where the lesion was placed.
        contrast: the blend weight at the core, ``a`` (float).
        size: the lesion's nominal size in mm: the defect's and the oedema's diameter, the
            cleft's length (float).
        contrast_to_noise: mean intensity change over the core (``weight >= a / 2``) divided
            by the noise level (float; 0 when nothing changed).
        noise_sigma: the noise level used (image units).
    """

    image: np.ndarray
    mask: np.ndarray
    weight: np.ndarray
    centre: np.ndarray
    contrast: float
    size: float
    contrast_to_noise: float
    noise_sigma: float


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _coordinates(shape, pixel_size, centre):
    rows, cols = np.indices(shape, dtype=np.float64)
    return (rows - centre[0]) * pixel_size[0], (cols - centre[1]) * pixel_size[1]


def _defect(dy, dx, c, tissue, regions):
    radius = (2.0 + 8.0 * c) / 2.0
    disc = _smoothstep((radius + 0.25 - np.hypot(dy, dx)) / 0.5)
    # Depth is measured from the bone; the band's local thickness is the largest distance
    # from the bone within 1.5 mm along the band.
    bone = regions.marrow & ~tissue
    bone = bone if bone.any() else ~tissue
    if bone.any():
        from_bone = np.where(tissue, _distance_mm(bone, regions.pixel_size), 0.0)
    else:  # the region is the whole image: no depth to measure
        from_bone = np.ones(tissue.shape)
    reach = tuple(2 * int(round(1.5 / p)) + 1 for p in regions.pixel_size)
    thickness = ndimage.maximum_filter(from_bone, size=reach)
    floor = thickness * (1.0 - (0.25 + 0.75 * c))
    profile = _smoothstep((from_bone - floor + 0.15) / 0.3)
    return disc * profile * tissue, 2.0 * radius


def _oedema(dy, dx, c, u, fields, tissue):
    radius = (4.0 + 16.0 * c) / 2.0
    angle = np.pi * u[0]
    ratio = 0.6 + 0.4 * u[1]
    along = dy * np.cos(angle) + dx * np.sin(angle)
    across = -dy * np.sin(angle) + dx * np.cos(angle)
    rho = np.hypot(along / radius, across / (radius * ratio)) * (1.0 + 0.2 * fields[0])
    patches = 0.5 + 0.5 * _smoothstep(0.5 + fields[1] / 2.0)
    return _smoothstep((1.0 - rho) / 0.6) * patches * tissue, 2.0 * radius


def _cleft(dy, dx, c, u, tissue, centre, pixel_size):
    length = 2.0 + 6.0 * c
    width = 0.4 + 0.6 * c
    # The region's local long axis: principal axis of its pixels within 10 mm of the centre.
    ey, ex = _coordinates(tissue.shape, pixel_size, centre)
    near = tissue & (np.hypot(ey, ex) <= 10.0)
    cov = np.cov(np.stack([ey[near], ex[near]])) if near.sum() > 2 else np.eye(2)
    vals, vecs = np.linalg.eigh(cov)
    axis = vecs[:, np.argmax(vals)]
    turn = np.deg2rad(40.0 * (u[0] - 0.5))
    uy = axis[0] * np.cos(turn) - axis[1] * np.sin(turn)
    ux = axis[0] * np.sin(turn) + axis[1] * np.cos(turn)
    t = np.clip(dy * uy + dx * ux, -length / 2.0, length / 2.0)
    distance = np.hypot(dy - t * uy, dx - t * ux)
    return _smoothstep((width / 2.0 + 0.15 - distance) / 0.3) * tissue, length


def _one_piece(profile, centre):
    """The connected piece of the support that holds the centre (or is nearest to it)."""
    labels, n = ndimage.label(profile > 0)
    if n <= 1:
        return profile
    at = labels[int(centre[0]), int(centre[1])]
    if at == 0:
        _, (ri, ci) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        at = labels[ri[int(centre[0]), int(centre[1])], ci[int(centre[0]), int(centre[1])]]
    return np.where(labels == at, profile, 0.0)


def _check_region(region, shape, func):
    arr = np.asarray(region)
    if arr.dtype != np.bool_:
        raise TypeError(f"{func}: region must be a boolean mask, got {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{func}: region must have the image's shape {tuple(shape)}, got "
                         f"{arr.shape}")
    if not arr.any():
        raise ValueError(f"{func}: region is empty; it must mark at least one pixel")
    return arr


def _check_options(kind, conspicuity, noise_sigma, func):
    if kind not in LESION_KINDS:
        raise ValueError(f"{func}: kind must be one of {LESION_KINDS}, got {kind!r}")
    if (isinstance(conspicuity, bool) or not isinstance(conspicuity, numbers.Real)
            or not 0.0 <= float(conspicuity) <= 1.0):
        raise ValueError(f"{func}: conspicuity must be a number in [0, 1], got "
                         f"{conspicuity!r}")
    if noise_sigma is not None and (
            isinstance(noise_sigma, bool) or not isinstance(noise_sigma, numbers.Real)
            or not np.isfinite(noise_sigma) or noise_sigma < 0):
        raise ValueError(f"{func}: noise_sigma must be None or a finite number >= 0, got "
                         f"{noise_sigma!r}")


def _places(kind, regions, region, func):
    """(where the centre is drawn, the tissue the lesion is confined to)."""
    if region is not None:
        return region, region
    if kind == "meniscal_cleft":
        raise ValueError(f"{func}: kind 'meniscal_cleft' needs region= (the meniscus): there "
                         "is no automatic meniscus finder, and axial slices above the joint "
                         "line do not show the menisci")
    if kind == "cartilage_defect":
        if not regions.cartilage.any():
            raise ValueError(f"{func}: found no cartilage band in the image (see "
                             "mskjax.sim.candidate_regions); pass region=")
        return regions.cartilage, regions.cartilage
    if not regions.subchondral.any():
        raise ValueError(f"{func}: found no subchondral marrow in the image (see "
                         "mskjax.sim.candidate_regions); pass region=")
    return regions.subchondral, regions.marrow


def _target_level(kind, regions, marrow, fat_suppressed, func):
    """The lesion's intensity in units of the receive bias (module docstring)."""
    fluid = regions.fluid_level
    if kind != "marrow_oedema":
        return fluid
    if not np.isfinite(marrow):
        raise ValueError(f"{func}: marrow_oedema needs the marrow's intensity, and no marrow "
                         "was found in the image (see mskjax.sim.candidate_regions); pass "
                         "region=")
    return marrow + 0.5 * (fluid - marrow) if fat_suppressed else 0.5 * marrow


def _insert(key, x, regions, *, kind, conspicuity, region, fat_suppressed, func):
    """The insertion on a checked float64 image with its analysis."""
    pixel_size, sigma = regions.pixel_size, regions.noise_sigma
    where, tissue = _places(kind, regions, region, func)
    k_place, k_shape, k_field, k_noise = jax.random.split(key, 4)
    if kind == "meniscal_cleft":  # the cleft's middle at least 1 mm inside the meniscus
        inner = ndimage.distance_transform_edt(where, sampling=pixel_size) > 1.0
        where = inner if inner.any() else where
    candidates = np.flatnonzero(where)
    pick = int(jax.random.randint(k_place, (), 0, candidates.size))
    centre = np.array(np.unravel_index(candidates[pick], x.shape), dtype=np.float64)
    u = np.asarray(jax.random.uniform(k_shape, (2,)), dtype=np.float64)
    c = float(conspicuity)
    dy, dx = _coordinates(x.shape, pixel_size, centre)
    if kind == "cartilage_defect":
        profile, size = _defect(dy, dx, c, tissue, regions)
    elif kind == "marrow_oedema":
        raw = np.asarray(jax.random.normal(k_field, (2, *x.shape)), dtype=np.float64)
        fields = []
        for r, scale in zip(raw, (5.0, 1.5)):  # mm: the outline's wobble, the patchiness
            f = ndimage.gaussian_filter(r, tuple(scale / p for p in pixel_size))
            fields.append(np.clip(f / max(float(f.std()), 1e-12), -2.0, 2.0))
        profile, size = _oedema(dy, dx, c, u, fields, tissue)
    else:
        profile, size = _cleft(dy, dx, c, u, tissue, centre, pixel_size)
    profile = _one_piece(profile, centre)
    bias = float(regions.receive_bias[int(centre[0]), int(centre[1])])
    smooth = ndimage.gaussian_filter(x, tuple(1.0 / p for p in pixel_size))
    marrow = (regions.marrow_level if region is None
              else float(np.median((smooth / regions.receive_bias)[region])))
    target = bias * _target_level(kind, regions, marrow, fat_suppressed, func)
    if kind != "marrow_oedema" and np.any(profile > 0):
        # Fluid at least as bright as the brightest tissue next to the lesion.
        near = tissue & (np.hypot(dy, dx) <= 10.0)
        target = max(target, float(np.percentile(smooth[near], 95)))
    weight = c * profile
    mask = weight > 0
    noise = np.asarray(jax.random.normal(k_noise, x.shape), dtype=np.float64)
    change = weight * (target - x)
    top_up = np.sqrt(np.clip(1.0 - (1.0 - weight) ** 2, 0.0, 1.0)) * sigma * noise
    out = np.where(mask, x + change + top_up, x)
    core = weight >= c / 2.0
    cnr = float(np.mean(change[core]) / sigma) if (c > 0 and core.any() and sigma > 0) else 0.0
    return InsertedLesion(
        image=out.astype(np.float32), mask=mask, weight=weight.astype(np.float32),
        centre=centre.astype(np.float32), contrast=c, size=float(size),
        contrast_to_noise=cnr, noise_sigma=sigma)


def insert_lesion(key, image, *, kind: str, conspicuity: float, region=None, pixel_size=0.5,
                  fat_suppressed: bool = True, articular_axis=0,
                  noise_sigma=None) -> InsertedLesion:
    """Blend a lesion into a real magnitude image at a random plausible place.

    Args:
        key: a ``jax.random`` key; the same key gives the same place, shape and noise.
        image: float ``(rows, cols)`` real magnitude image (finite).
        kind: one of :data:`LESION_KINDS` (module docstring).
        conspicuity: in [0, 1]; sets contrast and size (module docstring). 0 leaves the
            image unchanged.
        region: optional bool ``(rows, cols)`` mask of the tissue to put the lesion in: the
            centre is drawn uniformly from it and the lesion is confined to it. Default: the
            cartilage band (defect) or the subchondral marrow (oedema) found by
            :func:`candidate_regions`; required for ``"meniscal_cleft"``.
        pixel_size: mm per pixel, one number or ``(row, col)``.
        fat_suppressed: whether the image is fat-suppressed (sets the oedema's intensity and
            which marrow the analysis looks for).
        articular_axis: which parts of the cartilage band count, as in
            :func:`candidate_regions` (0 for axial knees, None for the whole band).
        noise_sigma: the image's Gaussian noise level; None estimates it from the background.
            0 adds no noise (the blend alone).

    Returns:
        :class:`InsertedLesion`.
    """
    check_key(key, _FUNC)
    x = _check_image(image, _FUNC)
    _check_options(kind, conspicuity, noise_sigma, _FUNC)
    pixel_size = check_spacing(pixel_size, 2, _FUNC, what="image", optional=False)
    if region is not None:
        region = _check_region(region, x.shape, _FUNC)
    regions = candidate_regions(x, pixel_size=pixel_size, fat_suppressed=fat_suppressed,
                                articular_axis=articular_axis, noise_sigma=noise_sigma,
                                _func=_FUNC)
    return _insert(key, x, regions, kind=kind, conspicuity=conspicuity, region=region,
                   fat_suppressed=fat_suppressed, func=_FUNC)
