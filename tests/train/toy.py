"""A tiny flax.nnx regression model and data set shared by the train tests."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mskjax import losses, train

NUM_EXAMPLES = 24
BATCH = 4


class Toy(nnx.Module):
    """``(batch, 3) -> (batch, 1)``: two dense layers with a batch norm between them."""

    def __init__(self, features: int = 8, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(3, features, rngs=rngs)
        self.norm = nnx.BatchNorm(features, use_running_average=True, rngs=rngs)
        self.out = nnx.Linear(features, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.norm(self.hidden(x))))


class Other(nnx.Module):
    """Another architecture with the same input and output."""

    def __init__(self, features: int = 8, *, rngs: nnx.Rngs):
        self.first = nnx.Linear(3, features, rngs=rngs)
        self.out = nnx.Linear(features, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.first(x)))


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((NUM_EXAMPLES, 3)).astype(np.float32)
    y = np.sin(x.sum(axis=1, keepdims=True)).astype(np.float32)
    return x, y


def config(features: int = 8, name: str = "Toy") -> dict:
    return {"model": {"name": name, "kwargs": {"features": features}},
            "train": {"seed": 0, "lr": 1e-2, "batch_size": BATCH}}


@functools.lru_cache(maxsize=None)
def _parts(features, model_cls, seed, optimizer):
    graphdef, params, rest = train.split_model(model_cls(features, rngs=nnx.Rngs(seed)))

    def loss_fn(params, batch, key):
        noisy = batch["x"] + 0.01 * jax.random.normal(key, batch["x"].shape)
        pred = train.merge_model(graphdef, params, rest)(noisy)
        return losses.l2_loss(batch["y"], pred), {"mae": losses.l1_loss(batch["y"], pred)}

    return params, loss_fn, optimizer or optax.adam(1e-2)


def setup(features: int = 8, *, model_cls=Toy, seed: int = 0, optimizer=None):
    """(state, loss_fn, optimizer) of a fresh run; the loss adds key-dependent input noise.

    The model, loss and optimiser are built once per configuration (so jitted steps are
    compiled once); each call gets its own copy of the parameters (a step may donate them).
    """
    params, loss_fn, optimizer = _parts(features, model_cls, seed, optimizer)
    params = jax.tree_util.tree_map(jnp.copy, params)
    return train.init_train_state(params, optimizer, key=seed), loss_fn, optimizer


@functools.lru_cache(maxsize=None)
def jitted_step(donate: bool = False):
    """The jitted train step of the default ``setup()``, compiled once per session."""
    _, loss_fn, optimizer = setup()
    return jax.jit(train.make_train_step(loss_fn, optimizer),
                   donate_argnums=0 if donate else ())


def batch(x, y, seed, step):
    index = train.batch_indices(seed, step, num_examples=len(x), batch_size=BATCH)
    return {"x": x[index], "y": y[index]}


def leaves_equal(a, b) -> bool:
    """Bitwise equality of two pytrees of arrays (keys compared by their data)."""
    def raw(t):
        return [np.asarray(jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key)
                           else v) for v in jax.tree_util.tree_leaves(t)]
    ra, rb = raw(a), raw(b)
    return (jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
            and all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
                    for x, y in zip(ra, rb)))
