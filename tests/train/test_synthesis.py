"""The MR-to-pseudo-CT training step on toy nets and 16 x 16 images.

Oracles: one SGD step of each variant against the losses written out by hand (L1 on HU / 1000;
plus the least-squares GAN terms of a conditional discriminator that sees MR and CT together),
compared parameter by parameter; a few Adam steps on toy tissue maps must lower the error in HU
(with and without the discriminator); a non-finite batch changes nothing; mismatched contrasts,
CT shapes and nets are clear errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import nets, train

SIZE = 16
WEIGHT = 0.3  # a large adversarial weight, so that a wrong adversarial term shows


def toy_batch(seed=0, batch=4, contrasts=2):
    """Disks of 'bone' (600 HU) in 'soft tissue' (20 HU) in air; the MR contrasts are
    class-dependent intensities with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    classes = np.zeros((batch, SIZE, SIZE), np.int32)
    for i in range(batch):
        cy, cx = rng.uniform(6, 10, 2)
        r = (yy - cy) ** 2 + (xx - cx) ** 2
        classes[i][r < 36] = 1
        classes[i][r < 9] = 2
    hu = np.choose(classes, [-1000.0, 20.0, 600.0]).astype(np.float32)
    intensity = np.array([[0.0, 0.8, 0.3], [0.0, 0.4, 0.9], [0.1, 0.5, 0.5]])[:contrasts]
    mr = np.stack([np.choose(classes, row) for row in intensity], -1).astype(np.float32)
    mr += 0.02 * rng.standard_normal(mr.shape).astype(np.float32)
    return {"mr": mr, "hounsfield": hu}


def toy_nets(seed=0, contrasts=2):
    rngs = nnx.Rngs(seed)
    return (nets.UNet(contrasts, 1, chans=4, num_pool_layers=1, rngs=rngs),
            nets.PatchDiscriminator(contrasts + 1, chans=4, num_layers=1, rngs=rngs))


def params_of(module):
    return nnx.state(module, nnx.Param)


def assert_trees_close(a, b, **tol):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_l1_step_is_one_sgd_step_on_the_l1_of_hu_over_1000():
    generator, _ = toy_nets()
    batch = toy_batch()
    optimizer = optax.sgd(0.1)
    state = train.init_synthesis_state(generator, optimizer=optimizer, key=0)
    assert isinstance(state, train.TrainState)
    new, metrics = jax.jit(train.make_synthesis_step(generator, optimizer=optimizer))(state,
                                                                                        batch)
    graphdef, params = nnx.split(generator, nnx.Param)[:2]
    rest = nnx.split(generator, nnx.Param, ...)[2]

    def hand(p):
        pred = nnx.merge(graphdef, p, rest)(jnp.asarray(batch["mr"]))[..., 0]
        return jnp.mean(jnp.abs(pred - batch["hounsfield"] / 1000.0))

    loss, grads = jax.value_and_grad(hand)(params)
    expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-5)
    assert float(metrics["l1_hu"]) == pytest.approx(1000 * float(loss), rel=1e-5)
    assert int(metrics["skipped"]) == 0 and int(new.step) == 1
    assert_trees_close(new.params, expected, rtol=1e-5, atol=1e-7)


def test_adversarial_step_against_the_losses_by_hand():
    generator, discriminator = toy_nets(1)
    batch = toy_batch(1)
    g_opt, d_opt = optax.sgd(0.1), optax.sgd(0.05)
    state = train.init_synthesis_state(generator, optimizer=g_opt, key=0,
                                       discriminator=discriminator,
                                       discriminator_optimizer=d_opt)
    assert isinstance(state, train.GANState)
    step = train.make_synthesis_step(generator, optimizer=g_opt, discriminator=discriminator,
                                     discriminator_optimizer=d_opt, adversarial_weight=WEIGHT)
    new, metrics = jax.jit(step)(state, batch)

    g_graph, g_params, g_rest = nnx.split(generator, nnx.Param, ...)
    d_graph, d_params, d_rest = nnx.split(discriminator, nnx.Param, ...)
    mr = jnp.asarray(batch["mr"])
    target = jnp.asarray(batch["hounsfield"])[..., None] / 1000.0

    def disc(p, ct):
        return nnx.merge(d_graph, p, d_rest)(jnp.concatenate([mr, ct], -1))

    def gen_loss(p):
        fake = nnx.merge(g_graph, p, g_rest)(mr)
        return jnp.mean(jnp.abs(fake - target)) + WEIGHT * jnp.mean((disc(d_params, fake) - 1)
                                                                    ** 2)

    fake = nnx.merge(g_graph, g_params, g_rest)(mr)

    def disc_loss(p):
        return 0.5 * (jnp.mean((disc(p, target) - 1) ** 2) + jnp.mean(disc(p, fake) ** 2))

    g_loss, g_grads = jax.value_and_grad(gen_loss)(g_params)
    d_loss, d_grads = jax.value_and_grad(disc_loss)(d_params)
    assert float(metrics["loss"]) == pytest.approx(float(g_loss), rel=1e-5)
    assert float(metrics["discriminator_loss"]) == pytest.approx(float(d_loss), rel=1e-5)
    assert float(metrics["pixel"]) == pytest.approx(float(jnp.mean(jnp.abs(fake - target))),
                                                    rel=1e-5)
    assert_trees_close(new.params, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, g_params,
                                                          g_grads), rtol=1e-4, atol=1e-6)
    assert_trees_close(new.discriminator_params,
                       jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, d_params, d_grads),
                       rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("adversarial", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_toy_training_lowers_the_error_in_hu(adversarial):
    generator, discriminator = toy_nets(2)
    batch = toy_batch(2, batch=6)
    options = dict(discriminator=discriminator,
                   discriminator_optimizer=optax.adam(2e-3)) if adversarial else {}
    optimizer = optax.adam(3e-2)
    state = train.init_synthesis_state(generator, optimizer=optimizer, key=0, **options)
    step = jax.jit(train.make_synthesis_step(generator, optimizer=optimizer, **options))
    before = np.abs(np.asarray(train.predict_hounsfield(generator, batch["mr"]))
                    - batch["hounsfield"]).mean()
    history = []
    for _ in range(40):
        state, metrics = step(state, batch)
        history.append(float(metrics["l1_hu"]))
    trained = train.synthesis_generator(generator, state)
    after = np.abs(np.asarray(train.predict_hounsfield(trained, batch["mr"]))
                   - batch["hounsfield"]).mean()
    assert history[0] == pytest.approx(before, rel=1e-4)
    assert after < 0.4 * before, (before, after)
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])
    assert int(state.skipped) == 0
    # The template is untouched.
    now = np.abs(np.asarray(train.predict_hounsfield(generator, batch["mr"]))
                 - batch["hounsfield"]).mean()
    assert now == pytest.approx(before)


@pytest.mark.slow
def test_non_finite_batch_changes_nothing():
    generator, discriminator = toy_nets(3)
    batch = toy_batch(3)
    batch["hounsfield"][0, 0, 0] = np.nan
    for options in ({}, dict(discriminator=discriminator,
                             discriminator_optimizer=optax.adam(1e-3))):
        state = train.init_synthesis_state(generator, optimizer=optax.adam(1e-2), key=0,
                                           **options)
        step = jax.jit(train.make_synthesis_step(generator, optimizer=optax.adam(1e-2),
                                                 **options))
        new, metrics = step(state, batch)
        assert int(metrics["skipped"]) == 1 and int(new.skipped) == 1
        assert_trees_close(new.params, state.params, rtol=0, atol=0)


def test_mismatched_contrasts_and_ct_are_errors():
    generator, discriminator = toy_nets()
    optimizer = optax.adam(1e-3)
    step = train.make_synthesis_step(generator, optimizer=optimizer)
    state = train.init_synthesis_state(generator, optimizer=optimizer, key=0)
    f = "mskjax.train.make_synthesis_step"
    three = toy_batch(contrasts=3)
    with pytest.raises(ValueError, match=rf"{f} \(step\): batch\['mr'\] has 3 contrast channels "
                                         r"but the generator was built for 2"):
        step(state, three)
    with pytest.raises(ValueError, match="mskjax.train.predict_hounsfield: mr has 3 contrast "
                                         "channels but the generator was built for 2"):
        train.predict_hounsfield(generator, three["mr"])
    batch = toy_batch()
    with pytest.raises(ValueError, match=r"batch\['hounsfield'\] must be \(batch, \*spatial\) = "
                                         r"\(4, 16, 16\)"):
        step(state, {"mr": batch["mr"], "hounsfield": batch["hounsfield"][:, :8]})
    with pytest.raises(ValueError, match=r"must be \(batch, \*spatial, n_contrasts\) of rank 4"):
        step(state, {"mr": batch["mr"][0], "hounsfield": batch["hounsfield"][0]})
    with pytest.raises(ValueError, match="keys 'mr' and 'hounsfield'"):
        step(state, {"image": batch["mr"], "hounsfield": batch["hounsfield"]})
    with pytest.raises(TypeError, match=r"batch\['hounsfield'\] must be real floating point"):
        step(state, {"mr": batch["mr"], "hounsfield": batch["hounsfield"].astype(np.int32)})
    adversarial = train.make_synthesis_step(generator, optimizer=optimizer,
                                            discriminator=discriminator,
                                            discriminator_optimizer=optimizer)
    with pytest.raises(TypeError, match=f"{f} \\(step\\): state must be the GANState"):
        adversarial(state, batch)


def test_mismatched_nets_are_errors():
    generator, discriminator = toy_nets()
    optimizer = optax.adam(1e-3)
    f = "mskjax.train.make_synthesis_step"
    wrong = nets.PatchDiscriminator(2, chans=4, num_layers=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=f"{f}: .* needs in_chans = 2 \\+ 1 = 3 .* got 2"):
        train.make_synthesis_step(generator, optimizer=optimizer, discriminator=wrong,
                                  discriminator_optimizer=optimizer)
    with pytest.raises(ValueError, match=f"{f}: discriminator_optimizer given without"):
        train.make_synthesis_step(generator, optimizer=optimizer,
                                  discriminator_optimizer=optimizer)
    with pytest.raises(ValueError, match=f"{f}: a discriminator needs a discriminator_optim"):
        train.make_synthesis_step(generator, optimizer=optimizer, discriminator=discriminator)
    two = nets.UNet(2, 2, chans=4, num_pool_layers=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="mskjax.train.init_synthesis_state: the generator "
                                         "must have one output channel"):
        train.init_synthesis_state(two, optimizer=optimizer, key=0)
    with pytest.raises(ValueError, match=f"{f}: adversarial_weight must be"):
        train.make_synthesis_step(generator, optimizer=optimizer, discriminator=discriminator,
                                  discriminator_optimizer=optimizer, adversarial_weight=-1.0)
    with pytest.raises(TypeError, match="mskjax.train.synthesis_generator: state must be"):
        train.synthesis_generator(generator, {"params": 1})
