"""train.make_gan_train_step / GANState: the update against a hand computation, discriminator
steps, the pixel-only case, skipped steps, checkpoints, a discriminator of another generator,
bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import losses, nets, train

RNG = np.random.default_rng(0)
BATCH = {"x": jnp.asarray(RNG.standard_normal((2, 8, 8, 1)), jnp.float32),
         "y": jnp.asarray(RNG.standard_normal((2, 8, 8, 1)), jnp.float32)}
PARAMS = {"w": jnp.asarray(0.5), "b": jnp.asarray(0.1)}
DISC = {"a": jnp.asarray(0.3), "c": jnp.asarray(0.2)}


def generate(params, batch, key):
    return batch["x"] * params["w"] + params["b"], batch["y"]


def discriminate(dp, images):
    return images * dp["a"] + dp["c"]


def sgd(lr):
    return optax.sgd(lr)


def make(**options):
    options = {"optimizer": sgd(0.1), "discriminator_optimizer": sgd(0.05)} | options
    return train.make_gan_train_step(generate, discriminate, **options)


def fresh(**options):
    options = {"optimizer": sgd(0.1), "discriminator_optimizer": sgd(0.05)} | options
    return train.init_gan_state(PARAMS, DISC, key=0, **options)


def test_one_step_equals_the_hand_computation():
    state, metrics = make(pixel_loss="l2", pixel_weight=2.0, adversarial_weight=0.5)(fresh(),
                                                                                      BATCH)
    x, y = BATCH["x"], BATCH["y"]

    def g_loss(p):
        fake = x * p["w"] + p["b"]
        return 2.0 * jnp.mean((fake - y) ** 2) + 0.5 * jnp.mean((fake * DISC["a"]
                                                                  + DISC["c"] - 1) ** 2)

    grads = jax.grad(g_loss)(PARAMS)
    fake = x * PARAMS["w"] + PARAMS["b"]

    def d_loss(d):
        return 0.5 * (jnp.mean((y * d["a"] + d["c"] - 1) ** 2)
                      + jnp.mean((fake * d["a"] + d["c"]) ** 2))

    d_grads = jax.grad(d_loss)(DISC)
    for name in PARAMS:
        np.testing.assert_allclose(state.params[name], PARAMS[name] - 0.1 * grads[name],
                                   rtol=1e-5)
    for name in DISC:
        np.testing.assert_allclose(state.discriminator_params[name],
                                   DISC[name] - 0.05 * d_grads[name], rtol=1e-5)
    assert float(metrics["loss"]) == pytest.approx(float(g_loss(PARAMS)), rel=1e-5)
    assert float(metrics["discriminator_loss"]) == pytest.approx(float(d_loss(DISC)), rel=1e-5)
    assert int(state.step) == 1 and int(metrics["skipped"]) == 0
    assert float(metrics["grad_norm"]) == pytest.approx(
        float(jnp.sqrt(grads["w"] ** 2 + grads["b"] ** 2)), rel=1e-5)


def test_discriminator_steps_are_sequential_updates():
    two, _ = make(discriminator_steps=2)(fresh(), BATCH)
    fake = BATCH["x"] * PARAMS["w"] + PARAMS["b"]
    d = DISC
    for _ in range(2):
        g = jax.grad(lambda d: losses.lsgan_discriminator_loss(
            discriminate(d, BATCH["y"]), discriminate(d, fake)))(d)
        d = jax.tree_util.tree_map(lambda p, q: p - 0.05 * q, d, g)
    for name in DISC:
        np.testing.assert_allclose(two.discriminator_params[name], d[name], rtol=1e-5)
    one, _ = make(discriminator_steps=1)(fresh(), BATCH)
    assert not np.allclose(one.discriminator_params["a"], two.discriminator_params["a"])


def test_zero_adversarial_weight_is_the_pixel_loss_step():
    gan, metrics = make(adversarial_weight=0.0)(fresh(), BATCH)

    def loss_fn(p, batch, key):
        fake, real = generate(p, batch, key)
        return losses.l1_loss(real, fake), {}

    plain = train.make_train_step(loss_fn, sgd(0.1))
    state, _ = plain(train.init_train_state(PARAMS, sgd(0.1), key=0), BATCH)
    for name in PARAMS:
        np.testing.assert_allclose(gan.params[name], state.params[name], rtol=1e-6)
    assert float(metrics["adversarial"]) > 0  # reported even when not weighted


def test_nonfinite_step_is_skipped_and_counted():
    step = jax.jit(make())
    bad = {"x": BATCH["x"].at[0, 0, 0, 0].set(jnp.nan), "y": BATCH["y"]}
    state, metrics = step(fresh(), bad)
    assert int(metrics["skipped"]) == 1 and int(state.skipped) == 1 and int(state.step) == 1
    for name in PARAMS:
        assert float(state.params[name]) == float(PARAMS[name])
    for name in DISC:
        assert float(state.discriminator_params[name]) == float(DISC[name])
    state, metrics = step(state, BATCH)
    assert int(metrics["skipped"]) == 0 and int(state.skipped) == 1


def _nets(features=4, seed=0):
    gen = nets.GANCSGenerator(num_blocks=1, features=features, rngs=nnx.Rngs(seed))
    disc = nets.PatchDiscriminator(1, chans=2, num_layers=1, rngs=nnx.Rngs(seed + 1))
    return gen, disc


def _config(features):
    generator = {"name": "gancs", "kwargs": {"num_blocks": 1, "features": features}}
    return {"model": generator, "train": {"lr": 1e-3},
            "discriminator": {"name": "patch", "kwargs": {"chans": 2, "num_layers": 1},
                              "generator": generator}}


def _state(features):
    gen, disc = _nets(features)
    _, params, _ = train.split_model(gen)
    _, dparams, _ = train.split_model(disc)
    return train.init_gan_state(params, dparams, optimizer=optax.adam(1e-3),
                                discriminator_optimizer=optax.adam(1e-3), key=3)


@pytest.mark.slow
def test_checkpoint_round_trip_and_another_generator(tmp_path):
    state = _state(4)
    state = state._replace(step=jnp.asarray(5, jnp.int32))
    train.save_checkpoint(tmp_path, state, config=_config(4))
    restored, config = train.restore_gan_checkpoint(tmp_path, target=_state(4),
                                                    generator=_config(4)["model"])
    assert isinstance(restored, train.GANState) and int(restored.step) == 5
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    raw, _ = train.restore_checkpoint(tmp_path)  # no target: the saved fields decide
    assert isinstance(raw, train.GANState)
    # A discriminator trained with another generator: refused by name, before any array.
    with pytest.raises(ValueError, match="discriminator of .* was trained with another "
                                         "generator \\(kwargs.features: checkpoint 4, "
                                         "expected 8"):
        train.restore_gan_checkpoint(tmp_path, target=_state(8), generator=_config(8)["model"])
    # Same shapes, other options (cg_iterations): still refused.
    other = {"name": "gancs", "kwargs": {"num_blocks": 1, "features": 4, "cg_iterations": 3}}
    with pytest.raises(ValueError, match="another generator.*cg_iterations"):
        train.restore_gan_checkpoint(tmp_path, target=_state(4), generator=other)
    with pytest.raises(ValueError, match="holds another discriminator"):
        train.restore_gan_checkpoint(tmp_path, target=_state(4), generator=_config(4)["model"],
                                     discriminator={"name": "patch", "kwargs": {"chans": 4}})
    # A plain (TrainState) checkpoint has no discriminator.
    plain = tmp_path / "plain"
    train.save_checkpoint(plain, train.init_train_state(PARAMS, sgd(0.1), key=0),
                          config={"model": _config(4)["model"]})
    with pytest.raises(ValueError, match="holds no discriminator"):
        train.restore_gan_checkpoint(plain, target=_state(4), generator=_config(4)["model"])


def test_patch_discriminator_step_runs_and_learns():
    gen, disc = _nets()
    g_def, g_params, g_rest = train.split_model(gen)
    d_def, d_params, d_rest = train.split_model(disc)
    rng = np.random.default_rng(1)
    real = jnp.asarray(rng.uniform(size=(2, 12, 12, 1)), jnp.float32)

    def gen_fn(params, batch, key):
        del params, key
        return batch["noise"], batch["real"]

    def disc_fn(params, images):
        return train.merge_model(d_def, params, d_rest)(images)

    step = jax.jit(train.make_gan_train_step(
        gen_fn, disc_fn, optimizer=optax.adam(1e-3),
        discriminator_optimizer=optax.adam(1e-2), discriminator_steps=2))
    state = train.init_gan_state({}, d_params, optimizer=optax.adam(1e-3),
                                 discriminator_optimizer=optax.adam(1e-2), key=0)
    batch = {"real": real, "noise": 0.1 * real[:, ::-1]}
    first = None
    for _ in range(15):
        state, metrics = step(state, batch)
        first = float(metrics["discriminator_loss"]) if first is None else first
    assert float(metrics["discriminator_loss"]) < 0.5 * first


@pytest.mark.parametrize("options, error, match", [
    ({"discriminator_steps": 0}, ValueError, "discriminator_steps must be an integer >= 1"),
    ({"discriminator_steps": 1.5}, ValueError, "discriminator_steps must be an integer"),
    ({"adversarial_weight": -0.1}, ValueError, "adversarial_weight must be a finite number"),
    ({"pixel_weight": float("nan")}, ValueError, "pixel_weight must be a finite number"),
    ({"pixel_loss": "l3"}, ValueError, "pixel_loss must be 'l1', 'l2' or a function"),
    ({"optimizer": "adam"}, TypeError, "optimizer must be an optax"),
])
def test_bad_options(options, error, match):
    with pytest.raises(error, match="mskjax.train.make_gan_train_step: " + match):
        make(**options)


def test_bad_state_and_outputs():
    with pytest.raises(TypeError, match="state must be a mskjax.train.GANState"):
        make()(train.init_train_state(PARAMS, sgd(0.1), key=0), BATCH)
    step = train.make_gan_train_step(lambda p, b, k: (b["x"], b["y"][:1]), discriminate,
                                     optimizer=sgd(0.1), discriminator_optimizer=sgd(0.1))
    with pytest.raises(ValueError, match="fake and real images of one shape"):
        step(fresh(), BATCH)
    with pytest.raises(TypeError, match="discriminate must be callable"):
        train.make_gan_train_step(generate, None, optimizer=sgd(0.1),
                                  discriminator_optimizer=sgd(0.1))
