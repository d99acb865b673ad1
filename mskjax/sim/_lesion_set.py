"""Detection sets from real knee images with inserted lesions, split by subject.

Host-side (numpy). :func:`real_lesion_set` turns a stack of real 2D magnitude images into
positives (a lesion from :func:`insert_lesion`) and negatives that went through the same
processing without the lesion: each negative is the sham of one positive, the same insertion
(same key, so the same place and the same window) at conspicuity 0, where the blend and the
noise top-up both vanish: the real image, cropped like its positive. Nothing is added to
positives outside the lesion, and inside it the noise is matched to the image's own level, so
neither the noise nor the crop's position tells positives from negatives; a positive and its
sham differ only by the lesion.

Examples made from one subject must all go to the same side of a train/test split:
:func:`split_by_subject` splits the subject ids, and :func:`real_lesion_set` refuses two
images that are the same scan (up to a scale factor) under different subject ids.
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import numpy as np

from .._checks import check_spacing
from ._insertion import _FUNC as _INSERT_FUNC
from ._insertion import _check_options, _check_region, _insert
from ._knee_regions import _check_image, candidate_regions
from ._phantom import check_key

_FUNC = "mskjax.sim.real_lesion_set"


@dataclasses.dataclass(frozen=True)
class LesionSet:
    """Examples for lesion detection (numpy arrays; ``n`` examples).

    Fields:
        images: float32 ``(n, rows, cols)``, whole images or patches.
        labels: int32 ``(n,)``, 1 with a lesion, 0 without.
        masks: bool ``(n, rows, cols)``, the pixels the lesion changed (none for negatives).
        subjects: ``(n,)`` subject id of each example (the input's ids, as a numpy array).
        source: int32 ``(n,)``, index of the input image each example came from.
        conspicuity: float32 ``(n,)``, the drawn conspicuity (0 for negatives).
        contrast_to_noise: float32 ``(n,)``, see :class:`InsertedLesion` (0 for negatives).
        centres: float32 ``(n, 2)``, the (row, col) placement in the full image (a negative
            shares its positive's).
        origins: int32 ``(n, 2)``, the (row, col) of the patch's corner in the full image.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    subjects: np.ndarray
    source: np.ndarray
    conspicuity: np.ndarray
    contrast_to_noise: np.ndarray
    centres: np.ndarray
    origins: np.ndarray


def _check_duplicates(stack, subjects):
    """ValueError if two images are one scan (correlation > 0.9999) under different ids."""
    n, rows, cols = stack.shape
    f = max(1, min(rows, cols) // 32)
    small = stack[:, :rows // f * f, :cols // f * f].reshape(n, rows // f, f, cols // f, f)
    small = small.mean(axis=(2, 4)).reshape(n, -1)
    small = small - small.mean(axis=1, keepdims=True)
    small /= np.maximum(np.linalg.norm(small, axis=1, keepdims=True), 1e-300)
    corr = small @ small.T
    for i, j in zip(*np.nonzero(np.triu(corr > 0.9999, k=1))):
        if subjects[i] != subjects[j]:
            raise ValueError(
                f"{_FUNC}: images {i} and {j} are the same scan up to a scale factor "
                f"(correlation {corr[i, j]:.6f}) but have different subject ids "
                f"{subjects[i]!r} and {subjects[j]!r}; drop one or give them one id, or a "
                "split by subject would put the same scan on both sides")


def _check_patch(patch, shape):
    if patch is None:
        return None
    try:
        ph, pw = patch
    except (TypeError, ValueError):
        raise ValueError(f"{_FUNC}: patch must be None or (rows, cols), got {patch!r}") from None
    for v, limit in ((ph, shape[0]), (pw, shape[1])):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= limit:
            raise ValueError(f"{_FUNC}: patch must be (rows, cols) of ints between 1 and the "
                             f"image's shape {tuple(shape)}, got {patch!r}")
    return int(ph), int(pw)


def _window(centre, patch, shape):
    """Corner of a ``patch`` window centred on ``centre``, shifted to lie inside the image."""
    return tuple(int(np.clip(round(float(c)) - p // 2, 0, s - p))
                 for c, p, s in zip(centre, patch, shape))


def real_lesion_set(images, subjects, *, key, kind: str, per_image: int,
                    conspicuity_range=(0.0, 1.0), negatives: bool = True, patch=None,
                    regions=None, pixel_size=0.5, fat_suppressed: bool = True,
                    articular_axis=0) -> LesionSet:
    """Positives with inserted lesions and negatives with the same processing, by subject.

    Args:
        images: float ``(n, rows, cols)`` real magnitude images (finite).
        subjects: ``(n,)`` subject id of each image (str or int); several images may share
            one. Different ids on one scan raise a ValueError.
        key: a ``jax.random`` key.
        kind: one of :data:`LESION_KINDS`.
        per_image: positives per image (and as many negatives when ``negatives``).
        conspicuity_range: ``(low, high)`` in [0, 1]; each positive's conspicuity is drawn
            uniformly from it.
        negatives: add the sham of every positive (same place, conspicuity 0).
        patch: None for whole images, or ``(rows, cols)``: a window centred on the lesion
            (its positive's window for a sham), shifted to lie inside the image.
        regions: None, or a sequence of ``n`` bool masks (or None each), the ``region`` of
            :func:`insert_lesion` per image.
        pixel_size, fat_suppressed, articular_axis: as in :func:`candidate_regions`.

    Returns:
        :class:`LesionSet`, examples ordered by image, positives then negatives.
    """
    check_key(key, _FUNC)
    stack = np.asarray(images)
    if stack.ndim != 3:
        raise ValueError(f"{_FUNC}: images must be (n, rows, cols), got shape {stack.shape}")
    ids = np.asarray(subjects)
    if ids.shape != (stack.shape[0],):
        raise ValueError(f"{_FUNC}: subjects must have one id per image ({stack.shape[0]}), "
                         f"got shape {ids.shape}")
    if isinstance(per_image, bool) or not isinstance(per_image, numbers.Integral) \
            or per_image < 1:
        raise ValueError(f"{_FUNC}: per_image must be an integer >= 1, got {per_image!r}")
    try:
        low, high = (float(v) for v in conspicuity_range)
    except (TypeError, ValueError):
        raise ValueError(f"{_FUNC}: conspicuity_range must be (low, high), got "
                         f"{conspicuity_range!r}") from None
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"{_FUNC}: conspicuity_range must satisfy 0 <= low <= high <= 1, "
                         f"got {conspicuity_range!r}")
    _check_options(kind, low, None, _FUNC)
    pixel_size = check_spacing(pixel_size, 2, _FUNC, what="image", optional=False)
    shape = stack.shape[1:]
    patch = _check_patch(patch, shape)
    if regions is None:
        regions = [None] * stack.shape[0]
    elif len(regions) != stack.shape[0]:
        raise ValueError(f"{_FUNC}: regions must hold one mask (or None) per image "
                         f"({stack.shape[0]}), got {len(regions)}")
    checked = [_check_image(im, _FUNC) for im in stack]
    _check_duplicates(np.stack(checked), ids)
    out = {name: [] for name in ("images", "labels", "masks", "subjects", "source",
                                 "conspicuity", "contrast_to_noise", "centres", "origins")}
    for i, x in enumerate(checked):
        region = None if regions[i] is None else _check_region(regions[i], shape, _FUNC)
        analysis = candidate_regions(x, pixel_size=pixel_size, fat_suppressed=fat_suppressed,
                                     articular_axis=articular_axis, _func=_FUNC)
        image_key = jax.random.fold_in(key, i)
        for j in range(per_image * (2 if negatives else 1)):
            positive = j < per_image
            # The j-th negative is the sham of the j-th positive: same key, same place.
            k_c, k_lesion = jax.random.split(jax.random.fold_in(image_key, j % per_image))
            c = low + (high - low) * float(jax.random.uniform(k_c, ()))
            lesion = _insert(k_lesion, x, analysis, kind=kind,
                             conspicuity=c if positive else 0.0, region=region,
                             fat_suppressed=fat_suppressed, func=_INSERT_FUNC)
            corner = (0, 0) if patch is None else _window(lesion.centre, patch, shape)
            size = shape if patch is None else patch
            window = (slice(corner[0], corner[0] + size[0]),
                      slice(corner[1], corner[1] + size[1]))
            out["images"].append(lesion.image[window])
            out["masks"].append(lesion.mask[window])
            out["labels"].append(int(positive))
            out["subjects"].append(ids[i])
            out["source"].append(i)
            out["conspicuity"].append(c if positive else 0.0)
            out["contrast_to_noise"].append(lesion.contrast_to_noise)
            out["centres"].append(lesion.centre)
            out["origins"].append(corner)
    return LesionSet(
        images=np.stack(out["images"]).astype(np.float32),
        labels=np.asarray(out["labels"], np.int32), masks=np.stack(out["masks"]),
        subjects=np.asarray(out["subjects"]), source=np.asarray(out["source"], np.int32),
        conspicuity=np.asarray(out["conspicuity"], np.float32),
        contrast_to_noise=np.asarray(out["contrast_to_noise"], np.float32),
        centres=np.stack(out["centres"]).astype(np.float32),
        origins=np.asarray(out["origins"], np.int32))


def split_by_subject(subjects, *, test_fraction: float, seed: int):
    """Split subject ids into train and test sets that share no subject.

    Host-side numpy (``np.random.default_rng(seed)`` permutes the sorted unique ids).

    Args:
        subjects: a sequence or array of subject ids (repeats allowed: one per example).
        test_fraction: in (0, 1); the test set gets ``round(test_fraction x subjects)``
            subjects, at least 1 and at most all but one.
        seed: an int.

    Returns:
        ``(train, test)``: two disjoint frozensets of subject ids whose union is every id.
    """
    func = "mskjax.sim.split_by_subject"
    unique = sorted(set(np.asarray(subjects).ravel().tolist()))
    if len(unique) < 2:
        raise ValueError(f"{func}: needs at least 2 distinct subjects, got {len(unique)}")
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real)
            or not 0.0 < float(test_fraction) < 1.0):
        raise ValueError(f"{func}: test_fraction must be a number in (0, 1), got "
                         f"{test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{func}: seed must be an int, got {type(seed).__name__}")
    n_test = min(max(int(round(test_fraction * len(unique))), 1), len(unique) - 1)
    order = np.random.default_rng(int(seed)).permutation(len(unique))
    test = frozenset(unique[k] for k in order[:n_test])
    return frozenset(unique) - test, test
