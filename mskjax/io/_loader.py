"""Batches of slices from a folder of fastMRI files, undersampled on the fly, prefetched.

Every slice of every ``*.h5`` file in the folder (sorted by name) is an example; when the
folder, or the folder above it, holds the ``manifest.json`` of a set written by
:func:`mskjax.io.make_kspace_set` that lists files of this folder, only the files it lists are
read (a stray or stale ``.h5`` beside them is never mixed in). A batch is a
:class:`mskjax.pipeline.Sample` of stacked numpy arrays (or device arrays with
``device_put=True``): ``kspace`` ``(batch, coils, rows, cols)`` complex64 with the mask applied
(unsampled entries +0.0), ``mask`` ``(batch, cols)`` bool, ``target`` ``(batch, H, W)`` float32
(the file's ``reconstruction_rss``/``_esc``, or None when absent) and ``extra`` a dict with
``fname``, ``slice``, ``num_low_frequencies`` and ``max``.

Masks are deterministic per file, as in fastMRI: the seed of the mask function is
``tuple(map(ord, fname))``, so every slice of a file, in every epoch, gets the same mask.
Batches are assembled on a background thread, ``prefetch`` ahead of the consumer, so reading
and (with ``device_put``) the host-to-device copy overlap the computation.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .._checks import check_positive_int
from ..pipeline import Sample
from ._fastmri import read_fastmri

_FUNC = "mskjax.io.fastmri_batches"
_DONE = object()


def _manifest_files(folder: Path) -> tuple[Path, list[Path]] | tuple[None, None]:
    """The manifest (in ``folder`` or its parent) that lists files of ``folder``, and those
    files (sorted); ``(None, None)`` when there is none."""
    here = folder.resolve()
    for root in (folder, folder.parent):
        path = root / "manifest.json"
        if not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{_FUNC}: {path}: cannot read the manifest ({err})") from err
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict):
            continue  # not the manifest of a k-space set
        listed = sorted(root / str(name) for name in files.values()
                        if (root / str(name)).resolve().parent == here)
        if listed:
            return path, listed
    return None, None


def manifest_files(folder: str | os.PathLike) -> tuple[Path, list[Path]] | tuple[None, None]:
    """``(manifest, files)``: the ``manifest.json`` of a k-space set (in ``folder`` or its
    parent, :func:`make_kspace_set`) that lists files of ``folder``, and those files (sorted);
    ``(None, None)`` when there is none. An unreadable manifest is a ValueError."""
    return _manifest_files(Path(folder))


def fastmri_slices(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """All ``(path, slice_index)`` pairs of the ``*.h5`` files in ``folder``, sorted.

    When a ``manifest.json`` in ``folder`` or its parent (a set written by
    :func:`mskjax.io.make_kspace_set`) lists files of ``folder``, only those are read; a listed
    file that is missing is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{_FUNC}: {folder}: no such folder")
    manifest, paths = _manifest_files(folder)
    if manifest is not None:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"{_FUNC}: {manifest} lists {missing[:3]}, which are missing; the "
                             "set is incomplete")
    else:
        paths = sorted(folder.glob("*.h5"))
    if not paths:
        raise ValueError(f"{_FUNC}: {folder}: no .h5 files")
    examples = []
    for path in paths:
        with read_fastmri(path) as f:
            if f.noncartesian:
                raise ValueError(
                    f"{_FUNC}: {path}: holds non-Cartesian k-space (a trajectory); this loader "
                    "draws Cartesian masks. Read it with mskjax.io.read_fastmri and reconstruct "
                    "with mskjax.recon.gridding or recon.cg_sense(..., coords=...)")
            examples.extend((path, i) for i in range(f.num_slices))
    return examples


def _read_example(path, index, mask_func):
    with read_fastmri(path) as f:
        kspace = np.asarray(f.kspace[index])
        if not f.multicoil:
            kspace = kspace[None]
        target = None if f.reconstruction is None else np.asarray(f.reconstruction[index])
        maximum = f.attrs.get("max", np.nan)
        stored_mask = f.mask
    num_low = -1
    if mask_func is not None:
        mask, num_low = mask_func(kspace.shape, seed=tuple(map(ord, path.name)))
        mask = np.asarray(mask, bool)
    elif stored_mask is not None:
        mask = np.asarray(stored_mask, bool)
    else:
        mask = np.ones(kspace.shape[-1], bool)
    kspace = np.where(mask, kspace, np.zeros((), kspace.dtype))
    return kspace, mask, target, path.name, index, num_low, float(maximum)


def _collate(examples, device_put):
    kspaces, masks, targets, names, indices, lows, maxima = zip(*examples)
    shapes = {k.shape for k in kspaces}
    if len(shapes) != 1:
        raise ValueError(f"{_FUNC}: cannot batch slices of different shapes {sorted(shapes)} "
                         f"from {sorted(set(names))}; use batch_size=1 or one shape per folder")
    batch = Sample(
        kspace=np.stack(kspaces),
        mask=np.stack(masks),
        target=None if any(t is None for t in targets) else np.stack(targets),
        extra={"fname": list(names), "slice": np.asarray(indices),
               "num_low_frequencies": np.asarray(lows), "max": np.asarray(maxima)},
    )
    if device_put:
        import jax

        batch = batch.replace(kspace=jax.device_put(batch.kspace), mask=jax.device_put(batch.mask),
                              target=None if batch.target is None
                              else jax.device_put(batch.target))
    return batch


def fastmri_batches(folder: str | os.PathLike, *, batch_size: int = 1,
                    mask_func: Callable | None = None, shuffle: bool = False, seed: int = 0,
                    epochs: int = 1, drop_last: bool = False, prefetch: int = 2,
                    device_put: bool = False) -> Iterator[Sample]:
    """Iterate over batches of slices of a folder of fastMRI files (see the module docstring).

    Args:
        folder: a folder of fastMRI ``.h5`` files.
        batch_size: slices per batch (keyword-only).
        mask_func: ``mask_func(kspace_shape, seed=...) -> (mask, num_low_frequencies)``, e.g.
            ``functools.partial(mskjax.sampling.equispaced_mask, center_fraction=0.08,
            acceleration=4)``; None applies the file's own ``mask`` (test-set files) or none.
        shuffle: shuffle the slices every epoch (seeded by ``seed`` and the epoch).
        seed: the shuffling seed.
        epochs: passes over the data.
        drop_last: drop a final batch smaller than ``batch_size``.
        prefetch: batches prepared ahead on the background thread (>= 1).
        device_put: move the arrays of each batch to the default JAX device on the thread.

    Yields:
        :class:`mskjax.pipeline.Sample` batches.
    """
    check_positive_int(batch_size, "batch_size", _FUNC)
    check_positive_int(epochs, "epochs", _FUNC)
    check_positive_int(prefetch, "prefetch", _FUNC)
    if mask_func is not None and not callable(mask_func):
        raise TypeError(f"{_FUNC}: mask_func must be callable, got {type(mask_func).__name__}")
    examples = fastmri_slices(folder)

    def batches():
        for epoch in range(epochs):
            order = (np.random.default_rng((seed, epoch)).permutation(len(examples)) if shuffle
                     else np.arange(len(examples)))
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                if drop_last and len(chunk) < batch_size:
                    return
                yield [examples[i] for i in chunk]

    items: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def worker():
        try:
            for chunk in batches():
                batch = _collate([_read_example(p, i, mask_func) for p, i in chunk], device_put)
                while not stop.is_set():
                    try:
                        items.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            items.put(error)

    thread = threading.Thread(target=worker, name="mskjax-fastmri-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
