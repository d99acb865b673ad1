"""TrainState, the pure train and eval steps, and the nnx split/merge helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import train

from .toy import Toy, batch, data, leaves_equal, setup


def test_init_train_state():
    params = {"w": jnp.ones(3)}
    optimizer = optax.adam(1e-3)
    state = train.init_train_state(params, optimizer, key=7)
    assert isinstance(state, train.TrainState)
    assert state.step.dtype == jnp.int32 and int(state.step) == 0 and int(state.skipped) == 0
    assert jnp.issubdtype(state.key.dtype, jax.dtypes.prng_key)
    assert leaves_equal(state.key, jax.random.key(7))
    assert leaves_equal(state.opt_state, optimizer.init(params))
    # Raw key data and typed keys are accepted too, and give the same key.
    for key in (jax.random.PRNGKey(7), jax.random.key(7)):
        assert leaves_equal(train.init_train_state(params, optimizer, key=key).key, state.key)
    with pytest.raises(TypeError, match="mskjax.train.init_train_state: key must be an int "
                                        "seed or a PRNG key"):
        train.init_train_state(params, optimizer, key=1.5)
    with pytest.raises(ValueError, match="init_train_state: key must be a non-negative"):
        train.init_train_state(params, optimizer, key=-1)
    with pytest.raises(TypeError, match="init_train_state: optimizer must be an optax "
                                        "GradientTransformation"):
        train.init_train_state(params, lambda g: g, key=0)


def test_one_step_is_the_optax_update_and_reports_metrics():
    x, y = data()
    optimizer = optax.sgd(0.1)
    state, loss_fn, _ = setup(optimizer=optimizer)
    b = batch(x, y, 0, 0)
    key = jax.random.fold_in(state.key, 0)
    (loss, aux), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(state.params, b,
                                                                           key)
    step = jax.jit(train.make_train_step(loss_fn, optimizer))
    new, metrics = step(state, b)
    assert int(new.step) == 1 and int(new.skipped) == 0
    assert set(metrics) == {"loss", "mae", "grad_norm", "skipped"}
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    np.testing.assert_allclose(metrics["mae"], aux["mae"], rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
    assert int(metrics["skipped"]) == 0
    expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state.params, grads)
    for a, e in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
    assert leaves_equal(new.key, state.key)


def test_training_reduces_the_loss_without_recompiling():
    x, y = data()
    state, loss_fn, optimizer = setup()
    step = jax.jit(train.make_train_step(loss_fn, optimizer), donate_argnums=0)
    first = None
    for s in range(30):
        state, metrics = step(state, batch(x, y, 0, s))
        first = float(metrics["loss"]) if first is None else first
    assert int(state.step) == 30
    assert float(metrics["loss"]) < 0.5 * first
    assert step._cache_size() == 1


def test_the_key_of_each_step_is_folded_from_the_step():
    seen = []

    def loss_fn(params, batch, key):
        return jnp.sum(params["w"] ** 2), {"draw": jax.random.uniform(key)}

    optimizer = optax.sgd(0.1)
    state = train.init_train_state({"w": jnp.ones(2)}, optimizer, key=3)
    step = jax.jit(train.make_train_step(loss_fn, optimizer))
    for s in range(3):
        again = step(state, None)[1]["draw"]
        state, metrics = step(state, None)
        assert float(again) == float(metrics["draw"])  # a pure function of the state
        seen.append(float(metrics["draw"]))
        assert seen[-1] == float(jax.random.uniform(jax.random.fold_in(jax.random.key(3), s)))
    assert len(set(seen)) == 3


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_non_finite_updates_are_skipped_and_counted(where):
    def loss_fn(params, batch, key):
        if where == "loss":
            return jnp.sum((params["w"] - batch) ** 2), {}
        # sqrt at 0: a finite loss (0) with a NaN gradient when batch is 0.
        return jnp.sqrt(jnp.sum(batch * params["w"] ** 2)), {}

    optimizer = optax.adam(0.1)
    state = train.init_train_state({"w": jnp.ones(2)}, optimizer, key=0)
    step = jax.jit(train.make_train_step(loss_fn, optimizer))
    state, _ = step(state, jnp.full(2, 2.0))
    bad = jnp.array([jnp.nan, 1.0]) if where == "loss" else jnp.zeros(2)
    after, metrics = step(state, bad)
    assert int(metrics["skipped"]) == 1 and int(after.skipped) == 1 and int(after.step) == 2
    assert not np.isfinite(float(metrics["loss"]) if where == "loss"
                           else float(metrics["grad_norm"]))
    assert leaves_equal(after.params, state.params)
    assert leaves_equal(after.opt_state, state.opt_state)
    # The next finite batch is applied as usual.
    later, metrics = step(after, jnp.full(2, 2.0))
    assert int(metrics["skipped"]) == 0 and int(later.skipped) == 1
    assert not leaves_equal(later.params, after.params)


def test_bad_loss_functions():
    optimizer = optax.sgd(0.1)
    state = train.init_train_state({"w": jnp.ones(2)}, optimizer, key=0)
    cases = [
        (lambda p, b, k: jnp.sum(p["w"]), TypeError, "must return \\(loss, metrics\\)"),
        (lambda p, b, k: (p["w"], {}), TypeError, r"scalar loss, got shape \(2,\)"),
        (lambda p, b, k: (jnp.sum(p["w"]), {"loss": 1.0}), ValueError,
         r"must not use the names \['loss'\]"),
    ]
    for loss_fn, error, message in cases:
        with pytest.raises(error, match="mskjax.train.make_train_step: .*" + message):
            train.make_train_step(loss_fn, optimizer)(state, None)
    with pytest.raises(TypeError, match="make_train_step: loss_fn must be callable"):
        train.make_train_step(None, optimizer)
    with pytest.raises(TypeError, match="make_train_step: optimizer must be an optax"):
        train.make_train_step(lambda p, b, k: (0.0, {}), object())
    with pytest.raises(TypeError, match=r"make_train_step \(train_step\): state must be a "
                                        "mskjax.train.TrainState"):
        train.make_train_step(lambda p, b, k: (jnp.sum(p), {}), optimizer)({"w": 1}, None)


def test_eval_step():
    state, _, _ = setup()
    x, y = data()
    model_out = []

    def metric_fn(params, batch):
        model_out.append(params)
        return {"sum": jnp.sum(batch)}

    metrics = jax.jit(train.make_eval_step(metric_fn))(state, jnp.arange(4.0))
    assert float(metrics["sum"]) == 6.0
    assert jax.tree_util.tree_structure(model_out[0]) == jax.tree_util.tree_structure(
        state.params)
    with pytest.raises(TypeError, match="mskjax.train.make_eval_step: metric_fn must return a "
                                        "dict"):
        train.make_eval_step(lambda p, b: 1.0)(state, None)
    with pytest.raises(TypeError, match="make_eval_step: metric_fn must be callable"):
        train.make_eval_step(3)


def test_split_and_merge_model():
    model = Toy(8, rngs=nnx.Rngs(0))
    graphdef, params, rest = train.split_model(model)
    leaves = jax.tree_util.tree_leaves(params)
    assert len(leaves) == 6  # two dense layers (kernel, bias) and the norm's scale and bias
    assert {"mean", "var"} <= set(rest["norm"])  # the batch statistics are not trained
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(train.merge_model(graphdef, params, rest)(x), model(x))
    doubled = jax.tree_util.tree_map(lambda p: 2 * p, params)
    assert not np.allclose(train.merge_model(graphdef, doubled, rest)(x), model(x))
    with pytest.raises(TypeError, match="mskjax.train.split_model: model must be a "
                                        "flax.nnx.Module"):
        train.split_model({"w": 1})
    with pytest.raises(TypeError, match="mskjax.train.merge_model: graphdef must be"):
        train.merge_model(params, params, rest)
