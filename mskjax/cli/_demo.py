"""``mskjax demo``: simulate multi-coil k-space from an image, undersample, reconstruct, score.

The k-space is simulated (the project ships no multi-coil knee k-space) by
:func:`mskjax.sim.simulate_kspace`: normalised birdcage coil maps, a smooth background phase
when the image is magnitude only, and complex Gaussian noise at the stated SNR. Cartesian
k-space is undersampled by a fastMRI mask here; radial and spiral k-space
(``trajectory=``) are simulated and reconstructed by :mod:`mskjax.cli._demo_noncartesian`.
"""

from __future__ import annotations

import functools
import platform
import shutil
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from .. import __version__, coils, metrics, pipeline, recon, sampling
from ..sim import knee_phantom, render, simulate_kspace
from ._files import atomic_path, read_image, write_json


def simulated_knee(seed: int, size: int = 320):
    """A sagittal PD fat-suppressed slice through the medial condyle of the knee phantom."""
    key = jax.random.key(seed)
    anatomy = knee_phantom(key, shape=(16, 16, 16)).anatomy
    voxel = 160.0 / size
    index = int(np.clip(round(float(anatomy.condyle_centres[0, 0]) / voxel + (size - 1) / 2),
                        0, size - 1))
    phantom = knee_phantom(key, shape=(size, size, size), slice_axis=0, slice_index=index)
    image = np.asarray(render(phantom, contrast="pd_fs", key=key, texture=0.05))
    return image, (f"simulated knee (phantom seed {seed}), sagittal PD fat-suppressed slice "
                   f"{index} of {size}, {voxel:.2f} mm pixels")


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _figure(path, target, kspace, mask, recons, scores, title, *, kspace_panel=None):
    """The figure; ``kspace_panel(ax)``, when given, draws the lower-left panel instead of the
    sampled Cartesian k-space (``kspace`` and ``mask`` are then unused)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmax = float(np.percentile(target, 99.5))
    fig, axes = plt.subplots(2, 1 + len(recons), figsize=(3.4 * (1 + len(recons)), 7.2),
                             constrained_layout=True)
    axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("fully sampled (root-sum-of-squares)", fontsize=9)
    if kspace_panel is None:
        log_k = np.log10(np.abs(kspace).sum(axis=0) + 1e-12)
        low, high = np.percentile(log_k[mask], [5, 99.9])
        axes[1, 0].imshow(np.where(mask, log_k, low), cmap="gray", vmin=low, vmax=high)
        axes[1, 0].set_title(f"sampled k-space, log scale ({np.mean(mask):.1%})", fontsize=9)
    else:
        kspace_panel(axes[1, 0])
    for column, (name, image) in enumerate(recons.items(), start=1):
        score = scores[name]
        axes[0, column].imshow(image, cmap="gray", vmin=0, vmax=vmax)
        axes[0, column].set_title(f"{name}\nPSNR {score['psnr_db']:.2f} dB, SSIM "
                                  f"{score['ssim']:.4f}", fontsize=9)
        axes[1, column].imshow(np.abs(image - target), cmap="inferno", vmin=0, vmax=vmax / 5)
        axes[1, column].set_title(f"|error| x 5, {name}", fontsize=9)
    for ax in axes.ravel():
        if kspace_panel is None or ax is not axes[1, 0]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _environment() -> dict:
    """The machine and versions fields of ``metrics.json``."""
    return {"machine": {"platform": platform.platform(), "backend": jax.default_backend(),
                        "devices": [str(d) for d in jax.devices()]},
            "versions": {"mskjax": __version__, "jax": jax.__version__,
                         "numpy": np.__version__}}


def _finish(out, report, draw_figure, *, seed, segment, seg_steps, seg_checkpoint, classify,
            cls_steps, cls_checkpoint, bar) -> dict:
    """The segmentation and detection parts, ``metrics.json`` and the figure."""
    if segment:
        from ._demo_seg import segmentation_and_t2

        bar.set_postfix_str("segmentation + T2 map")
        report["segmentation_t2"] = segmentation_and_t2(out, seed=seed, steps=seg_steps,
                                                        checkpoint=seg_checkpoint)
        bar.update()
    if classify:
        from ._demo_cls import detection

        bar.set_postfix_str("lesion detection + activation maps")
        report["detection"] = detection(out, seed=seed, steps=cls_steps,
                                        checkpoint=cls_checkpoint)
        bar.update()
    write_json(out / "metrics.json", report)
    bar.update()

    bar.set_postfix_str("figure")
    draw_figure(out / "figure.png")
    bar.update()
    bar.close()
    return report


def run_demo(*, data=None, slice_index=None, out="mskjax-demo", num_coils=8, acceleration=None,
             center_fraction=None, snr_db=30.0, seed=0, l1_lamda=None, checkpoint=None,
             seg_steps=1000, seg_checkpoint=None, cls_steps=300, cls_checkpoint=None,
             progress=True, trajectory="cartesian", spokes=None, interleaves=None,
             density=None) -> dict:
    """Run the demo and write ``figure.png``, ``segmentation_t2.png`` and ``metrics.json``
    into ``out``.

    ``trajectory="cartesian"`` undersamples with a fastMRI equispaced mask (``acceleration``,
    default 4, and ``center_fraction``, default 0.08). ``"radial"`` (golden-angle spokes,
    ``spokes``, default a quarter of the ``pi / 2 * n`` of the Nyquist rate) and ``"spiral"``
    (``interleaves``, default 16 of the 64 of the Nyquist rate at the edge) simulate
    non-Cartesian k-space instead and reconstruct it by gridding, NUFFT CG-SENSE and
    L1-wavelet with ``density`` compensation (``"ramp"``, radial only, or ``"pipe-menon"``;
    default ramp for radial, Pipe-Menon for spiral); see :mod:`mskjax.cli._demo_noncartesian`.
    Options of one kind of sampling given with another are refused. ``l1_lamda`` defaults to
    0.002 (Cartesian) or 0.005 (non-Cartesian).

    The segmentation and T2 part (:mod:`mskjax.cli._demo_seg`) uses ``seg_checkpoint`` (a
    ``mskjax train seg`` run of a 2D model) or trains a small U-Net for ``seg_steps`` steps;
    ``seg_steps=0`` without a checkpoint leaves it out. The detection part
    (:mod:`mskjax.cli._demo_cls`, ``detection.png``) likewise uses ``cls_checkpoint`` (a
    ``mskjax train cls`` run of a binary 2D classifier) or trains a small ResNet for
    ``cls_steps`` steps; ``cls_steps=0`` without a checkpoint leaves it out.

    Returns:
        The metrics dictionary that was written.
    """
    from ._demo_noncartesian import check_trajectory_options

    out = Path(out)
    if isinstance(seg_steps, bool) or not isinstance(seg_steps, int) or seg_steps < 0:
        raise ValueError(f"mskjax demo: --seg-steps must be an integer >= 0, got {seg_steps!r}")
    if isinstance(cls_steps, bool) or not isinstance(cls_steps, int) or cls_steps < 0:
        raise ValueError(f"mskjax demo: --cls-steps must be an integer >= 0, got {cls_steps!r}")
    if isinstance(num_coils, bool) or not isinstance(num_coils, int) or num_coils < 1:
        raise ValueError(f"mskjax demo: --coils must be a positive integer, got {num_coils!r}")
    check_trajectory_options(trajectory=trajectory, spokes=spokes, interleaves=interleaves,
                             density=density, acceleration=acceleration,
                             center_fraction=center_fraction, checkpoint=checkpoint)
    if out.exists() and not out.is_dir():
        raise ValueError(f"mskjax demo: --out {out} is a file, not a folder")
    created = not out.exists()
    try:
        return _run_demo(
            data=data, slice_index=slice_index, out=out, num_coils=num_coils,
            acceleration=acceleration, center_fraction=center_fraction, snr_db=snr_db,
            seed=seed, l1_lamda=l1_lamda, checkpoint=checkpoint, seg_steps=seg_steps,
            seg_checkpoint=seg_checkpoint, cls_steps=cls_steps, cls_checkpoint=cls_checkpoint,
            progress=progress, trajectory=trajectory, spokes=spokes, interleaves=interleaves,
            density=density)
    except BaseException:
        if created:  # a failed or interrupted demo leaves no folder of its own behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run_demo(*, data, slice_index, out, num_coils, acceleration, center_fraction, snr_db, seed,
              l1_lamda, checkpoint, seg_steps, seg_checkpoint, cls_steps, cls_checkpoint,
              progress, trajectory, spokes, interleaves, density) -> dict:
    from ._demo_noncartesian import L1_LAMDA

    segment = seg_steps > 0 or seg_checkpoint is not None
    classify = cls_steps > 0 or cls_checkpoint is not None
    if data is None:
        image, description = simulated_knee(seed)
    else:
        image, description = read_image(Path(data), index=slice_index)
    peak = float(np.abs(image).max()) if image.size else 0.0
    if not peak > 0:
        raise ValueError(f"mskjax demo: --data {description} is all zero; the demo needs an "
                         "image with signal")
    image = image / peak
    if trajectory == "cartesian":  # the mask options, checked before the slow simulation
        acceleration = 4 if acceleration is None else acceleration
        center_fraction = 0.08 if center_fraction is None else center_fraction
        mask, num_low = sampling.equispaced_mask((num_coils, *image.shape),
                                                 center_fraction=center_fraction,
                                                 acceleration=acceleration, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=6 + segment + classify, desc="mskjax demo", unit="step", disable=not progress)
    finish = functools.partial(_finish, out, seed=seed, segment=segment, seg_steps=seg_steps,
                               seg_checkpoint=seg_checkpoint, classify=classify,
                               cls_steps=cls_steps, cls_checkpoint=cls_checkpoint, bar=bar)

    bar.set_postfix_str("load image")
    bar.update()

    if trajectory != "cartesian":
        from ._demo_noncartesian import draw_trajectory, noncartesian_demo

        part, target, recons, scores, coords = noncartesian_demo(
            image, kind=trajectory, count=spokes if trajectory == "radial" else interleaves,
            density_method=density, num_coils=num_coils, snr_db=snr_db, seed=seed,
            l1_lamda=L1_LAMDA if l1_lamda is None else l1_lamda, bar=bar)
        report = {"input": description, **part, **_environment()}
        info = part["trajectory"]
        lines = (f"{info['spokes']} spokes" if trajectory == "radial"
                 else f"{info['interleaves']} interleaves")
        factor = f"{info['undersampling_factor']:.1f}x"
        panel = functools.partial(draw_trajectory, coords=coords, shape=image.shape,
                                  title=f"{trajectory}: {lines} ({factor})")
        title = (f"{description}\n{info['type'].split(' (')[0]}, {lines} of "
                 f"{coords.shape[1]} samples, {factor} undersampled; {num_coils} simulated "
                 f"coils, {part['density']['method']} density")
        return finish(report, lambda path: _figure(path, target, None, None, recons, scores,
                                                   title, kspace_panel=panel))

    l1_lamda = 0.002 if l1_lamda is None else l1_lamda
    bar.set_postfix_str("simulate k-space")
    kspace = simulate_kspace(image, jax.random.key(seed), num_coils=num_coils,
                             snr_db=snr_db).kspace
    target = recon.zero_filled(kspace)
    bar.update()

    bar.set_postfix_str("undersample + zero-filled")
    pipe = pipeline.chain(pipeline.undersample(mask), pipeline.zero_filled())
    sample = pipeline.Sample(kspace=kspace)
    params = pipe.init(jax.random.key(seed), sample)
    run = jax.jit(pipe.apply)
    start = time.perf_counter()
    result = jax.block_until_ready(run(params, sample))
    first_call = time.perf_counter() - start
    steady = _median_time(lambda: run(params, sample), repeats=5)
    undersampled = result.kspace
    bar.update()

    bar.set_postfix_str("ESPIRiT + CG-SENSE + L1-wavelet")
    calib = max(8, min(24, int(num_low)))
    # A kernel of at most half the calibration width: on a small image the region is narrow
    # (8 lines around 3 fully sampled ones at 48 x 40), and a wider kernel leaves too few
    # shifts for ESPIRiT to find the signal space (every eigenvalue below its crop).
    maps = coils.espirit(undersampled, calib_width=(24, calib),
                         kernel_width=min(6, max(3, calib // 2)))
    recons = {
        "zero-filled": np.asarray(result.image),
        "CG-SENSE": np.abs(np.asarray(recon.cg_sense(undersampled, maps, mask=mask,
                                                     lamda=0.01, max_iter=30).image)),
        "L1-wavelet": np.abs(np.asarray(recon.l1_wavelet(undersampled, maps, mask=mask,
                                                         lamda=l1_lamda, max_iter=50).image)),
    }
    methods = {"zero-filled": "root-sum-of-squares of the zero-filled coil images",
               "CG-SENSE": "ESPIRiT maps from the centre lines, lamda 0.01, 30 iterations",
               "L1-wavelet": f"ESPIRiT maps, db4, lamda {l1_lamda}, 50 FISTA iterations"}
    if checkpoint is not None:
        from ._train_recon import learned_method, load_trained

        name, net, config = load_trained(checkpoint, "mskjax demo")
        learned = jax.jit(learned_method(name, net), static_argnums=2)
        recons[name] = np.asarray(learned(undersampled, mask, int(num_low)))
        methods[name] = (f"trained {name} from {checkpoint} (step "
                         f"{config['step']}), "
                         f"{config['model']['kwargs']}")
    bar.update()

    bar.set_postfix_str("metrics")
    gt = np.asarray(target)[None]
    scores = {
        name: {"nmse": float(metrics.nmse(gt, image[None])),
               "psnr_db": float(metrics.psnr(gt, image[None])),
               "ssim": float(metrics.ssim(gt, image[None]))}
        for name, image in recons.items()
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
        "methods": methods,
        "metrics": scores,
        "timing_s": {"zero_filled_pipeline_first_call_including_compilation": first_call,
                     "zero_filled_pipeline_steady_state_median_of_5": steady},
        **_environment(),
    }
    return finish(report, lambda path: _figure(
        path, gt[0], np.asarray(undersampled), np.broadcast_to(mask, kspace.shape[1:]), recons,
        scores, f"{description}; {acceleration}x equispaced, {num_coils} simulated coils"))
