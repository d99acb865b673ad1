"""The training state: one pytree of everything a run needs to continue."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree (a ``NamedTuple``).

    Attributes:
        step: int32 scalar, the number of optimiser steps taken (skipped ones included).
        params: the trainable parameters, any pytree (for a flax.nnx model, the ``nnx.State``
            of its ``nnx.Param`` variables, see :func:`split_model`).
        opt_state: the optax optimiser state of ``params``.
        key: the run's PRNG key (a typed key array), fixed for the whole run; step ``s`` uses
            ``jax.random.fold_in(key, s)``, so a run is a pure function of the seed and the
            data order.
        skipped: int32 scalar, the number of steps whose update was not applied because the
            loss or the gradient norm was not finite.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array
    skipped: jax.Array


def as_key(key, func: str) -> jax.Array:
    """A typed PRNG key from an int seed, a typed key, or raw ``uint32`` key data."""
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"{func}: key must be a non-negative int seed or a PRNG key, got "
                             f"{key}")
        return jax.random.key(int(key))
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise ValueError(f"{func}: key must be a single PRNG key, got shape {key.shape}")
            return key
        if key.dtype == np.uint32 and key.ndim == 1:
            return jax.random.wrap_key_data(key)
    raise TypeError(f"{func}: key must be an int seed or a PRNG key (jax.random.key(seed)), got "
                    f"{type(key).__name__}")


def check_optimizer(optimizer, func: str):
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"{func}: optimizer must be an optax GradientTransformation (with init "
                        f"and update), got {type(optimizer).__name__}")


def check_state(state, func: str):
    if not isinstance(state, TrainState):
        raise TypeError(f"{func}: state must be a mskjax.train.TrainState (from "
                        f"init_train_state), got {type(state).__name__}")


def init_train_state(params: Any, optimizer, *, key) -> TrainState:
    """A fresh :class:`TrainState` at step 0.

    Args:
        params: the trainable parameters (any pytree of arrays).
        optimizer: an optax ``GradientTransformation``; its state is ``optimizer.init(params)``.
        key: the run's seed (keyword-only): a non-negative int, a typed key
            (``jax.random.key``) or raw key data (``jax.random.PRNGKey``).

    Returns:
        ``TrainState(step=0, params, opt_state, key, skipped=0)``.
    """
    func = "mskjax.train.init_train_state"
    check_optimizer(optimizer, func)
    key = as_key(key, func)
    # Two distinct arrays: a jitted step may donate both.
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), key=key,
                      skipped=jnp.zeros((), jnp.int32))
