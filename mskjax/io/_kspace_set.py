"""Build a fastMRI-format multi-coil training set from magnitude (or complex) images.

Input: an ``.npz`` laid out like ``knee_axial_rss.npz``: ``images`` ``(slices, rows, cols)``
and ``subject`` ``(slices,)`` (the subject of each slice). Output: one fastMRI HDF5 file per
subject, ``kspace`` complex64 ``(slices, coils, rows, cols)`` simulated by
:func:`mskjax.sim.simulate_kspace` (normalised birdcage maps, a smooth phase per slice, complex
Gaussian noise at ``snr_db``), ``reconstruction_rss`` ``(slices, *recon_size)`` the
root-sum-of-squares of the noisy fully sampled k-space, centre-cropped or zero-padded to
``recon_size`` (fastMRI's 320 x 320), and attributes ``max``, ``norm``, ``patient_id``
(the subject) and ``acquisition`` (``"simulated"``). Subjects are split into ``train/`` and
``val/`` folders (never a subject in both), or written into one folder with ``split=None``.
A ``manifest.json`` records the settings and the split.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from .._checks import check_interval, check_positive_int
from ..coils import rss
from ..fourier import ifftnc
from ..sim import simulate_kspace
from ._atomic import atomic_folder, check_output_folder
from ._fastmri import ismrmrd_header_xml, write_fastmri

_FUNC = "mskjax.io.make_kspace_set"


def _load_images(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"{_FUNC}: {path}: no such file")
    try:
        archive = np.load(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{_FUNC}: {path}: not a readable .npz file ({err})") from err
    with archive:
        missing = [k for k in ("images", "subject") if k not in archive.files]
        if missing:
            raise ValueError(f"{_FUNC}: {path}: missing key(s) {missing}; expected 'images' "
                             f"(slices, rows, cols) and 'subject' (slices,), found "
                             f"{archive.files}")
        images, subjects = archive["images"], archive["subject"]
    if images.ndim != 3:
        raise ValueError(f"{_FUNC}: {path}: key 'images' must be (slices, rows, cols), got "
                         f"shape {images.shape}")
    if subjects.shape != images.shape[:1]:
        raise ValueError(f"{_FUNC}: {path}: key 'subject' must be ({images.shape[0]},) like "
                         f"'images', got shape {subjects.shape}")
    if not (np.issubdtype(images.dtype, np.number) and np.all(np.isfinite(images))):
        raise ValueError(f"{_FUNC}: {path}: key 'images' must hold finite numbers")
    return images, subjects.astype(str)


def file_stem(subject: str) -> str:
    """A file name for a subject id: path separators and odd characters become ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", subject).strip("._")
    return stem or "subject"


def centre_crop_or_pad(image, size):
    """Centre-crop or zero-pad the last two axes of ``image`` to ``size``."""
    out = np.zeros((*image.shape[:-2], *size), image.dtype)
    src, dst = [], []
    for n, m in zip(image.shape[-2:], size):
        if n >= m:
            start = (n - m) // 2
            src.append(slice(start, start + m))
            dst.append(slice(0, m))
        else:
            start = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[(..., *dst)] = image[(..., *src)]
    return out


def split_subjects(subjects, *, val_fraction, seed):
    """Deterministically split unique subjects into ``(train, val)`` lists."""
    unique = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(unique))
    num_val = max(1, round(val_fraction * len(unique))) if len(unique) > 1 else 0
    val = sorted(unique[i] for i in order[:num_val])
    train = sorted(unique[i] for i in order[num_val:])
    return train, val


def make_kspace_set(images: str | os.PathLike, out: str | os.PathLike, *, num_coils: int = 8,
                    snr_db: float = 30.0, seed: int = 0, split: str | None = "subject",
                    val_fraction: float = 0.25, recon_size: tuple[int, int] = (320, 320),
                    progress: bool = True, overwrite: bool = False) -> dict:
    """Write a fastMRI-format multi-coil set, one file per subject (see the module docstring).

    The set is built in a temporary folder beside ``out`` and renamed onto ``out`` when
    complete, so a failed or interrupted run leaves nothing under ``out`` (and a previous set
    there intact).

    Args:
        images: path of the ``.npz`` with ``images`` and ``subject``.
        out: output folder (created; must not exist or be empty unless ``overwrite``).
        num_coils: simulated receive coils (keyword-only).
        snr_db: SNR of the simulated noise in dB.
        seed: seeds the phase, the noise and the split.
        split: ``"subject"`` (train/val folders, split by subject) or ``None`` (one folder).
        val_fraction: fraction of subjects in ``val/`` (at least one when there are two or more).
        recon_size: ``(rows, cols)`` of ``reconstruction_rss``.
        progress: show a progress bar.
        overwrite: replace an existing non-empty ``out`` as a whole (never mixed with it).

    Returns:
        The manifest dictionary (also written to ``out/manifest.json``).
    """
    check_positive_int(num_coils, "num_coils", _FUNC)
    check_interval(snr_db, "snr_db", _FUNC)
    check_interval(val_fraction, "val_fraction", _FUNC, low=0, high=1)
    if split not in ("subject", None):
        raise ValueError(f"{_FUNC}: split must be 'subject' or None, got {split!r}")
    images_path = Path(images)
    out = check_output_folder(out, overwrite=overwrite, func=_FUNC)
    data, subjects = _load_images(images_path)
    if split == "subject":
        train, val = split_subjects(subjects, val_fraction=val_fraction, seed=seed)
        folders = {**{s: "train" for s in train}, **{s: "val" for s in val}}
    else:
        folders = {s: "." for s in set(subjects)}
    stems = {s: file_stem(s) for s in folders}
    if len(set(stems.values())) != len(stems):
        raise ValueError(f"{_FUNC}: subject ids {sorted(stems)} map to clashing file names")

    simulate = jax.jit(jax.vmap(
        lambda image, key: simulate_kspace(image, key, num_coils=num_coils, snr_db=snr_db).kspace))
    base_key = jax.random.key(seed)
    rows, cols = data.shape[1:]
    header = ismrmrd_header_xml(encoded_matrix=(rows, cols, 1), recon_matrix=(*recon_size, 1),
                                encoded_fov_mm=(float(rows), float(cols), 1.0),
                                recon_fov_mm=(float(recon_size[0]), float(recon_size[1]), 1.0))
    with atomic_folder(out, overwrite=overwrite, func=_FUNC) as build:
        return _write_set(build, data, subjects, folders, stems, simulate, base_key, header,
                          recon_size, images_path, progress,
                          {"num_coils": num_coils, "snr_db": snr_db, "seed": seed,
                           "split": split, "val_fraction": val_fraction,
                           "recon_size": list(recon_size)})


def _write_set(out, data, subjects, folders, stems, simulate, base_key, header, recon_size,
               images_path, progress, settings):
    written = {}
    for subject in tqdm(sorted(folders), desc="simulating k-space", unit="subject",
                        disable=not progress):
        index = np.flatnonzero(subjects == subject)
        keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(index)
        kspace = np.asarray(simulate(np.asarray(data[index]), keys))
        target = np.asarray(rss(ifftnc(kspace, axes=(-2, -1)), axis=1))
        target = centre_crop_or_pad(target, recon_size).astype(np.float32)
        folder = out / folders[subject]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stems[subject]}.h5"
        write_fastmri(path, kspace, reconstruction=target, header=header,
                      acquisition="simulated", patient_id=str(subject))
        written[subject] = str(path.relative_to(out))
    manifest = {
        "source": str(images_path),
        "simulation": (f"{settings['num_coils']}-coil k-space simulated from the images with "
                       f"normalised birdcage maps, a smooth random phase per slice and complex "
                       f"Gaussian noise at {settings['snr_db']} dB SNR"),
        "settings": settings,
        "files": written,
        "splits": {name: sorted(s for s, f in folders.items() if f == name)
                   for name in sorted(set(folders.values()))},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
