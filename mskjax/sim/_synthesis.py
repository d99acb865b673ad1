"""MR-to-pseudo-CT synthesis examples: MR contrasts and the CT of the same simulated knee.

One subject per key: :func:`pseudo_ct_example` draws a knee with
:func:`mskjax.sim.segmentation_example` (its own anatomy, tissue parameters, realistic
rendering and elastic deformation), renders it in several MR contrasts, and takes the CT
target from the *deformed* labels of the same knee (:func:`mskjax.sim.attenuation_map`, then
:func:`mskjax.sim.hounsfield_units`), so that MR and CT are registered voxel for voxel.
Sets are split by subject by splitting the keys.

Conventions: a 2D sagittal slice by default (``slice_axis=0``: the slice is
``(superior-inferior, anterior-posterior)`` of the phantom's grid ``shape[1:]``); ``mr`` is
channels-last ``(*spatial, n_contrasts)`` float32 with each contrast divided by its own 99th
percentile (:func:`mskjax.sim.segmentation_example`'s normalisation), ``hounsfield`` float32
``(*spatial)`` in HU (air -1000, water 0), ``classes`` int32 ``(*spatial)`` indices into
:data:`mskjax.sim.CT_TISSUE_CLASSES` (0 air, 1 fat, 2 soft tissue, 3 bone), ``labels`` int32
``(*spatial)`` (:data:`mskjax.sim.KNEE_LABELS`).

For the class-assignment baseline of synthesis (segment, then give each class one HU):
:func:`mean_hounsfield_per_class` (each class's mean HU over training subjects) and
:func:`pseudo_ct_from_classes` (a class map -> the table's HU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array
from ._contrast import CONTRASTS
from ._ct import CT_TISSUE_CLASSES, attenuation_map, ct_tissue_classes, hounsfield_units
from ._example import segmentation_example
from ._phantom import KneePhantom

#: The MR contrasts of :func:`pseudo_ct_example` by default: fat-suppressed PD FSE and
#: T1-weighted SPGR (bright fat and marrow), two single-echo names of :data:`CONTRASTS`.
PSEUDO_CT_CONTRASTS = ("pd_fs", "t1_spgr")


class PseudoCTExample(NamedTuple):
    """The output of :func:`pseudo_ct_example` (module docstring for the conventions).

    Attributes:
        mr: float32 ``(*spatial, n_contrasts)``, the contrasts in the order asked for.
        hounsfield: float32 ``(*spatial)``, the CT target in HU.
        classes: int32 ``(*spatial)``, CT class indices (:data:`CT_TISSUE_CLASSES`).
        labels: int32 ``(*spatial)``, tissue labels (:data:`KNEE_LABELS`).
        contrasts: the contrast names of the channels of ``mr``.
        phantom: the :class:`KneePhantom` drawn, before the elastic deformation.
    """

    mr: jax.Array
    hounsfield: jax.Array
    classes: jax.Array
    labels: jax.Array
    contrasts: tuple[str, ...]
    phantom: KneePhantom


def pseudo_ct_example(key: jax.Array, *, shape: Sequence[int] = (48, 96, 96),
                      contrasts: Sequence[str] = PSEUDO_CT_CONTRASTS, realistic: bool = True,
                      slice_axis: int | None = 0, slice_index: int | None = None,
                      jitter: float = 0.1, deform: bool | Mapping[str, float] = True,
                      pathology: Any = "random", **render_options: Any) -> PseudoCTExample:
    """One synthesis subject, MR contrasts and CT of the same knee, drawn from ``key``.

    Runs on the host (a Python function of the key; the same key gives the same example).

    Args:
        key: a ``jax.random`` key.
        shape: the phantom's grid (keyword-only), 160 mm field of view; the default 2D slice
            is ``shape[1:]``.
        contrasts: a non-empty sequence of distinct single-image names of :data:`CONTRASTS`
            (``"pd_fs"``, ``"t1_spgr"``), one channel each.
        realistic: render with :data:`REALISTIC_RENDERING` (partial volume, texture, receive
            bias, Gibbs ringing, Rician noise); False for the clean rendering.
        slice_axis, slice_index: as in :func:`segmentation_example` (0 is sagittal; the index
            is drawn from the central half when None); ``slice_axis=None`` gives the volume.
        jitter: between-subject contrast jitter, :func:`jitter_parameters`'s ``scale``.
        deform: elastic deformation of MR and labels (and so of the CT), as in
            :func:`segmentation_example`.
        pathology: as in :func:`knee_phantom` (pathologies change MR, not CT).
        **render_options: further options of :func:`render` for every contrast (``snr``,
            ``bias``, ...).

    Returns:
        :class:`PseudoCTExample`.
    """
    func = "mskjax.sim.pseudo_ct_example"
    if isinstance(contrasts, str) or not isinstance(contrasts, Sequence) or not contrasts:
        raise ValueError(f"{func}: contrasts must be a non-empty sequence of names of "
                         f"{list(CONTRASTS)}, got {contrasts!r}")
    contrasts = tuple(contrasts)
    for name in contrasts:
        if not isinstance(name, str) or name not in CONTRASTS:
            raise ValueError(f"{func}: unknown contrast {name!r}; expected names of "
                             f"{list(CONTRASTS)}")
    if len(set(contrasts)) != len(contrasts):
        raise ValueError(f"{func}: contrasts must be distinct, got {contrasts!r}")
    example = segmentation_example(key, shape=shape, contrast=contrasts, realistic=realistic,
                                   pathology=pathology, slice_axis=slice_axis,
                                   slice_index=slice_index, deform=deform, jitter=jitter,
                                   **render_options)
    labels = example.labels
    image = example.image if len(contrasts) > 1 else example.image[None]
    if image.shape != (len(contrasts), *labels.shape):
        raise ValueError(f"{func}: contrasts must give one image each (multi-echo contrasts "
                         f"such as 'mese' and 'qdess' give several); {contrasts!r} gave "
                         f"{image.shape[0]} channels")
    mr = jnp.moveaxis(image, 0, -1).astype(jnp.float32)
    hounsfield = hounsfield_units(attenuation_map(labels)).astype(jnp.float32)
    return PseudoCTExample(mr=mr, hounsfield=hounsfield, classes=ct_tissue_classes(labels),
                           labels=labels, contrasts=contrasts, phantom=example.phantom)


def _check_classes(classes, func, name="classes"):
    classes = as_array(classes, name, func)
    if not jnp.issubdtype(classes.dtype, jnp.integer) or jnp.issubdtype(classes.dtype,
                                                                         jnp.bool_):
        raise TypeError(f"{func}: {name} must be integer indices into CT_TISSUE_CLASSES, got "
                        f"{classes.dtype}")
    return jnp.asarray(classes)


def mean_hounsfield_per_class(hounsfield: ArrayLike, classes: ArrayLike, *,
                              num_classes: int = len(CT_TISSUE_CLASSES)) -> np.ndarray:
    """The mean HU of each CT class over all voxels given (e.g. every training subject
    stacked): the table of the class-assignment baseline.

    Args:
        hounsfield: real ``(*shape)`` CT numbers in HU.
        classes: integer ``(*shape)`` class indices in ``0..num_classes - 1``.
        num_classes: number of classes (keyword-only), 4 for :data:`CT_TISSUE_CLASSES`.

    Returns:
        float64 numpy ``(num_classes,)``.

    Raises:
        ValueError: shapes differ, an index is out of range, a value is not finite, or a
            class has no voxel (its HU would be undefined).
    """
    func = "mskjax.sim.mean_hounsfield_per_class"
    hu = np.asarray(hounsfield)
    if not np.issubdtype(hu.dtype, np.floating) and not np.issubdtype(hu.dtype, np.integer):
        raise TypeError(f"{func}: hounsfield must be real, got {hu.dtype}")
    cls = np.asarray(_check_classes(classes, func))
    if hu.shape != cls.shape:
        raise ValueError(f"{func}: hounsfield and classes must have one shape, got {hu.shape} "
                         f"and {cls.shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{func}: num_classes must be a positive int, got {num_classes!r}")
    if cls.size and (cls.min() < 0 or cls.max() >= num_classes):
        raise ValueError(f"{func}: classes must lie in 0..{num_classes - 1}, got "
                         f"{cls.min()}..{cls.max()}")
    if not np.all(np.isfinite(hu)):
        raise ValueError(f"{func}: hounsfield must be finite")
    counts = np.bincount(cls.ravel(), minlength=num_classes)
    if np.any(counts == 0):
        raise ValueError(f"{func}: every class needs at least one voxel; classes "
                         f"{np.flatnonzero(counts == 0).tolist()} have none")
    sums = np.bincount(cls.ravel(), weights=hu.astype(np.float64).ravel(),
                       minlength=num_classes)
    return sums / counts


def pseudo_ct_from_classes(classes: ArrayLike, table: ArrayLike) -> jax.Array:
    """A pseudo-CT from a class map: each voxel gets its class's HU, ``table[classes]``.

    Args:
        classes: integer ``(*spatial)`` class indices in ``0..len(table) - 1`` (e.g. a
            segmentation net's labels, or :func:`ct_tissue_classes` for the oracle).
        table: real ``(num_classes,)`` HU per class (:func:`mean_hounsfield_per_class`).

    Returns:
        float32 ``(*spatial)`` HU. Jittable; indices are checked when concrete.
    """
    func = "mskjax.sim.pseudo_ct_from_classes"
    classes = _check_classes(classes, func)
    table = as_array(table, "table", func)
    if table.ndim != 1 or table.shape[0] < 1 or not jnp.issubdtype(table.dtype, jnp.floating):
        raise ValueError(f"{func}: table must be a real (num_classes,) array of HU, got "
                         f"shape {table.shape} and dtype {table.dtype}")
    if not isinstance(classes, jax.core.Tracer) and classes.size and (
            int(classes.min()) < 0 or int(classes.max()) >= table.shape[0]):
        raise ValueError(f"{func}: classes must lie in 0..{table.shape[0] - 1}, got "
                         f"{int(classes.min())}..{int(classes.max())}")
    return jnp.asarray(table).astype(jnp.float32)[classes]
