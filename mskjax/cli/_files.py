"""Output files and reading images for the command line."""

from __future__ import annotations

import json
import zipfile
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
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"mskjax demo: --data {path}: unsupported file type {path.suffix!r}; "
                         "expected .npy or .npz")
    key = None
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            if path.suffix == ".npz":
                raise ValueError(f"mskjax demo: --data {path}: a .npy array under a .npz name; "
                                 "rename it to .npy")
            array = loaded
        elif path.suffix == ".npy":
            loaded.close()
            raise ValueError(f"mskjax demo: --data {path}: a .npz archive under a .npy name; "
                             "rename it to .npz")
        else:
            with loaded as archive:
                names = list(archive.files)
                key = next((k for k in ("images", "image") if k in names),
                           names[0] if len(names) == 1 else None)
                if key is None:
                    raise ValueError(f"mskjax demo: {path}: expected an array named 'images' or "
                                     f"'image' (or a single array), found {names}")
                array = archive[key]
    except ValueError as err:
        if str(err).startswith("mskjax demo:"):
            raise
        if "Object arrays" in str(err):
            raise ValueError(f"mskjax demo: --data {path}: holds an array of Python objects; "
                             "the demo reads numeric arrays only") from None
        raise ValueError(f"mskjax demo: --data {path}: not a NumPy {path.suffix} file") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        reason = (err.strerror.lower() if isinstance(err, OSError) and err.strerror
                  else " ".join(str(err).split()))
        raise ValueError(f"mskjax demo: --data {path}: cannot read the file ({reason})") from None
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
