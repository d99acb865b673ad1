"""``mskjax train cls``, ``mskjax eval cls`` and ``mskjax classify``: train, score and apply
classifiers.

Training reads the ``train`` split of a classification set (``mskjax data make-cls-set``, or
any folder :func:`mskjax.io.write_classification_set` wrote) into memory, normalises every
example by its 99th percentile, and minimises the loss of the set's task
(:func:`mskjax.losses.classification_loss`: binary or softmax cross-entropy, the CORAL ordinal
loss, or an L1 regression loss) with Adam and gradient clipping at norm 1. Each step draws,
from ``(seed, step)``: the examples (classes balanced for the categorical tasks, so that a rare
class is seen as often as a common one), and per example an intensity scale (0.8 to 1.25), a
gamma (0.8 to 1.25) and a shift of up to 6 % of each in-plane size (edge-padded), so a run
stopped and resumed ends with the parameters of an uninterrupted one. The ``test`` split is
never read.

On several processes (``--coordinator``/``--num-processes``/``--process-id`` or a launcher's
variables, see :mod:`mskjax.cli._distributed`) every process reads the whole set and draws
``batch_size / N`` examples a step (``batch_size`` divisible by ``N``) with an order of
``(seed, process id, step)``; the global batch is split over the devices of all processes
(:func:`mskjax.train.global_batch`), the gradient is its mean, only process 0 writes the
metrics, the summary and the progress bar, and the checkpoints are written once. A run
resumed with another process count restores its checkpoint but draws other batches.

Evaluation reports, on the held-out split, by task: ROC AUC with a stratified 95 % bootstrap
interval, sensitivity and specificity at the Youden point (binary; and the AUC per conspicuity
bin when the set records one); accuracy, balanced accuracy, quadratic-weighted kappa and the AUC
of ``grade >= 2`` (ordinal and multiclass); RMSE and MAE (regression).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import losses, metrics, nets, train
from ..io import read_classification_set
from ._cls_models import (CLS_MODELS, build_cls_model, cls_model_spec, model_input,
                          normalise_example, predict_outputs)
from ._files import write_json
from ._run import (check_run_options, checkpoint_folder, optimizer, prepare_run_folder,
                   process_seed, process_step, process_split, run_training, start_state,
                   write_summary)

_TRAIN = "mskjax train cls"
_EVAL = "mskjax eval cls"
_CLASSIFY = "mskjax classify"
_RUN_KEYS = ("model", "config", "task", "num_classes", "batch_size", "lr", "seed", "data")
_VIEWS = ("sagittal", "coronal", "axial")
SHIFT = 0.06


def _examples(dataset: dict, inputs: str):
    """The raw examples of a split, as a list (views: tuples of three stacks)."""
    if inputs == "views":
        return list(zip(*(dataset[v] for v in _VIEWS)))
    return list(dataset["image"])


def _check_inputs(spec, manifest, func):
    have = manifest["inputs"]
    if spec.inputs == "views" and have != "views":
        raise ValueError(f"{func}: the multiview model needs a set of sagittal, coronal and "
                         f"axial stacks; this set holds single images")
    if spec.inputs != "views" and have == "views":
        raise ValueError(f"{func}: this set holds multi-view stacks; use --model multiview")


def _shift(rng, x, fraction):
    """Shift the last two axes by up to ``fraction`` of their size, edge-padded."""
    out = x
    for axis in (-2, -1):
        n = x.shape[axis]
        s = int(rng.integers(-int(fraction * n), int(fraction * n) + 1))
        if s:
            out = np.roll(out, s, axis=axis)
            edge = [slice(None)] * x.ndim
            fill = [slice(None)] * x.ndim
            if s > 0:
                edge[axis], fill[axis] = slice(s, s + 1), slice(0, s)
            else:
                edge[axis], fill[axis] = slice(n + s - 1, n + s), slice(n + s, n)
            out[tuple(fill)] = out[tuple(edge)]
    return out


class _Sampler:
    """The batch of each step, a pure function of ``(seed, step)``."""

    def __init__(self, examples, labels, *, inputs, task, batch_size, seed):
        self.examples = [tuple(normalise_example(v) for v in e) if inputs == "views"
                         else normalise_example(e) for e in examples]
        self.labels, self.inputs, self.task = labels, inputs, task
        self.batch_size, self.seed = batch_size, seed
        if task == "regression":
            self.by_class = [np.arange(len(labels))]
        else:
            self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]

    def _augment(self, rng, x):
        scale = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
        gamma = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
        x = scale * np.maximum(x, 0.0) ** gamma
        return _shift(rng, x, SHIFT).astype(np.float32)

    def __call__(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step])
        classes = rng.integers(0, len(self.by_class), size=self.batch_size)
        index = np.array([rng.choice(self.by_class[c]) for c in classes])
        label = self.labels[index]
        if self.inputs == "views":
            views = tuple(np.stack([self._augment(rng, self.examples[i][v]) for i in index])
                          [..., None] for v in range(3))
            return {"image": views, "label": label}
        image = np.stack([self._augment(rng, self.examples[i]) for i in index])[..., None]
        return {"image": image, "label": label}


def make_cls_loss(graphdef, rest, *, task: str, drop: bool = False):
    """The training loss ``loss_fn(params, batch, key)``; ``drop``: the net has dropout, drawn
    afresh from each step's key."""

    def loss_fn(params, batch, key):
        model = train.merge_model(graphdef, params, rest)
        if drop:
            nnx.reseed(model, dropout=key)
        outputs = model(batch["image"])
        loss = losses.classification_loss(batch["label"], outputs, task=task)
        return loss, {}

    return loss_fn


def train_cls(*, data, out, model: str = "resnet18", config: dict | None = None,
              steps: int = 2000, max_minutes: float | None = None, batch_size: int = 16,
              lr: float = 1e-3, seed: int = 0, drop_prob: float = 0.0,
              init_backbone: str | None = None, backbone_lr: float | None = None,
              checkpoint_every: int = 200, progress: bool = True,
              processes: train.ProcessSet | None = None) -> dict:
    """Train a classifier (module docstring); returns the summary (also written).

    Args:
        data: a classification set folder (reads its ``train`` split).
        out: the run's folder; an existing run there with the same settings is resumed.
        model: one of :data:`CLS_MODELS`.
        config: backbone options updating the model's defaults.
        steps, max_minutes, batch_size, lr, seed, checkpoint_every, progress: as
            ``mskjax train seg``.
        drop_prob: dropout on the pooled features.
        init_backbone: a ``train cls`` run (or checkpoint folder) whose backbone starts this
            one (transfer learning: the head is new).
        backbone_lr: with ``init_backbone``, the backbone's learning rate (0 freezes it;
            default ``lr``).
        processes: the run's processes, already started
            (:func:`mskjax.cli._distributed.start_distributed`); default one process.
    """
    spec = cls_model_spec(model, _TRAIN)
    check_run_options(_TRAIN, steps=steps, batch_size=batch_size,
                      checkpoint_every=checkpoint_every, max_minutes=max_minutes, lr=lr)
    n, pid, local_batch = process_split(processes, batch_size, _TRAIN)
    if backbone_lr is not None and (init_backbone is None or not backbone_lr >= 0):
        raise ValueError(f"{_TRAIN}: --backbone-lr needs --init-backbone and a value >= 0, "
                         f"got {backbone_lr!r}")
    dataset = read_classification_set(data, split="train")
    manifest = dataset["manifest"]
    _check_inputs(spec, manifest, _TRAIN)
    task, num_classes = manifest["task"], manifest["num_classes"]
    examples = _examples(dataset, spec.inputs)
    if spec.inputs == "volume" and np.ndim(examples[0]) != 3:
        raise ValueError(f"{_TRAIN}: cnn3d needs volumes; this set holds 2D images")
    if spec.inputs == "image" and np.ndim(examples[0]) != 2:
        raise ValueError(f"{_TRAIN}: {model} is a 2D model; this set holds "
                         f"{np.ndim(examples[0])}D examples (use cnn3d for volumes)")
    net, full_config = build_cls_model(model, config, task=task, num_classes=num_classes,
                                       seed=seed, func=_TRAIN, drop_prob=drop_prob)
    labels = dataset["label"]
    shape = ([list(np.shape(v)) for v in examples[0]] if spec.inputs == "views"
             else list(np.shape(examples[0])))
    settings = {"model": model, "config": full_config, "task": task,
                "num_classes": num_classes, "class_names": manifest.get("class_names"),
                "batch_size": batch_size, "lr": lr, "seed": seed, "drop_prob": drop_prob,
                "data": str(Path(data).resolve()), "example_shape": shape,
                "inputs": spec.inputs, "training_examples": int(len(labels)),
                "training_subjects": np.unique(dataset["subject"]).tolist(),
                "init_backbone": None if init_backbone is None else str(init_backbone),
                "backbone_lr": backbone_lr, "processes": n}
    run_config = {"model": {"name": model, "kwargs": full_config,
                            "head": {"task": task, "num_classes": num_classes,
                                     "drop_prob": drop_prob}},
                  "train": settings}
    if init_backbone is not None:
        net = train.load_backbone(net, checkpoint_folder(init_backbone, _TRAIN,
                                                         "mskjax train cls"))
    out, ckpt = prepare_run_folder(out, _TRAIN)
    opt = _optimizer(net, settings)
    graphdef, rest, state, _ = start_state(net, opt, ckpt=ckpt, settings=settings,
                                           keys=_RUN_KEYS, run_config=run_config, out=out,
                                           seed=seed, func=_TRAIN)
    loss_fn = make_cls_loss(graphdef, rest, task=task, drop=drop_prob > 0)
    sampler = _Sampler(examples, labels, inputs=spec.inputs, task=task,
                       batch_size=local_batch, seed=process_seed(seed, n, pid))
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


def _optimizer(net, settings: dict):
    """The run's optimiser: Adam with clipping, or, when fine-tuning a loaded backbone at
    another rate, :func:`mskjax.train.transfer_optimizer` over the same."""
    lr, backbone_lr = settings["lr"], settings.get("backbone_lr")
    if settings.get("init_backbone") is None or backbone_lr is None or backbone_lr == lr:
        return optimizer(lr)
    return train.transfer_optimizer(train.split_model(net)[1], head_lr=lr,
                                    backbone_lr=backbone_lr, base=optimizer)


def load_trained_cls(checkpoint, func: str = _EVAL):
    """``(name, model, run_config)`` from a ``train cls`` output or checkpoint folder."""
    path = checkpoint_folder(checkpoint, func, "mskjax train cls")
    config = train.read_checkpoint_config(path)
    model_config = config.get("model", {})
    name = model_config.get("name")
    if name not in CLS_MODELS or "head" not in model_config:
        raise ValueError(f"{func}: {checkpoint} holds a {name!r} model, not a classifier "
                         f"trained by `mskjax train cls` ({sorted(CLS_MODELS)})")
    head = model_config["head"]
    net, _ = build_cls_model(name, model_config.get("kwargs"), task=head["task"],
                             num_classes=head["num_classes"], seed=0, func=func,
                             drop_prob=head["drop_prob"])
    graphdef, params, rest = train.split_model(net)
    target = train.init_train_state(params, _optimizer(net, config["train"]), key=0)
    state, _ = train.restore_checkpoint(path, target=target, model=model_config)
    net = train.merge_model(graphdef, state.params, rest)
    net.eval()
    return name, net, {**config, "step": train.latest_step(path)}


def _interval(result) -> dict:
    return {"estimate": float(result.estimate), "low": float(result.low),
            "high": float(result.high)}


def score_outputs(outputs: np.ndarray, labels: np.ndarray, *, task: str, num_classes,
                  extras: dict | None = None, num_samples: int = 1000, seed: int = 0) -> dict:
    """The statistics of the module docstring for one task, from head outputs ``(n, k)``."""
    extras = extras or {}
    scores: dict = {"examples": int(len(labels))}
    if task == "regression":
        pred = np.asarray(outputs)[:, 0]
        scores["rmse"] = _interval(metrics.bootstrap(metrics.rmse, labels, pred,
                                                     num_samples=num_samples, seed=seed,
                                                     stratify=False))
        scores["mae"] = _interval(metrics.bootstrap(metrics.mae, labels, pred,
                                                    num_samples=num_samples, seed=seed,
                                                    stratify=False))
        return scores
    probs = np.asarray(nets.class_probabilities(jnp.asarray(outputs), task))
    if task == "binary":
        scores["positives"] = int(np.sum(labels == 1))
        scores["roc_auc"] = _interval(metrics.bootstrap(metrics.roc_auc, labels, probs,
                                                        num_samples=num_samples, seed=seed))
        threshold, sensitivity, specificity = metrics.youden(labels, probs)
        scores["youden"] = {"threshold": float(threshold), "sensitivity": float(sensitivity),
                            "specificity": float(specificity)}
        if "conspicuity" in extras:
            scores["roc_auc_by_conspicuity"] = auc_by_bins(labels, probs,
                                                           extras["conspicuity"])
        scores["probabilities"] = probs.tolist()
        return scores
    pred = np.asarray(nets.predict_class(jnp.asarray(outputs), task))
    scores["accuracy"] = _interval(metrics.bootstrap(metrics.accuracy, labels, pred,
                                                     num_samples=num_samples, seed=seed,
                                                     stratify=False))
    scores["balanced_accuracy"] = float(metrics.balanced_accuracy(labels, pred))

    def kappa(a, b):
        return metrics.cohen_kappa(a, b, weights="quadratic", num_classes=num_classes)

    scores["quadratic_kappa"] = _interval(metrics.bootstrap(kappa, labels, pred,
                                                            num_samples=num_samples, seed=seed,
                                                            stratify=False))
    if num_classes > 2:
        high = (labels >= 2).astype(np.int32)
        p_high = probs[:, 2:].sum(axis=1)
        if 0 < high.sum() < len(high):
            scores["roc_auc_grade_ge_2"] = _interval(metrics.bootstrap(
                metrics.roc_auc, high, p_high, num_samples=num_samples, seed=seed))
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    scores["confusion_true_by_predicted"] = confusion.tolist()
    return scores


def auc_by_bins(labels, scores, conspicuity, edges=(0.0, 0.25, 0.5, 0.75, 1.0)) -> list:
    """ROC AUC of the positives in each conspicuity bin against all negatives."""
    labels, scores, conspicuity = (np.asarray(a) for a in (labels, scores, conspicuity))
    negatives = labels == 0
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        pos = (labels == 1) & (conspicuity >= low) & (
            (conspicuity <= high) if high == edges[-1] else (conspicuity < high))
        keep = pos | negatives
        auc = (float(metrics.roc_auc(labels[keep], scores[keep]))
               if pos.any() and negatives.any() else None)
        rows.append({"conspicuity": [low, high], "positives": int(pos.sum()), "roc_auc": auc})
    return rows


def evaluate_cls(*, checkpoint, data, split: str = "test",
                 json_path: str | os.PathLike | None = None, num_samples: int = 1000) -> dict:
    """Score a trained classifier on a held-out split (module docstring)."""
    name, net, config = load_trained_cls(checkpoint)
    dataset = read_classification_set(data, split=split)
    manifest = dataset["manifest"]
    spec = cls_model_spec(name, _EVAL)
    _check_inputs(spec, manifest, _EVAL)
    head = config["model"]["head"]
    if (manifest["task"], manifest["num_classes"]) != (head["task"], head["num_classes"]):
        raise ValueError(f"{_EVAL}: the model predicts a {head['task']} target with "
                         f"{head['num_classes']} classes, the set holds {manifest['task']} with "
                         f"{manifest['num_classes']}")
    overlap = []
    if Path(config["train"]["data"]) == Path(data).resolve():
        overlap = sorted(set(config["train"]["training_subjects"])
                         & set(np.unique(dataset["subject"]).tolist()))
    if overlap:
        raise ValueError(f"{_EVAL}: subjects {overlap[:5]} of split {split!r} were trained on")
    examples = _examples(dataset, spec.inputs)
    tick = time.perf_counter()
    outputs = predict_outputs(net, spec.inputs, examples)
    seconds = time.perf_counter() - tick
    extras = {k: dataset[k] for k in ("conspicuity",) if k in dataset}
    scores = score_outputs(outputs, dataset["label"], task=head["task"],
                           num_classes=head["num_classes"], extras=extras,
                           num_samples=num_samples)
    result = {"model": name, "task": head["task"], "split": split, "scores": scores,
              "seconds_per_example_including_compilation": seconds / len(examples),
              "settings": {"checkpoint": str(Path(checkpoint).resolve()),
                           "step": config["step"], "data": str(Path(data).resolve()),
                           "model": config["model"], "trained": config.get("train")},
              "outputs": np.asarray(outputs).tolist(), "labels": dataset["label"].tolist(),
              "subjects": dataset["subject"].tolist()}
    if json_path is not None:
        write_json(Path(json_path), result)
    return result


def format_cls_table(result: dict) -> str:
    """The headline statistics as text."""
    s = result["scores"]
    lines = [f"{result['model']} ({result['task']}) on {s['examples']} held-out examples"]

    def ci(entry):
        return f"{entry['estimate']:.3f} (95% CI {entry['low']:.3f}-{entry['high']:.3f})"

    if result["task"] == "binary":
        y = s["youden"]
        lines.append(f"  ROC AUC {ci(s['roc_auc'])}")
        lines.append(f"  Youden point: threshold {y['threshold']:.3f}, sensitivity "
                     f"{y['sensitivity']:.3f}, specificity {y['specificity']:.3f}")
        for row in s.get("roc_auc_by_conspicuity", []):
            auc = "n/a" if row["roc_auc"] is None else f"{row['roc_auc']:.3f}"
            lines.append(f"  conspicuity {row['conspicuity'][0]:.2f}-{row['conspicuity'][1]:.2f}"
                         f": AUC {auc} ({row['positives']} positives)")
    elif result["task"] == "regression":
        lines.append(f"  RMSE {ci(s['rmse'])}; MAE {ci(s['mae'])}")
    else:
        lines.append(f"  accuracy {ci(s['accuracy'])}; balanced accuracy "
                     f"{s['balanced_accuracy']:.3f}")
        lines.append(f"  quadratic kappa {ci(s['quadratic_kappa'])}")
        if "roc_auc_grade_ge_2" in s:
            lines.append(f"  ROC AUC of grade >= 2 {ci(s['roc_auc_grade_ge_2'])}")
    return "\n".join(lines)


def read_example(path, *, inputs: str, slice_index: int | None = None):
    """One raw example from a file: ``.npy``/``.npz`` (a 2D image, a stack or, for views, an
    npz with ``sagittal``, ``coronal``, ``axial``), NIfTI or DICOM."""
    from ..io import read_dicom, read_nifti
    from ._files import read_image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{_CLASSIFY}: {path}: no such file")
    name = path.name.lower()
    if inputs == "views":
        if not name.endswith(".npz"):
            raise ValueError(f"{_CLASSIFY}: the multiview model reads an .npz holding "
                             f"'sagittal', 'coronal' and 'axial' stacks, got {path.name}")
        with np.load(path, allow_pickle=False) as archive:
            missing = [v for v in _VIEWS if v not in archive.files]
            if missing:
                raise ValueError(f"{_CLASSIFY}: {path} lacks {missing}")
            return tuple(np.asarray(archive[v], dtype=np.float32) for v in _VIEWS), path.name
    if name.endswith((".nii", ".nii.gz")):
        array = np.asarray(read_nifti(path, dtype=np.float32).array)
    elif name.endswith(".dcm"):
        array = np.asarray(read_dicom(path).pixels, dtype=np.float32)
    elif inputs == "volume":
        array = np.load(path, allow_pickle=False) if name.endswith(".npy") else None
        if array is None:
            raise ValueError(f"{_CLASSIFY}: read a volume from .npy or NIfTI, got {path.name}")
    else:
        array, what = read_image(path, index=slice_index)
        return np.abs(array).astype(np.float32), what
    if inputs == "image" and array.ndim == 3:
        index = array.shape[0] // 2 if slice_index is None else slice_index
        array = array[index]
    want = 3 if inputs == "volume" else 2
    if array.ndim != want or not np.all(np.isfinite(array)):
        raise ValueError(f"{_CLASSIFY}: {path.name} must hold a finite {want}D image, got "
                         f"shape {array.shape}")
    return np.abs(array).astype(np.float32), path.name


def _resize(x, shape):
    if tuple(x.shape) == tuple(shape):
        return x
    return np.asarray(jax.image.resize(jnp.asarray(x), tuple(shape), "linear"))


def classify_file(image, *, checkpoint, figure: str | None = None,
                  slice_index: int | None = None) -> dict:
    """Classify one file with a ``train cls`` run: probabilities, prediction, and (``figure``)
    a PNG of the Grad-CAM map over the image."""
    name, net, config = load_trained_cls(checkpoint, _CLASSIFY)
    spec = cls_model_spec(name, _CLASSIFY)
    if figure is not None and spec.inputs == "views":
        raise ValueError(f"{_CLASSIFY}: --figure is for single-image models, not {name}")
    settings = config["train"]
    example, what = read_example(image, inputs=spec.inputs, slice_index=slice_index)
    shape = settings["example_shape"]
    if spec.inputs == "views":
        example = tuple(_resize(v, s) for v, s in zip(example, shape))
    else:
        example = _resize(example, shape)
    tick = time.perf_counter()
    outputs = predict_outputs(net, spec.inputs, [example])[0]
    seconds = time.perf_counter() - tick
    head = config["model"]["head"]
    task = head["task"]
    probs = np.asarray(nets.class_probabilities(jnp.asarray(outputs), task))
    prediction = np.asarray(nets.predict_class(jnp.asarray(outputs), task)).item()
    names = settings.get("class_names") or [str(c) for c in range(head["num_classes"] or 1)]
    report = {"input": what, "model": name, "task": task, "prediction": prediction,
              "seconds_including_compilation": seconds, "outputs": np.asarray(outputs).tolist()}
    if task == "binary":
        report["probabilities"] = {names[0]: float(1 - probs), names[1]: float(probs)}
    elif task != "regression":
        report["probabilities"] = {n: float(p) for n, p in zip(names, probs)}
    if figure is not None:
        from ._cam_figure import activation_map_figure

        x = model_input(spec.inputs, example)
        cam = np.asarray(nets.grad_cam(net, x))[0]
        image_2d = np.asarray(x)[0, ..., 0]
        if image_2d.ndim == 3:
            middle = image_2d.shape[0] // 2
            image_2d, cam = image_2d[middle], cam[middle]
        label = (f"{task}: predicted {prediction}" if task == "regression" else
                 f"predicted {names[int(prediction)] if int(prediction) < len(names) else prediction}"
                 f" (p={float(probs if task == 'binary' else probs[int(prediction)]):.2f})")
        activation_map_figure(image_2d[None], cam[None], titles=[label], path=figure)
        report["figure"] = str(figure)
    return report
