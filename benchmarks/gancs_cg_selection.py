"""Choosing the CG iterations of the GANCS projection on the training subjects.

``benchmarks/gancs.py`` was run with 10 CG iterations in the generators' projection
(``benchmarks/results/gancs``) and with 4 (``benchmarks/results/gancs_cg4``). This script scores
the trained generators of both runs (GANCS and its pixel-only twin) and CG-SENSE (the lamda
tuned on the training subjects) on the **training** subjects, at 5x with fastMRI's mask for each
file, so that the choice between the two settings rests on training data, not on the held-out
subjects the tables report. (The generators were trained on these slices with random masks,
bands and augmentation; the comparison between the two settings is what matters here.)

    python benchmarks/gancs_cg_selection.py [--runs benchmarks/results/gancs,benchmarks/results/gancs_cg4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mskjax.cli._evaluate import classical_methods, data_files, evaluate_methods
from mskjax.cli._train_recon import learned_method, load_trained

ROOT = Path(__file__).resolve().parent
ACCELERATION, CENTER_FRACTION = 5, 0.06


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(
        str(ROOT / "results" / name) for name in ("gancs", "gancs_cg4")))
    parser.add_argument("--out", default=str(ROOT / "results" / "gancs_cg4" /
                                             "cg_selection_on_training_subjects.json"))
    args = parser.parse_args(argv)
    folders = [Path(p) for p in args.runs.split(",") if p]
    files = data_files(folders[0] / "kspace_set", "train", "gancs_cg_selection")
    tuned = json.loads((folders[0] / "tuned_5x.json").read_text())
    methods = {"CG-SENSE": classical_methods(cg_lamda=float(tuned["CG-SENSE"]["lamda"]),
                                             l1_lamda=None)["CG-SENSE"]}
    for folder in folders:
        for name in ("GANCS", "pixel-only"):
            model_name, net, config = load_trained(folder / "runs" / name)
            cg = config["model"]["kwargs"]["cg_iterations"]
            methods[f"{name} (CG {cg})"] = learned_method(model_name, net)
    result = evaluate_methods(files, methods, acceleration=ACCELERATION,
                              center_fraction=CENTER_FRACTION, progress=False)
    print(f"training subjects ({len(files)} volumes), 5x equispaced, 6 % centre lines:")
    print(f"{'method':22s} {'NMSE':>8s} {'PSNR dB':>8s} {'SSIM':>7s}")
    for name, s in result["overall"].items():
        print(f"{name:22s} {s['nmse']:8.4f} {s['psnr_db']:8.2f} {s['ssim']:7.4f}")
    Path(args.out).write_text(json.dumps({"files": [str(f) for f in files],
                                          "overall": result["overall"]}, indent=2,
                                         default=float) + "\n")
    best = max((n for n in result["overall"] if n.startswith("GANCS")),
               key=lambda n: result["overall"][n]["ssim"])
    print(f"best GANCS setting on the training subjects by SSIM: {best}")
    return 0 if np.isfinite(result["overall"][best]["ssim"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
