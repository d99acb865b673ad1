"""``mskjax train recon`` and ``mskjax eval recon``: train and score learned reconstructions.

Training reads the fully sampled multi-coil slices of a folder made by ``mskjax data
make-kspace-set`` (its ``train/``; ``val/`` is never touched) into memory. Each step draws,
on the device and from the step's key, an augmented example per slice of the batch
(:func:`mskjax.train.augment_recon_example`: a new fastMRI mask, new coil maps, phase, flips,
intensity scale and noise; ``augment=False`` draws only the mask), reconstructs it with the
model (:func:`mskjax.cli._learned.reconstruct`) and minimises fastMRI's SSIM loss (1 - SSIM,
7 x 7 window, data range the target's maximum) against the root-sum-of-squares target, both
in units of the zero-filled image's maximum (:func:`mskjax.cli._learned.input_scale`), with
Adam and gradient clipping at norm 1 (``gancs`` instead trains against a discriminator with
a pixel plus least-squares GAN loss, :mod:`mskjax.cli._gancs`). The batches are a pure function of ``(seed, step)`` and
the keys of ``(seed, step)``, so a run stopped and resumed (the same ``--out``) ends with the
parameters of an uninterrupted run.

Several processes (``--coordinator HOST:PORT --num-processes N --process-id I``, or a
launcher's variables, see :mod:`mskjax.cli._distributed`) train one model data-parallel on
``jax.distributed``: process ``p`` reads only its share of the sorted training files
(``files[p::N]``; every process needs at least one), each step draws ``batch_size / N``
slices (``batch_size`` must be divisible by ``N``) from its own slices, with an order that is
a pure function of ``(seed, process id, step)``, the global batch is assembled over the
devices of all processes (:func:`mskjax.train.global_batch`) and the gradient is its mean.
All processes must see the same ``--data`` and ``--out`` (a shared file system when they run
on several machines); only process 0 writes ``metrics.jsonl``, ``summary.json`` and shows
the progress bar; the checkpoints are written once. A run resumed with another number of
processes (one included) restores the checkpoint (the state is replicated, so any count
reads it) and continues from its step, but its batches differ from those the original
count would have drawn (the files are shared out differently), so it does not end with the
parameters of an uninterrupted run; with the same count it does.

Output folder: ``checkpoints/`` (orbax, atomic, the last three kept; the configuration of the
model and of the run beside the arrays), ``metrics.jsonl`` (one line per step) and
``summary.json`` (written at the end). A folder holding a run with other settings is refused.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import losses, train
from ..fourier import fftnc, ifftnc
from ._evaluate import classical_methods, data_files, evaluate_methods, read_fully_sampled
from ._files import write_json
from ._gancs import (build_discriminator, discriminator_entry, gan_settings, make_gan_step,
                     restore_generator, start_gan_state)
from ._run import (check_run_options, checkpoint_folder, discard_unsaved_run, optimizer,
                   prepare_run_folder, process_mesh, process_seed, process_split,
                   restore_trained, run_training, start_state, write_summary)
from ._learned import (MODELS, build_model, input_scale, model_spec, num_low_frequencies,
                       reconstruct)

_TRAIN = "mskjax train recon"
_EVAL = "mskjax eval recon"
#: The settings that define a run (a resumed run must repeat them).
_RUN_KEYS = ("model", "config", "acceleration", "center_fraction", "mask", "batch_size", "lr",
             "seed", "augment", "patch_rows", "data", "gan")


def load_training_set(folder, func: str = _TRAIN, *,
                      processes: train.ProcessSet | None = None) -> tuple[np.ndarray, list[str]]:
    """All fully sampled slices of ``folder/train`` (or ``folder``): ``(n, coils, rows, cols)``;
    with ``processes`` of more than one process, only this process's share of the files
    (:func:`mskjax.train.process_shard` of the sorted list)."""
    files = data_files(folder, "train", func)
    if processes is not None and processes.num_processes > 1:
        n = processes.num_processes
        if len(files) < n:
            raise ValueError(f"{func}: {n} processes need at least {n} training files (each "
                             f"reads its own share of the files), {folder} has {len(files)}")
        files = train.process_shard(files, settings=processes)
    slices, names = [], []
    for path in files:
        kspace = read_fully_sampled(path, func)
        slices.append(kspace)
        names.extend(f"{path.name}[{i}]" for i in range(kspace.shape[0]))
    shapes = sorted({k.shape[1:] for k in slices})
    if len(shapes) != 1:
        raise ValueError(f"{func}: the training files hold slices of different shapes {shapes}; "
                         "train on one shape (one folder per shape)")
    return np.concatenate(slices).astype(np.complex64), names


def _augment_options(augment: bool) -> dict:
    if augment:
        return {}
    return {"flip": None, "phase": None, "coils": False, "noise_snr_db": None, "scale": None}


def crop_rows(key: jax.Array, kspace: jax.Array, rows: int) -> jax.Array:
    """A random band of ``rows`` image rows of the coil images, back in k-space.

    The rows are the fully sampled (readout) axis, so the band is an exact smaller field of
    view of the same acquisition: the undersampling along the columns is unchanged.
    """
    total = kspace.shape[-2]
    start = jax.random.randint(key, (), 0, total - rows + 1)
    coil_images = ifftnc(kspace, axes=(-2,))
    band = jax.lax.dynamic_slice_in_dim(coil_images, start, rows, axis=-2)
    return fftnc(band, axes=(-2,))


def make_example_fn(name: str, *, acceleration, center_fraction, mask, augment, kspace_shape,
                    patch_rows=None):
    """``one(model, key, kspace) -> (image, target)``: an augmented example of a fully sampled
    slice reconstructed by model ``name``, both in units of the zero-filled image's maximum."""
    num_low = num_low_frequencies(kspace_shape[-1], center_fraction)
    draw = functools.partial(train.augment_recon_example, acceleration=acceleration,
                             center_fraction=center_fraction, mask=mask,
                             **_augment_options(augment))

    def one(model, key, kspace):
        if patch_rows is not None:
            key, sub = jax.random.split(key)
            kspace = crop_rows(sub, kspace, patch_rows)
        example = draw(key, kspace)
        low = example.extra["num_low_frequencies"] if name == "e2e-varnet" else num_low
        image = reconstruct(name, model, example.kspace, example.mask, num_low=low)
        scale = input_scale(example.kspace)
        return image / scale, example.target / scale

    return one


def make_loss(name: str, graphdef, rest, *, acceleration, center_fraction, mask, augment,
              kspace_shape, patch_rows=None):
    """The training loss ``loss_fn(params, batch, key)`` for model ``name``."""
    one = make_example_fn(name, acceleration=acceleration, center_fraction=center_fraction,
                          mask=mask, augment=augment, kspace_shape=kspace_shape,
                          patch_rows=patch_rows)

    def loss_fn(params, batch, key):
        model = train.merge_model(graphdef, params, rest)
        keys = jax.random.split(key, batch["kspace"].shape[0])
        images, targets = jax.vmap(lambda k, x: one(model, k, x))(keys, batch["kspace"])
        peak = jnp.max(targets, axis=(-2, -1))
        loss = losses.ssim_loss(targets, images, data_range=peak)
        return loss, {"l1": losses.l1_loss(targets / peak[:, None, None],
                                           images / peak[:, None, None])}

    return loss_fn


def train_recon(*, data, out, model: str = "e2e-varnet", config: dict | None = None,
                acceleration: int = 4, center_fraction: float = 0.08, mask: str = "equispaced",
                steps: int = 1000, max_minutes: float | None = None, batch_size: int = 1,
                lr: float = 1e-3, seed: int = 0, augment: bool = True,
                patch_rows: int | None = None, init: str | None = None,
                checkpoint_every: int = 100, progress: bool = True,
                adversarial_weight: float | None = None, discriminator_steps: int | None = None,
                pixel_loss: str | None = None,
                discriminator_config: dict | None = None,
                processes: train.ProcessSet | None = None) -> dict:
    """Train a reconstruction model (module docstring); returns the summary (also written).

    Args:
        data: a folder made by ``mskjax data make-kspace-set`` (reads ``train/``).
        out: the run's folder; an existing run there with the same settings is resumed.
        model: one of ``unet``, ``e2e-varnet``, ``varnet``, ``modl``, ``gancs`` (trained
            against a discriminator, see :mod:`mskjax.cli._gancs`).
        config: constructor options updating the model's defaults.
        acceleration, center_fraction, mask: the training masks (fastMRI's).
        steps: the last step of the run.
        max_minutes: stop (and save) after this much training time, before ``steps``.
        batch_size: slices per step.
        lr: Adam's learning rate.
        seed: the weights, the batches and the augmentation.
        augment: augment (True) or only draw masks (False).
        patch_rows: train on random bands of this many image rows (the fully sampled readout
            axis, see :func:`crop_rows`) instead of whole slices: cheaper steps, the same
            undersampling; evaluation always uses whole slices.
        init: a checkpoint folder of the same model to start from (fine-tuning).
        checkpoint_every: steps between checkpoints (and one at the end).
        progress: show a progress bar.
        adversarial_weight, discriminator_steps, pixel_loss, discriminator_config: the GAN
            options of ``gancs`` (defaults 0.01, 1, ``"l1"``, a 16-channel 3-layer PatchGAN);
            refused for the other models.
        processes: the run's processes, already started
            (:func:`mskjax.cli._distributed.start_distributed`); default one process.
    """
    spec = model_spec(model, _TRAIN)
    check_run_options(_TRAIN, steps=steps, batch_size=batch_size,
                      checkpoint_every=checkpoint_every, max_minutes=max_minutes, lr=lr)
    n, pid, local_batch = process_split(processes, batch_size, _TRAIN)
    kspace, names = load_training_set(data, processes=processes)
    total_slices = len(names)
    if n > 1:
        total_slices = _check_shares(kspace, local_batch, data)
    if patch_rows is not None and not (isinstance(patch_rows, int) and
                                       8 <= patch_rows <= kspace.shape[-2]):
        raise ValueError(f"{_TRAIN}: patch_rows must be an integer from 8 to the "
                         f"{kspace.shape[-2]} rows of the data, got {patch_rows!r}")
    if n == 1 and batch_size > kspace.shape[0]:
        raise ValueError(f"{_TRAIN}: batch_size {batch_size} exceeds the {kspace.shape[0]} "
                         f"training slices in {data}")
    gan = gan_settings(model, adversarial_weight=adversarial_weight,
                       discriminator_steps=discriminator_steps, pixel_loss=pixel_loss,
                       discriminator_config=discriminator_config, func=_TRAIN)
    net, full_config = build_model(model, config, seed, _TRAIN)
    settings = {"model": model, "config": full_config, "acceleration": acceleration,
                "center_fraction": center_fraction, "mask": mask, "batch_size": batch_size,
                "lr": lr, "seed": seed, "augment": augment, "patch_rows": patch_rows,
                "data": str(Path(data).resolve()),
                "init": None if init is None else str(Path(init).resolve()),
                "kspace_shape": list(kspace.shape[1:]), "training_slices": total_slices,
                "gan": gan, "processes": n}
    run_config = {"model": {"name": model, "kwargs": full_config}, "train": settings}
    if gan is not None:
        discriminator = build_discriminator(gan["discriminator"], seed, _TRAIN)
        run_config["discriminator"] = discriminator_entry(run_config["model"],
                                                          gan["discriminator"])

    out, ckpt = prepare_run_folder(out, _TRAIN)

    opt = optimizer(lr)
    if gan is not None:
        try:
            graphdef, rest, d_graphdef, d_rest, state, resumed = start_gan_state(
                net, discriminator, opt, ckpt=ckpt, settings=settings, keys=_RUN_KEYS,
                run_config=run_config, out=out, seed=seed, init=init, func=_TRAIN)
        except BaseException:
            if pid == 0:
                discard_unsaved_run(out, ckpt)
            raise
    else:
        graphdef, rest, state, resumed = start_state(net, opt, ckpt=ckpt, settings=settings,
                                                     keys=_RUN_KEYS, run_config=run_config,
                                                     out=out, seed=seed, func=_TRAIN)
    if gan is None and not resumed and init is not None:
        init_optimizer = optimizer(train.read_checkpoint_config(init)["train"]["lr"])
        init_target = train.init_train_state(state.params, init_optimizer, key=seed)
        restored, _ = train.restore_checkpoint(init, target=init_target,
                                               model=run_config["model"])
        state = train.init_train_state(restored.params, opt, key=seed)

    mesh = process_mesh(local_batch, n)
    if gan is not None:
        example_fn = make_example_fn(model, acceleration=acceleration,
                                     center_fraction=center_fraction, mask=mask,
                                     augment=augment, kspace_shape=kspace.shape,
                                     patch_rows=patch_rows)
        step = make_gan_step(example_fn, graphdef, rest, d_graphdef, d_rest, opt, gan)
    else:
        loss_fn = make_loss(model, graphdef, rest, acceleration=acceleration,
                            center_fraction=center_fraction, mask=mask, augment=augment,
                            kspace_shape=kspace.shape, patch_rows=patch_rows)
        step = train.make_train_step(loss_fn, opt)
    step_fn = train.data_parallel(step, mesh=mesh, donate_state=True)

    # One process keeps the order of a single-process run; several draw each from its own
    # slices with an order of (seed, process id, step).
    order_seed = process_seed(seed, n, pid)

    def batch_of(s):
        index = train.batch_indices(order_seed, s, num_examples=kspace.shape[0],
                                    batch_size=local_batch)
        local = {"kspace": kspace[index]}
        return local if n == 1 else train.global_batch(local, mesh)

    state, common = run_training(step_fn, state, batch_of, out=out, ckpt=ckpt,
                                 run_config=run_config, steps=steps, max_minutes=max_minutes,
                                 checkpoint_every=checkpoint_every, progress=progress,
                                 desc=f"training {model}", func=_TRAIN, primary=pid == 0,
                                 num_processes=n)
    summary = {"model": model, "description": spec.description, "config": full_config,
               "settings": settings, **common}
    return write_summary(out, summary) if pid == 0 else summary


def _check_shares(kspace: np.ndarray, local_batch: int, data) -> int:
    """The number of slices of all processes; every process's slices must have one shape and
    at least ``local_batch`` of them (decided alike on every process, from all shares)."""
    from jax.experimental import multihost_utils

    table = np.asarray(multihost_utils.process_allgather(
        np.asarray([kspace.shape[0], *kspace.shape[1:]], dtype=np.int64)))
    shapes = {tuple(int(v) for v in row[1:]) for row in table}
    if len(shapes) != 1:
        per = ", ".join(f"process {p}: {tuple(int(v) for v in row[1:])}"
                        for p, row in enumerate(table))
        raise ValueError(f"{_TRAIN}: the processes' training files hold slices of different "
                         f"shapes ({per}); train on one shape (one folder per shape)")
    fewest = int(table[:, 0].min())
    if local_batch > fewest:
        raise ValueError(f"{_TRAIN}: each process draws batch_size / {len(table)} = "
                         f"{local_batch} slices a step, but process {int(table[:, 0].argmin())}"
                         f" has only {fewest} slices in its share of the files of {data}")
    return int(table[:, 0].sum())


def load_trained(checkpoint, func: str = _EVAL):
    """``(name, model, run_config)`` from a ``train recon`` output or checkpoint folder."""
    path = checkpoint_folder(checkpoint, func, "mskjax train recon")
    config = train.read_checkpoint_config(path)
    model_config = config.get("model", {})
    name = model_config.get("name")
    if name not in MODELS:
        raise ValueError(f"{func}: {checkpoint} holds a {name!r} model, not a reconstruction "
                         f"model ({sorted(MODELS)})")
    net, _ = build_model(name, model_config.get("kwargs"), 0, func)
    lr = config.get("train", {}).get("lr", 1e-3)
    if "discriminator" in config:  # a GAN checkpoint (gancs): generator and discriminator
        net = restore_generator(path, net, config, optimizer(lr))
    else:
        net = restore_trained(path, net, model_config, lr)
    return name, net, {**config, "step": train.latest_step(path)}


def learned_method(name, net):
    """The evaluation method of a trained model (``fn(kspace, mask, num_low) -> image``)."""
    graphdef, state = nnx.split(net)

    def fn(kspace, mask, num_low):
        model = nnx.merge(graphdef, state)
        return reconstruct(name, model, kspace, mask, num_low=num_low)

    return fn


def evaluate_recon(*, checkpoint, data, acceleration: int = 4, center_fraction: float = 0.08,
                   mask: str = "equispaced", cg_lamda: float = 0.01, l1_lamda: float | None = None,
                   json_path: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Score a trained model, zero-filled and CG-SENSE (and L1-wavelet) on ``data/val``.

    Returns the result of :func:`evaluate_methods` with the settings, also written to
    ``json_path`` when given.
    """
    name, net, config = load_trained(checkpoint)
    files = data_files(data, "val", _EVAL)
    methods = {name: learned_method(name, net),
               **classical_methods(cg_lamda=cg_lamda, l1_lamda=l1_lamda)}
    tick = time.perf_counter()
    result = evaluate_methods(files, methods, acceleration=acceleration,
                              center_fraction=center_fraction, mask=mask, progress=progress,
                              func=_EVAL)
    result["settings"] = {"checkpoint": str(Path(checkpoint).resolve()), "model": config["model"],
                          "trained": config.get("train"), "data": [str(f) for f in files],
                          "acceleration": acceleration, "center_fraction": center_fraction,
                          "mask": mask, "cg_lamda": cg_lamda, "l1_lamda": l1_lamda,
                          "evaluation_s": time.perf_counter() - tick}
    if json_path is not None:
        write_json(Path(json_path), result)
    return result
