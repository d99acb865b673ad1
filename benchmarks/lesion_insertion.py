"""Lesions inserted into the real axial knees: examples, trivial baselines, speed.

Data: ``knee_axial_rss`` (axial PD-weighted fat-suppressed 3D FSE, root-sum-of-squares, GE
3 T), 0.5 mm pixels. Subject ``knee`` is the same scan as ``knee_multiple/P3`` at another
scale (correlation 1.0), so it is dropped: 15 subjects. The menisci are not in these axial
slices, so the meniscal cleft is shown on a sagittal slice of the project's simulated knee
(fat-suppressed PD, Rician noise at SNR 20), with the phantom's medial meniscus label as the
user-given region.

Measured, per kind, on ``real_lesion_set`` (whole images and 64 x 64 patches, conspicuity
uniform in [0, 1], ``per_image`` positives and as many shams per image):

- ROC AUC of trivial image statistics for positives against negatives (scikit-learn): the
  global mean, the global maximum and the global noise level (standard deviation of the image
  minus its 3 x 3 mean over the body) of whole images, which must be near 0.5; on patches,
  the mean and the local variance (the same high-pass statistic); and on a second set of
  faint lesions only (conspicuity in [0, 0.2]), the patch mean and local variance, with the
  median relative change of the local variance against the same window untouched (a noise
  confound would show there);
- the median contrast-to-noise ratio of the lesions by conspicuity;
- seconds per example of ``real_lesion_set`` (analysis of each image included) and of one
  ``insert_lesion`` call (median).

Writes ``benchmarks/results/detection/insertion_examples.png`` and ``insertion.json``.

    python benchmarks/lesion_insertion.py [--per-image 8] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CHECKOUT, data_folder  # noqa: E402

from mskjax import sim  # noqa: E402

OUT = CHECKOUT / "benchmarks" / "results" / "detection"


def load_knees():
    data = np.load(data_folder() / "knee_axial_rss" / "knee_axial_rss.npz")
    images, subjects = data["images"], data["subject"]
    a, b = (images[list(subjects).index(s)].ravel() for s in ("knee", "knee_multiple/P3"))
    print(f"'knee' against 'knee_multiple/P3': correlation {np.corrcoef(a, b)[0, 1]:.8f}, "
          "dropped")
    keep = subjects != "knee"
    return images[keep], subjects[keep]


def phantom_slice(size=256, seed=3):
    """A sagittal fat-suppressed PD slice of the simulated knee and its medial meniscus."""
    key = jax.random.key(seed)
    anatomy = sim.knee_phantom(key, shape=(16, 16, 16)).anatomy
    voxel = 160.0 / size
    index = int(round(float(anatomy.condyle_centres[0, 0]) / voxel + (size - 1) / 2))
    phantom = sim.knee_phantom(key, shape=(size, size, size), slice_axis=0, slice_index=index)
    image = np.asarray(sim.render(phantom, contrast="pd_fs", key=key, snr=20.0, texture=0.05),
                       dtype=np.float32)
    meniscus = np.squeeze(np.asarray(phantom.labels) == sim.KNEE_LABELS["medial_meniscus"])
    image = np.squeeze(image)
    # Its air (the outer 20 columns) is Rayleigh noise; the fat-suppressed subcutaneous fat
    # next to it is dark too, which the automatic background estimate would mistake for air.
    sigma = float(np.mean(image[:, :20]) / np.sqrt(np.pi / 2))
    return image, meniscus, voxel, sigma


def _crop(centre, shape, half=40):
    r = int(np.clip(round(float(centre[0])) - half, 0, shape[0] - 2 * half))
    c = int(np.clip(round(float(centre[1])) - half, 0, shape[1] - 2 * half))
    return slice(r, r + 2 * half), slice(c, c + 2 * half)


def figure(images, subjects, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [0, 3, 6, 9, 12]
    levels = [0.25, 0.5, 0.75, 1.0, 0.5]
    cleft_image, meniscus, voxel, sigma = phantom_slice()
    fig, axes = plt.subplots(7, 5, figsize=(15, 21.5), constrained_layout=True)
    for col, i in enumerate(picks):
        image = images[i]
        vmax = float(np.percentile(image, 99.5))
        regions = sim.candidate_regions(image)
        ax = axes[0, col]
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
        for mask, colour in ((regions.marrow, "c"), (regions.subchondral, "y"),
                             (regions.cartilage, "r")):
            ax.contour(mask, [0.5], colors=colour, linewidths=0.6)
        ax.set_title(f"{subjects[i]}: marrow (cyan), subchondral (yellow),\ncartilage band "
                     "(red)", fontsize=8)
        for row, kind in ((1, "cartilage_defect"), (3, "marrow_oedema")):
            lesion = sim.insert_lesion(jax.random.key(100 + col), image, kind=kind,
                                       conspicuity=levels[col])
            window = _crop(lesion.centre, image.shape)
            for k, outline in ((0, False), (1, True)):
                ax = axes[row + k, col]
                ax.imshow(lesion.image[window], cmap="gray", vmin=0, vmax=vmax)
                if outline:
                    ax.contour(lesion.mask[window], [0.5], colors="r", linewidths=0.7)
            axes[row, col].set_title(
                f"{kind}, c={levels[col]:.2f}\n{lesion.size:.1f} mm, CNR "
                f"{lesion.contrast_to_noise:.1f} ({subjects[i].split('/')[-1]})", fontsize=8)
        lesion = sim.insert_lesion(jax.random.key(200 + col), cleft_image,
                                   kind="meniscal_cleft", conspicuity=levels[col],
                                   region=meniscus, pixel_size=voxel, articular_axis=None,
                                   noise_sigma=sigma)
        window = _crop(lesion.centre, cleft_image.shape, half=32)
        cmax = float(np.percentile(cleft_image, 99.5))
        for k in (0, 1):
            axes[5 + k, col].imshow(lesion.image[window], cmap="gray", vmin=0, vmax=cmax)
        axes[6, col].contour(meniscus[window], [0.5], colors="y", linewidths=0.5)
        axes[6, col].contour(lesion.mask[window], [0.5], colors="r", linewidths=0.7)
        axes[5, col].set_title(f"meniscal_cleft, c={levels[col]:.2f}, {lesion.size:.1f} mm, "
                               f"CNR {lesion.contrast_to_noise:.1f}\n(simulated sagittal knee; "
                               "meniscus label in yellow)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Lesions inserted into real axial PD fat-suppressed knees (rows 2-5; each "
                 "crop shown plain, then with the changed pixels outlined in red)",
                 fontsize=10)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def high_pass_std(x, where=None):
    residual = x - ndimage.uniform_filter(x.astype(np.float64), 3)
    return float(np.std(residual if where is None else residual[where]))


def baselines(images, subjects, kind, per_image, key):
    start = time.perf_counter()
    whole = sim.real_lesion_set(images, subjects, key=key, kind=kind, per_image=per_image)
    whole_s = time.perf_counter() - start
    patches = sim.real_lesion_set(images, subjects, key=key, kind=kind, per_image=per_image,
                                  patch=(64, 64))
    y = whole.labels
    bodies = [sim.candidate_regions(im).foreground for im in images]
    stats = {
        "whole_mean": [float(x.mean()) for x in whole.images],
        "whole_max": [float(x.max()) for x in whole.images],
        "whole_noise_level": [high_pass_std(x, bodies[s])
                              for x, s in zip(whole.images, whole.source)],
        "patch_mean": [float(x.mean()) for x in patches.images],
        "patch_local_variance": [high_pass_std(x) for x in patches.images],
    }
    aucs = {name: roc_auc_score(y, values) for name, values in stats.items()}
    # Faint lesions only (conspicuity below 0.2): the local variance of positives against
    # shams, and its change against the same window of the untouched image (paired).
    faint = sim.real_lesion_set(images, subjects, key=jax.random.fold_in(key, 1), kind=kind,
                                per_image=per_image, patch=(64, 64), conspicuity_range=(0, 0.2))
    local = np.array([high_pass_std(x) for x in faint.images])
    aucs["faint_patch_local_variance"] = roc_auc_score(faint.labels, local)
    aucs["faint_patch_mean"] = roc_auc_score(faint.labels, faint.images.mean(axis=(1, 2)))
    untouched = np.array([high_pass_std(images[i][r:r + 64, c:c + 64])
                          for i, (r, c) in zip(faint.source, faint.origins)])
    pos = faint.labels == 1
    cnr = whole.contrast_to_noise[y == 1]
    c = whole.conspicuity[y == 1]
    bins = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0001]
    return {
        "examples": int(len(y)), "positives": int(y.sum()),
        "seconds_per_example_whole_set": whole_s / len(y),
        "auc": {k: round(float(v), 3) for k, v in aucs.items()},
        "faint_median_relative_change_of_local_std": float(
            np.median((local[pos] - untouched[pos]) / untouched[pos])),
        "median_contrast_to_noise_by_conspicuity": {
            f"{lo:.2f}-{min(hi, 1.0):.2f}": float(np.median(cnr[(c >= lo) & (c < hi)]))
            for lo, hi in zip(bins[:-1], bins[1:]) if np.any((c >= lo) & (c < hi))},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-image", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="4 subjects, 2 per image")
    args = parser.parse_args()
    all_images, all_subjects = load_knees()
    OUT.mkdir(parents=True, exist_ok=True)
    figure(all_images, all_subjects, OUT / "insertion_examples.png")
    images, subjects, per_image = all_images, all_subjects, args.per_image
    if args.quick:
        images, subjects, per_image = images[:4], subjects[:4], 2
    results = {"machine": platform.platform(), "python": platform.python_version(),
               "jax": jax.__version__, "subjects": int(len(set(subjects))),
               "per_image": per_image, "kinds": {}}
    single = []
    for k in range(5):
        t0 = time.perf_counter()
        sim.insert_lesion(jax.random.key(k), images[k % len(images)], kind="marrow_oedema",
                          conspicuity=0.5)
        single.append(time.perf_counter() - t0)
    results["seconds_per_insert_lesion_call"] = statistics.median(single)
    for kind in ("cartilage_defect", "marrow_oedema"):
        results["kinds"][kind] = baselines(images, subjects, kind, per_image,
                                           jax.random.key(0))
    train, test = sim.split_by_subject(subjects, test_fraction=0.3, seed=0)
    results["split"] = {"train": sorted(train), "test": sorted(test)}
    for kind, r in results["kinds"].items():
        print(f"{kind}: {r['examples']} examples, {r['seconds_per_example_whole_set']:.3f} s "
              "per example; ROC AUC of trivial baselines:")
        for name, value in r["auc"].items():
            print(f"    {name:28s} {value:.3f}")
        print(f"    faint: median relative change of local std "
              f"{r['faint_median_relative_change_of_local_std']:+.4f}")
        print("    median CNR by conspicuity: " + ", ".join(
            f"{k}: {v:.2f}" for k, v in r["median_contrast_to_noise_by_conspicuity"].items()))
    print(f"one insert_lesion call: {results['seconds_per_insert_lesion_call']:.3f} s")
    tmp = OUT / "insertion.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(OUT / "insertion.json")


if __name__ == "__main__":
    main()
