"""A labelled classification set: images (or multi-view stacks), labels and subjects per split.

Layout written by :func:`write_classification_set` and read by :func:`read_classification_set`::

    out/
      manifest.json   the task, the classes, the source and settings, the subjects per split
      train.npz       the training examples
      test.npz        held-out examples (their subjects never appear in train.npz)

Each ``<split>.npz`` holds, for ``n`` examples:

- ``image``: float32 ``(n, rows, cols)`` (2D images) or ``(n, x, y, z)`` (volumes); or, for
  multi-view examples, ``sagittal``, ``coronal`` and ``axial``: float32 ``(n, slices, rows,
  cols)`` each (the manifest's ``inputs`` is ``"views"``);
- ``label``: int32 ``(n,)`` class index (``binary``: 0/1, ``multiclass``/``ordinal``:
  ``0..num_classes-1``) or float32 ``(n,)`` (``regression``);
- ``subject``: int64 ``(n,)`` the subject each example comes from (several examples may share
  one; the split is by subject);
- any further per-example arrays of length ``n`` (``conspicuity``, ``grade``, ...), kept as
  they are.

The folder is built under a temporary name beside ``out`` and renamed when complete, so an
interrupted or failed run leaves no partial set (and a previous set intact); a non-empty
``out`` is refused unless ``overwrite=True``, which replaces it as a whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._atomic import atomic_folder, check_output_folder

_WRITE = "mskjax.io.write_classification_set"
_READ = "mskjax.io.read_classification_set"
TASKS = ("binary", "multiclass", "ordinal", "regression")
VIEWS = ("sagittal", "coronal", "axial")


def _check_split(name, arrays, task, num_classes, func):
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{func}: split {name!r} must be a dict of arrays, got "
                        f"{type(arrays).__name__}")
    missing = [k for k in ("label", "subject") if k not in arrays]
    has_image, has_views = "image" in arrays, all(v in arrays for v in VIEWS)
    if missing or has_image == has_views:
        raise ValueError(f"{func}: split {name!r} needs 'label', 'subject' and either 'image' "
                         f"or all of {list(VIEWS)}; got {sorted(arrays)}")
    label = np.asarray(arrays["label"])
    n = label.shape[0] if label.ndim == 1 else -1
    if n < 1:
        raise ValueError(f"{func}: split {name!r}: label must be (n,) with n >= 1, got shape "
                         f"{label.shape}")
    for key, value in arrays.items():
        if np.shape(value)[:1] != (n,):
            raise ValueError(f"{func}: split {name!r}: {key} has {np.shape(value)[:1]} examples, "
                             f"label has {n}")
    for key in ("image",) if has_image else VIEWS:
        image = np.asarray(arrays[key])
        if image.ndim < 3 or not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"{func}: split {name!r}: {key} must be float (n, *spatial), got "
                             f"shape {image.shape} ({image.dtype})")
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{func}: split {name!r}: {key} holds non-finite values")
    if task == "regression":
        if not np.all(np.isfinite(label.astype(np.float64))):
            raise ValueError(f"{func}: split {name!r}: label holds non-finite values")
    else:
        if not np.issubdtype(label.dtype, np.integer):
            raise ValueError(f"{func}: split {name!r}: a {task} label must be integer, got "
                             f"{label.dtype}")
        if label.min() < 0 or label.max() >= num_classes:
            raise ValueError(f"{func}: split {name!r}: labels must lie in 0..{num_classes - 1}, "
                             f"got {label.min()}..{label.max()}")
    return "views" if has_views else "image"


def write_classification_set(out: str | os.PathLike, splits: Mapping[str, Mapping], *,
                             task: str, num_classes: int | None, class_names=None,
                             source: str, settings: Mapping | None = None,
                             overwrite: bool = False) -> dict:
    """Write a classification set (module docstring) and return its manifest.

    Args:
        out: the new folder (must not exist, or be an empty folder, unless ``overwrite``).
        splits: split name (``"train"``, ``"test"``, ...) -> dict of per-example arrays.
        task: ``"binary"``, ``"multiclass"``, ``"ordinal"`` or ``"regression"`` (keyword-only).
        num_classes: classes of the label (2 for binary), None for regression.
        class_names: optional names of the classes.
        source: what the examples are (e.g. ``"simulated radiographs"``).
        settings: how they were made (stored in the manifest; JSON-serialisable).
        overwrite: replace an existing non-empty ``out`` as a whole (never mixed with it).

    Subjects must not repeat across splits (ValueError).
    """
    if task not in TASKS:
        raise ValueError(f"{_WRITE}: task must be one of {TASKS}, got {task!r}")
    if task == "binary":
        num_classes = 2 if num_classes is None else num_classes
    if task != "regression" and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                 or num_classes < 2 or (task == "binary" and num_classes != 2)):
        raise ValueError(f"{_WRITE}: num_classes must be an int >= 2 (2 for binary), got "
                         f"{num_classes!r}")
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError(f"{_WRITE}: splits must be a non-empty dict of split name -> arrays")
    inputs = {name: _check_split(name, arrays, task, num_classes, _WRITE)
              for name, arrays in splits.items()}
    if len(set(inputs.values())) != 1:
        raise ValueError(f"{_WRITE}: every split must hold the same kind of input, got {inputs}")
    subjects = {name: sorted({int(s) for s in np.asarray(arrays["subject"])})
                for name, arrays in splits.items()}
    names = list(subjects)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(subjects[a]) & set(subjects[b]))
            if shared:
                raise ValueError(f"{_WRITE}: subjects {shared[:5]} are in both {a!r} and {b!r}; "
                                 "split by subject")
    check_output_folder(out, overwrite=overwrite, func=_WRITE)
    manifest = {"kind": "mskjax classification set", "source": source, "task": task,
                "num_classes": num_classes,
                "class_names": None if class_names is None else [str(c) for c in class_names],
                "inputs": next(iter(inputs.values())),
                "splits": {name: {"examples": int(np.asarray(arrays["label"]).shape[0]),
                                  "subjects": subjects[name]}
                           for name, arrays in splits.items()},
                "settings": dict(settings or {})}
    with atomic_folder(out, overwrite=overwrite, func=_WRITE) as tmp:
        for name, arrays in splits.items():
            np.savez_compressed(tmp / f"{name}.npz",
                                **{k: np.asarray(v) for k, v in arrays.items()})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_classification_manifest(folder: str | os.PathLike, func: str = _READ) -> dict:
    """The manifest of a classification set folder, checked."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{func}: {folder} holds no manifest.json; is it a folder made "
                                "by `mskjax data make-cls-set`?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{func}: {path}: cannot read it ({err})") from err
    if manifest.get("kind") != "mskjax classification set":
        raise ValueError(f"{func}: {path} is not the manifest of a classification set")
    return manifest


def read_classification_set(folder: str | os.PathLike, *, split: str = "train") -> dict:
    """Read one split of a classification set into memory.

    Returns:
        The split's arrays (``image`` or the three views, ``label``, ``subject``, extras) plus
        ``"manifest"``, checked as the writer checks them.
    """
    folder = Path(folder)
    manifest = read_classification_manifest(folder)
    if split not in manifest["splits"]:
        raise ValueError(f"{_READ}: {folder} has no split {split!r}; it has "
                         f"{sorted(manifest['splits'])}")
    path = folder / f"{split}.npz"
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{_READ}: {path}: cannot read it ({err})") from err
    _check_split(split, arrays, manifest["task"], manifest["num_classes"], f"{_READ} ({path})")
    return {**arrays, "manifest": manifest}
