"""Learned against classical reconstruction on held-out knees, at 4x and 8x.

Data: the 16 real axial knee subjects of ``knee_axial_rss`` (one 320 x 256 slice each), made
into 8-coil k-space by ``mskjax data make-kspace-set`` (simulated birdcage coils, a smooth
phase, complex Gaussian noise at 30 dB; simulated multi-coil data, stated in the output), split
by subject: 12 training subjects, 4 held-out subjects. Nothing of the held-out subjects is seen
in training or tuning.

Methods, at fastMRI's equispaced masks (4x with 8 % centre lines, 8x with 4 %):

- classical: zero-filled, CG-SENSE and L1-wavelet (db4) with ESPIRiT maps from the centre
  lines, their ``lamda`` chosen on the 12 training subjects (the best mean SSIM on a grid);
- learned: ``unet``, ``e2e-varnet``, ``varnet`` and ``modl`` (the sizes of
  ``mskjax.cli._learned.MODELS`` unless ``--config`` says otherwise), each trained by
  ``mskjax train recon`` for ``--minutes`` of training time per net and acceleration (compile
  time apart) on the 12 training slices with on-device augmentation (a new mask every step, new
  coil maps, phase, left-right flips, scale, noise at 20-40 dB) on random bands of
  ``--patch-rows`` of the 320 image rows (the fully sampled readout axis: the same
  undersampling, cheaper steps), batch 1, Adam ``lr`` 1e-3, SSIM loss. Evaluation uses whole
  slices.

Evaluation: every held-out slice is undersampled with fastMRI's mask for its file (seeded by
the file name) and scored with fastMRI's NMSE, PSNR and SSIM per volume; the tables report the
mean over the 4 held-out volumes and, for each learned net, the gain over the best classical
method. Writes ``benchmarks/results/learned_recon.json`` and ``learned_recon.png`` (target,
every method, error maps, for one held-out slice per acceleration).

    python benchmarks/learned_recon.py [--minutes 5] [--nets unet,e2e-varnet,varnet,modl]
        [--accelerations 4,8] [--out benchmarks/results/learned_recon]

A net trained by an earlier run of the script (its run folder holds ``summary.json``) is not
trained again, and the tuned ``lamda`` are kept in ``tuned_<R>x.json``: running the command
again with more nets trains only the new ones and re-evaluates all of them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

import mskjax
from mskjax.cli._evaluate import (classical_methods, crop_common, evaluate_methods, format_table)
from mskjax.cli._learned import MODELS
from mskjax.cli._train_recon import learned_method, load_trained, train_recon
from _common import knee_kspace_set

ROOT = Path(__file__).resolve().parent
CENTER_FRACTION = {4: 0.08, 8: 0.04}
CG_GRID = [0.001, 0.003, 0.01, 0.03, 0.1]
L1_GRID = [0.0003, 0.001, 0.003, 0.01, 0.03]


def tune_classical(files, acceleration, log):
    """The CG-SENSE and L1-wavelet ``lamda`` with the best mean SSIM on the training files."""
    cf = CENTER_FRACTION[acceleration]
    best = {}
    for method, grid in (("CG-SENSE", CG_GRID), ("L1-wavelet", L1_GRID)):
        scores = {}
        for lamda in grid:
            kwargs = {"cg_lamda": lamda, "l1_lamda": None} if method == "CG-SENSE" else \
                {"cg_lamda": 0.01, "l1_lamda": lamda}
            methods = {method: classical_methods(**kwargs)[method]}
            result = evaluate_methods(files, methods, acceleration=acceleration,
                                      center_fraction=cf, progress=False)
            scores[lamda] = result["overall"][method]
            log(f"  tune {method} {acceleration}x lamda {lamda:g}: SSIM "
                f"{scores[lamda]['ssim']:.4f} PSNR {scores[lamda]['psnr_db']:.2f}")
        lamda = max(scores, key=lambda k: scores[k]["ssim"])
        best[method] = {"lamda": lamda, "grid": {str(k): v for k, v in scores.items()}}
    return best


def figure(path, images, scores, acceleration, fname):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = images["target"][0]
    methods = [m for m in images if m != "target"]
    vmax = float(np.percentile(target, 99.5))
    fig, axes = plt.subplots(2, 1 + len(methods), figsize=(2.6 * (1 + len(methods)), 6),
                             constrained_layout=True)
    axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("target (fully sampled RSS)", fontsize=8)
    axes[1, 0].axis("off")
    for i, name in enumerate(methods, start=1):
        ref, image = crop_common(target, images[name][0])
        axes[0, i].imshow(image, cmap="gray", vmin=0, vmax=vmax)
        axes[0, i].set_title(f"{name}\nSSIM {scores[name]['ssim']:.3f}, "
                             f"PSNR {scores[name]['psnr_db']:.1f} dB", fontsize=8)
        axes[1, i].imshow(np.abs(image - ref), cmap="inferno", vmin=0, vmax=vmax / 5)
        axes[1, i].set_title(f"|error| x 5, {name}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"held-out {fname}, {acceleration}x equispaced, 8 simulated coils", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="training time per net and acceleration (default 5)")
    parser.add_argument("--nets", default="unet,e2e-varnet,varnet,modl")
    parser.add_argument("--accelerations", default="4,8")
    parser.add_argument("--out", default=str(ROOT / "results" / "learned_recon"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch-rows", type=int, default=160,
                        help="train on random bands of this many of the 320 image rows")
    args = parser.parse_args(argv)
    nets = [n for n in args.nets.split(",") if n]
    for n in nets:
        if n not in MODELS:
            parser.error(f"unknown net {n!r}; choose from {sorted(MODELS)}")
    accelerations = [int(a) for a in args.accelerations.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    manifest, train_files, val_files = knee_kspace_set(out, seed=args.seed, name="learned_recon",
                                                       log=log)
    kset = out / "kspace_set"

    report = {"data": manifest, "minutes_per_net": args.minutes,
              "patch_rows": args.patch_rows, "results": {},
              "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count(),
                          "backend": jax.default_backend()},
              "versions": {"mskjax": mskjax.__version__, "jax": jax.__version__}}
    for acceleration in accelerations:
        cf = CENTER_FRACTION[acceleration]
        log(f"\n== {acceleration}x, centre fraction {cf}")
        tuned_path = out / f"tuned_{acceleration}x.json"
        if tuned_path.exists():
            tuned = {k: {**v, "lamda": float(v["lamda"])}
                     for k, v in json.loads(tuned_path.read_text()).items()}
        else:
            tuned = tune_classical(train_files, acceleration, log)
            tuned_path.write_text(json.dumps(tuned, indent=2) + "\n")
        methods = classical_methods(cg_lamda=tuned["CG-SENSE"]["lamda"],
                                    l1_lamda=tuned["L1-wavelet"]["lamda"])
        training = {}
        for name in nets:
            run = out / "runs" / f"{name}_{acceleration}x"
            tick = time.perf_counter()
            if (run / "summary.json").exists():  # trained by an earlier run of this script
                summary = json.loads((run / "summary.json").read_text())
            else:
                summary = train_recon(
                    data=kset, out=run, model=name, acceleration=acceleration,
                    center_fraction=cf, steps=100000, max_minutes=args.minutes, seed=args.seed,
                    patch_rows=args.patch_rows, checkpoint_every=200, progress=False)
            training[name] = {**{k: summary[k] for k in (
                "steps", "config", "first_step_s_including_compilation",
                "training_s_this_session", "final_loss_mean_of_last_20")},
                "wall_s": time.perf_counter() - tick}
            log(f"  trained {name}: {summary['steps']} steps, final SSIM loss "
                f"{summary['final_loss_mean_of_last_20']:.4f}")
            _, net, _ = load_trained(run)
            methods[name] = learned_method(name, net)
        result = evaluate_methods(val_files, methods, acceleration=acceleration,
                                  center_fraction=cf, progress=False, keep_images=True)
        images = result.pop("images")
        log(format_table(result))
        overall = result["overall"]
        classical = ["zero-filled", "CG-SENSE", "L1-wavelet"]
        best = {key: max(classical, key=lambda m: overall[m][key] * (1 if key != "nmse" else -1))
                for key in ("ssim", "psnr_db")}
        gains = {name: {"ssim_gain_vs_best_classical":
                        overall[name]["ssim"] - overall[best["ssim"]]["ssim"],
                        "psnr_gain_db_vs_best_classical":
                        overall[name]["psnr_db"] - overall[best["psnr_db"]]["psnr_db"]}
                 for name in nets}
        for name, gain in gains.items():
            log(f"  {name}: SSIM {gain['ssim_gain_vs_best_classical']:+.4f} vs {best['ssim']}, "
                f"PSNR {gain['psnr_gain_db_vs_best_classical']:+.2f} dB vs {best['psnr_db']}")
        fname = val_files[0].name
        figure(out.parent / f"learned_recon_{acceleration}x.png", images[fname],
               result["volumes"][fname], acceleration, fname)
        report["results"][f"{acceleration}x"] = {
            "center_fraction": cf, "tuned_on_training_subjects": tuned, "training": training,
            "held_out": result, "best_classical": best, "gains": gains}
        (out.parent / "learned_recon.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "log.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.parent / 'learned_recon.json'}")


if __name__ == "__main__":
    main()
