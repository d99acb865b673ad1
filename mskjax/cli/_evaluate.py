"""Score reconstructions of a folder of fastMRI files with fastMRI's masks and metrics.

Every slice of every file is undersampled with fastMRI's deterministic mask for that file (the
seed is ``tuple(map(ord, fname))``, :func:`mskjax.train.fastmri_eval_example`), reconstructed by
each method, and compared with the root-sum-of-squares of the fully sampled k-space. Metrics are
fastMRI's (:mod:`mskjax.metrics`): NMSE, PSNR and SSIM per volume (a file), with the volume's
maximum as the data range; the overall numbers are the means over volumes, as
``fastmri.evaluate`` reports them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from .. import metrics, recon
from ..io import fastmri_slices, read_fastmri
from ..train import fastmri_eval_example
from ._learned import input_scale, num_low_frequencies, sensitivity_maps

#: A method: ``fn(kspace (coils, rows, cols), mask (cols,), num_low) -> image (rows, cols)``.
Method = Callable[[jax.Array, jax.Array, int], jax.Array]


def data_files(folder: str | os.PathLike, split: str, func: str) -> list[Path]:
    """The ``.h5`` files of ``folder/split`` (a make-kspace-set folder) or of ``folder``; only
    those its manifest lists when the set has one (as :func:`mskjax.io.fastmri_slices`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{func}: {folder}: no such folder")
    sub = folder / split
    chosen = sub if sub.is_dir() else folder
    files = sorted(chosen.glob("*.h5"))
    if not files:
        where = f"{sub} or {folder}" if chosen is folder else str(sub)
        raise ValueError(f"{func}: no fastMRI .h5 files in {where}; make a set with "
                         "`mskjax data make-kspace-set`")
    return sorted({path for path, _ in fastmri_slices(chosen)})


def read_fully_sampled(path: Path, func: str) -> np.ndarray:
    """The multi-coil k-space ``(slices, coils, rows, cols)`` of a fully sampled file."""
    try:
        with read_fastmri(path) as f:
            if not f.multicoil:
                raise ValueError(f"{func}: {path}: single-coil k-space; the reconstruction "
                                 "models need multi-coil data")
            if f.mask is not None:
                raise ValueError(f"{func}: {path}: the file holds undersampled k-space (it has "
                                 "a 'mask'); training and evaluation need fully sampled files")
            kspace = np.asarray(f.kspace[...])
    except OSError as err:
        raise ValueError(f"{func}: {path}: not a readable fastMRI file ({err})") from err
    if not np.all(np.isfinite(kspace)):
        raise ValueError(f"{func}: {path}: k-space holds NaN or infinity")
    return kspace


def classical_methods(*, cg_lamda: float, l1_lamda: float | None, cg_iter: int = 30,
                      l1_iter: int = 50) -> dict[str, Method]:
    """Zero-filled, CG-SENSE and (when ``l1_lamda`` is given) L1-wavelet, with ESPIRiT maps.

    CG-SENSE's ``lamda`` is relative to ``A^H A`` (the maps have unit root-sum-of-squares),
    so it does not depend on the data's units; L1-wavelet's is in units of the zero-filled
    image's maximum (:func:`mskjax.cli._learned.input_scale`).
    """

    def zero_filled(kspace, mask, num_low):
        return recon.zero_filled(kspace)

    def cg_sense(kspace, mask, num_low):
        maps = sensitivity_maps(kspace, num_low)
        return jax.numpy.abs(recon.cg_sense(kspace, maps, mask=mask, lamda=cg_lamda,
                                            max_iter=cg_iter).image)

    def l1_wavelet(kspace, mask, num_low):
        # lamda in units of the zero-filled image's maximum, like the learned models' data.
        scale = input_scale(kspace)
        kspace = kspace / scale.astype(kspace.dtype)
        maps = sensitivity_maps(kspace, num_low)
        image = recon.l1_wavelet(kspace, maps, mask=mask, lamda=l1_lamda,
                                 max_iter=l1_iter).image
        return jax.numpy.abs(image) * scale

    methods = {"zero-filled": zero_filled, "CG-SENSE": cg_sense}
    if l1_lamda is not None:
        methods["L1-wavelet"] = l1_wavelet
    return methods


def crop_common(a, b):
    """Both arrays centre-cropped to their common trailing ``(rows, cols)``."""
    rows, cols = min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1])

    def crop(x):
        r0, c0 = (x.shape[-2] - rows) // 2, (x.shape[-1] - cols) // 2
        return x[..., r0:r0 + rows, c0:c0 + cols]

    return crop(a), crop(b)


def volume_scores(target: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """fastMRI's NMSE, PSNR (dB) and SSIM of a volume ``(slices, rows, cols)``."""
    target, image = crop_common(np.asarray(target, np.float32), np.asarray(image, np.float32))
    return {"nmse": float(metrics.nmse(target, image)),
            "psnr_db": float(metrics.psnr(target, image)),
            "ssim": float(metrics.ssim(target, image))}


def evaluate_methods(files: list[Path], methods: dict[str, Method], *, acceleration: int,
                     center_fraction: float, mask: str = "equispaced", progress: bool = True,
                     keep_images: bool = False, func: str = "mskjax eval recon") -> dict:
    """Score every method on every file (see the module docstring).

    Returns:
        ``{"volumes": {fname: {method: scores}}, "overall": {method: mean scores},
        "images": {fname: {"target": ..., method: ...}}}`` (images only with ``keep_images``).
    """
    jitted = {name: jax.jit(fn, static_argnums=2) for name, fn in methods.items()}
    volumes, images = {}, {}
    total = 0
    kspaces = {}
    for path in files:
        kspaces[path] = read_fully_sampled(path, func)
        total += kspaces[path].shape[0] * len(methods)
    bar = tqdm(total=total, desc="evaluating", unit="recon", disable=not progress)
    for path in files:
        kspace = kspaces[path]
        num_low = num_low_frequencies(kspace.shape[-1], center_fraction)
        examples = [fastmri_eval_example(k, fname=path.name, acceleration=acceleration,
                                         center_fraction=center_fraction, mask=mask)
                    for k in kspace]
        target = np.stack([np.asarray(e.target) for e in examples])
        outputs = {}
        for name, fn in jitted.items():
            slices = []
            for example in examples:
                slices.append(np.asarray(fn(example.kspace, example.mask, num_low)))
                bar.update()
            outputs[name] = np.stack(slices)
        volumes[path.name] = {name: volume_scores(target, image)
                              for name, image in outputs.items()}
        if keep_images:
            images[path.name] = {"target": target, **outputs}
    bar.close()
    overall = {name: {key: float(np.mean([v[name][key] for v in volumes.values()]))
                      for key in ("nmse", "psnr_db", "ssim")} for name in methods}
    result = {"volumes": volumes, "overall": overall}
    if keep_images:
        result["images"] = images
    return result


def format_table(result: dict) -> str:
    """Per-volume and overall scores as a text table."""
    methods = list(result["overall"])
    width = max(12, *(len(m) for m in methods))
    lines = [f"{'volume':<24} {'method':<{width}} {'NMSE':>8} {'PSNR dB':>8} {'SSIM':>7}"]
    for fname, scores in result["volumes"].items():
        for name in methods:
            s = scores[name]
            lines.append(f"{fname:<24} {name:<{width}} {s['nmse']:8.4f} {s['psnr_db']:8.2f} "
                         f"{s['ssim']:7.4f}")
    for name in methods:
        s = result["overall"][name]
        lines.append(f"{'overall (mean)':<24} {name:<{width}} {s['nmse']:8.4f} "
                     f"{s['psnr_db']:8.2f} {s['ssim']:7.4f}")
    return "\n".join(lines)
