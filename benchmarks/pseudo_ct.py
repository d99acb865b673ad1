"""MR-to-pseudo-CT synthesis on the simulated knee (Liu et al. 2017-2018): a U-Net mapping two MR
contrasts to CT in Hounsfield units, with and without an adversarial loss, against the
segmentation-based baseline (segment into air, fat, soft tissue and bone, give each class one
HU) and that baseline's oracle (the true classes).

Data: ``sim.pseudo_ct_example`` on a ``--shape`` grid (160 mm field of view): 2D sagittal slices
of realistic simulated knees (partial volume, receive bias, Gibbs ringing, Rician noise,
trabecular texture, contrast jitter 0.1, elastic deformation, random pathology, side and
osteoarthritis grade), fat-suppressed PD FSE and T1 SPGR as channels (each divided by its 99th
percentile); the CT target is the attenuation map of the same deformed labels in HU.
``--slices`` slices per subject, evenly spaced over the middle of the left-right axis. Training
and held-out subjects come from disjoint keys (different anatomy, tissue parameters, noise).

Methods, each trained for a fixed number of steps ``--steps`` (batch ``--batch``, Adam):

1. ``unet_l1``: ``nets.UNet(2, 1, chans=--chans, num_pool_layers=--pools)`` predicting
   ``HU / 1000`` with an L1 loss (:func:`mskjax.train.make_synthesis_step`);
2. ``unet_l1_adv``: the same plus ``--adversarial-weight`` (default 0.01, pix2pix's 1 : 100) x
   a least-squares GAN loss against ``nets.PatchDiscriminator(3, chans=--chans, num_layers=3)``
   scoring ``concat(MR, CT / 1000)``, one discriminator step per generator step;
3. ``segmentation``: ``nets.UNet(2, 4, ...)`` trained on the CT classes with soft Dice +
   cross-entropy, its argmax mapped to the mean HU of each class over the training subjects;
4. ``oracle_classes``: the true classes mapped to the same table (the best any
   one-HU-per-class method can do).

Scores on the held-out subjects (each subject's slices together, then mean and standard
deviation over subjects): MAE in HU per CT class and over the body (every non-air voxel),
:func:`mskjax.metrics.hounsfield_mae_per_tissue`, and the Dice of bone at 200 HU,
:func:`mskjax.metrics.bone_dice`; and the bone class split by label (cancellous: femur, tibia,
patella, fibula; cortical_bone), which one HU per class cannot tell apart. Writes ``<out>/pseudo_ct.json``, ``<out>/pseudo_ct.txt`` and
``<out>/pseudo_ct.png`` (MR inputs, CT target, pseudo-CTs and error maps of one held-out slice).

    python benchmarks/pseudo_ct.py [--steps 500] [--train-subjects 24] [--test-subjects 8]
        [--out benchmarks/results/pseudo_ct]
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
from mskjax import losses, metrics, nets, sim, train

ROOT = Path(__file__).resolve().parent
CLASSES = sim.CT_TISSUE_CLASSES
METHODS = ("unet_l1", "unet_l1_adv", "segmentation", "oracle_classes")
#: Cancellous (marrow-filled) bone labels; the bone class also holds cortical_bone.
MARROW = [sim.KNEE_LABELS[name] for name in ("femur", "tibia", "patella", "fibula")]


# ----------------------------------------------------------------------------------- data

def make_set(keys, args):
    """Stacked slices of the subjects ``keys``: mr ``(n, H, W, 2)``, hounsfield, classes
    ``(n, H, W)`` and the subject of each slice ``(n,)``."""
    n = args.shape[0]
    indices = np.round(np.linspace(0.3 * n, 0.7 * n, args.slices)).astype(int)
    out = {"mr": [], "hounsfield": [], "classes": [], "labels": [], "subject": []}
    for s, key in enumerate(keys):
        for index in indices:
            ex = sim.pseudo_ct_example(key, shape=tuple(args.shape), slice_axis=0,
                                       slice_index=int(index))
            out["mr"].append(np.asarray(ex.mr))
            out["hounsfield"].append(np.asarray(ex.hounsfield))
            out["classes"].append(np.asarray(ex.classes))
            out["labels"].append(np.asarray(ex.labels))
            out["subject"].append(s)
    return {k: np.stack(v) for k, v in out.items()}


# ------------------------------------------------------------------------------- training

def run_steps(step, state, batch_of, steps, log, name):
    """``steps`` jitted steps; the first (compilation) is timed apart from the rest."""
    tick = time.perf_counter()
    state, m = step(state, batch_of(0))
    jax.block_until_ready(state)
    first = time.perf_counter() - tick
    tick = time.perf_counter()
    for s in range(1, steps):
        state, m = step(state, batch_of(s))
        if (s + 1) % max(steps // 5, 1) == 0:
            log(f"  {name} step {s + 1}/{steps}: " + ", ".join(
                f"{k} {float(v):.4g}" for k, v in sorted(m.items()) if k != "skipped"))
    jax.block_until_ready(state)
    return state, {"steps": steps, "training_s": time.perf_counter() - tick,
                   "compile_and_first_step_s": first}


def train_synthesis(data, args, adversarial, log):
    generator = nets.UNet(2, 1, chans=args.chans, num_pool_layers=args.pools,
                          rngs=nnx.Rngs(args.seed))
    optimizer = optax.adam(args.lr)
    options = {}
    if adversarial:
        options = dict(discriminator=nets.PatchDiscriminator(3, chans=args.chans, num_layers=3,
                                                             rngs=nnx.Rngs(args.seed + 1)),
                       discriminator_optimizer=optax.adam(args.disc_lr, b1=0.5))
    state = train.init_synthesis_state(generator, optimizer=optimizer, key=args.seed, **options)
    step = jax.jit(train.make_synthesis_step(generator, optimizer=optimizer,
                                             adversarial_weight=args.adversarial_weight,
                                             **options), donate_argnums=0)

    def batch_of(s):
        i = train.batch_indices(args.seed, s, num_examples=len(data["mr"]),
                                batch_size=args.batch)
        return {"mr": data["mr"][i], "hounsfield": data["hounsfield"][i]}

    name = "unet_l1_adv" if adversarial else "unet_l1"
    state, info = run_steps(step, state, batch_of, args.steps, log, name)
    model = train.synthesis_generator(generator, state)
    graphdef, params = nnx.split(model)
    fn = jax.jit(lambda p, x: train.predict_hounsfield(nnx.merge(graphdef, p), x))
    return (lambda mr: np.concatenate([np.asarray(fn(params, mr[i:i + 8]))
                                       for i in range(0, len(mr), 8)])), info


def train_segmenter(data, args, log):
    segmenter = nets.UNet(2, len(CLASSES), chans=args.chans, num_pool_layers=args.pools,
                          rngs=nnx.Rngs(args.seed + 2))
    graphdef, params, rest = train.split_model(segmenter)
    optimizer = optax.adam(args.lr)

    def loss_fn(params, batch, key):
        logits = train.merge_model(graphdef, params, rest)(batch["mr"])
        return losses.dice_ce_loss(batch["classes"], logits, num_classes=len(CLASSES)), {}

    state = train.init_train_state(params, optimizer, key=args.seed)
    step = jax.jit(train.make_train_step(loss_fn, optimizer), donate_argnums=0)

    def batch_of(s):
        i = train.batch_indices(args.seed, s, num_examples=len(data["mr"]),
                                batch_size=args.batch)
        return {"mr": data["mr"][i], "classes": data["classes"][i]}

    state, info = run_steps(step, state, batch_of, args.steps, log, "segmentation")
    fn = jax.jit(lambda p, x: jnp.argmax(train.merge_model(graphdef, p, rest)(x), -1))
    return (lambda mr: np.concatenate([np.asarray(fn(state.params, mr[i:i + 8]))
                                       for i in range(0, len(mr), 8)])), info


# ---------------------------------------------------------------------------- evaluation

def scores(pred, test, threshold):
    """MAE per class and in the body, bone Dice: per held-out subject, then mean and std."""
    rows = []
    for s in np.unique(test["subject"]):
        sel = test["subject"] == s
        err = metrics.hounsfield_mae_per_tissue(test["hounsfield"][sel], pred[sel],
                                                test["classes"][sel])
        rows.append([*err.per_class, err.body,
                     metrics.bone_dice(test["hounsfield"][sel], pred[sel], threshold=threshold)])
        error = np.abs(pred[sel] - test["hounsfield"][sel])
        labels = test["labels"][sel]
        rows[-1] += [error[np.isin(labels, MARROW)].mean(),
                     error[labels == sim.KNEE_LABELS["cortical_bone"]].mean()]
    rows = np.asarray(rows)
    names = [f"mae_{c}" for c in CLASSES] + ["mae_body", "bone_dice", "mae_cancellous_bone",
                                             "mae_cortical_bone"]
    return {name: {"mean": float(np.mean(rows[:, j])), "std": float(np.std(rows[:, j])),
                   "per_subject": rows[:, j].tolist()} for j, name in enumerate(names)}


def format_table(results, args):
    names = [f"mae_{c}" for c in CLASSES] + ["mae_body", "bone_dice"]
    heads = [f"MAE {c} (HU)" for c in CLASSES] + ["MAE body (HU)",
                                                  f"bone Dice @{args.bone_threshold:g} HU"]
    lines = [f"{'method':16s}" + "".join(f"{h:>22s}" for h in heads)]
    for m, r in results.items():
        cells = []
        for n in names:
            fmt = "{:.3f} +- {:.3f}" if n == "bone_dice" else "{:.1f} +- {:.1f}"
            cells.append(fmt.format(r["scores"][n]["mean"], r["scores"][n]["std"]))
        lines.append(f"{m:16s}" + "".join(f"{c:>22s}" for c in cells))
    lines.append("\nthe bone class split by label (MAE in HU):")
    lines.append(f"{'method':16s}{'cancellous bone':>22s}{'cortical bone':>22s}")
    for m, r in results.items():
        cells = [f"{r['scores'][n]['mean']:.1f} +- {r['scores'][n]['std']:.1f}"
                 for n in ("mae_cancellous_bone", "mae_cortical_bone")]
        lines.append(f"{m:16s}" + "".join(f"{c:>22s}" for c in cells))
    return "\n".join(lines)


def figure(path, test, i, preds, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = test["hounsfield"][i]
    shown = [m for m in ("unet_l1", "unet_l1_adv", "segmentation") if m in preds]
    top = [("MR: PD FS", test["mr"][i, ..., 0], "gray", (0, 1.2)),
           ("MR: T1 SPGR", test["mr"][i, ..., 1], "gray", (0, 1.2)),
           ("CT target (HU)", truth, "gray", (-1000, 1500))]
    top += [(f"{m} (HU)", preds[m][i], "gray", (-1000, 1500)) for m in shown]
    bottom = [(f"|error| {m}", np.abs(preds[m][i] - truth), "magma", (0, 500)) for m in shown]
    left = [("CT classes: air, fat, soft tissue, bone", test["classes"][i], "viridis", (0, 3))]
    if "oracle_classes" in preds:
        left.append(("oracle classes (HU)", preds["oracle_classes"][i], "gray", (-1000, 1500)))
    cols = len(top)
    fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 5.6), constrained_layout=True)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, image, cmap, (lo, hi)) in zip(axes[0], top):
        im = ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=8)
    fig.colorbar(im, ax=axes[0, -1], fraction=0.046)
    for ax, (name, image, cmap, (lo, hi)) in zip(axes[1], left):
        ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    for ax, (name, image, cmap, (lo, hi)) in zip(axes[1, cols - len(shown):], bottom):
        im = ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=8)
    fig.colorbar(im, ax=axes[1, -1], fraction=0.046)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    shrink_png(path)


def shrink_png(path):
    """Re-save the figure with a 256-colour palette (a third of the size, same look)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256)
    tmp = path.with_name(path.name + ".tmp.png")
    small.save(tmp, optimize=True)
    os.replace(tmp, path)


def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="training steps of each net")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-subjects", type=int, default=24)
    parser.add_argument("--test-subjects", type=int, default=8)
    parser.add_argument("--slices", type=int, default=4, help="sagittal slices per subject")
    parser.add_argument("--shape", type=int, nargs=3, default=[48, 96, 96])
    parser.add_argument("--chans", type=int, default=16)
    parser.add_argument("--pools", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--disc-lr", type=float, default=2e-4)
    parser.add_argument("--adversarial-weight", type=float, default=0.01)
    parser.add_argument("--bone-threshold", type=float, default=metrics.BONE_THRESHOLD_HU)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "pseudo_ct"))
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    tick = time.perf_counter()
    keys = jax.random.split(jax.random.key(args.seed), args.train_subjects + args.test_subjects)
    data = make_set(keys[:args.train_subjects], args)
    test = make_set(keys[args.train_subjects:], args)
    data_s = time.perf_counter() - tick
    log(f"data: {args.train_subjects} training subjects ({len(data['mr'])} slices), "
        f"{args.test_subjects} held-out subjects ({len(test['mr'])} slices) of "
        f"{data['mr'].shape[1:3]} in {data_s:.0f} s")
    table = sim.mean_hounsfield_per_class(data["hounsfield"], data["classes"])
    log("class HU table (training subjects): " + ", ".join(
        f"{c} {v:.1f}" for c, v in zip(CLASSES, table)))

    results, preds = {}, {}
    for m in methods:
        log(f"{m}:")
        info = {"steps": 0, "training_s": 0.0, "compile_and_first_step_s": 0.0}
        if m in ("unet_l1", "unet_l1_adv"):
            predict, info = train_synthesis(data, args, m == "unet_l1_adv", log)
            pred = predict(test["mr"])
        elif m == "segmentation":
            segment, info = train_segmenter(data, args, log)
            classes = segment(test["mr"])
            pred = np.asarray(sim.pseudo_ct_from_classes(classes, table))
            info["class_dice"] = dict(zip(CLASSES, metrics.dice(
                classes, test["classes"], num_classes=len(CLASSES)).tolist()))
        else:
            pred = np.asarray(sim.pseudo_ct_from_classes(test["classes"], table))
        preds[m] = pred
        results[m] = {**info, "scores": scores(pred, test, args.bone_threshold)}
        if info["steps"]:
            log(f"  {m}: {info['steps']} steps in {info['training_s']:.0f} s "
                f"(+ {info['compile_and_first_step_s']:.0f} s compiling and first step)")

    text = format_table(results, args)
    log(f"\nheld-out subjects ({args.test_subjects}, {len(test['mr'])} slices): mean +- std "
        f"over subjects\n{text}")
    report = {
        "settings": {k.replace("-", "_"): v for k, v in vars(args).items()},
        "hu_scale": train.HOUNSFIELD_SCALE,
        "class_hu_table": dict(zip(CLASSES, table.tolist())),
        "data": {"train_subjects": args.train_subjects, "train_slices": len(data["mr"]),
                 "test_subjects": args.test_subjects, "test_slices": len(test["mr"]),
                 "contrasts": list(sim.PSEUDO_CT_CONTRASTS), "plane": "sagittal",
                 "data_s": data_s},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "backend": jax.default_backend(),
                    "note": "CPU shared with other work while this ran: times are longer than "
                            "on an idle machine"},
        "versions": {"mskjax": mskjax.__version__, "jax": jax.__version__,
                     "python": platform.python_version()},
        "methods": results,
        "total_s": time.perf_counter() - tick,
    }
    write_atomic(out / "pseudo_ct.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "pseudo_ct.txt", "\n".join(lines) + "\n")
    # The held-out slice shown: the middle slice of the first held-out subject.
    shown = args.slices // 2
    body = {m: results[m]["scores"]["mae_body"]["mean"] for m in results}
    figure(out / "pseudo_ct.png", test, shown, preds,
           "MR -> pseudo-CT, held-out subject; MAE in the body (HU): " + ", ".join(
               f"{m} {v:.0f}" for m, v in body.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
