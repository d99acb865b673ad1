"""Pure train and eval steps over optax."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._state import TrainState, check_optimizer, check_state

#: Metric names that the train step writes itself.
RESERVED = ("loss", "grad_norm", "skipped")


def global_norm(tree) -> jax.Array:
    """The L2 norm of all leaves of ``tree`` together."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def _keep_if(ok, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)


def make_train_step(loss_fn: Callable, optimizer) -> Callable:
    """A pure ``train_step(state, batch) -> (state, metrics)`` for ``loss_fn`` and ``optimizer``.

    One step: the key ``jax.random.fold_in(state.key, state.step)`` (so the run is a pure
    function of the seed and the data order, and a resumed run repeats the keys of an
    uninterrupted one), ``(loss, aux), grads = value_and_grad(loss_fn)(params, batch, key)``,
    the optax update, and ``step + 1``.

    Non-finite losses and gradients are not applied: when the loss or the global gradient
    norm is NaN or infinite, ``params`` and ``opt_state`` are returned unchanged, the step
    counter still advances (the next step sees the next batch and a new key), ``metrics
    ["skipped"]`` is 1 and ``state.skipped`` counts such steps. The caller decides when to stop
    (e.g. when ``metrics["skipped"]`` is set several times in a row); the step itself never
    raises on values.

    The returned function is not jitted, so that it can be composed: jit it with the state
    donated, ``jax.jit(train_step, donate_argnums=0)``, or spread it over devices with
    :func:`data_parallel`.

    Args:
        loss_fn: ``loss_fn(params, batch, key) -> (loss, metrics)``, a pure function: ``loss``
            a real scalar, ``metrics`` a dict of extra values to report (names other than
            ``"loss"``, ``"grad_norm"`` and ``"skipped"``).
        optimizer: an optax ``GradientTransformation``.

    Returns:
        ``train_step(state, batch) -> (state, metrics)`` with ``metrics`` the loss function's
        dict plus ``"loss"``, ``"grad_norm"`` (global L2 norm of the gradients) and
        ``"skipped"`` (int32, 1 when this step's update was not applied).
    """
    func = "mskjax.train.make_train_step"
    if not callable(loss_fn):
        raise TypeError(f"{func}: loss_fn must be callable, got {type(loss_fn).__name__}")
    check_optimizer(optimizer, func)

    def objective(params, batch, key):
        out = loss_fn(params, batch, key)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
            raise TypeError(f"{func}: loss_fn must return (loss, metrics) with metrics a dict, "
                            f"got {type(out).__name__}")
        loss, aux = out
        if jnp.shape(loss) != () or not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
            raise TypeError(f"{func}: loss_fn must return a real floating-point scalar loss, "
                            f"got shape {jnp.shape(loss)} and dtype {jnp.result_type(loss)}")
        clash = sorted(set(aux) & set(RESERVED))
        if clash:
            raise ValueError(f"{func}: the metrics of loss_fn must not use the names {clash}; "
                             "the train step reports them itself")
        return loss, dict(aux)

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        check_state(state, f"{func} (train_step)")
        key = jax.random.fold_in(state.key, state.step)
        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params, batch,
                                                                         key)
        grad_norm = global_norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        skipped = jnp.logical_not(ok).astype(jnp.int32)
        new = TrainState(step=state.step + 1,
                         params=_keep_if(ok, params, state.params),
                         opt_state=_keep_if(ok, opt_state, state.opt_state),
                         key=state.key,
                         skipped=state.skipped + skipped)
        return new, {**aux, "loss": loss, "grad_norm": grad_norm, "skipped": skipped}

    return train_step


def make_eval_step(metric_fn: Callable) -> Callable:
    """A pure ``eval_step(state, batch) -> metrics`` that calls ``metric_fn(state.params, batch)``.

    Not jitted (jit it, or use :func:`data_parallel` without donating the state).

    Args:
        metric_fn: ``metric_fn(params, batch) -> dict`` of metrics, a pure function.

    Returns:
        ``eval_step(state, batch) -> dict``.
    """
    func = "mskjax.train.make_eval_step"
    if not callable(metric_fn):
        raise TypeError(f"{func}: metric_fn must be callable, got {type(metric_fn).__name__}")

    def eval_step(state: TrainState, batch: Any) -> dict:
        check_state(state, f"{func} (eval_step)")
        out = metric_fn(state.params, batch)
        if not isinstance(out, Mapping):
            raise TypeError(f"{func}: metric_fn must return a dict of metrics, got "
                            f"{type(out).__name__}")
        return dict(out)

    return eval_step
