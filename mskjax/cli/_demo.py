"""``mskjax demo``: simulate multi-coil k-space from an image, undersample, reconstruct, score.

The k-space is simulated (the project ships no multi-coil knee k-space) by
:func:`mskjax.sim.simulate_kspace`: normalised birdcage coil maps, a smooth background phase
when the image is magnitude only, and complex Gaussian noise at the stated SNR.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from .. import __version__, metrics, pipeline, sampling
from ..recon import zero_filled
from ..sim import knee_section
from ..sim._kspace import simulate_kspace
from ._files import atomic_path, read_image, write_json


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _figure(path, target, kspace, mask, recon, title_bits):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmax = float(np.percentile(target, 99.5))
    error = np.abs(recon - target)
    log_k = np.log10(np.abs(kspace).sum(axis=0) + 1e-12)
    low, high = np.percentile(log_k[mask], [5, 99.9])
    fig, axes = plt.subplots(1, 4, figsize=(14, 4.4), constrained_layout=True)
    panels = [
        (target, "fully sampled (root-sum-of-squares)", dict(cmap="gray", vmin=0, vmax=vmax)),
        (np.where(mask, log_k, low), f"sampled k-space, log scale ({title_bits['fraction']:.1%})",
         dict(cmap="gray", vmin=low, vmax=high)),
        (recon, f"zero-filled, {title_bits['acceleration']}x\nPSNR {title_bits['psnr_db']:.2f} dB,"
                f" SSIM {title_bits['ssim']:.4f}", dict(cmap="gray", vmin=0, vmax=vmax)),
        (error, "|error| x 5", dict(cmap="inferno", vmin=0, vmax=vmax / 5)),
    ]
    for ax, (img, title, kw) in zip(axes, panels):
        ax.imshow(img, **kw)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(title_bits["input"], fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_demo(*, data=None, slice_index=None, out="mskjax-demo", num_coils=8, acceleration=4,
             center_fraction=0.08, snr_db=30.0, seed=0, progress=True) -> dict:
    """Run the demo and write ``figure.png`` and ``metrics.json`` into ``out``.

    Returns:
        The metrics dictionary that was written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=5, desc="mskjax demo", unit="step", disable=not progress)

    bar.set_postfix_str("load image")
    if data is None:
        image, description = np.asarray(knee_section((320, 256))), "built-in knee cross-section"
    else:
        image, description = read_image(Path(data), index=slice_index)
    image = image / np.abs(image).max()
    bar.update()

    bar.set_postfix_str("simulate k-space")
    kspace = simulate_kspace(image, jax.random.key(seed), num_coils=num_coils,
                             snr_db=snr_db).kspace
    mask, num_low = sampling.equispaced_mask(kspace.shape, center_fraction=center_fraction,
                                             acceleration=acceleration, seed=seed)
    target = zero_filled(kspace)
    bar.update()

    bar.set_postfix_str("undersample + reconstruct")
    pipe = pipeline.chain(pipeline.undersample(mask), pipeline.zero_filled())
    sample = pipeline.Sample(kspace=kspace)
    params = pipe.init(jax.random.key(seed), sample)
    run = jax.jit(pipe.apply)
    start = time.perf_counter()
    result = jax.block_until_ready(run(params, sample))
    first_call = time.perf_counter() - start
    steady = _median_time(lambda: run(params, sample), repeats=5)
    bar.update()

    bar.set_postfix_str("metrics")
    gt, pred = np.asarray(target)[None], np.asarray(result.image)[None]
    scores = {
        "nmse": float(metrics.nmse(gt, pred)),
        "psnr_db": float(metrics.psnr(gt, pred)),
        "ssim": float(metrics.ssim(gt, pred)),
    }
    fraction = float(np.mean(mask))
    report = {
        "input": description,
        "simulation": (f"{num_coils}-coil k-space simulated with normalised birdcage maps"
                       + ("" if np.iscomplexobj(image) else ", a smooth background phase")
                       + f" and complex Gaussian noise at {snr_db} dB SNR"),
        "shape": list(image.shape),
        "coils": num_coils,
        "mask": {"type": "equispaced (fastMRI EquiSpacedMaskFunc)", "acceleration": acceleration,
                 "center_fraction": center_fraction, "num_low_frequencies": int(num_low),
                 "sampled_fraction": fraction, "seed": seed},
        "reference": "root-sum-of-squares of the fully sampled simulated k-space",
        "metrics": {"zero_filled": scores},
        "timing_s": {"first_call_including_compilation": first_call,
                     "steady_state_median_of_5": steady},
        "machine": {"platform": platform.platform(), "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()]},
        "versions": {"mskjax": __version__, "jax": jax.__version__, "numpy": np.__version__},
    }
    write_json(out / "metrics.json", report)
    bar.update()

    bar.set_postfix_str("figure")
    _figure(out / "figure.png", gt[0], np.asarray(result.kspace), np.broadcast_to(
        mask, kspace.shape[1:]), pred[0], dict(input=description, fraction=fraction,
                                               acceleration=acceleration, **scores))
    bar.update()
    bar.close()
    return report
