"""A flax.nnx model as a pure function of its parameters: split once, merge inside the loss."""

from __future__ import annotations

from typing import Any

from flax import nnx


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """Split a flax.nnx model into its structure, its parameters and everything else.

    ``nnx.split(model, nnx.Param, ...)``: ``params`` holds the ``nnx.Param`` variables (what
    the optimiser trains), ``rest`` the other variables (batch statistics, RNG counters), which
    a :func:`make_train_step` loss treats as constants: a BatchNorm layer in training mode
    normalises each batch with its own statistics, but its running statistics in ``rest`` are
    not updated (see :func:`recompute_batch_statistics`).

    Args:
        model: a flax.nnx module.

    Returns:
        ``(graphdef, params, rest)``; ``merge_model(graphdef, params, rest)`` rebuilds it.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"mskjax.train.split_model: model must be a flax.nnx.Module, got "
                        f"{type(model).__name__}")
    return nnx.split(model, nnx.Param, ...)


def merge_model(graphdef: nnx.GraphDef, params: Any, rest: nnx.State) -> nnx.Module:
    """The model of :func:`split_model` with parameters ``params`` (``nnx.merge``).

    The model holds fresh copies of the variables (``copy=True``), so what the model changes
    when called (BatchNorm running averages in training mode, RNG counters) stays in the copy:
    ``rest`` is never changed, and a model with such layers can be called inside a jitted,
    differentiated loss (mutating the closed-over variables there is a trace error).

    Call it inside a loss to make the loss a pure function of ``params``::

        def loss_fn(params, batch, key):
            pred = merge_model(graphdef, params, rest)(batch["image"])
            return losses.l1_loss(batch["target"], pred), {}
    """
    if not isinstance(graphdef, nnx.GraphDef):
        raise TypeError(f"mskjax.train.merge_model: graphdef must be the nnx.GraphDef from "
                        f"split_model, got {type(graphdef).__name__}")
    return nnx.merge(graphdef, params, rest, copy=True)
