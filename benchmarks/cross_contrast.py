"""Cross-contrast segmentation (SUSAN, Liu 2019) on the simulated knee: labels on T1-weighted
SPGR only, segment fat-suppressed PD FSE.

Data: 2D sagittal slices of realistic simulated knees (``sim.segmentation_example``: partial
volume, receive bias, Gibbs ringing, Rician noise, trabecular texture, jittered tissue
parameters, elastic deformation, random pathology, side and osteoarthritis grade; each image
divided by its 99th percentile), ``--slices`` slices per subject evenly spaced over the middle
of the left-right axis (through the condyles and the notch), centre-cropped to ``--crop``
pixels. Disjoint subjects (different keys, so different anatomy):

- ``--source-subjects`` labelled subjects, rendered in T1 SPGR (and in PD FS for the upper
  bound only);
- ``--target-subjects`` unlabelled subjects in PD FS (their labels are never read);
- ``--val-subjects`` labelled PD FS subjects, the only ones looked at when choosing settings
  (SUSAN's premise has no target labels: in practice there would be none to tune on);
- ``--test-subjects`` held-out labelled PD FS subjects, scored once.

Methods, each trained for a time budget (training time, compilation apart), the same segmenter
(``nets.UNet(1, 16, chans=--seg-chans, num_pool_layers=--seg-pools)``, soft Dice +
cross-entropy, batch ``--batch``):

1. ``lower``: trained on SPGR with labels, applied to PD FS (no adaptation), ``--bound-minutes``;
2. ``upper``: trained on the PD FS renderings of the same labelled subjects (supervised upper
   bound), ``--bound-minutes``;
3. ``susan``: :func:`mskjax.train.make_cross_contrast_step`: U-Net generators SPGR <-> PD FS,
   70 x 70 PatchGAN discriminators, least-squares GAN, cycle weight 10, the segmenter trained on
   the SPGR images and their translations to PD FS with the SPGR labels, semantic consistency
   on; ``--susan-minutes``.

Scores: Dice of every tissue per held-out subject (its slices together), the mean over subjects
and the mean over the foreground tissues present. Also the lower bound's Dice on the SPGR
renderings of the test subjects (the in-contrast score that the contrast change destroys).
Writes ``benchmarks/results/cross_contrast.json`` and ``cross_contrast.png`` (a source image,
its translation, a held-out PD FS image, its labels and the three segmentations).

    python benchmarks/cross_contrast.py [--bound-minutes 3] [--susan-minutes 8]
        [--methods lower,upper,susan] [--out benchmarks/results/cross_contrast]

A method whose result is in ``<out>/runs/<method>.npz`` (same settings) is not trained again
unless ``--retrain``; the data set is kept in ``<out>/data.npz``.
"""

from __future__ import annotations

import argparse
import hashlib
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
NAMES = list(sim.KNEE_LABELS)
NUM_CLASSES = len(NAMES)
METHODS = ("lower", "upper", "susan")


# ----------------------------------------------------------------------------------- data

def subject_slices(key, *, shape, contrast, slices, crop):
    """``slices`` sagittal slices of one subject: images ``(slices, [contrasts,] H, W)`` and
    labels ``(slices, H, W)``, centre-cropped."""
    n = shape[0]
    indices = np.round(np.linspace(0.3 * n, 0.7 * n, slices)).astype(int)
    images, labels = [], []
    for index in indices:
        ex = sim.segmentation_example(key, shape=shape, contrast=contrast, slice_axis=0,
                                      slice_index=int(index))
        images.append(np.asarray(ex.image))
        labels.append(np.asarray(ex.labels))
    images, labels = np.stack(images), np.stack(labels)
    if crop:
        h, w = labels.shape[-2:]
        top, left = (h - crop) // 2, (w - crop) // 2
        images = images[..., top:top + crop, left:left + crop]
        labels = labels[..., top:top + crop, left:left + crop]
    return images.astype(np.float32), labels.astype(np.int32)


def make_data(args, log):
    base = jax.random.key(args.seed)
    counts = {"source": args.source_subjects, "target": args.target_subjects,
              "val": args.val_subjects, "test": args.test_subjects}
    data, first = {}, 0
    tick = time.perf_counter()
    for split, count in counts.items():
        images, labels, subjects = [], [], []
        for i in range(first, first + count):
            # Source and test subjects in both contrasts (the upper bound trains on the PD FS
            # of the source subjects; the lower bound is also scored on the SPGR of the test
            # subjects); target and validation subjects in PD FS only.
            contrast = ("t1_spgr", "pd_fs") if split in ("source", "test") else "pd_fs"
            im, lab = subject_slices(jax.random.fold_in(base, i), shape=args.shape,
                                     contrast=contrast, slices=args.slices, crop=args.crop)
            if im.ndim == 3:
                im = im[:, None]
            images.append(im)
            labels.append(lab)
            subjects += [i] * len(lab)
        first += count
        data[split] = {"images": np.concatenate(images), "labels": np.concatenate(labels),
                       "subjects": np.asarray(subjects)}
        log(f"  {split}: {count} subjects, {len(subjects)} slices of "
            f"{data[split]['labels'].shape[1:]}, contrasts {data[split]['images'].shape[1]}")
    log(f"  simulated in {time.perf_counter() - tick:.1f} s")
    return data


# ------------------------------------------------------------------------------ training

def segmenter(args):
    return nets.UNet(1, NUM_CLASSES, chans=args.seg_chans, num_pool_layers=args.seg_pools,
                     rngs=nnx.Rngs(args.seed))


def seg_loss(labels, logits):
    return losses.dice_ce_loss(labels, logits, num_classes=NUM_CLASSES)


def run_for(minutes, step_fn, state, batch_of, log, name):
    """Step until ``minutes`` of training time have passed (the first, compiling step apart).
    Returns the state, the number of steps, the compile and training times and a loss log."""
    tick = time.perf_counter()
    state, m = step_fn(state, batch_of(0))
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - tick
    history = [{"step": 1, **{k: float(v) for k, v in m.items()}}]
    steps, start = 1, time.perf_counter()
    while time.perf_counter() - start < 60 * minutes:
        state, m = step_fn(state, batch_of(steps))
        jax.block_until_ready(m)  # the clock must see the work, not its dispatch
        steps += 1
        if steps % 25 == 0:
            history.append({"step": steps, **{k: float(v) for k, v in m.items()}})
            shown = ", ".join(f"{k} {float(v):.3f}" for k, v in m.items()
                              if k in ("loss", "segmentation_source", "segmentation_translated",
                                       "cycle", "adversarial", "discriminator_loss"))
            log(f"    {name} step {steps}: {shown}")
    jax.block_until_ready(state)
    train_s = time.perf_counter() - start
    return state, {"steps": steps, "compile_and_first_step_s": compile_s,
                   "training_s": train_s, "history": history}


def train_bound(args, images, labels, log, name):
    """A segmenter trained with labels on ``images`` ``(n, H, W, 1)``."""
    model = segmenter(args)
    graphdef, params, rest = train.split_model(model)

    def loss_fn(params, batch, key):
        return seg_loss(batch["labels"], train.merge_model(graphdef, params, rest)(
            batch["image"])), {}

    optimizer = optax.adam(args.seg_lr)
    state = train.init_train_state(params, optimizer, key=args.seed)
    step = jax.jit(train.make_train_step(loss_fn, optimizer), donate_argnums=0)

    def batch_of(s):
        index = train.batch_indices(args.seed, s, num_examples=len(labels),
                                    batch_size=args.batch)
        return {"image": images[index], "labels": labels[index]}

    state, info = run_for(args.bound_minutes, step, state, batch_of, log, name)
    return train.merge_model(graphdef, state.params, rest), info, None


def susan_nets(args):
    rngs = nnx.Rngs(args.seed + 1)
    return train.CrossContrastNets(
        to_target=nets.UNet(1, 1, chans=args.gen_chans, num_pool_layers=3, rngs=rngs),
        to_source=nets.UNet(1, 1, chans=args.gen_chans, num_pool_layers=3, rngs=rngs),
        source_discriminator=nets.PatchDiscriminator(1, chans=args.disc_chans, rngs=rngs),
        target_discriminator=nets.PatchDiscriminator(1, chans=args.disc_chans, rngs=rngs),
        segmenter=segmenter(args))


def train_susan(args, source, labels, target, log, shown):
    models = susan_nets(args)
    gan = optax.adam(args.gan_lr, b1=0.5)
    generator_optimizer = optax.multi_transform(
        {"gan": gan, "segmenter": optax.adam(args.seg_lr)},
        {"to_target": "gan", "to_source": "gan", "segmenter": "segmenter"})
    discriminator_optimizer = optax.adam(args.gan_lr, b1=0.5)
    state = train.init_cross_contrast_state(models, generator_optimizer=generator_optimizer,
                                            discriminator_optimizer=discriminator_optimizer,
                                            key=args.seed)
    step = jax.jit(train.make_cross_contrast_step(
        models, generator_optimizer=generator_optimizer,
        discriminator_optimizer=discriminator_optimizer, adversarial_weight=1.0,
        cycle_weight=args.cycle_weight, source_weight=1.0,
        translated_weight=args.translated_weight, segmentation_loss=seg_loss),
        donate_argnums=0)

    def batch_of(s):
        i = train.batch_indices(args.seed, s, num_examples=len(labels), batch_size=args.batch)
        j = train.batch_indices(args.seed + 1, s, num_examples=len(target),
                                batch_size=args.batch)
        return {"source": source[i], "labels": labels[i], "target": target[j]}

    state, info = run_for(args.susan_minutes, step, state, batch_of, log, "susan")
    trained = train.cross_contrast_nets(models, state)
    return trained.segmenter, info, np.asarray(trained.to_target(source[shown:shown + 1]))[0, ..., 0]


# ---------------------------------------------------------------------------- evaluation

def predict(model, images, batch=8):
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, x: jnp.argmax(nnx.merge(graphdef, s)(x), axis=-1))
    return np.concatenate([np.asarray(fn(state, images[i:i + batch]))
                           for i in range(0, len(images), batch)])


def scores(pred, labels, subjects):
    """Per-tissue Dice per subject (its slices together), their mean over subjects, and the
    mean over the foreground tissues present."""
    per_subject = np.stack([metrics.dice(pred[subjects == s], labels[subjects == s],
                                         num_classes=NUM_CLASSES)
                            for s in np.unique(subjects)])
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(per_subject, axis=0) if np.isfinite(per_subject).any() else \
            per_subject[0]
    return {"per_tissue": {NAMES[c]: (None if np.isnan(mean[c]) else float(mean[c]))
                           for c in range(NUM_CLASSES)},
            "mean_foreground": metrics.mean_over_classes(mean),
            "per_subject_mean_foreground": [metrics.mean_over_classes(d)
                                            for d in per_subject]}


def format_table(results):
    methods = list(results)
    lines = [f"{'tissue':22s}" + "".join(f"{m:>10s}" for m in methods)]
    for name in NAMES[1:]:
        row = [results[m]["per_tissue"][name] for m in methods]
        lines.append(f"{name:22s}" + "".join("       n/a" if v is None else f"{v:10.3f}"
                                             for v in row))
    lines.append(f"{'mean (foreground)':22s}" + "".join(
        f"{results[m]['mean_foreground']:10.3f}" for m in methods))
    return "\n".join(lines)


def figure(path, source, translated, test_image, truth, segmentations, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("source: T1 SPGR", source, None), ("translated to PD FS (SUSAN's G)", translated,
                                                  None),
              ("held-out target: PD FS", test_image, None), ("truth", test_image, truth)]
    panels += [(name, test_image, seg) for name, seg in segmentations.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.7 * len(panels), 3.2),
                             constrained_layout=True)
    for ax, (name, image, labels) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1.2)
        if labels is not None:
            ax.imshow(np.ma.masked_equal(labels, 0), cmap="tab20", vmin=0, vmax=19, alpha=0.5,
                      interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------- main

def settings_hash(args, keys):
    text = json.dumps({k: getattr(args, k) for k in keys}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


DATA_KEYS = ["seed", "shape", "slices", "crop", "source_subjects", "target_subjects",
             "val_subjects", "test_subjects"]
TRAIN_KEYS = DATA_KEYS + ["batch", "seg_chans", "seg_pools", "seg_lr", "gen_chans",
                          "disc_chans", "gan_lr", "cycle_weight", "translated_weight"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bound-minutes", type=float, default=3.0,
                        help="training time of each bound (default 3)")
    parser.add_argument("--susan-minutes", type=float, default=8.0,
                        help="training time of SUSAN (default 8)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(ROOT / "results" / "cross_contrast"))
    parser.add_argument("--retrain", action="store_true",
                        help="train again even where an earlier run's result exists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", default="64,128,128",
                        help="phantom grid (left-right, superior-inferior, anterior-posterior)")
    parser.add_argument("--slices", type=int, default=4, help="sagittal slices per subject")
    parser.add_argument("--crop", type=int, default=96, help="centre crop (0: none)")
    parser.add_argument("--source-subjects", type=int, default=24)
    parser.add_argument("--target-subjects", type=int, default=24)
    parser.add_argument("--val-subjects", type=int, default=4)
    parser.add_argument("--test-subjects", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seg-chans", type=int, default=16)
    parser.add_argument("--seg-pools", type=int, default=3)
    parser.add_argument("--seg-lr", type=float, default=1e-3)
    parser.add_argument("--gen-chans", type=int, default=8)
    parser.add_argument("--disc-chans", type=int, default=16)
    parser.add_argument("--gan-lr", type=float, default=2e-4)
    parser.add_argument("--cycle-weight", type=float, default=10.0)
    parser.add_argument("--translated-weight", type=float, default=1.0)
    args = parser.parse_args(argv)
    args.shape = [int(v) for v in args.shape.split(",")]
    if len(args.shape) != 3:
        parser.error("--shape takes three sizes")
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {list(METHODS)}")
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    log(f"cross-contrast segmentation: {jax.default_backend()} backend, "
        f"{os.cpu_count()} CPUs (shared with other work: times and step counts vary)")
    data_path = out / "data.npz"
    data_id = settings_hash(args, DATA_KEYS)
    data = None
    if data_path.exists():
        with np.load(data_path) as archive:
            if str(archive["settings"]) == data_id:
                data = {split: {k: archive[f"{split}_{k}"] for k in ("images", "labels",
                                                                     "subjects")}
                        for split in ("source", "target", "val", "test")}
                log(f"data from {data_path}")
    if data is None:
        log("simulating the data set")
        data = make_data(args, log)
        tmp = data_path.with_suffix(".tmp.npz")
        np.savez(tmp, settings=data_id, **{f"{s}_{k}": v for s, d in data.items()
                                           for k, v in d.items()})
        os.replace(tmp, data_path)

    def channels_last(x):
        return np.ascontiguousarray(x[:, :, :, None])

    spgr_source = channels_last(data["source"]["images"][:, 0])
    pdfs_source = channels_last(data["source"]["images"][:, 1])
    source_labels = data["source"]["labels"]
    target = channels_last(data["target"]["images"][:, 0])
    evaluation = {"val": (channels_last(data["val"]["images"][:, 0]), data["val"]["labels"],
                          data["val"]["subjects"]),
                  "test": (channels_last(data["test"]["images"][:, 1]),
                           data["test"]["labels"], data["test"]["subjects"])}
    spgr_test = channels_last(data["test"]["images"][:, 0])

    # The figure's slices: the source and test slices with the most cartilage.
    cartilage = [sim.KNEE_LABELS[n] for n in ("femoral_cartilage", "tibial_cartilage")]
    shown_source = int(np.argmax(np.isin(source_labels, cartilage).sum(axis=(1, 2))))
    shown_test = int(np.argmax(np.isin(evaluation["test"][1], cartilage).sum(axis=(1, 2))))
    run_id = settings_hash(args, TRAIN_KEYS)
    results = {}
    for method in methods:
        path = out / "runs" / f"{method}.npz"
        minutes = args.susan_minutes if method == "susan" else args.bound_minutes
        if path.exists() and not args.retrain:
            with np.load(path, allow_pickle=False) as archive:
                if str(archive["settings"]) == f"{run_id}-{minutes}":
                    results[method] = json.loads(str(archive["result"]))
                    results[method]["predictions"] = {k: archive[k] for k in archive
                                                      if k.startswith("pred_")}
                    log(f"{method}: result of an earlier run ({results[method]['steps']} "
                        f"steps)")
                    continue
        log(f"training {method} for {minutes} min")
        tick = time.perf_counter()
        if method == "lower":
            model, info, generator = train_bound(args, spgr_source, source_labels, log, method)
        elif method == "upper":
            model, info, generator = train_bound(args, pdfs_source, source_labels, log, method)
        else:
            model, info, generator = train_susan(args, spgr_source, source_labels, target, log,
                                                 shown_source)
        model.eval()
        predictions = {f"pred_{split}": predict(model, images).astype(np.uint8)
                       for split, (images, _, _) in evaluation.items()}
        if method == "lower":
            predictions["pred_test_spgr"] = predict(model, spgr_test).astype(np.uint8)
        if generator is not None:  # the translation of the source slice in the figure
            predictions["pred_translated"] = generator
        result = {**{k: v for k, v in info.items()}, "wall_s": time.perf_counter() - tick}
        log(f"  {method}: {info['steps']} steps in {info['training_s']:.0f} s "
            f"(+ {info['compile_and_first_step_s']:.0f} s compiling and first step)")
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, settings=f"{run_id}-{minutes}", result=json.dumps(result),
                 **predictions)
        os.replace(tmp, path)
        results[method] = {**result, "predictions": predictions}

    report = {
        "settings": {k: getattr(args, k) for k in TRAIN_KEYS + ["bound_minutes",
                                                                "susan_minutes"]},
        "data": {split: {"subjects": int(len(np.unique(d["subjects"]))),
                         "slices": int(len(d["labels"]))} for split, d in data.items()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "backend": jax.default_backend(),
                    "note": "CPU shared with other work while this ran: step counts and "
                            "times are lower than on an idle machine"},
        "versions": {"mskjax": mskjax.__version__, "jax": jax.__version__},
        "methods": {}}
    for split in ("val", "test"):
        _, labels, subjects = evaluation[split]
        table = {m: scores(r["predictions"][f"pred_{split}"], labels, subjects)
                 for m, r in results.items()}
        for m in results:
            report["methods"].setdefault(m, {k: v for k, v in results[m].items()
                                             if k != "predictions"})
            report["methods"][m][split] = table[m]
        log(f"\nDice on the {split} subjects (PD FS, {len(np.unique(subjects))} subjects)")
        log(format_table(table))
    if "lower" in results:
        _, labels, subjects = evaluation["test"]
        spgr = scores(results["lower"]["predictions"]["pred_test_spgr"], labels, subjects)
        report["methods"]["lower"]["test_on_spgr"] = spgr
        log(f"lower bound on the SPGR renderings of the test subjects (its own contrast): "
            f"mean Dice {spgr['mean_foreground']:.3f}")
    log("steps: " + ", ".join(f"{m} {r['steps']} in {r['training_s']:.0f} s"
                              for m, r in results.items()))
    report_path = out.parent / "cross_contrast.json"
    tmp = report_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, report_path)
    if "susan" in results:
        test_images, test_labels, _ = evaluation["test"]
        i = shown_test
        segs = {f"{m} ({report['methods'][m]['test']['mean_foreground']:.2f})":
                results[m]["predictions"]["pred_test"][i] for m in results}
        figure(out.parent / "cross_contrast.png", spgr_source[shown_source, ..., 0],
               results["susan"]["predictions"]["pred_translated"], test_images[i, ..., 0],
               test_labels[i], segs, "cross-contrast segmentation: labels on T1 SPGR only, "
               "held-out PD FS (mean foreground Dice in brackets)")
    (out / "log.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {report_path}")


if __name__ == "__main__":
    main()
