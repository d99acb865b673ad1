"""Disease detection and grading on held-out simulated subjects (and real knees with inserted
lesions), beside the published figures.

Tasks, each one set made by ``mskjax data make-cls-set`` and one net trained by
``mskjax train cls`` for ``--minutes`` of training time (compile apart), scored by
``mskjax eval cls`` on subjects never trained on:

- ``kl``: KL grade 0..4 on realistic simulated AP radiographs (``--source radiograph``:
  within-grade variation, blur, scatter, positioning, exposure), ResNet-18 layout (width 16,
  group norm), the CORAL ordinal head. Accuracy, balanced accuracy, quadratic kappa, AUC of
  grade >= 2.
- ``lesion``: cartilage lesion on a realistic sagittal PD-FS slice (``--source lesion``,
  conspicuity uniform in [0, 1]), ResNet-18 layout; AUC overall and per conspicuity bin, the
  Youden point, and the FROC of Grad-CAM peaks (a candidate is a local maximum of the map,
  scored by the map times the lesion probability; it hits when it falls inside the lesion mask).
- ``tear``: meniscal tear from sagittal PD-FS, coronal T1 and axial PD-FS stacks
  (``--source tear``), the MRNet-layout multi-view net (a small ResNet shared by the planes);
  AUC.
- ``real``: cartilage defects and marrow oedema inserted into the 15 distinct real axial knee
  scans (``--source real-lesion``, patches around the lesion or its sham, split by subject),
  a small ResNet; AUC overall and per conspicuity bin.

Every interval is a 95 % stratified bootstrap (1000 resamples) over held-out examples.

    python benchmarks/detection.py [--minutes 7] [--tasks kl,lesion,tear,real]
        [--out benchmarks/results/detection]

A set or a net made by an earlier run (its folder holds ``manifest.json`` / ``summary.json``)
is reused. Writes ``detection.json``, ``detection_maps.png`` (Grad-CAM of the lesion net's
most confident true and false positives) and prints a table beside the published figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from mskjax import metrics, nets
from mskjax.cli._cam_figure import activation_map_figure
from mskjax.cli._cls_models import model_input
from mskjax.cli._train_cls import evaluate_cls, format_cls_table, load_trained_cls, train_cls
from mskjax.io import make_classification_set, read_classification_set

#: task -> (make-cls-set options, train options)
TASKS = {
    "kl": (dict(source="radiograph", train_subjects=800, test_subjects=300, size=128),
           dict(model="resnet18", batch_size=16)),
    "lesion": (dict(source="lesion", train_subjects=800, test_subjects=400, size=96),
               dict(model="resnet18", batch_size=16)),
    "tear": (dict(source="tear", train_subjects=240, test_subjects=120, size=48),
             dict(model="multiview", batch_size=8)),
    "real": (dict(source="real-lesion", train_subjects=11, test_subjects=4, size=64,
                  per_image=24), dict(model="resnet-small", batch_size=16)),
}

#: Published figures, for context (different data: real patients, not this simulation).
PUBLISHED = {
    "kl": "Tiulpin et al. 2018 (OAI/MOST radiographs): accuracy 66.7 %, quadratic kappa 0.83, "
          "AUC of KL >= 2 0.93",
    "lesion": "Liu et al. 2018 (cartilage lesions, sagittal FS-FSE): AUC 0.917",
    "tear": "Bien et al. 2018 (MRNet, 3 planes): AUC 0.965 ACL tear, 0.847 meniscal tear",
    "real": "no published counterpart (lesions inserted into real scans)",
}


def _make_set(folder: Path, options: dict, seed: int) -> float:
    if (folder / "manifest.json").exists():
        return 0.0
    tick = time.perf_counter()
    make_classification_set(folder, seed=seed, progress=True, **options)
    return time.perf_counter() - tick


def _train(run: Path, data: Path, options: dict, minutes: float, seed: int) -> dict:
    if (run / "summary.json").exists():
        return json.loads((run / "summary.json").read_text())
    return train_cls(data=data, out=run, steps=1_000_000, max_minutes=minutes, seed=seed,
                     checkpoint_every=500, progress=True, **options)


def _lesion_maps(run: Path, data: Path, out: Path, result: dict) -> dict:
    """Grad-CAM maps of the test slices: FROC of their peaks and the figure of the most
    confident true and false positives."""
    name, net, _ = load_trained_cls(run)
    test = read_classification_set(data, split="test")
    probs = np.asarray(result["scores"]["probabilities"])
    labels = test["label"]
    maps = []
    for image in test["image"]:
        cam = nets.grad_cam(net, model_input("image", image), normalize=True)
        maps.append(np.asarray(cam)[0])
    maps = np.stack(maps)
    from scipy import ndimage

    pixel_mm = 100.0 / test["image"].shape[-1]  # the sets' 100 mm field of view
    frocs = {}
    for rule, radius_mm in (("inside the lesion", 0.0), ("within 5 mm of the lesion", 5.0)):
        radius = int(round(radius_mm / pixel_mm))
        disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
        detections, num_lesions = [], []
        for cam, p, mask, label in zip(maps, probs, test["mask"], labels):
            lesion = mask & (label == 1)
            if radius and lesion.any():
                lesion = ndimage.binary_dilation(lesion, structure=disk)
            detections.append(metrics.detections_from_maps(cam * p, lesion.astype(np.int32),
                                                            threshold=0.05, min_distance=4))
            num_lesions.append(int(lesion.any()))
        froc = metrics.froc(detections, np.asarray(num_lesions))
        frocs[rule] = {"fp_rates": [float(r) for r in froc.fp_rates],
                       "sensitivity_at": [float(v) for v in froc.sensitivity_at],
                       "score": float(froc.score), "lesions": int(sum(num_lesions))}
    order = np.argsort(-probs)
    tp = [i for i in order if labels[i] == 1][:4]
    fp = [i for i in order if labels[i] == 0][:4]
    picks = tp + fp
    titles = [f"{'TP' if labels[i] else 'FP'} p={probs[i]:.2f}"
              + (f" c={test['conspicuity'][i]:.2f}" if labels[i] else "") for i in picks]
    images = np.stack([test["image"][i] / max(np.percentile(test["image"][i], 99), 1e-6)
                       for i in picks])
    activation_map_figure(images, maps[picks], titles=titles, path=out / "detection_maps.png",
                          outlines=[test["mask"][i] if labels[i] else None for i in picks])
    return {"froc": {"by_hit_rule": frocs, "definition": "candidates are local maxima (9x9 "
        "box) of the normalised Grad-CAM map times the lesion probability, above 0.05; a hit "
        "falls inside the lesion mask (or within 5 mm of it), each lesion counted once; false "
        "positives per slice"},
        "figure": str(out / "detection_maps.png"), "figure_examples": [int(i) for i in picks]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=7.0, help="training minutes per net")
    parser.add_argument("--tasks", default="kl,lesion,tear,real")
    parser.add_argument("--out", default="benchmarks/results/detection")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
              "minutes_per_net": args.minutes, "tasks": {}}
    path = out / "detection.json"
    if path.exists():
        report["tasks"] = json.loads(path.read_text()).get("tasks", {})
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        set_options, train_options = TASKS[task]
        data, run = out / "data" / task, out / "runs" / task
        made = _make_set(data, set_options, args.seed)
        summary = _train(run, data, train_options, args.minutes, args.seed)
        result = evaluate_cls(checkpoint=run, data=data, split="test",
                              json_path=out / f"{task}_eval.json")
        print(format_cls_table(result))
        entry = {"set": set_options, "train": train_options, "set_seconds": made,
                 "steps": summary["steps"], "training_s": summary["training_s_this_session"],
                 "scores": {k: v for k, v in result["scores"].items()
                            if k != "probabilities"},
                 "published": PUBLISHED[task]}
        if task == "lesion":
            entry.update(_lesion_maps(run, data, out, result))
            for rule, froc in entry["froc"]["by_hit_rule"].items():
                print(f"  FROC score ({rule}) {froc['score']:.3f}: sensitivity at "
                      f"{froc['fp_rates']} FP/slice "
                      f"{[round(v, 3) for v in froc['sensitivity_at']]}")
        report["tasks"][task] = entry
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"  published: {PUBLISHED[task]}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
