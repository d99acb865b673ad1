"""How separable the Kellgren-Lawrence grades of simulated knee radiographs are, and how fast a
set is made.

Data: ``sim.radiograph_set`` with balanced grades, realistic (``**sim.REALISTIC_RADIOGRAPH``:
within-grade variation of narrowing, osteophytes and sclerosis over +-1 grade,
positioning, blur, scatter, exposure and electronic noise, display window) and, for contrast,
without any realism (each grade's features from the table, times the subject's 0.85 to 1.15).

Baseline grader: thresholds on one feature alone, the measured minimum joint-space width
(``minimum_joint_space_width``, falling with the grade) or the drawn osteophyte size (rising),
placed to maximise the accuracy on the first half of the subjects (an exact dynamic programme
over monotone assignments) and scored on the second half: accuracy, quadratic-weighted kappa
(``sklearn.metrics.cohen_kappa_score``) and Spearman's correlation of the feature with the
grade.

Timing: the first radiograph (compilation included) and the steady time per radiograph over
the set (``shape`` 128 x 128, ``depth_samples`` 48 by default), on this machine's CPU or GPU.

Writes ``<out>/radiograph_grades.json`` and ``<out>/radiograph_grades.png`` (a row of example
images per grade, realistic setting).

    python benchmarks/radiograph_grades.py [--num 500] [--out benchmarks/results/detection]
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
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

import mskjax
from mskjax import sim


def fit_thresholds(values, grades):
    """Thresholds ``c_1 >= ... >= c_4`` maximising the accuracy of ``#{k: value < c_k}`` as the
    grade (the feature falls with the grade): a dynamic programme over the values in ascending
    order, whose grades may only fall."""
    order = np.argsort(values)
    x, y = values[order], grades[order]
    n = x.size
    best = np.zeros((n, 5))
    back = np.zeros((n, 5), int)
    for i in range(n):
        match = (y[i] == np.arange(5)).astype(float)
        if i == 0:
            best[i] = match
            continue
        # max over g' >= g of best[i - 1, g']: a running maximum from the top grade down
        suffix = np.maximum.accumulate(best[i - 1][::-1])[::-1]
        arg = np.array([g + int(np.argmax(best[i - 1][g:])) for g in range(5)])
        best[i], back[i] = match + suffix, arg
    assigned = np.empty(n, int)
    assigned[-1] = int(np.argmax(best[-1]))
    for i in range(n - 1, 0, -1):
        assigned[i - 1] = back[i, assigned[i]]
    thresholds = []
    for k in range(1, 5):
        above = x[assigned >= k]  # grade >= k: values below the threshold
        below = x[assigned < k]
        if above.size == 0:
            thresholds.append(-np.inf)
        elif below.size == 0:
            thresholds.append(np.inf)
        else:
            thresholds.append(0.5 * (above.max() + below.min()))
    return np.array(thresholds)


def predict(values, thresholds):
    return (values[:, None] < thresholds[None, :]).sum(axis=1)


def baseline(values, grades, sign):
    """Fit on the first half, score on the second; ``sign`` -1 for a feature rising with the
    grade."""
    half = values.size // 2
    v = sign * values
    thresholds = fit_thresholds(v[:half], grades[:half])
    predicted = predict(v[half:], thresholds)
    truth = grades[half:]
    return dict(accuracy=float(np.mean(predicted == truth)),
                quadratic_kappa=float(cohen_kappa_score(truth, predicted, weights="quadratic")),
                spearman=float(spearmanr(values, grades).statistic),
                thresholds=[float(sign * t) for t in thresholds],
                per_grade_mean=[float(values[grades == g].mean()) for g in range(5)],
                per_grade_std=[float(values[grades == g].std()) for g in range(5)])


def figure(images, grades, features, path, columns=6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, columns, figsize=(1.9 * columns, 1.9 * 5 + 0.4))
    for g in range(5):
        chosen = np.flatnonzero(grades == g)[:columns]
        for j, ax in enumerate(axes[g]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= chosen.size:
                ax.axis("off")
                continue
            i = chosen[j]
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(f"mJSW {features['minimum_joint_space_width'][i]:.1f} mm", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"KL {g}", fontsize=11)
    fig.suptitle("Simulated AP knee radiographs, REALISTIC_RADIOGRAPH (rows: true KL grade)",
                 fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--pixel-size", type=float, default=1.2)
    parser.add_argument("--depth-samples", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/detection")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = (args.size, args.size)
    common = dict(shape=shape, pixel_size=args.pixel_size, depth_samples=args.depth_samples)
    load = os.getloadavg()

    start = time.perf_counter()
    sim.radiograph_set(jax.random.key(args.seed + 1), 1, progress=False, **common,
                       **sim.REALISTIC_RADIOGRAPH)
    first = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    images, grades, features = sim.radiograph_set(jax.random.key(args.seed), args.num,
                                                  grades="balanced", **common,
                                                  **sim.REALISTIC_RADIOGRAPH)
    steady = (time.perf_counter() - start) / args.num
    steady_cpu = (time.process_time() - cpu) / args.num

    # The same subjects without realism: their features only (the images are not used, so a
    # small detector; the features do not depend on it).
    _, grades_plain, plain = sim.radiograph_set(jax.random.key(args.seed), args.num,
                                                grades="balanced", shape=(16, 16),
                                                pixel_size=10.0, depth_samples=8)
    assert np.array_equal(grades, grades_plain)

    results = dict(
        settings=dict(num=args.num, shape=shape, pixel_size=args.pixel_size,
                      depth_samples=args.depth_samples, seed=args.seed,
                      realism=sim.REALISTIC_RADIOGRAPH),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(),
                     device=str(jax.devices()[0]), load_average_at_start=load,
                     jax=jax.__version__, mskjax=mskjax.__version__),
        timing=dict(first_radiograph_s=first, steady_s_per_radiograph=steady,
                    steady_cpu_s_per_radiograph=steady_cpu,
                    load_average_at_end=os.getloadavg()),
        realistic=dict(
            minimum_joint_space_width=baseline(features["minimum_joint_space_width"], grades, 1),
            osteophyte_size=baseline(features["osteophyte_size"], grades, -1)),
        without_realism=dict(
            minimum_joint_space_width=baseline(plain["minimum_joint_space_width"], grades, 1),
            osteophyte_size=baseline(plain["osteophyte_size"], grades, -1)),
    )
    (out / "radiograph_grades.json").write_text(json.dumps(results, indent=2))
    figure(images, grades, features, out / "radiograph_grades.png")

    print(f"{args.num} radiographs {shape[0]}x{shape[1]}, depth {args.depth_samples}, "
          f"{results['machine']['device']} ({os.cpu_count()} CPUs, load {load[0]:.1f}): first "
          f"{first:.1f} s, then {steady * 1e3:.0f} ms each ({steady_cpu * 1e3:.0f} ms of CPU "
          f"time)")
    print(f"{'setting':<16}{'feature':<28}{'accuracy':>9}{'kappa_q':>9}{'spearman':>9}")
    for setting in ("realistic", "without_realism"):
        for feature, r in results[setting].items():
            print(f"{setting:<16}{feature:<28}{r['accuracy']:9.3f}{r['quadratic_kappa']:9.3f}"
                  f"{r['spearman']:9.3f}")


if __name__ == "__main__":
    main()
