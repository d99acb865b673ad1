"""``mskjax segment``: segment a NIfTI volume with a trained model, NIfTI out.

The volume is brought to the training orientation from its affine (the phantom's voxel order,
axis codes ``L, I, P``: sagittal slices along the first axis), resampled to the training voxel
size (in-plane only for the 2D models, which see one sagittal slice at a time; all three axes
for the 3D and triplanar models), normalised by its 99th percentile and segmented. The class
probabilities are resampled back to the input grid (linear), the labels are their argmax,
cleaned (largest connected component per class) and, with ``refine=True``, refined towards the
image's edges (:func:`mskjax.refine.refine_probabilities`). The labels are written with the
input's affine, so they overlay the input in any viewer; ``preview`` writes a PNG of the
middle sagittal slice with the labels over it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..io import atomic_path, read_nifti, write_nifti
from ._seg_models import SEG_MODELS, normalise, volume_probabilities

_FUNC = "mskjax segment"
#: Axis codes of the training volumes (the phantom's voxel order).
TRAINING_AXCODES = ("L", "I", "P")


def _orientation(affine):
    import nibabel.orientations as ornt

    try:
        current = ornt.io_orientation(affine)
    except Exception as err:  # nibabel raises several types for degenerate affines
        raise ValueError(f"{_FUNC}: the image's affine cannot be oriented ({err})") from err
    target = ornt.axcodes2ornt(TRAINING_AXCODES)
    return ornt.ornt_transform(current, target), ornt.ornt_transform(target, current)


def _oriented_voxel_size(affine, transform, shape) -> np.ndarray:
    """Voxel sizes (mm) along the axes of the reoriented array."""
    import nibabel.orientations as ornt

    oriented = np.asarray(affine) @ ornt.inv_ornt_aff(transform, shape)
    return np.linalg.norm(oriented[:3, :3], axis=0)


def _reorient(array, transform):
    import nibabel.orientations as ornt

    return ornt.apply_orientation(array, transform)


def _check_affine(affine, path):
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
        raise ValueError(f"{_FUNC}: {path}: the NIfTI affine is singular (its 3x3 part has "
                         "determinant 0), so the voxel geometry is unknown; fix the header")


def segment_volume(name, net, volume: np.ndarray, voxel_size, *, train_voxel_size,
                   num_classes: int, refine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``uint8`` and probabilities ``(..., C)`` of a volume already in the training
    orientation, on its own grid."""
    from scipy import ndimage

    from .. import refine as refine_module

    kind = SEG_MODELS[name].kind
    factors = np.asarray(voxel_size, dtype=np.float64) / np.asarray(train_voxel_size)
    if kind == "slice":
        factors[0] = 1.0
    image = normalise(volume)
    resampled = ndimage.zoom(image, factors, order=1) if np.any(factors != 1) else image
    probs = volume_probabilities(name, net, resampled, num_classes=num_classes)
    if np.any(factors != 1):
        back = np.asarray(volume.shape) / np.asarray(probs.shape[:3])
        probs = np.stack([ndimage.zoom(probs[..., c], back, order=1, output=np.float32)
                          for c in range(num_classes)], axis=-1)
        probs = _fit(probs, volume.shape)
    if refine:
        probs = np.asarray(refine_module.refine_probabilities(
            probs, image, spacing=tuple(float(v) for v in voxel_size)))
    labels = np.argmax(probs, axis=-1)
    labels = np.asarray(refine_module.largest_component(labels, num_classes=num_classes))
    return labels.astype(np.uint8), probs


def _fit(array, shape):
    """Crop or edge-pad the first three axes of ``array`` to ``shape`` (zoom rounding)."""
    out = array[tuple(slice(0, n) for n in shape)]
    pad = [(0, n - m) for n, m in zip(shape, out.shape[:3])] + [(0, 0)] * (out.ndim - 3)
    return np.pad(out, pad, mode="edge") if any(p[1] for p in pad) else out


def _preview(path: Path, image: np.ndarray, labels: np.ndarray, num_classes: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i = image.shape[0] // 2
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax in axes:
        ax.imshow(image[i], cmap="gray")
        ax.axis("off")
    shown = np.ma.masked_equal(labels[i], 0)
    axes[1].imshow(shown, cmap="tab20", vmin=0, vmax=max(num_classes - 1, 1), alpha=0.5,
                   interpolation="nearest")
    axes[0].set_title(f"sagittal slice {i}")
    axes[1].set_title("labels")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def segment_file(image_path, *, checkpoint, out, refine: bool = False,
                 preview: str | os.PathLike | None = None) -> dict:
    """Segment one NIfTI file and write the labels (module docstring); returns a summary."""
    from ._train_seg import load_trained_seg

    out = Path(out)
    if not (out.name.endswith(".nii") or out.name.endswith(".nii.gz")):
        raise ValueError(f"{_FUNC}: --out must end in .nii or .nii.gz, got {out}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{_FUNC}: --out {out}: the folder {out.parent} does not exist")
    volume = read_nifti(image_path, dtype=np.float32)
    if volume.array.ndim != 3:
        raise ValueError(f"{_FUNC}: {image_path}: expected a 3D volume, got shape "
                         f"{volume.array.shape}")
    _check_affine(volume.affine, image_path)
    if not np.all(np.isfinite(volume.array)):
        raise ValueError(f"{_FUNC}: {image_path}: the image holds non-finite values")
    name, net, config = load_trained_seg(checkpoint, _FUNC)
    num_classes = config["train"]["num_classes"]
    forward, backward = _orientation(volume.affine)
    image = _reorient(volume.array, forward)
    voxel_size = _oriented_voxel_size(volume.affine, forward, volume.array.shape)
    tick = time.perf_counter()
    labels, _ = segment_volume(name, net, image, voxel_size,
                               train_voxel_size=config["train"]["voxel_size_mm"],
                               num_classes=num_classes, refine=refine)
    seconds = time.perf_counter() - tick
    written = _reorient(labels, backward).astype(np.uint8)
    write_nifti(out, written, affine=volume.affine)
    if preview is not None:
        _preview(Path(preview), normalise(image), labels, num_classes)
    counts = np.bincount(written.ravel(), minlength=num_classes)
    return {"model": name, "input": str(image_path), "output": str(out), "seconds": seconds,
            "voxels_per_label": counts.tolist(), "refined": refine}
