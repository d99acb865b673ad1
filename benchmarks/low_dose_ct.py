"""Low-dose CT of the simulated knee: FBP, TV denoising and RED-CNN against full-dose FBP.

Data: axial slices (``(left-right, anterior-posterior)``, 128 x 128 at 1.25 mm, a 160 mm field
of view) of :func:`mskjax.sim.knee_phantom` subjects, every ``--slice-step``-th slice from
index 24 to 96 of 128 along superior-inferior (femur, joint, tibia and fibula), their linear
attenuation from :func:`mskjax.sim.attenuation_map` (1/cm at about 60 keV; the same map as the
pseudo-CT targets). Training subjects (keys ``0 .. --train-subjects - 1``) and held-out
subjects (keys ``1000 ..``) are different knees; nothing of the held-out subjects is seen in
training or tuning.

Scan: parallel beam (:class:`mskjax.linop.Radon`, 180 angles over a half turn, 185 detectors
of 1.25 mm), Poisson counts (:func:`mskjax.sim.low_dose_sinogram`) at ``I0 = --photons`` per
ray (full dose, 1e5) and at ``--dose`` of it (low dose, 0.1), ramp-filtered back-projection
(:func:`mskjax.recon.filtered_back_projection`) of both.

Methods on the low-dose FBP:

- ``low-dose FBP`` itself;
- ``TV``: :func:`mskjax.recon.tv_denoise` (isotropic, 300 iterations), ``lamda`` chosen on the
  training slices from a grid (best mean PSNR against their full-dose FBP);
- ``RED-CNN``: :class:`mskjax.nets.REDCNN` (``--features`` filters of 5 x 5, no output ReLU
  since FBP noise is signed in air) trained for ``--steps`` Adam steps (lr 1e-3 with cosine
  decay) on random ``--patch`` x ``--patch`` patches (batch ``--batch``) of the training
  slices, input low-dose FBP and target full-dose FBP, both divided by water's attenuation
  (water = 1), l2 loss, like the paper (which used full-dose images as labels).

Metrics on the held-out slices, against full-dose FBP (the issue's reference) and, for
context, against the true attenuation map: PSNR and SSIM of the attenuation images over the
held-out stack (fastMRI's definitions, :mod:`mskjax.metrics`, peak = the reference's maximum),
and the mean absolute error in HU per CT class of the true map
(:func:`mskjax.metrics.hounsfield_mae_per_tissue` with :func:`mskjax.sim.ct_tissue_classes`:
air, fat, soft tissue, bone) and over the body.

Writes ``benchmarks/results/low_dose_ct/low_dose_ct.json``, ``low_dose_ct.txt`` and
``low_dose_ct.png`` (full dose, low dose, TV, RED-CNN of one held-out slice in a soft-tissue
and a bone window).

    python benchmarks/low_dose_ct.py [--steps 1500] [--dose 0.1] [--photons 1e5]
        [--train-subjects 6] [--test-subjects 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import mskjax
from mskjax import linop, metrics, nets, recon, sim, train

ROOT = Path(__file__).resolve().parent
SHAPE = (128, 128)
VOXEL_MM = 160.0 / 128
NUM_ANGLES = 180
TV_GRID = [0.002, 0.004, 0.008, 0.016, 0.032]  # 1/cm (image units)
WATER = sim.WATER_ATTENUATION_PER_CM


def slices(keys, slice_indices):
    """Labels, attenuation and CT classes of axial slices: each ``(n, 128, 128)``."""
    labels = []
    for k in keys:
        for s in slice_indices:
            phantom = sim.knee_phantom(jax.random.key(k), shape=(128, 128, 128),
                                       slice_axis=1, slice_index=s)
            labels.append(np.asarray(phantom.labels))
    labels = np.stack(labels)
    mu = np.asarray(sim.attenuation_map(labels))
    classes = np.asarray(sim.ct_tissue_classes(labels))
    return labels, mu, classes


def scan(key, mu, *, photons, dose, angles):
    """Full- and low-dose FBP of every attenuation slice (1/cm)."""
    pixel_cm = VOXEL_MM / 10
    projector = linop.Radon(SHAPE, angles, pixel_size=pixel_cm)

    @jax.jit
    def one(key, image):
        clean = projector(image)
        k_full, k_low = jax.random.split(key)
        full = sim.low_dose_sinogram(k_full, clean, incident_photons=photons)
        low = sim.low_dose_sinogram(k_low, clean, incident_photons=photons, dose_fraction=dose)
        fbp = [recon.filtered_back_projection(s, angles, shape=SHAPE, pixel_size=pixel_cm)
               for s in (full, low)]
        return fbp[0], fbp[1]

    full, low = [], []
    for i, image in enumerate(mu):
        f, lo = one(jax.random.fold_in(key, i), jnp.asarray(image))
        full.append(np.asarray(f))
        low.append(np.asarray(lo))
    return np.stack(full), np.stack(low)


def tv_batch(images, lamda):
    f = jax.jit(lambda x, lam: recon.tv_denoise(x, lamda=lam, max_iter=300).image)
    return np.stack([np.asarray(f(jnp.asarray(x), lamda)) for x in images])


def psnr_ssim(reference, estimate):
    ref = jnp.asarray(reference, jnp.float32)
    est = jnp.asarray(estimate, jnp.float32)
    return float(metrics.psnr(ref, est)), float(metrics.ssim(ref, est))


def hu_errors(reference_mu, estimate_mu, classes):
    result = metrics.hounsfield_mae_per_tissue(
        np.asarray(sim.hounsfield_units(reference_mu)),
        np.asarray(sim.hounsfield_units(estimate_mu)), classes)
    row = {name: float(v) for name, v in zip(sim.CT_TISSUE_CLASSES, result.per_class)}
    row["body"] = float(result.body)
    return row


def train_red_cnn(x_train, y_train, *, steps, features, patch, batch, seed):
    model = nets.REDCNN(features=features, output_relu=False, rngs=nnx.Rngs(seed))
    graphdef, params, rest = train.split_model(model)
    schedule = optax.cosine_decay_schedule(1e-3, steps)
    optimizer = optax.adam(schedule)
    state = train.init_train_state(params, optimizer, key=seed)
    x_all = jnp.asarray(x_train / WATER, jnp.float32)[..., None]
    y_all = jnp.asarray(y_train / WATER, jnp.float32)[..., None]
    n, rows, cols, _ = x_all.shape

    def loss_fn(p, data, key):
        pred = train.merge_model(graphdef, p, rest)(data["x"])
        return jnp.mean((pred - data["y"]) ** 2), {}

    base_step = train.make_train_step(loss_fn, optimizer)

    @jax.jit
    def step(state):
        key = jax.random.fold_in(jax.random.key(seed + 1), state.step)
        ki, kr, kc, kf = jax.random.split(key, 4)
        idx = jax.random.randint(ki, (batch,), 0, n)
        r0 = jax.random.randint(kr, (batch,), 0, rows - patch + 1)
        c0 = jax.random.randint(kc, (batch,), 0, cols - patch + 1)

        def crop(a, i, r, c):
            return jax.lax.dynamic_slice(a[i], (r, c, 0), (patch, patch, 1))

        xb = jax.vmap(crop, in_axes=(None, 0, 0, 0))(x_all, idx, r0, c0)
        yb = jax.vmap(crop, in_axes=(None, 0, 0, 0))(y_all, idx, r0, c0)
        flip = jax.random.bernoulli(kf, 0.5, (batch, 1, 1, 1))
        xb = jnp.where(flip, xb[:, :, ::-1], xb)
        yb = jnp.where(flip, yb[:, :, ::-1], yb)
        return base_step(state, {"x": xb, "y": yb})

    start = time.perf_counter()
    state, _ = step(state)
    jax.block_until_ready(state.params)
    compile_s = time.perf_counter() - start
    losses = []
    start = time.perf_counter()
    for i in range(1, steps):
        state, m = step(state)
        if i % 100 == 0 or i == steps - 1:
            losses.append((i, float(m["loss"])))
            print(f"  RED-CNN step {i}/{steps}: loss {losses[-1][1]:.5f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    jax.block_until_ready(state.params)
    train_s = time.perf_counter() - start
    model = train.merge_model(graphdef, state.params, rest)
    return model, {"compile_s": compile_s, "train_s": train_s, "losses": losses,
                   "skipped_steps": int(state.skipped)}


def denoise_red_cnn(model, images):
    f = jax.jit(lambda x: model(x))
    out = [np.asarray(f(jnp.asarray(x / WATER, jnp.float32)[None, ..., None]))[0, ..., 0]
           for x in images]
    return np.stack(out) * WATER


def figure(path, images, titles, classes):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = [("soft tissue W400 L40", 40.0, 400.0), ("bone W1800 L400", 400.0, 1800.0)]
    fig, axes = plt.subplots(2, len(images), figsize=(3.2 * len(images), 6.6))
    for row, (name, level, width) in enumerate(windows):
        for col, (image, title) in enumerate(zip(images, titles)):
            hu = np.asarray(sim.hounsfield_units(image))
            ax = axes[row, col]
            ax.imshow(hu.T, cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
            ax.set_title(f"{title}\n{name}" if row == 0 else name, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    from PIL import Image  # grey levels only: an 8-bit grey PNG is a third of the size
    Image.open(tmp).convert("L").save(tmp, optimize=True)
    os.replace(tmp, path)


def write_atomic(path: Path, text: str):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dose", type=float, default=0.1)
    parser.add_argument("--photons", type=float, default=1e5)
    parser.add_argument("--train-subjects", type=int, default=6)
    parser.add_argument("--test-subjects", type=int, default=3)
    parser.add_argument("--slice-step", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "low_dose_ct")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.train_subjects, args.test_subjects, args.slice_step = 20, 1, 1, 36
    total_start = time.perf_counter()
    slice_indices = list(range(24, 97, args.slice_step))
    angles = np.linspace(0, np.pi, NUM_ANGLES, endpoint=False).astype(np.float32)
    train_keys = list(range(args.train_subjects))
    test_keys = list(range(1000, 1000 + args.test_subjects))

    print(f"simulating {len(train_keys)} training and {len(test_keys)} held-out subjects, "
          f"{len(slice_indices)} axial slices each", flush=True)
    start = time.perf_counter()
    _, mu_train, _ = slices(train_keys, slice_indices)
    _, mu_test, classes_test = slices(test_keys, slice_indices)
    full_train, low_train = scan(jax.random.key(1), mu_train, photons=args.photons,
                                 dose=args.dose, angles=angles)
    full_test, low_test = scan(jax.random.key(2), mu_test, photons=args.photons,
                               dose=args.dose, angles=angles)
    scan_s = time.perf_counter() - start
    print(f"  projection, noise and FBP of {len(mu_train) + len(mu_test)} slices: "
          f"{scan_s:.0f} s", flush=True)

    # TV: lamda tuned on (at most 12 of) the training slices.
    tune = np.linspace(0, len(low_train) - 1, min(12, len(low_train))).astype(int)
    tv_scores = {}
    start = time.perf_counter()
    for lamda in TV_GRID:
        den = tv_batch(low_train[tune], lamda)
        tv_scores[lamda] = float(np.mean([psnr_ssim(f, d)[0]
                                          for f, d in zip(full_train[tune], den)]))
        print(f"  TV lamda {lamda}: training PSNR {tv_scores[lamda]:.2f} dB", flush=True)
    best_lamda = max(tv_scores, key=tv_scores.get)
    tv_tune_s = time.perf_counter() - start
    start = time.perf_counter()
    tv_test = tv_batch(low_test, best_lamda)
    tv_s = (time.perf_counter() - start) / len(low_test)

    print(f"training RED-CNN for {args.steps} steps", flush=True)
    model, training = train_red_cnn(low_train, full_train, steps=args.steps,
                                    features=args.features, patch=args.patch,
                                    batch=args.batch, seed=0)
    start = time.perf_counter()
    red_test = denoise_red_cnn(model, low_test)
    red_s = (time.perf_counter() - start) / len(low_test)

    methods = {"full-dose FBP": full_test, "low-dose FBP": low_test, "TV": tv_test,
               "RED-CNN": red_test}
    results = {}
    for name, images in methods.items():
        entry = {}
        if name != "full-dose FBP":
            p, s = psnr_ssim(full_test, images)
            entry["vs_full_dose"] = {"psnr_db": p, "ssim": s,
                                     "hu_mae": hu_errors(full_test, images, classes_test)}
        p, s = psnr_ssim(mu_test, images)
        entry["vs_truth"] = {"psnr_db": p, "ssim": s,
                             "hu_mae": hu_errors(mu_test, images, classes_test)}
        results[name] = entry

    def table(key, names):
        cols = ["PSNR dB", "SSIM"] + [f"{c} HU" for c in sim.CT_TISSUE_CLASSES] + ["body HU"]
        lines = [f"{'method':<15}" + "".join(f"{c:>16}" for c in cols)]
        for name in names:
            r = results[name][key]
            vals = [f"{r['psnr_db']:.2f}", f"{r['ssim']:.4f}"] + [
                f"{r['hu_mae'][c]:.1f}" for c in (*sim.CT_TISSUE_CLASSES, "body")]
            lines.append(f"{name:<15}" + "".join(f"{v:>16}" for v in vals))
        return "\n".join(lines)

    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model)))
    settings = {
        "image": f"{SHAPE[0]} x {SHAPE[1]} axial, {VOXEL_MM} mm pixels",
        "slices_per_subject": len(slice_indices), "slice_indices": slice_indices,
        "train_subject_keys": train_keys, "test_subject_keys": test_keys,
        "train_slices": int(len(mu_train)), "test_slices": int(len(mu_test)),
        "angles": NUM_ANGLES, "detectors": int(linop.Radon(SHAPE, angles).num_detectors),
        "full_dose_photons_per_ray": args.photons, "dose_fraction": args.dose,
        "fbp_filter": "ramp", "tv_grid": TV_GRID, "tv_lamda": best_lamda,
        "tv_training_psnr": tv_scores, "tv_iterations": 300,
        "red_cnn": {"features": args.features, "kernel": 5, "parameters": n_params,
                    "patch": args.patch, "batch": args.batch, "steps": args.steps,
                    "optimizer": "adam, lr 1e-3 cosine decay", "loss": "l2",
                    "normalisation": "attenuation / water", "output_relu": False},
    }
    timing = {"scan_s": scan_s, "tv_tuning_s": tv_tune_s, "tv_per_slice_s": tv_s,
              "red_cnn_compile_s": training["compile_s"],
              "red_cnn_train_s": training["train_s"], "red_cnn_per_slice_s": red_s,
              "total_s": time.perf_counter() - total_start}
    header = (f"Low-dose CT of the simulated knee: {len(mu_test)} held-out slices of "
              f"{len(test_keys)} subjects (trained on {len(mu_train)} slices of "
              f"{len(train_keys)} other subjects)\n"
              f"I0 = {args.photons:g} photons/ray at full dose, low dose = {args.dose:g} x; "
              f"{NUM_ANGLES} angles, ramp FBP; TV lamda {best_lamda} (tuned on training "
              f"slices); RED-CNN {args.features} filters ({n_params} weights), "
              f"{args.steps} steps in {training['train_s']:.0f} s "
              f"(+{training['compile_s']:.0f} s compile)\n"
              f"HU errors: mean |error| per CT class of the true map (sim.ct_tissue_classes)\n"
              f"machine: {platform.platform()}, {os.cpu_count()} CPUs (shared), jax "
              f"{jax.__version__}")
    text = (header + "\n\nAgainst full-dose FBP (the reference):\n"
            + table("vs_full_dose", ["low-dose FBP", "TV", "RED-CNN"])
            + "\n\nAgainst the true attenuation map (context):\n"
            + table("vs_truth", list(methods)) + "\n")
    print("\n" + text)
    if args.quick:
        print("(--quick: nothing written)")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "versions": {"mskjax": getattr(mskjax, "__version__", "unknown"),
                           "jax": jax.__version__},
              "settings": settings, "timing": timing, "training_losses": training["losses"],
              "skipped_steps": training["skipped_steps"], "results": results}
    write_atomic(args.out / "low_dose_ct.json", json.dumps(report, indent=2))
    write_atomic(args.out / "low_dose_ct.txt", text)
    # The figure: the held-out slice with the most bone.
    pick = int(np.argmax((classes_test == 3).sum(axis=(1, 2))))
    figure(args.out / "low_dose_ct.png", [methods[m][pick] for m in methods], list(methods),
           classes_test[pick])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
