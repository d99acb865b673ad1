"""Transfer learning: a backbone trained on one task, a new head for another.

- :func:`load_backbone` copies the backbone of a checkpoint written by :func:`save_checkpoint`
  (a classifier trained on another task, e.g. radiographs of another grading) into a new
  model's ``backbone``, leaving its new head as it is.
- :func:`transfer_optimizer` trains the head at one learning rate and the backbone at a lower
  one, or freezes the backbone (``backbone_lr=0``).
- :func:`recompute_batch_statistics` sets the running mean and variance of every
  ``nnx.BatchNorm`` from a few batches after training ("BN update").

Why the last one is needed: :func:`make_train_step` differentiates a pure function of the
``nnx.Param`` variables; the other variables (``rest`` of :func:`split_model`, which holds the
BatchNorm running statistics) are constants of the loss, so a BatchNorm layer normalises each
training batch with that batch's statistics but its running statistics stay at their
initial values (mean 0, variance 1). The checkpoints store the ``TrainState``, whose ``params``
are the ``nnx.Param`` variables only: they hold no running statistics either. Recompute them
before evaluating a net with BatchNorm (after training, and after :func:`load_backbone`).

Parameter paths are the attribute names of the nnx modules joined by dots (``backbone.conv.
kernel``; list items by their index, ``backbone.blocks.0.conv.kernel``).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._checkpoint import _directory, _listing, _resolve_step, restore_checkpoint


def _key(entry) -> str:
    for name in ("key", "name", "idx"):
        if hasattr(entry, name):
            return str(getattr(entry, name))
    return str(entry)


def _path(path) -> tuple[str, ...]:
    """A pytree path (or an nnx state path) as strings, without the trailing ``value`` of a
    serialised ``nnx.Variable``."""
    keys = tuple(_key(e) if not isinstance(e, (str, int)) else str(e) for e in path)
    return keys[:-1] if keys and keys[-1] == "value" else keys


def _prefix(prefix, func) -> tuple[str, ...]:
    if prefix is None:
        return ()
    if not isinstance(prefix, str) or not prefix or any(not p for p in prefix.split(".")):
        raise ValueError(f"{func}: prefix must be a dotted path such as 'backbone', or None, got "
                         f"{prefix!r}")
    return tuple(prefix.split("."))


def _flat_model(module, kind) -> dict[tuple[str, ...], nnx.Variable]:
    return {_path(path): var for path, var in nnx.to_flat_state(nnx.state(module, kind))}


def load_backbone(model: nnx.Module, directory: str | os.PathLike, *, step: int | None = None,
                  prefix: str | None = "backbone") -> nnx.Module:
    """Put the backbone of a checkpoint into ``model.backbone``, leaving the head as it is.

    The checkpoint (of any net, written by :func:`save_checkpoint`) is read without a target;
    the parameters under ``prefix`` of its ``params`` (the ``backbone`` submodule of a
    :class:`mskjax.nets.Classifier`) must match the ``nnx.Param`` variables of
    ``model.backbone`` one to one: the same paths, shapes and dtypes (nothing is cast). If the
    checkpoint also holds ``nnx.BatchStat`` variables there (a TrainState whose params were
    split with ``nnx.Any(nnx.Param, nnx.BatchStat)``), the running statistics are restored
    too; checkpoints of :func:`make_train_step` runs hold only parameters, so BatchNorm keeps
    the model's statistics: use :func:`recompute_batch_statistics` on the new data.

    Args:
        model: a net with a ``backbone`` submodule (a :class:`mskjax.nets.Classifier` with the
            head of the new task); updated in place.
        directory: the checkpoint folder of the other run.
        step: which checkpoint (keyword-only); default the latest.
        prefix: dotted path of the backbone inside the checkpoint's parameters; ``None`` takes
            all of them (a checkpoint of a bare backbone).

    Returns:
        ``model``, its backbone replaced.

    Raises:
        ValueError: no ``prefix`` in the checkpoint, or parameters that differ (every differing
            path listed with its shapes and dtypes on both sides).
        FileNotFoundError: no such checkpoint.
    """
    func = "mskjax.train.load_backbone"
    if not isinstance(model, nnx.Module) or not isinstance(getattr(model, "backbone", None),
                                                          nnx.Module):
        raise TypeError(f"{func}: model must be an nnx.Module with a backbone submodule (a "
                        f"mskjax.nets.Classifier), got {type(model).__name__}")
    keys = _prefix(prefix, func)
    path = _directory(directory, func)
    step = _resolve_step(path, step, func)
    where = f"the checkpoint {path / str(step)}"
    state, config = restore_checkpoint(path, step=step)
    saved = {_path(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    model_name = config.get("model", {}).get("name")
    if keys:
        inside = {p[len(keys):]: v for p, v in saved.items() if p[:len(keys)] == keys}
        if not inside:
            tops = sorted({".".join(p[:len(keys)]) for p in saved})
            raise ValueError(f"{func}: {where} (model {model_name!r}) has no parameters under "
                             f"{prefix!r}; its parameters are under {tops[:12]}")
        saved = inside
    params = _flat_model(model.backbone, nnx.Param)
    stats = _flat_model(model.backbone, nnx.BatchStat)
    differences = []
    for key in sorted(set(saved) | set(params)):
        name = ".".join(key)
        if key not in saved:
            differences.append(f"{name}: in the model, not in the checkpoint")
        elif key not in params and key not in stats:
            differences.append(f"{name}: in the checkpoint, not in the model")
        else:
            target = params.get(key, stats.get(key))[...]
            s_shape, t_shape = tuple(np.shape(saved[key])), tuple(target.shape)
            s_dtype, t_dtype = np.dtype(saved[key].dtype), np.dtype(target.dtype)
            if s_shape != t_shape or s_dtype != t_dtype:
                differences.append(f"{name}: checkpoint {s_shape} {s_dtype}, model {t_shape} "
                                   f"{t_dtype}")
    if differences:
        raise ValueError(f"{func}: the {prefix or 'parameters'!s} of {where} (model "
                         f"{model_name!r}) do not fit model.backbone "
                         f"({type(model.backbone).__name__}): {_listing(differences)}")
    # the nnx paths (ints for list items) of the string paths
    paths = {_path(p): tuple(p) for p, _ in nnx.to_flat_state(nnx.state(model.backbone,
                                                                         nnx.Variable))}
    nnx.update(model.backbone, nnx.from_flat_state(
        [(paths[key], jnp.asarray(value)) for key, value in saved.items()]))
    return model


def _rate(value, name, func, *, zero_ok):
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0 or (value == 0 and not zero_ok):
        what = "a finite number >= 0" if zero_ok else "a finite number > 0"
        raise ValueError(f"{func}: {name} must be {what} or an optax schedule, got {value!r}")
    return float(value)


def transfer_optimizer(params, *, head_lr, backbone_lr=0.0, base: Callable = optax.adam,
                       prefix: str = "backbone") -> optax.GradientTransformation:
    """An optimiser that trains the head at ``head_lr`` and the backbone at ``backbone_lr``.

    ``optax.multi_transform`` with the label ``"backbone"`` for the parameters whose path
    starts with ``prefix`` and ``"head"`` for all others: ``base(head_lr)`` for the head;
    ``optax.set_to_zero()`` for the backbone when ``backbone_lr == 0`` (frozen: its parameters
    stay bit-identical and keep no optimiser state), else ``base(backbone_lr)`` (fine-tuning,
    usually 10 to 100 times lower than the head's).

    Args:
        params: the parameters it will train (``split_model(model)[1]``), used to check that
            ``prefix`` names some of them; the labels are recomputed from any params of the
            same layout.
        head_lr: learning rate of the head, > 0, or an optax schedule (keyword-only).
        backbone_lr: learning rate of the backbone, >= 0 (0 freezes it), or a schedule.
        base: ``learning_rate -> GradientTransformation``, e.g. ``optax.adam`` (default),
            ``optax.sgd`` or ``functools.partial(optax.adamw, weight_decay=1e-4)``.
        prefix: the dotted path of the backbone in ``params``.

    Returns:
        An optax ``GradientTransformation`` for :func:`init_train_state` and
        :func:`make_train_step`.
    """
    func = "mskjax.train.transfer_optimizer"
    keys = _prefix(prefix, func)
    head_lr = _rate(head_lr, "head_lr", func, zero_ok=False)
    backbone_lr = _rate(backbone_lr, "backbone_lr", func, zero_ok=True)
    if not callable(base):
        raise TypeError(f"{func}: base must be a function learning_rate -> optax "
                        f"GradientTransformation (optax.adam), got {type(base).__name__}")

    def labels(tree):
        return jax.tree_util.tree_map_with_path(
            lambda p, _: "backbone" if _path(p)[:len(keys)] == keys else "head", tree)

    found = jax.tree_util.tree_leaves(labels(params))
    if "backbone" not in found:
        tops = sorted({".".join(_path(p)[:len(keys)])
                       for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]})
        raise ValueError(f"{func}: no parameters under {prefix!r}; the params have "
                         f"{tops[:12]}")
    backbone = optax.set_to_zero() if backbone_lr == 0.0 else base(backbone_lr)
    return optax.multi_transform({"head": base(head_lr), "backbone": backbone}, labels)


def _batch_size(batch, func) -> int:
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError(f"{func}: every batch must be an array (or pytree of arrays) with a "
                         f"leading batch axis, got {type(batch).__name__}")
    return int(np.shape(leaves[0])[0])


def recompute_batch_statistics(model: nnx.Module, batches: Iterable, *,
                               apply: Callable | None = None) -> nnx.Module:
    """The model with the running statistics of its ``nnx.BatchNorm`` layers recomputed.

    Each batch goes through the net in training mode (BatchNorm normalising with the batch's
    own statistics, as in training; dropout off, as at evaluation). For every BatchNorm layer
    the result is the pooled mean and (biased) variance of everything it saw, each example
    weighing the same: with ``n_b`` examples, mean ``m_b`` and variance ``v_b`` in batch ``b``
    (of ``N`` in all)::

        mean = sum_b n_b m_b / N,    var = sum_b n_b (v_b + m_b^2) / N - mean^2

    (accumulated in float64, round-off below 0 set to 0, stored in the statistics' dtype). For the first BatchNorm, which
    sees the data themselves, these are the mean and variance of all the data over the batch
    and spatial axes, whatever the batch sizes (if the batches share their spatial size). The
    layers' ``momentum`` plays no part (each batch's statistics are read with momentum 0 on a
    copy) and is unchanged in the result; so are the parameters.

    Args:
        model: an nnx net with ``nnx.BatchNorm`` layers (not changed).
        batches: an iterable of at least one batch, each what ``apply`` takes, e.g.
            ``(images[i:i + 16] for i in range(0, 128, 16))``.
        apply: ``apply(net, batch)`` runs the net on a batch (keyword-only); default
            ``net(batch)``.

    Returns:
        A new model (same graph, parameters shared) with the recomputed running statistics.
    """
    func = "mskjax.train.recompute_batch_statistics"
    if not isinstance(model, nnx.Module):
        raise TypeError(f"{func}: model must be an nnx.Module, got {type(model).__name__}")
    if not any(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model)):
        raise ValueError(f"{func}: {type(model).__name__} has no nnx.BatchNorm layer")
    if apply is None:
        def apply(net, batch):
            return net(batch)
    elif not callable(apply):
        raise TypeError(f"{func}: apply must be callable apply(net, batch), got "
                        f"{type(apply).__name__}")
    graphdef, stats, rest = nnx.split(model, nnx.BatchStat, ...)

    @jax.jit
    def batch_statistics(stats, rest, batch):
        net = nnx.merge(graphdef, stats, rest)
        for _, module in nnx.iter_modules(net):
            if isinstance(module, nnx.BatchNorm):
                module.momentum, module.use_running_average = 0.0, False
            elif isinstance(module, nnx.Dropout):
                module.deterministic = True
        apply(net, batch)
        return nnx.state(net, nnx.BatchStat)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, stats)
    layers = {tuple(path[:-1]) for path, _ in nnx.to_flat_state(stats)
              if path[-1] in ("mean", "var")}
    total, sums, squares = 0, {}, {}
    for batch in batches:
        n = _batch_size(batch, func)
        flat = dict(nnx.to_flat_state(jax.device_get(batch_statistics(zeros, rest, batch))))
        for layer in layers:
            mean = np.asarray(flat[layer + ("mean",)][...], np.float64)
            var = np.asarray(flat[layer + ("var",)][...], np.float64)
            sums[layer] = sums.get(layer, 0.0) + n * mean
            squares[layer] = squares.get(layer, 0.0) + n * (var + mean ** 2)
        total += n
    if total == 0:
        raise ValueError(f"{func}: batches must hold at least one batch with examples")
    updates = []
    for path, var in nnx.to_flat_state(stats):
        layer, name = tuple(path[:-1]), path[-1]
        if layer not in layers:
            updates.append((path, var[...]))
            continue
        mean = sums[layer] / total
        value = mean if name == "mean" else np.maximum(squares[layer] / total - mean ** 2, 0.0)
        updates.append((path, jnp.asarray(value, var[...].dtype)))
    return nnx.merge(graphdef, nnx.from_flat_state(updates), rest)
