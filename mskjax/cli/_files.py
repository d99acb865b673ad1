"""Output files and reading images for the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import atomic_path


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_image(path: Path, *, index: int | None = None) -> tuple[np.ndarray, str]:
    """Read one 2D image (real or complex) from ``.npy`` or ``.npz``.

    A ``.npz`` is searched for ``images``, then ``image``, then its only array. A 3D array is
    a stack of slices ``(slices, rows, cols)``; ``index`` picks one (default the middle).

    Returns:
        ``(image, description)``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mskjax demo: --data {path}: no such file")
    try:
        if path.suffix == ".npz":
            with np.load(path) as archive:
                names = list(archive.files)
                key = next((k for k in ("images", "image") if k in names),
                           names[0] if len(names) == 1 else None)
                if key is None:
                    raise ValueError(f"mskjax demo: {path}: expected an array named 'images' or "
                                     f"'image' (or a single array), found {names}")
                array = archive[key]
        elif path.suffix == ".npy":
            key, array = None, np.load(path)
        else:
            raise ValueError(f"mskjax demo: {path}: unsupported file type {path.suffix!r}; "
                             "expected .npy or .npz")
    except (OSError, EOFError) as err:
        raise ValueError(f"mskjax demo: {path}: cannot read the file ({err})") from err
    what = f"{path.name}" + (f"['{key}']" if key else "")
    if array.ndim == 3:
        index = array.shape[0] // 2 if index is None else index
        if not -array.shape[0] <= index < array.shape[0]:
            raise ValueError(f"mskjax demo: {what} has {array.shape[0]} slices, got --slice "
                             f"{index}")
        array, what = array[index], f"{what}[{index}]"
    elif array.ndim != 2:
        raise ValueError(f"mskjax demo: {what} must be a 2D image or a (slices, rows, cols) "
                         f"stack, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) and np.all(np.isfinite(array))):
        raise ValueError(f"mskjax demo: {what} must hold finite numbers, got dtype "
                         f"{array.dtype}")
    return array, what
