"""Simulated detection data (``mskjax.sim.lesion_detection_example``, ``multiview_example``):
speed, conspicuity measured on the images, and how far trivial image statistics get.

Measured on ``--count`` 2D examples (default: cartilage lesions, sagittal PD-FS 128 x 128,
realistic rendering, presence 1 in 2, conspicuity uniform in [0, 1], SNR uniform in [10, 30])
and ``--multiview`` three-plane examples (meniscal tears, 16 x 64 x 64 per plane):

- seconds per example: the first call (with compilation) and the median of the rest;
- the contrast-to-noise ratios of the positives by conspicuity bin (median and quartiles):
  ``cnr`` (against the same knee without the lesion), ``cnr_surround`` (against the host
  tissue within 5 mm, noise-free), ``cnr_measured`` (the same on the noisy image) and the Rose
  number ``cnr * sqrt(lesion pixels)``;
- ROC AUC (scikit-learn) of trivial statistics for positives against negatives: the image's
  maximum, mean and variance, and the mean and maximum over the cartilage (or meniscus)
  labels (tissue labels without the lesion); for the multi-view examples the same per view.
  An AUC near 1 (or 0) would mean the data give the answer away.

Writes ``benchmarks/results/detection/detection_data.json``.

    python benchmarks/detection_data.py [--count 200] [--multiview 100] [--pathology ...]
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
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mskjax import sim  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "detection"
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
HOSTS = {"cartilage_lesion": ("femoral_cartilage", "tibial_cartilage", "patellar_cartilage"),
         "meniscal_tear": ("medial_meniscus", "lateral_meniscus"),
         "bone_marrow_oedema": ("femur", "tibia")}


def draw(make, count, **options):
    examples, times = [], []
    for i in range(count):
        start = time.perf_counter()
        examples.append(make(jax.random.fold_in(jax.random.key(0), i), **options))
        times.append(time.perf_counter() - start)
    return examples, {"first_s": times[0], "steady_median_s": statistics.median(times[1:])}


def by_bin(examples, rose_of=None):
    """Quartiles of the positives' contrast-to-noise ratios (the largest over the views of a
    multi-view example) per conspicuity bin."""
    rows = []
    for low, high in zip(BINS[:-1], BINS[1:]):
        group = [e for e in examples if e.label == 1 and low <= e.conspicuity < high + 1e-6 * (
            high == 1.0)]
        row = {"bin": f"[{low:.1f}, {high:.1f}{']' if high == 1.0 else ')'}", "n": len(group)}
        for name in ("cnr", "cnr_surround", "cnr_measured") + (("rose",) if rose_of else ()):
            values = np.asarray([rose_of(e) if name == "rose" else np.nanmax(getattr(e, name))
                                 if np.isfinite(getattr(e, name)).any() else np.nan
                                 for e in group], np.float64)
            values = values[np.isfinite(values)]
            row[name] = ([float(np.round(q, 2)) for q in np.percentile(values, (25, 50, 75))]
                         if values.size else None)
        rows.append(row)
    return rows


def baselines(images, labels, tissue, hosts):
    y = np.asarray(labels)
    host = np.isin(tissue, [sim.KNEE_LABELS[n] for n in hosts])
    stats = {
        "image max": [im.max() for im in images],
        "image mean": [im.mean() for im in images],
        "image variance": [im.var() for im in images],
        "host-tissue mean": [im[h].mean() for im, h in zip(images, host)],
        "host-tissue max": [im[h].max() for im, h in zip(images, host)],
    }
    return {name: float(roc_auc_score(y, values)) for name, values in stats.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--multiview", type=int, default=100)
    parser.add_argument("--pathology", default="cartilage_lesion",
                        choices=sim.DETECTION_PATHOLOGIES)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    result = {"machine": {"python": platform.python_version(), "jax": jax.__version__,
                          "cpu": platform.processor() or platform.machine(),
                          "devices": str(jax.devices())}}

    examples, timing = draw(sim.lesion_detection_example, args.count, pathology=args.pathology,
                            shape=(args.size, args.size))
    result["2d"] = {
        "settings": {"pathology": args.pathology, "shape": [args.size, args.size],
                     "count": args.count, "positives": int(sum(e.label for e in examples))},
        "timing": timing,
        "cnr_by_conspicuity": by_bin(examples, lambda e: e.cnr * np.sqrt(e.mask.sum())),
        "auc": baselines([e.image for e in examples], [e.label for e in examples],
                         [e.labels for e in examples], HOSTS[args.pathology]),
    }
    print(json.dumps(result["2d"], indent=1))
    if args.multiview:
        examples, timing = draw(sim.multiview_example, args.multiview)
        views = {}
        for i, view in enumerate(sim.PLANES):
            views[view] = baselines([e.views[i] for e in examples], [e.label for e in examples],
                                    [e.labels[i] for e in examples], HOSTS["meniscal_tear"])
        result["multiview"] = {
            "settings": {"pathology": "meniscal_tear", "slices": 16, "size": 64,
                         "count": args.multiview,
                         "positives": int(sum(e.label for e in examples)),
                         "positives_without_any_mask": int(sum(
                             e.label == 1 and not any(m.any() for m in e.masks)
                             for e in examples))},
            "timing": timing,
            "cnr_by_conspicuity": by_bin(examples),
            "auc": views,
        }
        print(json.dumps(result["multiview"], indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "detection_data.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
