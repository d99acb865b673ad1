"""Cartilage lesion detection from 8x undersampled k-space: does task-driven reconstruction help?

Data: 2D sagittal slices of simulated knees (``sim.lesion_detection_example``: a slice through
a cartilage lesion of conspicuity drawn uniformly in [0, 1], or through the same place of a
knee without it, 1 in 2; PD fat-suppressed, Rician noise at an SNR drawn in [10, 30]; noise-only
rendering unless ``--realistic``), ``--size`` pixels square over a 100 mm field of view. Each
image (magnitude, over its 99th percentile) gets a smooth random phase and ``--coils`` birdcage
coil maps (``sim.simulate_kspace``, no further noise): its fully sampled k-space. One fixed
fastMRI equispaced mask (``--acceleration`` 8, centre fraction 0.04; ``--mask random`` for the
random one) undersamples every slice. Training and test subjects are disjoint (different keys).

The chain (``pipeline.kspace_to_diagnosis``, here ``named_chain(*pipeline.diagnosis_stages(...))``
to run its first three stages alone): undersample -> reconstruct (``nets.MoDL``, 3
iterations, or ``--recon varnet``) -> segment (none, or with ``--segmentation`` a small U-Net
trained on the fully sampled images for background / cartilage / joint fluid, frozen) ->
classify (a small CNN backbone, ``nets.ResNet`` with ``--backbone resnet``, and a binary head).
Arms, all scored on the held-out subjects by the same jitted k-space-to-diagnosis program:

(a) ``recon-then-classify``: the reconstruction trained for image quality only (L1 to the fully
    sampled image), frozen; the classifier trained on its outputs.
(b) ``task-driven``: from (a)'s reconstruction and (a)'s classifier after its first phase, the
    reconstruction and the classifier fine-tuned together on the classification loss plus
    ``--image-weight`` times the L1 image term; (a) gets as many further classifier-only steps.
(c) ``fully-sampled``: the classifier on the fully sampled images (the upper bound).
(d) ``zero-filled``: the classifier on the zero-filled (SENSE-combined) images.

Every classifier starts from the same initial weights and takes the same number of steps with
the same learning rates (1e-3, then 3e-4 for as many steps as (b) fine-tunes). Training phases
run for fixed shares of ``--minutes`` (compilation apart), so step counts depend on the
machine; they are reported. Scores: ROC AUC with a 95 % percentile bootstrap interval over test
subjects (``metrics.roc_auc``, ``metrics.bootstrap`` stratified by class; and of the paired
difference to (a) on the same resamples), PSNR and SSIM of the reconstructions, the time
of one jitted k-space-to-diagnosis call per slice (median of repeats, compilation apart).

    python benchmarks/kspace_to_diagnosis.py [--minutes 12] [--out benchmarks/results/detection]
"""

from __future__ import annotations

import argparse
import functools
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
from mskjax import losses, metrics, nets, pipeline, sampling, sim, train
from _common import first_and_steady

ROOT = Path(__file__).resolve().parent
TEST_KEY_OFFSET = 1_000_000  # test subjects' keys: disjoint from the training ones


# --- data -------------------------------------------------------------------------------------


def detection_set(first_key, count, *, size, realistic):
    """``(images (N, H, W), labels (N,), tissue labels (N, H, W), conspicuity (N,))``."""
    rows = []
    for i in range(count):
        key = jax.random.key(first_key + i)
        ex = sim.lesion_detection_example(key, pathology="cartilage_lesion",
                                          shape=(size, size), realistic=realistic)
        rows.append((np.asarray(ex.image), np.int32(ex.label), np.asarray(ex.labels),
                     np.float32(ex.conspicuity)))
    return tuple(np.stack(column) for column in zip(*rows))


def tissue_classes(labels):
    """Background / cartilage (femoral, tibial, patellar) / joint fluid: ``0, 1, 2``."""
    knee = sim.KNEE_LABELS
    out = np.zeros(labels.shape, np.int32)
    cartilage = [knee[n] for n in ("femoral_cartilage", "tibial_cartilage", "patellar_cartilage")]
    out[np.isin(labels, cartilage)] = 1
    out[labels == knee["joint_fluid"]] = 2
    return out


def kspace_samples(images, labels, segmentation, *, coils, seed):
    """A batched Sample of the images' fully sampled multi-coil k-space (and references)."""
    keys = jax.random.split(jax.random.key(seed), len(images))

    @jax.jit
    @jax.vmap
    def simulate(image, key):
        out = sim.simulate_kspace(image, key, num_coils=coils, snr_db=float("inf"))
        return out.kspace, out.maps, jnp.abs(out.image)

    kspace, maps, target = simulate(jnp.asarray(images), keys)
    return pipeline.Sample(kspace=kspace, maps=maps, target=target,
                           segmentation=jnp.asarray(segmentation), label=jnp.asarray(labels))


def take(batch, index):
    return jax.tree_util.tree_map(lambda a: a[index], batch)


# --- nets -------------------------------------------------------------------------------------


class SmallBackbone(nnx.Module):
    """Three conv blocks (8, 16, 32 channels) with 2x average pooling between (a backbone)."""

    def __init__(self, in_chans, *, features=8, rngs):
        self.ndim, self.in_chans, self.out_features = 2, in_chans, 4 * features
        self.block1 = nets.ConvBlock(in_chans, features, drop_prob=0.0, rngs=rngs)
        self.block2 = nets.ConvBlock(features, 2 * features, drop_prob=0.0, rngs=rngs)
        self.block3 = nets.ConvBlock(2 * features, 4 * features, drop_prob=0.0, rngs=rngs)

    def __call__(self, x):
        x = nets.avg_pool(self.block1(x))
        return self.block3(nets.avg_pool(self.block2(x)))


def make_classifier(in_chans, backbone, rngs):
    if backbone == "resnet":
        net = nets.ResNet(in_chans, layers=(1, 1, 1), width=8, norm="instance", rngs=rngs)
    else:
        net = SmallBackbone(in_chans, rngs=rngs)
    return nets.Classifier(net, nets.ClassifierHead(net.out_features, task="binary",
                                                    rngs=rngs))


def make_recon(name, rngs):
    if name == "varnet":
        return nets.VarNet(num_steps=5, num_filters=16, kernel_size=5, num_rbf=15, rngs=rngs)
    return nets.MoDL(num_iterations=3, cg_iterations=5, num_layers=4, features=16, rngs=rngs)


# --- training ---------------------------------------------------------------------------------


def run_steps(step, state, data, *, batch_size, seconds=None, steps=None, seed=0):
    """Steps of ``step`` on batches of ``data`` for ``seconds`` (compilation apart) or a
    number of ``steps``; returns ``(state, steps done, last metrics)``."""
    count = len(jax.tree_util.tree_leaves(data)[0])
    done, metrics_, start = 0, {}, None
    while True:
        if steps is not None and done >= steps:
            break
        if seconds is not None and start is not None and time.perf_counter() - start > seconds:
            break
        index = train.batch_indices(seed, int(state.step), num_examples=count,
                                    batch_size=batch_size)
        state, metrics_ = step(state, take(data, index))
        jax.block_until_ready(metrics_)
        done += 1
        if start is None:
            start = time.perf_counter()  # after the first (compiling) step
    return state, done, {k: float(v) for k, v in metrics_.items()}


def classifier_trainer(template):
    """``fit(model_state, inputs, labels, lr, **run) -> (model_state, steps)`` for a
    classifier on fixed inputs (the frozen upstream's channels)."""
    graphdef, params, rest = train.split_model(template)

    def loss_fn(params, batch, key):
        outputs = train.merge_model(graphdef, params, rest)(batch["x"])
        return losses.classification_loss(batch["y"], outputs, task="binary"), {}

    steps = {}

    def fit(params, inputs, labels, lr, **run):
        if lr not in steps:
            steps[lr] = jax.jit(train.make_train_step(loss_fn, optax.adam(lr)))
        state = train.init_train_state(params, optax.adam(lr), key=0)
        state, done, _ = run_steps(steps[lr], state, {"x": inputs, "y": labels}, **run)
        return state.params, done

    def full_state(params):
        return nnx.split(train.merge_model(graphdef, params, rest))[1]

    return params, fit, full_state


def upstream_channels(chain_params, stages, data, inputs, *, chunk=16):
    """The classifier's input channels for every sample of ``data``: the chain's stages
    before ``classify`` run, then ``pipeline.classifier_channels``."""
    upstream = pipeline.named_chain(*stages)
    params = {name: chain_params[name] for name, _ in stages}
    run = jax.jit(jax.vmap(lambda s: pipeline.classifier_channels(upstream.apply(params, s),
                                                                  inputs)))
    count = len(data.label)
    return jnp.concatenate([run(take(data, slice(i, i + chunk))) for i in range(0, count, chunk)])


def evaluate(run, params, data, *, chunk=16):
    """Probabilities and reconstructions of ``run`` (the jitted, vmapped chain) over ``data``."""
    inputs = data.replace(image=None, target=None, segmentation=None, label=None)
    probabilities, images = [], []
    for i in range(0, len(data.label), chunk):
        out = run(params, take(inputs, slice(i, i + chunk)))
        probabilities.append(nets.class_probabilities(out.label, "binary"))
        images.append(jnp.abs(out.image))
    return np.asarray(jnp.concatenate(probabilities)), jnp.concatenate(images)


# --- statistics -------------------------------------------------------------------------------


def auc_with_difference(labels, scores, reference, *, resamples, seed):
    """AUC and the paired AUC difference to ``reference`` (the same test subjects), each with
    its 95 % percentile interval (``metrics.bootstrap``, stratified by class)."""

    def both(y, s, r):
        auc = metrics.roc_auc(y, s)
        return np.array([auc, auc - metrics.roc_auc(y, r)])

    result = metrics.bootstrap(both, labels, scores, reference, num_samples=resamples,
                               seed=seed)
    return (float(result.estimate[0]), [float(result.low[0]), float(result.high[0])],
            [float(result.low[1]), float(result.high[1])])


# --- the experiment ---------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--coils", type=int, default=4)
    parser.add_argument("--acceleration", type=int, default=8)
    parser.add_argument("--center-fraction", type=float, default=0.04)
    parser.add_argument("--mask", choices=("equispaced", "random"), default="equispaced")
    parser.add_argument("--train", type=int, default=None,
                        help="training subjects (default: 32 + 32 per minute, at most 400)")
    parser.add_argument("--test", type=int, default=None,
                        help="test subjects (default: 32 + 16 per minute, at most 200)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--recon", choices=("modl", "varnet"), default="modl")
    parser.add_argument("--backbone", choices=("small", "resnet"), default="small")
    parser.add_argument("--segmentation", action="store_true")
    parser.add_argument("--realistic", action="store_true")
    parser.add_argument("--image-weight", type=float, default=0.1)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "detection")
    args = parser.parse_args()
    budget = args.minutes * 60.0
    n_train = args.train or int(min(400, 32 + 32 * args.minutes))
    n_test = args.test or int(min(200, 32 + 16 * args.minutes))
    clock = time.perf_counter()
    log = {}

    # Data.
    source = "sim.lesion_detection_example"
    sets = {}
    for name, first, count in (("train", args.seed * 10_000, n_train),
                               ("test", TEST_KEY_OFFSET + args.seed * 10_000, n_test)):
        images, labels, tissues, conspicuity = detection_set(first, count, size=args.size,
                                                             realistic=args.realistic)
        sets[name] = kspace_samples(images, labels, tissue_classes(tissues), coils=args.coils,
                                    seed=first + 7)
        sets[name + "_conspicuity"] = conspicuity
    train_set, test_set = sets["train"], sets["test"]
    log["data_s"] = time.perf_counter() - clock
    print(f"data: {n_train} training and {n_test} test subjects from {source} in "
          f"{log['data_s']:.0f} s; lesions in {int(train_set.label.sum())} / "
          f"{int(test_set.label.sum())}")
    shape = (args.coils, args.size, args.size)
    if args.mask == "equispaced":
        mask, _ = sampling.equispaced_mask(shape, center_fraction=args.center_fraction,
                                           acceleration=args.acceleration, seed=args.seed)
    else:
        mask, _ = sampling.random_mask(shape, center_fraction=args.center_fraction,
                                       acceleration=args.acceleration, seed=args.seed)
    full = np.ones_like(mask)

    inputs = ("image", "segmentation") if args.segmentation else ("image",)
    in_chans = 1 + 3 * args.segmentation
    classifier = functools.partial(make_classifier, in_chans, args.backbone)
    segmenter = (lambda rngs: nets.Segmenter(nets.UNet(1, 3, chans=8, num_pool_layers=2,
                                                       rngs=rngs))) \
        if args.segmentation else None
    build = functools.partial(pipeline.diagnosis_stages, segmentation=segmenter,
                              classifier=classifier, classifier_inputs=inputs)
    stage_lists = {
        "learned": build(mask=mask, reconstruction=functools.partial(make_recon, args.recon)),
        "fully-sampled": build(mask=full, reconstruction=pipeline.zero_filled()),
        "zero-filled": build(mask=mask, reconstruction=pipeline.zero_filled())}
    chains = {name: pipeline.named_chain(*pairs) for name, pairs in stage_lists.items()}
    first = take(train_set, 0)
    params = {name: chain.init(jax.random.key(args.seed), first)
              for name, chain in chains.items()}
    # Every arm starts from the same classifier (and segmentation) weights.
    for name in ("fully-sampled", "zero-filled"):
        params[name]["classify"] = params["learned"]["classify"]
        params[name]["segment"] = params["learned"]["segment"]
    steps = {}

    # Segmentation (optional): trained on the fully sampled images, then frozen everywhere.
    if args.segmentation:
        loss = functools.partial(pipeline.diagnosis_loss, chain=chains["fully-sampled"],
                                 task="binary", weights={"segmentation": 1.0},
                                 frozen=("classify",))
        optimizer = pipeline.freeze_stages(optax.adam(1e-3), frozen=("classify",))
        state = train.init_train_state(params["fully-sampled"], optimizer, key=args.seed)
        state, steps["segmentation"], seg_metrics = run_steps(
            jax.jit(train.make_train_step(loss, optimizer)), state, train_set,
            batch_size=args.batch, seconds=0.08 * budget, seed=args.seed)
        for name in chains:
            params[name]["segment"] = state.params["segment"]
        log["segmentation_final"] = seg_metrics
        print(f"segmentation: {steps['segmentation']} steps, {seg_metrics}")

    # (a) first phase: the reconstruction for image quality only.
    chain = chains["learned"]
    loss = functools.partial(pipeline.diagnosis_loss, chain=chain, task="binary",
                             weights={"reconstruction": 1.0}, frozen=("segment", "classify"))
    optimizer = pipeline.freeze_stages(optax.adam(1e-3), frozen=("segment", "classify"))
    state = train.init_train_state(params["learned"], optimizer, key=args.seed)
    state, steps["reconstruction"], recon_metrics = run_steps(
        jax.jit(train.make_train_step(loss, optimizer)), state, train_set,
        batch_size=args.batch, seconds=0.22 * budget, seed=args.seed)
    pretrained = state.params
    print(f"reconstruction: {steps['reconstruction']} steps, {recon_metrics}")

    # The classifiers' first phase on frozen upstream outputs (a, c, d), all from one start.
    template = classifier(nnx.Rngs(args.seed))
    start, fit, full_state = classifier_trainer(template)
    start = nnx.state(nnx.merge(nnx.graphdef(template), params["learned"]["classify"]),
                      nnx.Param)
    stages = {"learned": pretrained, "fully-sampled": params["fully-sampled"],
              "zero-filled": params["zero-filled"]}
    arms = {"learned": "(a) recon-then-classify", "fully-sampled": "(c) fully-sampled",
            "zero-filled": "(d) zero-filled"}
    cached, first_phase = {}, {}
    for name in arms:
        cached[name] = upstream_channels(stages[name], stage_lists[name][:3], train_set,
                                         inputs)
    for name in arms:
        run = dict(batch_size=args.batch, seed=args.seed)
        if "classifier" not in steps:
            first_phase[name], steps["classifier"] = fit(start, cached[name], train_set.label,
                                                         1e-3, seconds=0.08 * budget, **run)
        else:
            first_phase[name], _ = fit(start, cached[name], train_set.label, 1e-3,
                                       steps=steps["classifier"], **run)
    print(f"classifiers: {steps['classifier']} steps each on frozen upstream outputs")

    # (b) task-driven fine-tuning of reconstruction + classifier, from (a)'s state.
    joint = dict(pretrained, classify=full_state(first_phase["learned"]))
    loss = functools.partial(pipeline.diagnosis_loss, chain=chain, task="binary",
                             weights={"classification": 1.0,
                                      "reconstruction": args.image_weight},
                             frozen=("segment",))
    optimizer = pipeline.freeze_stages(optax.adam(3e-4), frozen=("segment",))
    state = train.init_train_state(joint, optimizer, key=args.seed)
    state, steps["task_driven"], joint_metrics = run_steps(
        jax.jit(train.make_train_step(loss, optimizer)), state, train_set,
        batch_size=args.batch, seconds=0.22 * budget, seed=args.seed + 1)
    print(f"task-driven: {steps['task_driven']} steps, {joint_metrics}")
    final = {"(b) task-driven": state.params}

    # The second phase for (a), (c), (d): as many classifier-only steps at the same rate.
    for name, arm in arms.items():
        trained, _ = fit(first_phase[name], cached[name], train_set.label, 3e-4,
                         steps=steps["task_driven"], batch_size=args.batch, seed=args.seed + 1)
        final[arm] = dict(stages[name], classify=full_state(trained))
    log["train_s"] = time.perf_counter() - clock - log["data_s"]

    # Scores on the held-out subjects, each through its whole jitted chain.
    labels = np.asarray(test_set.label)
    target = test_set.target
    chain_of = {"(a) recon-then-classify": "learned", "(b) task-driven": "learned",
                "(c) fully-sampled": "fully-sampled", "(d) zero-filled": "zero-filled"}
    batched = {name: jax.jit(jax.vmap(chain.apply, in_axes=(None, 0)))
               for name, chain in chains.items()}
    single = {name: jax.jit(chain.apply) for name, chain in chains.items()}
    quality = jax.jit(jax.vmap(lambda g, p: (metrics.psnr(g, p, data_range=g.max()),
                                             metrics.ssim(g, p, data_range=g.max()))))
    one = take(test_set.replace(image=None, target=None, segmentation=None, label=None), 0)
    scores, results, compiled = {}, {}, set()
    for arm in sorted(final):
        name = chain_of[arm]
        probabilities, images = evaluate(batched[name], final[arm], test_set)
        psnr, ssim = quality(target, images)
        # One jitted k-space-to-diagnosis call for one slice; the first call compiles (once
        # per chain: (a) and (b) share theirs).
        _, first_s, steady_s = first_and_steady(
            lambda: single[name](final[arm], one).label, 20)
        scores[arm] = probabilities
        results[arm] = {"psnr_db": float(jnp.mean(psnr)), "ssim": float(jnp.mean(ssim)),
                        "compile_and_first_call_s": None if name in compiled else first_s,
                        "per_slice_s": steady_s}
        compiled.add(name)
    for arm in results:
        value, interval, delta = auc_with_difference(labels, scores[arm],
                                                     scores["(a) recon-then-classify"],
                                                     resamples=args.bootstrap, seed=args.seed)
        results[arm].update(auc=value, auc_95ci=interval, auc_minus_a_95ci=delta)
    log["total_s"] = time.perf_counter() - clock

    header = (f"{'arm':26s} {'AUC':>6s} {'95% CI':>15s} {'minus (a) 95% CI':>18s} "
              f"{'PSNR dB':>8s} {'SSIM':>6s} {'ms/slice':>9s}")
    print(f"\ncartilage lesion detection, {args.acceleration}x {args.mask} "
          f"(centre {args.center_fraction}), {n_test} held-out subjects; AUC with 95% "
          f"intervals from {args.bootstrap} stratified bootstrap resamples")
    print(header)
    print("-" * len(header))
    for arm, r in results.items():
        lo, hi = r["auc_95ci"]
        dlo, dhi = r["auc_minus_a_95ci"]
        print(f"{arm:26s} {r['auc']:6.3f} [{lo:5.3f}, {hi:5.3f}] [{dlo:+6.3f}, {dhi:+6.3f}] "
              f"{r['psnr_db']:8.2f} {r['ssim']:6.3f} {1e3 * r['per_slice_s']:9.1f}")
    print(f"steps {steps}; total {log['total_s']:.0f} s")

    report = {
        "task": "cartilage lesion detection from undersampled k-space",
        "data": {"source": source, "train_subjects": n_train, "test_subjects": n_test,
                 "size": args.size, "coils": args.coils, "realistic": args.realistic,
                 "train_positives": int(train_set.label.sum()),
                 "test_positives": int(labels.sum())},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "mask": {"kind": args.mask, "acceleration": args.acceleration,
                 "center_fraction": args.center_fraction, "sampled_lines": int(mask.sum()),
                 "lines": int(mask.size)},
        "nets": {"reconstruction": args.recon, "backbone": args.backbone,
                 "segmentation": args.segmentation, "classifier_inputs": list(inputs)},
        "auc": "metrics.roc_auc, metrics.bootstrap (stratified, percentile)",
        "bootstrap_resamples": args.bootstrap,
        "steps": steps, "final_train_metrics": {"reconstruction": recon_metrics,
                                                "task_driven": joint_metrics},
        "results": results, "seconds": log,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "device": str(jax.devices()[0])},
        "versions": {"mskjax": mskjax.__version__, "jax": jax.__version__},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "kspace_to_diagnosis.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
