"""Simulated classification sets for the detection and grading tasks, split by subject.

:func:`make_classification_set` draws every example from its own key and writes the set with
:func:`write_classification_set`. Sources, with what an example is:

- ``"radiograph"``: an AP knee radiograph (:func:`mskjax.sim.radiograph_set` with
  :data:`mskjax.sim.REALISTIC_RADIOGRAPH`: grades balanced, overlapping within-grade variation,
  blur, scatter, positioning and exposure variation); label the KL grade 0..4 (ordinal).
- ``"radiograph-jsw"``: the same radiographs; label the minimum joint-space width in mm
  (regression), the measurement a radiologist reads off the image.
- ``"lesion"``: a sagittal MR slice through the cartilage lesion, or through where it would be
  (:func:`mskjax.sim.lesion_detection_example`: realistic rendering, conspicuity uniform in
  [0, 1]); label 1 with a lesion; the lesion mask and conspicuity are kept.
- ``"tear"``: sagittal, coronal and axial stacks of one knee (:func:`mskjax.sim.
  multiview_example`); label 1 with a meniscal tear.
- ``"real-lesion"``: the real knee images of ``images`` (an npz with ``images`` and
  ``subject``, by default ``knee_axial_rss.npz`` of the data folder) with lesions inserted
  (:func:`mskjax.sim.real_lesion_set`), half the examples sham-processed negatives; the real
  subjects are split between train and test.

Each subject is one draw from ``fold_in(PRNGKey(seed), index)`` with the test subjects after the
training ones, so the held-out set never shares a subject (nor a key) with the training set; the
classes are balanced: radiograph grades in equal numbers, and for the MR sources the first half
of each split's subjects with the pathology, the second half without (the same knee, slice and
noise distribution, since presence is drawn apart from the rest of the subject).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from .._checks import check_positive_int
from ._atomic import check_output_folder
from ._cls_set import write_classification_set

_FUNC = "mskjax.io.make_classification_set"
SOURCES = ("radiograph", "radiograph-jsw", "lesion", "tear", "real-lesion")
DEFAULT_SIZE = {"radiograph": 128, "radiograph-jsw": 128, "lesion": 96, "tear": 48,
                "real-lesion": 96}
#: source -> (kind of ``sim.detection_set``, class names, description) of the simulated MR sets.
_DETECTION = {
    "lesion": ("lesion", ["no lesion", "cartilage lesion"],
               "simulated sagittal knee MR slices, cartilage lesions of graded conspicuity"),
    "tear": ("multiview", ["no tear", "meniscal tear"],
             "simulated sagittal, coronal and axial knee MR stacks, meniscal tears"),
}
#: Kinds of lesion inserted into the real images, one per example in turn.
REAL_KINDS = ("cartilage_defect", "marrow_oedema")


def _radiographs(root, first, count, size, progress):
    from .. import sim

    images, grades, features = sim.radiograph_set(
        jax.random.fold_in(root, first), count, shape=(size, size), grades="balanced",
        progress=progress, **sim.REALISTIC_RADIOGRAPH)
    arrays = {"image": np.asarray(images, np.float32), "grade": np.asarray(grades, np.int32),
              "subject": np.arange(first, first + count, dtype=np.int64)}
    for name, value in features.items():
        value = np.asarray(value)
        if value.shape[:1] == (count,) and np.issubdtype(value.dtype, np.number):
            arrays[name] = value
    return arrays


def _detection(kind, seed, first, count, size, progress, conspicuity):
    from .. import sim

    options = ({"shape": (size, size)} if kind == "lesion" else {"size": size})
    # The first half of the subjects with the pathology, the second without: balanced classes.
    half = (count + 1) // 2
    parts = [sim.detection_set(num_subjects=n, seed=seed, kind=kind, first_subject=start,
                               progress=progress, conspicuity=conspicuity, present=present,
                               **options)
             for start, n, present in ((first, half, True), (first + half, count - half, False))
             if n > 0]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # Keep the images, labels, masks of 2D examples and per-example numbers; tissue labels and
    # per-view masks are left out (they are large and no task here reads them).
    return {k: v for k, v in arrays.items()
            if not (k == "labels" or k.startswith(("labels_", "mask_")))}


def _data_folder():
    """``$MSKJAX_DATA``, else ``shared/data`` beside the checkout (None when neither exists)."""
    env = os.environ.get("MSKJAX_DATA")
    for path in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[3]
                                                / "shared" / "data"]:
        if path.is_dir():
            return path
    return None


def _real_images(images, func):
    if images is None:
        folder = _data_folder()
        if folder is None:
            raise FileNotFoundError(f"{func}: real-lesion needs --images, or the shared data "
                                    "folder (MSKJAX_DATA or ../shared/data) with "
                                    "knee_axial_rss/knee_axial_rss.npz")
        images = folder / "knee_axial_rss" / "knee_axial_rss.npz"
    path = Path(images)
    try:
        with np.load(path, allow_pickle=False) as archive:
            stack, subjects = archive["images"], archive["subject"]
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{func}: {path}: expected an npz with 'images' (n, rows, cols) and "
                         f"'subject' (n,) ({err})") from err
    if stack.ndim != 3 or subjects.shape != stack.shape[:1]:
        raise ValueError(f"{func}: {path}: 'images' must be (n, rows, cols) and 'subject' (n,), "
                         f"got {stack.shape} and {subjects.shape}")
    stack = np.abs(stack).astype(np.float32)
    # The same scan may appear under two ids (knee_axial_rss.npz: 'knee' is
    # 'knee_multiple/P3' scaled); keep one copy, or a split by subject would leak it.
    flat = stack.reshape(len(stack), -1).astype(np.float64)
    flat = flat - flat.mean(axis=1, keepdims=True)
    flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-30)
    corr = flat @ flat.T
    dropped = sorted({str(subjects[i]) for i in range(len(stack)) for j in range(i + 1, len(stack))
                      if corr[i, j] > 0.9999 and subjects[i] != subjects[j]})
    keep = ~np.isin(subjects.astype(str), dropped)
    return stack[keep], subjects[keep], path, dropped


def _real(root, images, subjects, size, per_image, conspicuity):
    from .. import sim

    parts = []
    for k, kind in enumerate(REAL_KINDS):
        lesions = sim.real_lesion_set(images, subjects, key=jax.random.fold_in(root, k),
                                      kind=kind, per_image=per_image, patch=(size, size),
                                      conspicuity_range=conspicuity)
        parts.append({"image": lesions.images.astype(np.float32),
                      "label": lesions.labels.astype(np.int32), "mask": lesions.masks,
                      "conspicuity": lesions.conspicuity.astype(np.float32),
                      "cnr": lesions.contrast_to_noise.astype(np.float32),
                      "kind": np.full(len(lesions.labels), k, np.int32),
                      "subject_name": lesions.subjects.astype(str)})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def make_classification_set(out: str | os.PathLike, *, source: str, train_subjects: int = 400,
                            test_subjects: int = 200, size: int | None = None,
                            images: str | os.PathLike | None = None, seed: int = 0,
                            per_image: int = 8, conspicuity=(0.0, 1.0),
                            progress: bool = True, overwrite: bool = False) -> dict:
    """Simulate a labelled set (module docstring) and write it to ``out``.

    The folder is built beside ``out`` and renamed when complete (see
    :func:`write_classification_set`); a non-empty ``out`` is refused before any simulation
    unless ``overwrite``.

    Args:
        out: the new folder.
        source: one of :data:`SOURCES` (keyword-only).
        train_subjects, test_subjects: simulated subjects per split; for ``"real-lesion"`` the
            real subjects are split with about ``test_subjects / (train + test)`` of them held
            out.
        size: rows and columns of each image (default by source: :data:`DEFAULT_SIZE`).
        images: ``"real-lesion"`` only: the npz of real images.
        seed: the subjects' keys and, for real images, the split.
        per_image: ``"real-lesion"``: lesions (and as many shams) per real image and kind.
        conspicuity: ``"lesion"``, ``"tear"``: the range the conspicuity is drawn from
            uniformly (a number fixes it); ``"real-lesion"`` uses it as its range too.
        progress: show progress bars.
        overwrite: replace an existing non-empty ``out`` as a whole.

    Returns:
        The manifest (also written to ``out/manifest.json``).
    """
    if source not in SOURCES:
        raise ValueError(f"{_FUNC}: source must be one of {SOURCES}, got {source!r}")
    check_positive_int(train_subjects, "train_subjects", _FUNC)
    check_positive_int(test_subjects, "test_subjects", _FUNC)
    check_positive_int(per_image, "per_image", _FUNC)
    size = DEFAULT_SIZE[source] if size is None else size
    check_positive_int(size, "size", _FUNC, minimum=16)
    out = check_output_folder(out, overwrite=overwrite, func=_FUNC)
    if images is not None and source != "real-lesion":
        raise ValueError(f"{_FUNC}: images is for source 'real-lesion' only")
    root = jax.random.PRNGKey(seed)
    if isinstance(conspicuity, (int, float)):
        conspicuity = (float(conspicuity), float(conspicuity))
    conspicuity = tuple(float(c) for c in conspicuity)
    settings = {"source": source, "size": size, "seed": seed, "conspicuity": list(conspicuity),
                "train_subjects": train_subjects, "test_subjects": test_subjects}
    if source in ("radiograph", "radiograph-jsw"):
        splits = {"train": _radiographs(root, 0, train_subjects, size, progress),
                  "test": _radiographs(root, train_subjects, test_subjects, size, progress)}
        if source == "radiograph":
            for arrays in splits.values():
                arrays["label"] = arrays["grade"]
            task, num_classes, names = "ordinal", 5, [f"KL{g}" for g in range(5)]
        else:
            for arrays in splits.values():
                arrays["label"] = arrays["minimum_joint_space_width"].astype(np.float32)
            task, num_classes, names = "regression", None, None
        what = "simulated AP knee radiographs (realistic)"
    elif source in _DETECTION:
        kind, names, what = _DETECTION[source]
        splits = {"train": _detection(kind, seed, 0, train_subjects, size, progress,
                                      conspicuity),
                  "test": _detection(kind, seed, train_subjects, test_subjects, size, progress,
                                     conspicuity)}
        task, num_classes = "binary", 2
    else:
        from .. import sim

        stack, subjects, path, dropped = _real_images(images, _FUNC)
        fraction = test_subjects / (train_subjects + test_subjects)
        train_ids, test_ids = sim.split_by_subject(subjects, test_fraction=fraction, seed=seed)
        ids = {name: i for i, name in enumerate(sorted(set(subjects.tolist())))}
        splits = {}
        for k, (name, chosen) in enumerate((("train", train_ids), ("test", test_ids))):
            keep = np.isin(subjects, list(chosen))
            arrays = _real(jax.random.fold_in(root, k), stack[keep], subjects[keep], size,
                           per_image, conspicuity)
            arrays["subject"] = np.array([ids[s] for s in arrays.pop("subject_name")],
                                         np.int64)
            splits[name] = arrays
        task, num_classes, names = "binary", 2, ["no lesion", "inserted lesion"]
        what = f"real knee images ({path.name}) with inserted lesions"
        settings.update(images=str(path), per_image=per_image, kinds=list(REAL_KINDS),
                        subject_ids=ids, dropped_duplicate_scans=dropped)
    return write_classification_set(out, splits, task=task, num_classes=num_classes,
                                    class_names=names, source=what, settings=settings,
                                    overwrite=overwrite)
