"""Speed of the segmentation metrics on 512x512x160 label maps against the dense distance
transform.

Two label maps of one knee phantom (16 labels): the reference, and the same knee shifted by a
fraction of a millimetre with osteoarthritic changes (KL grade 2), each drawn at 256x256x80 and
upsampled 2x along every axis to 512x512x160 (0.3125 x 0.3125 x 1 mm voxels). Timed, in one run
on the same data:

- ``mskjax.metrics.segmentation_scores`` for all classes (Dice, IoU, VOE, HD95, ASSD; median
  of repeats);
- per class, ``mskjax.metrics.surface_distances`` (k-d tree queries at the surface voxels not
  shared by both surfaces) against the dense route of MONAI and medpy: the exact Euclidean
  distance transform (``scipy.ndimage.distance_transform_edt``) of each surface's complement
  over the class's bounding box, read at the other surface. Both are exact; their HD95 and
  ASSD are compared.

Prints a table and writes ``benchmarks/results/segmentation_metrics.json``.

    python benchmarks/segmentation_metrics.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import scipy
from scipy import ndimage

from mskjax import metrics
from mskjax.sim import KNEE_LABELS, knee_phantom


def label_maps(shape):
    key = jax.random.key(0)
    a = np.asarray(knee_phantom(key, shape=shape).labels)
    b = np.asarray(knee_phantom(key, shape=shape, centre=(0.4, 0.3, 0.0), kl_grade=2).labels)
    return a, b


def upsample(x):
    return np.repeat(np.repeat(np.repeat(x, 2, 0), 2, 1), 2, 2)


def dense_route(p, t, spacing):
    """Directed distances by dense EDTs over the bounding box of the union (MONAI's crop)."""
    hit = np.argwhere(p | t)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(hit.min(0), hit.max(0)))
    p, t = p[box], t[box]
    face = ndimage.generate_binary_structure(p.ndim, 1)
    sp = p & ~ndimage.binary_erosion(p, face, border_value=0)
    st = t & ~ndimage.binary_erosion(t, face, border_value=0)
    return (ndimage.distance_transform_edt(~st, sampling=spacing)[sp],
            ndimage.distance_transform_edt(~sp, sampling=spacing)[st])


def summary(to_target, to_pred):
    return (max(np.percentile(to_target, 95), np.percentile(to_pred, 95)),
            0.5 * (to_target.mean() + to_pred.mean()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64x64x20 maps, upsampled 2x")
    args = parser.parse_args()
    base = (64, 64, 20) if args.quick else (256, 256, 80)
    spacing = tuple(160.0 / (2 * n) for n in base)
    pred, target = (upsample(x) for x in label_maps(base))
    num_classes = len(KNEE_LABELS)
    names = {v: k for k, v in KNEE_LABELS.items()}

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        scores = metrics.segmentation_scores(pred, target, num_classes=num_classes,
                                             spacing=spacing)
        times.append(time.perf_counter() - start)
    total = statistics.median(times)

    rows = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        if not (p.any() and t.any()):
            continue
        start = time.perf_counter()
        ours = summary(*metrics.surface_distances(p, t, spacing=spacing))
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        dense = summary(*dense_route(p, t, spacing))
        dense_s = time.perf_counter() - start
        rows.append(dict(label=c, tissue=names[c], voxels=int(p.sum()), kdtree_s=ours_s,
                         dense_edt_s=dense_s, speedup=dense_s / ours_s,
                         hd95_mm=float(ours[0]), assd_mm=float(ours[1]),
                         max_abs_difference=float(max(abs(ours[0] - dense[0]),
                                                      abs(ours[1] - dense[1])))))

    print(f"segmentation_scores, {num_classes} classes, {pred.shape}: {total:.2f} s "
          f"(median of {args.repeats})")
    print(f"{'label':<22}{'voxels':>10}{'k-d tree s':>12}{'dense EDT s':>13}{'ratio':>8}"
          f"{'HD95 mm':>9}{'ASSD mm':>9}{'|diff|':>9}")
    for r in rows:
        print(f"{r['label']:>2} {r['tissue']:<19}{r['voxels']:>10}{r['kdtree_s']:>12.2f}"
              f"{r['dense_edt_s']:>13.2f}{r['speedup']:>8.1f}{r['hd95_mm']:>9.3f}"
              f"{r['assd_mm']:>9.3f}{r['max_abs_difference']:>9.1e}")
    result = dict(machine=dict(platform=platform.platform(), processor=platform.processor(),
                               cpus=os.cpu_count()),
                  versions=dict(numpy=np.__version__, scipy=scipy.__version__,
                                jax=jax.__version__),
                  settings=dict(shape=pred.shape, spacing=spacing, num_classes=num_classes,
                                repeats=args.repeats),
                  segmentation_scores_s=total, dice=scores.dice.tolist(), per_class=rows)
    out = Path(__file__).parent / "results" / "segmentation_metrics.json"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
