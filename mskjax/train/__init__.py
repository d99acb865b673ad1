"""Training: pure train and eval steps over optax, checkpoints, metrics logs, data parallelism.

The pieces a training loop is built from, each usable alone:

- :class:`TrainState` ``(step, params, opt_state, key, skipped)``, one pytree, and
  :func:`init_train_state`; :func:`split_model` / :func:`merge_model` turn a flax.nnx model
  into a pure function of its parameters.
- :func:`make_train_step` returns a pure ``train_step(state, batch) -> (state, metrics)``
  (the key of step ``s`` is ``fold_in(state.key, s)``; non-finite losses or gradients are
  skipped and counted, never applied); :func:`make_eval_step` the evaluation counterpart.
  Neither is jitted: jit them (``donate_argnums=0`` for training) or wrap them with
  :func:`data_parallel`, which splits the batch over devices and replicates the state.
- :func:`batch_indices` gives the examples of each step as a pure function of
  ``(seed, step)``, so a run resumed from a checkpoint sees the batches an uninterrupted run saw
  and ends with bit-identical parameters.
- :func:`save_checkpoint` / :func:`restore_checkpoint` / :func:`latest_step` /
  :func:`read_checkpoint_config`: orbax-checkpoint folders, written atomically, the last few
  kept, with the model's name and constructor kwargs and the training settings stored beside
  the arrays.
- Several processes (``jax.distributed``; gloo collectives on CPU):
  :func:`distributed_settings` (flags or launcher variables) gives a :class:`ProcessSet`,
  :func:`initialize_distributed` meets the other processes (clear errors, bounded waits) and
  starts ``jax.distributed``; :func:`process_shard` is this process's share of a file list
  and :func:`global_batch` the global batch from each process's rows, for
  :func:`data_parallel` on the mesh of all processes. Checkpoints are written once and
  restore on any number of processes.
- :class:`MetricsWriter` (JSON lines, resumable), :func:`read_metrics`, :class:`ProgressBar`.
- MR-to-pseudo-CT synthesis: :func:`make_synthesis_step` (L1 on ``HU / 1000`` through
  :func:`make_train_step`, or with a least-squares adversarial term against a conditional
  patch discriminator through :func:`make_gan_train_step`),
  :func:`init_synthesis_state`, :func:`synthesis_generator`, :func:`predict_hounsfield`.
- GANs: :class:`GANState` (a ``TrainState`` plus the discriminator's parameters and optimiser
  state, saved and restored by the same checkpoint functions), :func:`init_gan_state`,
  :func:`make_gan_train_step` (pixel + least-squares GAN loss, separate optimisers,
  ``discriminator_steps`` per generator step) and :func:`restore_gan_checkpoint` (refuses a
  discriminator trained with another generator).
- Transfer learning: :func:`load_backbone` (a checkpoint's backbone into a new model),
  :func:`transfer_optimizer` (frozen or slower backbone), :func:`recompute_batch_statistics`
  (BatchNorm running statistics, which the train step does not update).

Batches are pytrees of arrays with a leading batch axis. A complete loop::

    import jax, optax
    from mskjax import losses, train

    model = MyNet(features=8, rngs=nnx.Rngs(0))
    config = {"model": {"name": "MyNet", "kwargs": {"features": 8}},
              "train": {"seed": 0, "lr": 1e-3, "batch_size": 4}}
    graphdef, params, rest = train.split_model(model)

    def loss_fn(params, batch, key):
        pred = train.merge_model(graphdef, params, rest)(batch["image"])
        return losses.ssim_loss(batch["target"], pred, data_range=batch["max"]), {}

    optimizer = optax.adam(1e-3)
    state = train.init_train_state(params, optimizer, key=0)
    start = train.latest_step(ckpt_dir)
    if start is not None:
        state, _ = train.restore_checkpoint(ckpt_dir, target=state, model=config["model"])
    step = train.data_parallel(train.make_train_step(loss_fn, optimizer), donate_state=True)
    with train.MetricsWriter(log_path, resume_step=start) as log:
        for s in range(int(state.step), num_steps):
            index = train.batch_indices(0, s, num_examples=len(images), batch_size=4)
            state, metrics = step(state, {"image": images[index], "target": targets[index],
                                          "max": maxima[index]})
            log.write(s + 1, metrics)
            if (s + 1) % 100 == 0:
                train.save_checkpoint(ckpt_dir, state, config=config)
"""

try:
    import flax  # noqa: F401
    import optax  # noqa: F401
except ImportError as err:  # optional dependencies: pip install 'mskjax[nets]'
    raise ImportError("mskjax.train needs flax and optax: pip install 'mskjax[nets]'",
                      name=err.name) from err

from ._augment import (ReconExample, augment_recon_example, draw_equispaced_mask,
                       draw_random_mask, fastmri_eval_example)
from ._checkpoint import latest_step, read_checkpoint_config, restore_checkpoint, save_checkpoint
from ._cross_contrast import (CrossContrastNets, CrossContrastState, cross_contrast_nets,
                             init_cross_contrast_state, make_cross_contrast_step)
from ._distributed import (ProcessSet, distributed_settings, global_batch,
                           initialize_distributed, process_shard)
from ._gan import GANState, init_gan_state, make_gan_train_step, restore_gan_checkpoint
from ._log import MetricsWriter, ProgressBar, read_metrics
from ._model import merge_model, split_model
from ._order import batch_indices
from ._sharding import DataParallelStep, batch_mesh, data_parallel, replicate, shard_batch
from ._state import TrainState, init_train_state
from ._step import make_eval_step, make_train_step
from ._synthesis import (HOUNSFIELD_SCALE, init_synthesis_state, make_synthesis_step,
                         predict_hounsfield, synthesis_generator)
from ._transfer import load_backbone, recompute_batch_statistics, transfer_optimizer

__all__ = [
    "TrainState", "init_train_state", "split_model", "merge_model", "make_train_step",
    "make_eval_step", "batch_indices", "save_checkpoint", "restore_checkpoint", "latest_step",
    "read_checkpoint_config", "MetricsWriter", "read_metrics", "ProgressBar", "data_parallel",
    "DataParallelStep", "batch_mesh", "shard_batch", "replicate",
    "ProcessSet", "distributed_settings", "initialize_distributed", "process_shard",
    "global_batch",
    "ReconExample", "augment_recon_example", "draw_equispaced_mask", "draw_random_mask",
    "fastmri_eval_example",
    "CrossContrastNets", "CrossContrastState", "init_cross_contrast_state",
    "make_cross_contrast_step", "cross_contrast_nets",
    "load_backbone", "transfer_optimizer", "recompute_batch_statistics",
    "init_synthesis_state", "make_synthesis_step", "synthesis_generator",
    "predict_hounsfield", "HOUNSFIELD_SCALE",
    "GANState", "init_gan_state", "make_gan_train_step", "restore_gan_checkpoint",
]
