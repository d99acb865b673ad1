"""``mskjax train seg`` and ``mskjax eval seg``: train and score tissue segmentation nets.

Training reads the ``train/`` NIfTI pairs of a segmentation set (``mskjax data make-seg-set``,
or any folder of ``<name>_image.nii.gz`` / ``<name>_labels.nii.gz`` pairs on one grid) into
memory, normalises each image by its 99th percentile, and minimises the sum of soft Dice and
cross-entropy (:func:`mskjax.losses.dice_ce_loss`; cross-entropy alone for the per-voxel
triplanar CNN) with Adam and gradient clipping at norm 1. Each step draws, from ``(seed,
step)``: the examples, and per example an intensity scale (0.8 to 1.25) and gamma (0.8 to
1.25), so a run stopped and resumed ends with the parameters of an uninterrupted run. The
examples are, by model: sagittal slices, each drawn with a probability proportional to the
number of tissues it shows (slices through the joint more often than slices of muscle and fat
at the edges of the field of view), cropped at random to ``crop`` pixels when given (the 2D
nets are fully convolutional and segment whole slices); 3D patches at random positions; or
voxels balanced over classes. The ``test/`` subjects are never read.

On several processes (``--coordinator``/``--num-processes``/``--process-id`` or a launcher's
variables, see :mod:`mskjax.cli._distributed`) every process reads the whole set and draws
``batch_size / N`` examples a step (``batch_size`` divisible by ``N``) with an order of
``(seed, process id, step)``; the global batch is split over the devices of all processes
(:func:`mskjax.train.global_batch`), the gradient is its mean, only process 0 writes the
metrics, the summary and the progress bar, and the checkpoints are written once. A run
resumed with another process count restores its checkpoint but draws other batches. The per-voxel triplanar
CNN (one volume a step) runs on one process.

Output folder: ``checkpoints/`` (orbax, atomic, the configuration beside the arrays),
``metrics.jsonl`` (one line per step), ``summary.json``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import losses, metrics, nets, train
from ..io import read_segmentation_set
from ..sim import KNEE_LABELS
from ._files import write_json
from ._run import (check_run_options, checkpoint_folder, optimizer, positive_int, prepare_run_folder, restore_trained,
                   process_seed, process_step, process_split, run_training, start_state,
                   write_summary)
from ._seg_models import (PATCH_3D, SEG_MODELS, build_seg_model, normalise, seg_model_spec,
                          volume_probabilities)

_TRAIN = "mskjax train seg"
_EVAL = "mskjax eval seg"
_RUN_KEYS = ("model", "config", "num_classes", "batch_size", "lr", "seed", "crop", "data")


def _augment(key, x):
    """Per-example intensity scale and gamma on a non-negative normalised input."""
    k1, k2 = jax.random.split(key)
    scale = jnp.exp(jax.random.uniform(k1, (), minval=np.log(0.8), maxval=np.log(1.25)))
    gamma = jnp.exp(jax.random.uniform(k2, (), minval=np.log(0.8), maxval=np.log(1.25)))
    return scale * jnp.maximum(x, 0.0) ** gamma


class _Sampler:
    """The examples of each step, a pure function of ``(seed, step)``."""

    def __init__(self, kind: str, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 seed: int, num_classes: int, patch_size: int, crop: int | None = None):
        self.kind, self.images, self.labels = kind, images, labels
        self.batch_size, self.seed, self.patch_size, self.crop = batch_size, seed, patch_size, crop
        if kind == "slice":
            # P(slice) proportional to the number of labels it shows
            present = np.zeros(labels.shape[:2], dtype=np.float64)
            for c in range(num_classes):
                present += np.any(labels == c, axis=(2, 3))
            self.weights = (present / present.sum()).ravel()
        if kind == "voxel":
            # Class-balanced voxel sampling: the voxels of each class, per subject.
            self.where = [[np.flatnonzero(lab.ravel() == c) for c in range(num_classes)]
                          for lab in labels]

    def __call__(self, step: int) -> dict:
        n, sx = self.images.shape[:2]
        rng = np.random.default_rng([self.seed, step])
        if self.kind == "slice":
            index = rng.choice(n * sx, size=self.batch_size, p=self.weights)
            subject, slice_ = np.divmod(index, sx)
            image, labels = self.images[subject, slice_], self.labels[subject, slice_]
            if self.crop is not None:
                rows, cols = image.shape[1:]
                r = rng.integers(0, rows - self.crop + 1, size=self.batch_size)
                c = rng.integers(0, cols - self.crop + 1, size=self.batch_size)
                pick = [(slice(a, a + self.crop), slice(b, b + self.crop)) for a, b in zip(r, c)]
                image = np.stack([im[p] for im, p in zip(image, pick)])
                labels = np.stack([lab[p] for lab, p in zip(labels, pick)])
            return {"image": image[..., None], "labels": labels.astype(np.int32)}
        if self.kind == "patch":
            shape = self.images.shape[1:]
            size = [min(p, s) for p, s in zip(PATCH_3D, shape)]
            xs, ys = [], []
            for _ in range(self.batch_size):
                s = rng.integers(n)
                corner = [rng.integers(0, dim - p + 1) for dim, p in zip(shape, size)]
                region = (s, *(slice(c, c + p) for c, p in zip(corner, size)))
                xs.append(self.images[region])
                ys.append(self.labels[region])
            return {"image": np.stack(xs)[..., None], "labels": np.stack(ys).astype(np.int32)}
        s = int(rng.integers(n))
        present = [c for c, w in enumerate(self.where[s]) if w.size]
        classes = rng.choice(present, size=self.batch_size)
        flat = np.array([self.where[s][c][rng.integers(self.where[s][c].size)]
                         for c in classes])
        coords = np.stack(np.unravel_index(flat, self.images.shape[1:]), axis=-1)
        return {"volume": self.images[s], "coords": coords.astype(np.int32),
                "labels": self.labels[s].ravel()[flat].astype(np.int32)}


def make_seg_loss(kind: str, graphdef, rest, *, num_classes: int, patch_size: int):
    """The training loss ``loss_fn(params, batch, key)`` of a model of ``kind``."""

    def loss_fn(params, batch, key):
        model = train.merge_model(graphdef, params, rest)
        if kind == "voxel":
            volume = _augment(key, batch["volume"])
            patches = nets.triplanar_patches(volume[..., None], batch["coords"],
                                             patch_size=patch_size)
            logits = model(patches)
            loss = losses.cross_entropy_loss(batch["labels"], logits, num_classes=num_classes)
            return loss, {}
        keys = jax.random.split(key, batch["image"].shape[0])
        x = jax.vmap(_augment)(keys, batch["image"])
        logits = model(x)
        loss = losses.dice_ce_loss(batch["labels"], logits, num_classes=num_classes)
        ce = losses.cross_entropy_loss(batch["labels"], logits, num_classes=num_classes)
        return loss, {"cross_entropy": ce}

    return loss_fn


def train_seg(*, data, out, model: str = "unet", config: dict | None = None,
              num_classes: int = len(KNEE_LABELS), steps: int = 2000,
              max_minutes: float | None = None, batch_size: int = 8, lr: float = 1e-3,
              seed: int = 0, crop: int | None = None, checkpoint_every: int = 200,
              progress: bool = True, processes: train.ProcessSet | None = None) -> dict:
    """Train a segmentation model (module docstring); returns the summary (also written).

    Args:
        data: a segmentation set folder (reads ``train/``).
        out: the run's folder; an existing run there with the same settings is resumed.
        model: one of :data:`SEG_MODELS` (``unet``, ``segnet``, ``unet3d``, ``triplanar``).
        config: constructor options updating the model's defaults.
        num_classes: label values ``0..num_classes-1`` (default the 16 phantom tissues).
        steps: the last step of the run.
        max_minutes: stop (and save) after this much training time, before ``steps``.
        batch_size: slices, patches or voxels per step (by model).
        lr: Adam's learning rate.
        seed: the weights, the batches and the augmentation.
        crop: train the 2D models on random square crops of this many pixels (None: whole
            slices).
        checkpoint_every: steps between checkpoints (and one at the end).
        progress: show a progress bar.
        processes: the run's processes, already started
            (:func:`mskjax.cli._distributed.start_distributed`); default one process.
    """
    spec = seg_model_spec(model, _TRAIN)
    check_run_options(_TRAIN, steps=steps, batch_size=batch_size,
                      checkpoint_every=checkpoint_every, max_minutes=max_minutes, lr=lr,
                      num_classes=num_classes)
    n, pid, local_batch = process_split(processes, batch_size, _TRAIN)
    if n > 1 and spec.kind == "voxel":
        raise ValueError(f"{_TRAIN}: {model} trains on the voxels of one volume a step, which "
                         "cannot be split over processes; run it on one process")
    dataset = read_segmentation_set(data, split="train", num_classes=num_classes)
    if crop is not None:
        if spec.kind != "slice":
            raise ValueError(f"{_TRAIN}: crop is for the 2D models (unet, segnet), not {model}")
        positive_int(crop, "crop", _TRAIN)
        if crop > min(dataset["images"].shape[2:]):
            raise ValueError(f"{_TRAIN}: crop {crop} exceeds the slices "
                             f"{dataset['images'].shape[2:]}")
    images = np.stack([normalise(v) for v in dataset["images"]])
    net, full_config = build_seg_model(model, config, num_classes, seed, _TRAIN)
    patch_size = int(getattr(net, "patch_size", 0))
    settings = {"model": model, "config": full_config, "num_classes": num_classes,
                "batch_size": batch_size, "lr": lr, "seed": seed, "crop": crop,
                "data": str(Path(data).resolve()), "volume_shape": list(images.shape[1:]),
                "voxel_size_mm": [float(v) for v in dataset["voxel_size"]],
                "training_subjects": dataset["names"], "processes": n}
    run_config = {"model": {"name": model, "kwargs": full_config}, "train": settings}

    out, ckpt = prepare_run_folder(out, _TRAIN)
    opt = optimizer(lr)
    graphdef, rest, state, _ = start_state(net, opt, ckpt=ckpt, settings=settings,
                                           keys=_RUN_KEYS, run_config=run_config, out=out,
                                           seed=seed, func=_TRAIN)

    loss_fn = make_seg_loss(spec.kind, graphdef, rest, num_classes=num_classes,
                            patch_size=patch_size)
    sampler = _Sampler(spec.kind, images, dataset["labels"], local_batch,
                       process_seed(seed, n, pid), num_classes, patch_size, crop)
    step_fn, batch_of = process_step(train.make_train_step(loss_fn, opt), sampler,
                                     local_batch=local_batch, num_processes=n)

    state, common = run_training(step_fn, state, batch_of, out=out, ckpt=ckpt,
                                 run_config=run_config, steps=steps, max_minutes=max_minutes,
                                 checkpoint_every=checkpoint_every, progress=progress,
                                 desc=f"training {model}", func=_TRAIN, primary=pid == 0,
                                 num_processes=n)
    summary = {"model": model, "description": spec.description, "config": full_config,
               "settings": settings, **common}
    return write_summary(out, summary) if pid == 0 else summary


def load_trained_seg(checkpoint, func: str = _EVAL):
    """``(name, model, run_config)`` from a ``train seg`` output or checkpoint folder."""
    path = checkpoint_folder(checkpoint, func, "mskjax train seg")
    config = train.read_checkpoint_config(path)
    model_config = config.get("model", {})
    name = model_config.get("name")
    if name not in SEG_MODELS:
        raise ValueError(f"{func}: {checkpoint} holds a {name!r} model, not a segmentation "
                         f"model ({sorted(SEG_MODELS)})")
    num_classes = config["train"]["num_classes"]
    net, _ = build_seg_model(name, model_config.get("kwargs"), num_classes, 0, func)
    net = restore_trained(path, net, model_config, config["train"]["lr"])
    return name, net, {**config, "step": train.latest_step(path)}


def predict_labels(name, net, image: np.ndarray, *, num_classes: int,
                   clean_up: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(labels uint8 (x, y, z), probabilities (x, y, z, C))`` of one raw volume.

    ``clean_up`` keeps the largest connected component of each class
    (:func:`mskjax.refine.largest_component`).
    """
    from .. import refine

    probs = volume_probabilities(name, net, normalise(image), num_classes=num_classes)
    labels = np.argmax(probs, axis=-1)
    if clean_up:
        labels = np.asarray(refine.largest_component(labels, num_classes=num_classes))
    return labels.astype(np.uint8), probs


def score_labels(pred: np.ndarray, target: np.ndarray, *, num_classes: int, spacing) -> dict:
    """Dice, HD95 (mm) and ASSD (mm) per class, as lists indexed by label."""
    scores = metrics.segmentation_scores(pred, target, num_classes=num_classes,
                                         spacing=tuple(float(s) for s in spacing))
    return {"dice": scores.dice.tolist(), "hausdorff95_mm": scores.hausdorff95.tolist(),
            "assd_mm": scores.assd.tolist()}


def _mean(values):
    """Mean over the finite entries (NaN: both masks empty, left out); None if none."""
    array = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(array)
    return float(np.mean(array[keep])) if keep.any() else None


def evaluate_seg(*, checkpoint, data, split: str = "test", clean_up: bool = True,
                 json_path: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Score a trained model on the held-out pairs of ``data/split``.

    Returns ``{"per_subject": {...}, "per_class": {tissue: {dice, hausdorff95_mm, assd_mm}},
    "mean_foreground": {...}, "seconds_per_volume": ..., "settings": ...}`` (means over
    subjects; NaN entries, a tissue absent from both prediction and truth, are left out and
    infinite distances, a tissue missing from one of them, are kept and reported as such).
    """
    from tqdm.auto import tqdm

    name, net, config = load_trained_seg(checkpoint)
    num_classes = config["train"]["num_classes"]
    dataset = read_segmentation_set(data, split=split, num_classes=num_classes)
    tissue_names = list(KNEE_LABELS)[:num_classes] + [
        f"class_{c}" for c in range(len(KNEE_LABELS), num_classes)]
    per_subject, times = {}, []
    for i in tqdm(range(len(dataset["names"])), desc=f"segmenting with {name}",
                  disable=not progress):
        tick = time.perf_counter()
        labels, _ = predict_labels(name, net, dataset["images"][i], num_classes=num_classes,
                                   clean_up=clean_up)
        times.append(time.perf_counter() - tick)
        per_subject[dataset["names"][i]] = score_labels(
            labels, dataset["labels"][i], num_classes=num_classes,
            spacing=dataset["voxel_size"])
    per_class = {}
    for c, tissue in enumerate(tissue_names):
        per_class[tissue] = {m: _mean([s[m][c] for s in per_subject.values()])
                             for m in ("dice", "hausdorff95_mm", "assd_mm")}
    foreground = {m: _mean([per_class[t][m] for t in tissue_names[1:]
                            if per_class[t][m] is not None])
                  for m in ("dice", "hausdorff95_mm", "assd_mm")}
    result = {"model": name, "per_subject": per_subject, "per_class": per_class,
              "mean_foreground": foreground,
              "seconds_per_volume_first_includes_compilation": times,
              "seconds_per_volume": float(np.median(times[1:] if len(times) > 1 else times)),
              "settings": {"checkpoint": str(Path(checkpoint).resolve()),
                           "model": config["model"], "trained": config.get("train"),
                           "step": config["step"], "data": str(Path(data).resolve()),
                           "split": split, "subjects": dataset["names"],
                           "clean_up": clean_up}}
    if json_path is not None:
        write_json(Path(json_path), result)
    return result


def format_seg_table(result: dict) -> str:
    """Per-tissue Dice / HD95 / ASSD as aligned text."""
    lines = [f"{result['model']} on {len(result['per_subject'])} held-out subjects "
             f"({result['seconds_per_volume']:.2f} s per volume)",
             f"  {'tissue':<20} {'Dice':>7} {'HD95 mm':>9} {'ASSD mm':>9}"]

    def fmt(v, width, digits):
        return f"{'n/a':>{width}}" if v is None else f"{v:>{width}.{digits}f}"

    for tissue, scores in list(result["per_class"].items())[1:]:
        lines.append(f"  {tissue:<20} {fmt(scores['dice'], 7, 3)} "
                     f"{fmt(scores['hausdorff95_mm'], 9, 2)} {fmt(scores['assd_mm'], 9, 2)}")
    m = result["mean_foreground"]
    lines.append(f"  {'mean (foreground)':<20} {fmt(m['dice'], 7, 3)} "
                 f"{fmt(m['hausdorff95_mm'], 9, 2)} {fmt(m['assd_mm'], 9, 2)}")
    return "\n".join(lines)
