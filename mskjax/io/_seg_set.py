"""A labelled segmentation set of simulated knees, as NIfTI image/label pairs.

Layout written by :func:`make_segmentation_set` and read by :func:`read_segmentation_set`::

    out/
      manifest.json                    the settings, the subjects of each split, label names
      train/subject-000_image.nii.gz   float32 (x, y, z) image
      train/subject-000_labels.nii.gz  uint8 (x, y, z) labels (values of sim.KNEE_LABELS)
      test/subject-016_image.nii.gz    held-out subjects (never trained on)
      ...

Each subject is one draw of :func:`mskjax.sim.segmentation_example` from the key
``fold_in(PRNGKey(seed), index)``: its own anatomy, pathology, tissue-parameter jitter, elastic
deformation and (``realistic=True``) partial volume, receive bias, Gibbs ringing and Rician
noise. With several ``contrasts`` each subject is rendered in one of them, drawn from its key.
The image is normalised as :func:`mskjax.sim.segmentation_example` documents (its 99th
percentile is 1).

Voxel order is the phantom's ``(left-right, superior-inferior, anterior-posterior)``: index
``i`` runs towards the patient's left, ``j`` downwards (inferior), ``k`` posteriorly. The
affine maps it to NIfTI's RAS+ world (mm, the volume centred on the origin), so viewers show
the knee the right way round and :func:`phantom_affine` is the only place that knows it.
Any other folder with the same ``*_image.nii.gz`` / ``*_labels.nii.gz`` pairs (real scans
with manual labels, resampled to a common grid) reads the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from .._checks import check_positive_int
from ._atomic import atomic_folder
from ._nifti import read_labels, read_nifti, write_nifti

_FUNC = "mskjax.io.make_segmentation_set"
_READ = "mskjax.io.read_segmentation_set"


def phantom_affine(shape: Sequence[int], voxel_size: Sequence[float]) -> np.ndarray:
    """The RAS+ affine of a phantom volume ``(left-right, superior-inferior,
    anterior-posterior)`` with the given voxel size (mm), centred on the origin.

    Index ``i`` runs to the patient's left (RAS x falls), ``j`` inferiorly (RAS z falls) and
    ``k`` posteriorly (RAS y falls).
    """
    d0, d1, d2 = (float(v) for v in voxel_size)
    affine = np.zeros((4, 4))
    affine[0, 0] = -d0
    affine[2, 1] = -d1
    affine[1, 2] = -d2
    affine[3, 3] = 1.0
    centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine


def _check_contrasts(contrasts, func):
    from ..sim import CONTRASTS

    if isinstance(contrasts, str):
        contrasts = [c.strip() for c in contrasts.split(",") if c.strip()]
    contrasts = list(contrasts)
    unknown = [c for c in contrasts if c not in CONTRASTS or c in ("mese", "t1rho")]
    if not contrasts or unknown:
        raise ValueError(f"{func}: contrasts must be one or more of ['t1_spgr', 'pd_fs', "
                         f"'qdess'], got {contrasts!r}")
    return contrasts


def make_segmentation_set(out: str | os.PathLike, *, train_subjects: int = 16,
                          test_subjects: int = 4, shape: Sequence[int] = (64, 128, 128),
                          contrasts: str | Sequence[str] = ("pd_fs",), realistic: bool = True,
                          seed: int = 0, progress: bool = True,
                          overwrite: bool = False) -> dict:
    """Simulate labelled knees and write them as NIfTI pairs (module docstring).

    The set is built in a temporary folder beside ``out`` and renamed onto ``out`` when
    complete, so a failed or interrupted run leaves nothing under ``out`` (and a previous set
    there intact).

    Args:
        out: the output folder (created; must not exist or be empty unless ``overwrite``).
        train_subjects: subjects in ``train/``.
        test_subjects: held-out subjects in ``test/`` (may be 0).
        shape: ``(left-right, superior-inferior, anterior-posterior)`` voxels over the
            phantom's 160 mm field of view.
        contrasts: one or more of ``"t1_spgr"``, ``"pd_fs"``, ``"qdess"`` (its S+ echo), a
            list or a comma-separated string; each subject gets one, drawn from its key.
        realistic: the realistic rendering (:data:`mskjax.sim.REALISTIC_RENDERING`) or the
            clean one.
        seed: subject ``i`` is drawn from ``fold_in(PRNGKey(seed), i)``.
        progress: show a progress bar.
        overwrite: replace an existing non-empty ``out`` as a whole (never mixed with it).

    Returns:
        The manifest (also written to ``out/manifest.json``).
    """
    from tqdm.auto import tqdm

    from .. import sim

    check_positive_int(train_subjects, "train_subjects", _FUNC)
    if isinstance(test_subjects, bool) or not isinstance(test_subjects, int) or test_subjects < 0:
        raise ValueError(f"{_FUNC}: test_subjects must be an integer >= 0, got {test_subjects!r}")
    shape = tuple(shape)
    if len(shape) != 3 or not all(isinstance(n, int) and n >= 16 for n in shape):
        raise ValueError(f"{_FUNC}: shape must be 3 integers >= 16, got {shape!r}")
    contrasts = _check_contrasts(contrasts, _FUNC)
    with atomic_folder(out, overwrite=overwrite, func=_FUNC) as out:
        voxel_size = tuple(160.0 / n for n in shape)
        affine = phantom_affine(shape, voxel_size)
        root = jax.random.PRNGKey(seed)
        total = train_subjects + test_subjects
        splits = {"train": [], "test": []}
        for split in splits:
            (out / split).mkdir(parents=True, exist_ok=True)
        records = []
        for index in tqdm(range(total), desc="simulating knees", unit="subject",
                          disable=not progress):
            split = "train" if index < train_subjects else "test"
            key = jax.random.fold_in(root, index)
            pick, draw = jax.random.split(key)
            contrast = contrasts[int(jax.random.randint(pick, (), 0, len(contrasts)))]
            example = sim.segmentation_example(draw, shape=shape, contrast=contrast,
                                               realistic=realistic)
            image = np.asarray(example.image, dtype=np.float32)
            if image.ndim == 4:  # qDESS: keep the S+ echo
                image = image[0]
            labels = np.asarray(example.labels).astype(np.uint8)
            name = f"subject-{index:03d}"
            write_nifti(out / split / f"{name}_image.nii.gz", image, affine=affine)
            write_nifti(out / split / f"{name}_labels.nii.gz", labels, affine=affine)
            splits[split].append(name)
            records.append({"subject": name, "split": split, "contrast": contrast,
                            "kl_grade": int(example.phantom.anatomy.kl_grade)})
        manifest = {"kind": "mskjax segmentation set", "shape": list(shape),
                    "voxel_size_mm": list(voxel_size), "contrasts": contrasts,
                    "realistic": bool(realistic), "seed": seed, "splits": splits,
                    "subjects": records, "labels": dict(sim.KNEE_LABELS)}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def _listed_names(folder: Path, split: str, func: str) -> set[str] | None:
    """The subjects a segmentation set's manifest lists for ``split``, or None without one."""
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{func}: {path}: cannot read the manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("kind") != "mskjax segmentation set":
        return None
    names = manifest.get("splits", {}).get(split)
    return None if names is None else {str(n) for n in names}


def segmentation_pairs(folder: str | os.PathLike, split: str | None,
                       func: str = _READ) -> list[tuple[str, Path, Path]]:
    """``(name, image path, labels path)`` of every pair in ``folder/split`` (or ``folder``
    itself when it has no such subfolder or ``split`` is None), sorted by name.

    When ``folder`` holds the ``manifest.json`` of a set written by
    :func:`make_segmentation_set`, only the subjects it lists for ``split`` are read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{func}: {folder}: no such folder")
    where = folder / split if split is not None and (folder / split).is_dir() else folder
    listed = _listed_names(folder, split, func) if where != folder else None
    pairs = []
    for image in sorted(where.glob("*_image.nii*")):
        name = image.name.split("_image.nii")[0]
        if listed is not None and name not in listed:
            continue  # not part of the set its manifest describes
        labels = sorted(where.glob(f"{name}_labels.nii*"))
        if not labels:
            raise ValueError(f"{func}: {image} has no matching {name}_labels.nii.gz")
        pairs.append((name, image, labels[0]))
    if not pairs:
        raise ValueError(f"{func}: {where} holds no *_image.nii.gz / *_labels.nii.gz pairs")
    return pairs


def read_segmentation_set(folder: str | os.PathLike, *, split: str | None = "train",
                          num_classes: int | None = None) -> dict:
    """Read the NIfTI pairs of one split of a segmentation set into memory.

    Args:
        folder: a folder written by :func:`make_segmentation_set` (or any folder of
            ``<name>_image.nii.gz`` / ``<name>_labels.nii.gz`` pairs).
        split: ``"train"``, ``"test"``, or None for ``folder`` itself.
        num_classes: if given, every label must lie in ``0..num_classes-1``.

    Returns:
        ``{"names": [...], "images": float32 (n, x, y, z), "labels": uint8 (n, x, y, z),
        "affines": (n, 4, 4), "voxel_size": (3,)}``; every pair must share one shape.
    """
    names, images, labels, affines, sizes = [], [], [], [], []
    for name, image_path, labels_path in segmentation_pairs(folder, split):
        image = read_nifti(image_path, dtype=np.float32)
        label = read_labels(labels_path)
        if image.array.shape != label.array.shape:
            raise ValueError(f"{_READ}: {image_path} is {image.array.shape} but its labels "
                             f"{labels_path} are {label.array.shape}")
        if image.array.ndim != 3:
            raise ValueError(f"{_READ}: {image_path} must be a 3D volume, got shape "
                             f"{image.array.shape}")
        if not np.all(np.isfinite(image.array)):
            raise ValueError(f"{_READ}: {image_path} holds non-finite values")
        if num_classes is not None and (label.array.min() < 0
                                        or label.array.max() >= num_classes):
            raise ValueError(f"{_READ}: {labels_path} holds labels outside 0..{num_classes - 1} "
                             f"(min {label.array.min()}, max {label.array.max()})")
        names.append(name)
        images.append(image.array)
        labels.append(label.array.astype(np.uint8))
        affines.append(image.affine)
        sizes.append(image.voxel_size)
    shapes = sorted({a.shape for a in images})
    if len(shapes) != 1:
        raise ValueError(f"{_READ}: {folder} holds volumes of different shapes {shapes}; "
                         "resample them to one grid")
    return {"names": names, "images": np.stack(images), "labels": np.stack(labels),
            "affines": np.stack(affines), "voxel_size": np.asarray(sizes[0])}
