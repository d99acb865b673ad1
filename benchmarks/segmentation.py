"""Knee tissue segmentation on held-out simulated subjects, and on the real sagittal knee.

Data: ``mskjax data make-seg-set`` twice with the same seed, so the same subjects (anatomy,
pathology, tissue jitter, elastic deformation): once with the realistic rendering (partial
volume, receive bias, Gibbs ringing, Rician noise, trabecular texture; ``sim.REALISTIC_RENDERING``)
and once clean. Each subject is rendered in one contrast drawn from ``--contrasts`` (default
``pd_fs,qdess,t1_spgr``, the qDESS S+ echo), on a ``--shape`` grid over a 160 mm field of view
(default 64 x 128 x 128: 2.5 mm left-right, 1.25 mm in the sagittal plane). ``--train-subjects``
subjects train, ``--test-subjects`` other subjects are scored (never trained on).

Nets (``mskjax train seg``, sizes of ``mskjax.cli._seg_models.SEG_MODELS``): ``unet`` and
``segnet`` on sagittal slices (random 96 x 96 crops in training, slices drawn in proportion
to the tissues they show, batch 4), ``triplanar`` per voxel (256 class-balanced voxels a step), ``unet3d`` on 32 x 64 x 64 patches;
each trained for ``--minutes`` of training time (compile apart), Adam 1e-3, soft Dice +
cross-entropy. A U-Net trained on the clean rendering of the same subjects is scored on the
realistic test subjects (``unet-clean``): what training on the easy phantom is worth.

Scores (``mskjax eval seg``): Dice, HD95 and ASSD (mm) per tissue on the realistic test
subjects after the largest-connected-component clean-up, their mean over subjects, and the
inference time per volume (median, compilation apart). The real sagittal qDESS knee
(``knee_sagittal_qdess_t1rho``, S+ echo, 8 slices of 512 x 512 at 0.3125 mm) is segmented
with every net and shown (no labels exist for it).

    python benchmarks/segmentation.py [--minutes 8] [--nets unet,segnet,triplanar,unet-clean]
        [--out benchmarks/results/segmentation]

A net trained by an earlier run (its folder holds ``summary.json``) is not trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

import mskjax
from mskjax.cli._segment import segment_volume
from mskjax.cli._train_seg import evaluate_seg, format_seg_table, load_trained_seg, train_seg
from mskjax.io import make_segmentation_set
from mskjax.sim import KNEE_LABELS
from _common import data_folder

ROOT = Path(__file__).resolve().parent
#: Published figures quoted for comparison (not measured here).
PUBLISHED = {
    "Zhou et al. 2018 (MRM 80:2759), 3D FSE knee, CNN + CRF + deformable": {
        "bones": "Dice above 0.9", "cartilages": "Dice 0.80 to 0.90"},
    "OAI cartilage U-Nets (e.g. Norman et al. 2018; Ambellan et al. 2019)": {
        "femoral/tibial cartilage": "Dice about 0.88 to 0.91"},
}
MANUAL_SEGMENTATION = "hours per knee by hand; 20 s to 4 min per volume for the CNNs reviewed"


def real_knee():
    """The real qDESS S+ echo ``(8, 512, 512)`` (sagittal slices) and its voxel size."""
    folder = data_folder() / "knee_sagittal_qdess_t1rho"
    with np.load(folder / "knee_qdess_t1rho_8slices.npz") as archive:
        dess = archive["dess"].astype(np.float32)
    meta = json.loads((folder / "meta.json").read_text())["DESS/01"]
    spacing = (meta["slice_thickness_mm"], *meta["pixel_spacing_mm"])
    return dess[0], spacing


def real_figure(path, image, segmentations, slice_index):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(segmentations)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.2 * (len(names) + 1), 3.6))
    shown = image[slice_index] / np.percentile(image, 99.5)
    axes[0].imshow(shown, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("real qDESS S+ (no labels)")
    for ax, name in zip(axes[1:], names):
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
        labels = np.ma.masked_equal(segmentations[name][slice_index], 0)
        ax.imshow(labels, cmap="tab20", vmin=0, vmax=len(KNEE_LABELS) - 1, alpha=0.45,
                  interpolation="nearest")
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_figure(path, data, results, subject_index=0):
    """The middle sagittal slice of one test subject: image, truth, every net's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mskjax.io import read_labels, read_nifti
    from mskjax.io import segmentation_pairs

    name, image_path, labels_path = segmentation_pairs(data, "test")[subject_index]
    image = read_nifti(image_path).array
    truth = read_labels(labels_path).array
    i = image.shape[0] // 2 + 6
    panels = [("image", None), ("truth", truth)] + [(n, r) for n, r in results.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.3))
    for ax, (title, labels) in zip(axes, panels):
        ax.imshow(image[i], cmap="gray")
        if labels is not None:
            ax.imshow(np.ma.masked_equal(labels[i], 0), cmap="tab20", vmin=0,
                      vmax=len(KNEE_LABELS) - 1, alpha=0.5, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"held-out {name}, sagittal slice {i}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--nets", default="unet,segnet,triplanar,unet-clean")
    parser.add_argument("--train-subjects", type=int, default=16)
    parser.add_argument("--test-subjects", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128])
    parser.add_argument("--contrasts", default="pd_fs,qdess,t1_spgr")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=96,
                        help="random square crops of the 2D nets' training slices")
    parser.add_argument("--voxel-batch", type=int, default=256,
                        help="voxels per step of the triplanar CNN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "segmentation"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    log(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.default_backend()}, mskjax {mskjax.__version__}")
    sets = {}
    for kind in ("realistic", "clean"):
        folder = out / f"set-{kind}"
        sets[kind] = folder
        if not (folder / "manifest.json").exists():
            tick = time.perf_counter()
            make_segmentation_set(folder, train_subjects=args.train_subjects,
                                  test_subjects=args.test_subjects, shape=tuple(args.shape),
                                  contrasts=args.contrasts, realistic=kind == "realistic",
                                  seed=args.seed)
            log(f"simulated the {kind} set in {time.perf_counter() - tick:.0f} s")
    results, summaries = {}, {}
    for net in args.nets.split(","):
        model, data = (net[:-6], sets["clean"]) if net.endswith("-clean") else \
            (net, sets["realistic"])
        run = out / f"run-{net}"
        if not (run / "summary.json").exists():
            batch = args.voxel_batch if model == "triplanar" else args.batch_size
            if model == "unet3d":
                batch = 2
            crop = args.crop if model in ("unet", "segnet") else None
            train_seg(data=data, out=run, model=model, steps=100000, max_minutes=args.minutes,
                      batch_size=batch, seed=args.seed, crop=crop, checkpoint_every=500)
        summaries[net] = json.loads((run / "summary.json").read_text())
        log(f"{net}: {summaries[net]['steps']} steps, "
            f"{summaries[net]['training_s_this_session']:.0f} s of training")
        results[net] = evaluate_seg(checkpoint=run, data=sets["realistic"], split="test",
                                    json_path=out / f"eval-{net}.json")
        log(format_seg_table(results[net]))

    # The held-out subject figure and the real knee.
    predictions = {}
    from mskjax.cli._train_seg import predict_labels
    from mskjax.io import read_nifti
    from mskjax.io import segmentation_pairs

    _, image_path, _ = segmentation_pairs(sets["realistic"], "test")[0]
    image = read_nifti(image_path).array
    real, spacing = real_knee()
    real_labels, real_seconds = {}, {}
    for net in results:
        name, model, config = load_trained_seg(out / f"run-{net}")
        num_classes = config["train"]["num_classes"]
        predictions[net], _ = predict_labels(name, model, image, num_classes=num_classes)
        tick = time.perf_counter()
        real_labels[net], _ = segment_volume(
            name, model, real, spacing, train_voxel_size=config["train"]["voxel_size_mm"],
            num_classes=num_classes)
        real_seconds[net] = time.perf_counter() - tick
    test_figure(out / "segmentation_test.png", sets["realistic"], predictions)
    real_figure(out / "segmentation_real_knee.png", real, real_labels, slice_index=4)
    log(f"real knee (8 slices of 512 x 512): seconds per volume (first call, with "
        f"compilation): {json.dumps({k: round(v, 2) for k, v in real_seconds.items()})}")
    log(f"manual segmentation for comparison: {MANUAL_SEGMENTATION}")

    report = {"machine": {"processor": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "jax": jax.__version__,
                          "backend": jax.default_backend(), "mskjax": mskjax.__version__},
              "settings": vars(args), "published": PUBLISHED, "training": summaries,
              "results": {k: {kk: v[kk] for kk in ("per_class", "mean_foreground",
                                                   "seconds_per_volume")}
                          for k, v in results.items()},
              "real_knee_seconds_first_call": real_seconds, "log": lines}
    (out / "segmentation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}/segmentation.json, segmentation_test.png, segmentation_real_knee.png")


if __name__ == "__main__":
    main()
