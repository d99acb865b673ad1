"""The demo's segmentation and T2 map, on a simulated knee slice with exact labels.

One sagittal slice (128 x 128, 1.25 mm pixels) of the simulated knee of the demo's seed is
rendered realistically (:func:`mskjax.sim.segmentation_example`: partial volume, receive bias,
Gibbs ringing, Rician noise, elastic deformation) twice from the same subject: fat-suppressed
PD for segmentation and an 8-echo spin echo (TE 10 to 80 ms) for T2 mapping, with the tissue
parameters of the literature (no jitter), so the true cartilage T2 is known.

- Segmentation: a 2D U-Net (:class:`mskjax.nets.UNet`, 16 tissues) from ``mskjax train seg``
  (``checkpoint``), or, without one, a small U-Net trained here for ``steps`` steps on slices of
  other simulated subjects (never the shown one). Dice per tissue against the exact labels.
- T2: :func:`mskjax.quant.fit_relaxation` (Levenberg-Marquardt) of the echoes; the median T2 in
  the femoral cartilage of the predicted and of the true labels, against the phantom's T2.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .. import losses, metrics, nets, quant, sim, train
from ._files import atomic_path

SHAPE = (64, 128, 128)
CARTILAGE = ("femoral_cartilage", "tibial_cartilage", "patellar_cartilage")
SHOWN = ("femur", "tibia", "patella", "femoral_cartilage", "tibial_cartilage", "muscle")


def _slice_example(key, contrast, **kw):
    example = sim.segmentation_example(key, shape=SHAPE, contrast=contrast, slice_axis=0, **kw)
    return np.asarray(example.image), np.asarray(example.labels)


def _train_small_unet(seed: int, steps: int, num_subjects: int = 12):
    """A 2D U-Net (chans 8, 3 levels) trained on slices of ``num_subjects`` other subjects."""
    images, labels = [], []
    root = jax.random.key(seed + 1000)
    for i in range(num_subjects):
        image, label = _slice_example(jax.random.fold_in(root, i), "pd_fs")
        images.append(image / max(float(np.percentile(image, 99)), 1e-6))
        labels.append(label)
    images, labels = np.stack(images)[..., None], np.stack(labels).astype(np.int32)
    model = nets.UNet(1, len(sim.KNEE_LABELS), chans=8, num_pool_layers=3, drop_prob=0.0,
                      rngs=nnx.Rngs(seed))
    graphdef, params, rest = train.split_model(model)

    def loss_fn(params, batch, key):
        logits = train.merge_model(graphdef, params, rest)(batch["image"])
        return losses.dice_ce_loss(batch["labels"], logits,
                                   num_classes=len(sim.KNEE_LABELS)), {}

    optimizer = optax.adam(3e-3)
    state = train.init_train_state(params, optimizer, key=seed)
    step = jax.jit(train.make_train_step(loss_fn, optimizer), donate_argnums=0)
    for s in range(steps):
        index = train.batch_indices(seed, s, num_examples=len(images),
                                    batch_size=min(4, len(images)))
        state, _ = step(state, {"image": images[index], "labels": labels[index]})
    net = train.merge_model(graphdef, state.params, rest)
    net.eval()
    return net, f"a 2D U-Net (chans 8) trained here for {steps} steps on {num_subjects} other " \
                "simulated subjects"


def _figure(path, image, truth, pred, t2_map, valid, dice, t2, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(sim.KNEE_LABELS) - 1
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.9), constrained_layout=True)
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("PD fat-suppressed (realistic rendering)", fontsize=9)
    for ax, labels, name in ((axes[1], truth, "exact labels"), (axes[2], pred, "predicted")):
        ax.imshow(image, cmap="gray")
        ax.imshow(np.ma.masked_equal(labels, 0), cmap="tab20", vmin=0, vmax=n, alpha=0.5,
                  interpolation="nearest")
        ax.set_title(name, fontsize=9)
    scores = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in dice.items()
                       if k in ("femur", "tibia", "femoral_cartilage"))
    axes[2].set_title(f"predicted; Dice {scores}", fontsize=8)
    shown = axes[3].imshow(np.where(valid, t2_map, np.nan), cmap="magma", vmin=0, vmax=80)
    axes[3].set_title(f"T2 (ms), 8-echo fit; femoral cartilage {t2['predicted_mask_ms']:.1f} ms "
                      f"(true {t2['true_ms']:.0f})", fontsize=8)
    fig.colorbar(shown, ax=axes[3], shrink=0.8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def segmentation_and_t2(out: Path, *, seed: int, steps: int, checkpoint=None) -> dict:
    """Write ``segmentation_t2.png`` into ``out``; return the report (module docstring)."""
    tick = time.perf_counter()
    key = jax.random.key(seed)
    example = sim.segmentation_example(key, shape=SHAPE, contrast=("pd_fs", "mese"),
                                       slice_axis=0, slice_index=SHAPE[0] // 2 + 8, jitter=0.0,
                                       pathology=None)
    stack, truth = np.asarray(example.image), np.asarray(example.labels)
    image, echoes = stack[0], stack[1:]
    num_classes = len(sim.KNEE_LABELS)
    if checkpoint is not None:
        from ._segment import segment_volume
        from ._train_seg import load_trained_seg

        name, net, config = load_trained_seg(checkpoint, "mskjax demo")
        spacing = 160.0 / np.asarray(SHAPE)
        pred, _ = segment_volume(name, net, image[None], spacing,
                                 train_voxel_size=config["train"]["voxel_size_mm"],
                                 num_classes=num_classes)
        pred = pred[0]
        how = f"{name} from {checkpoint} (step {config['step']})"
    else:
        # a handful of steps (tests) needs no more than a couple of training slices
        net, how = _train_small_unet(seed, steps, num_subjects=12 if steps >= 100 else 2)
        x = jnp.asarray(image / max(float(np.percentile(image, 99)), 1e-6))[None, ..., None]
        pred = np.asarray(nets.predict_labels(net(x))[0])
    spacing = tuple(160.0 / n for n in SHAPE[1:])
    scores = metrics.dice(pred, truth, num_classes=num_classes)
    dice = {name: float(scores[label]) for name, label in sim.KNEE_LABELS.items()
            if name in SHOWN + CARTILAGE}
    times = np.arange(10.0, 90.0, 10.0)
    fit = quant.fit_relaxation(echoes, times, mask=truth > 0)
    t2_map, valid = np.asarray(fit.time_constant), np.asarray(fit.valid)
    fc = sim.KNEE_LABELS["femoral_cartilage"]

    def median_in(mask):
        keep = mask & valid
        return float(np.median(t2_map[keep])) if keep.any() else float("nan")

    t2 = {"true_ms": float(sim.TISSUE_PARAMETERS["femoral_cartilage"]["t2"]),
          "true_mask_ms": median_in(truth == fc), "predicted_mask_ms": median_in(pred == fc),
          "valid_fraction_in_knee": float(valid[truth > 0].mean())}
    _figure(out / "segmentation_t2.png", image, truth, pred, t2_map, valid, dice, t2,
            f"simulated knee (seed {seed}), sagittal slice, 1.25 mm; segmentation by {how}")
    return {"segmentation": {"model": how, "dice_per_tissue": dice,
                             "pixel_spacing_mm": list(spacing)},
            "t2_femoral_cartilage": t2,
            "simulation": "sim.segmentation_example: realistic rendering, literature tissue "
                          "parameters, one sagittal slice of a (64, 128, 128) phantom",
            "seconds": time.perf_counter() - tick}
