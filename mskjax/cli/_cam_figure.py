"""Figures of activation maps: each map as a semi-transparent 'jet' overlay on its grey image."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._files import atomic_path

_FUNC = "mskjax.cli.activation_map_figure"

#: Panels per row.
COLUMNS = 4

#: Opacity of the map over the image.
ALPHA = 0.4


def _stack(x, name):
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"{_FUNC}: {name} must be (examples, rows, cols) or (rows, cols), got "
                         f"shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"{_FUNC}: {name} must be real numbers, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{_FUNC}: {name} must be finite, got "
                         f"{int(np.sum(~np.isfinite(x)))} NaN or infinite values")
    return x.astype(np.float64)


def activation_map_figure(images, maps, *, titles: Sequence[str] | None = None,
                          path: str | os.PathLike, outlines=None) -> Path:
    """Write a PNG with one panel per example: the grey image, its map over it in 'jet'.

    Each panel shows the image in grey (its own minimum to maximum) and the map as a 'jet'
    overlay of opacity :data:`ALPHA`, coloured from the map's own minimum (blue) to its
    maximum (red), e.g. the output of :func:`mskjax.nets.grad_cam` with ``resize=True``;
    :data:`COLUMNS` panels per row. The file is written under a temporary name and renamed, so
    ``path`` is either the finished figure or left as it was.

    Args:
        images: ``(examples, rows, cols)`` or ``(rows, cols)``, real, finite.
        maps: the same shape (maps at the images' resolution), real, finite.
        titles: one title per example (keyword-only), or ``None``.
        path: the PNG to write (keyword-only); its folder must exist.
        outlines: ``None``, or one boolean mask (the images' shape) or ``None`` per example,
            drawn as a white contour (e.g. the true lesion).

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    images, maps = _stack(images, "images"), _stack(maps, "maps")
    if images.shape != maps.shape:
        raise ValueError(f"{_FUNC}: maps must have the images' shape {images.shape} (resize "
                         f"them to the images), got {maps.shape}")
    count = images.shape[0]
    if titles is not None:
        titles = list(titles)
        if len(titles) != count or not all(isinstance(t, str) for t in titles):
            raise ValueError(f"{_FUNC}: titles must be {count} strings (one per example), got "
                             f"{titles!r}")
    if outlines is not None:
        outlines = list(outlines)
        if len(outlines) != count or not all(
                o is None or np.shape(o) == images.shape[1:] for o in outlines):
            raise ValueError(f"{_FUNC}: outlines must be {count} masks of shape "
                             f"{images.shape[1:]} or None")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{_FUNC}: the folder of {path} does not exist")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(count, COLUMNS)
    rows = -(-count // columns)
    aspect = images.shape[1] / images.shape[2]
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * aspect * rows + 0.3),
                             squeeze=False, constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(images[i], cmap="gray", interpolation="nearest")
        low, high = float(maps[i].min()), float(maps[i].max())
        ax.imshow(maps[i], cmap="jet", alpha=ALPHA, vmin=low, vmax=high if high > low else low + 1,
                  interpolation="nearest")
        if outlines is not None and outlines[i] is not None and np.any(outlines[i]):
            ax.contour(np.asarray(outlines[i], dtype=float), levels=[0.5], colors="white",
                       linewidths=1.0)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
