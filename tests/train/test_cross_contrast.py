"""The SUSAN training step on toy nets and 32 x 32 images.

The oracle is the step written out by hand (every loss term, one SGD step each for the
generator side and the discriminators) and compared parameter by parameter; the other tests
check the properties a wrong step would break: identity and mutually inverse generators have no
cycle loss, the semantic-consistency switch decides whether the segmentation loss trains the
source-to-target generator, the discriminators' update lowers their loss, a non-finite batch
changes nothing, and the step is deterministic.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mskjax import losses, nets, train

SIZE = 32
CLASSES = 3


class Pointwise(nnx.Module):
    """``x -> a * x + b * x^2`` with two trainable scalars: the identity when ``a, b = 1, 0``.
    (A scaled image alone would not do for the semantic-consistency test: the segmenter's
    instance norms make it blind to a scale.)"""

    def __init__(self, a: float, b: float = 0.0):
        self.a = nnx.Param(jnp.asarray(a, jnp.float32))
        self.b = nnx.Param(jnp.asarray(b, jnp.float32))

    def __call__(self, x):
        return self.a[...] * x + self.b[...] * x * x


def toy_nets(seed=0, generators=None) -> train.CrossContrastNets:
    rngs = nnx.Rngs(seed)
    to_target, to_source = generators or (
        nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=rngs),
        nets.UNet(1, 1, chans=2, num_pool_layers=1, rngs=rngs))
    return train.CrossContrastNets(
        to_target=to_target, to_source=to_source,
        source_discriminator=nets.PatchDiscriminator(1, chans=2, num_layers=1, rngs=rngs),
        target_discriminator=nets.PatchDiscriminator(1, chans=2, num_layers=1, rngs=rngs),
        segmenter=nets.UNet(1, CLASSES, chans=4, num_pool_layers=1, rngs=rngs))


def toy_batch(seed=0, source_batch=2, target_batch=3):
    """Disks on a background: source bright disk on dark, target the inverse contrast."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]

    def disks(count):
        labels = np.zeros((count, SIZE, SIZE), np.int32)
        for i in range(count):
            for cls, radius in ((1, 9), (2, 4)):
                cy, cx = rng.uniform(10, 22, 2)
                labels[i][(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = cls
        return labels

    source_labels, target_labels = disks(source_batch), disks(target_batch)
    source = np.choose(source_labels, [0.1, 0.9, 0.5]).astype(np.float32)[..., None]
    target = np.choose(target_labels, [0.8, 0.2, 0.5]).astype(np.float32)[..., None]
    source += 0.02 * rng.standard_normal(source.shape).astype(np.float32)
    target += 0.02 * rng.standard_normal(target.shape).astype(np.float32)
    return {"source": source, "labels": source_labels, "target": target}


def make(models, gen_opt=None, disc_opt=None, **weights):
    gen_opt = gen_opt or optax.adam(1e-2)
    disc_opt = disc_opt or optax.adam(1e-2)
    state = train.init_cross_contrast_state(models, generator_optimizer=gen_opt,
                                            discriminator_optimizer=disc_opt, key=0)
    step = train.make_cross_contrast_step(models, generator_optimizer=gen_opt,
                                          discriminator_optimizer=disc_opt, **weights)
    return state, jax.jit(step)


@functools.lru_cache(maxsize=None)
def _default():
    """Point-wise generators (a U-Net compiles for long; the first test runs U-Nets), Adam."""
    models = toy_nets(generators=(Pointwise(1.2, 0.1), Pointwise(0.8, -0.1)))
    return models, *make(models)


@functools.lru_cache(maxsize=None)
def _frozen_generators():
    """Generators and segmenter with a zero learning rate, identity loss on."""
    models = toy_nets(seed=2, generators=(Pointwise(1.0), Pointwise(1.0)))
    return models, *make(models, optax.sgd(0.0), optax.adam(1e-2), identity_weight=1.0)


def max_diff(a, b):
    """Largest absolute difference over the numeric leaves of two pytrees (keys compared as
    key data)."""
    def data(x):
        return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    return max(float(jnp.max(jnp.abs(data(x) - data(y)))) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_one_step_equals_the_loss_written_out_by_hand():
    # (The identity term is left out here, it only adds compile time; the identity test
    # checks it and its weight.)
    weights = dict(adversarial_weight=0.7, cycle_weight=3.0, source_weight=1.3,
                   translated_weight=0.9)
    # A U-Net one way, a point-wise map the other (a second U-Net only adds compile time).
    models = toy_nets(seed=1)
    models = models._replace(to_source=Pointwise(0.8, -0.1))
    lr = 0.05
    state, step = make(models, optax.sgd(lr), optax.sgd(lr), **weights)
    batch = toy_batch(1)
    new, metrics = step(state, batch)
    s, y, t = (jnp.asarray(batch[k]) for k in ("source", "labels", "target"))
    graphs = {n: train.split_model(getattr(models, n)) for n in models._fields}

    def model(name, params):
        graphdef, _, rest = graphs[name]
        return train.merge_model(graphdef, params, rest)

    def seg(logits):  # the default segmentation loss
        return losses.dice_ce_loss(y, logits, num_classes=CLASSES)

    def gen_total(gp, dp):
        G, F, S = (model(n, gp[n]) for n in ("to_target", "to_source", "segmenter"))
        DS = model("source_discriminator", dp["source_discriminator"])
        DT = model("target_discriminator", dp["target_discriminator"])
        adversarial = jnp.mean((DT(G(s)) - 1) ** 2) + jnp.mean((DS(F(t)) - 1) ** 2)
        cycle = jnp.mean(jnp.abs(F(G(s)) - s)) + jnp.mean(jnp.abs(G(F(t)) - t))
        return 0.7 * adversarial + 3.0 * cycle + 1.3 * seg(S(s)) + 0.9 * seg(S(G(s)))

    def disc_total(dp, gp):
        G, F = model("to_target", gp["to_target"]), model("to_source", gp["to_source"])
        DS = model("source_discriminator", dp["source_discriminator"])
        DT = model("target_discriminator", dp["target_discriminator"])
        return 0.5 * (jnp.mean((DT(t) - 1) ** 2) + jnp.mean(DT(G(s)) ** 2)
                      + jnp.mean((DS(s) - 1) ** 2) + jnp.mean(DS(F(t)) ** 2))

    gp, dp = state.generator_params, state.discriminator_params
    (loss, gen_grad), (disc_loss, disc_grad) = jax.jit(lambda g, d: (
        jax.value_and_grad(gen_total)(g, d), jax.value_and_grad(disc_total)(d, g)))(gp, dp)
    np.testing.assert_allclose(metrics["generator_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["discriminator_loss"], disc_loss, rtol=1e-5)
    want_g = jax.tree_util.tree_map(lambda p, g: p - lr * g, gp, gen_grad)
    want_d = jax.tree_util.tree_map(lambda p, g: p - lr * g, dp, disc_grad)
    assert max_diff(new.generator_params, want_g) < 1e-5
    assert max_diff(new.discriminator_params, want_d) < 1e-5
    # The step moved every net.
    for name in ("to_target", "to_source", "segmenter"):
        assert max_diff(new.generator_params[name], gp[name]) > 1e-4
    assert max_diff(new.discriminator_params, dp) > 1e-4
    assert int(new.step) == 1 and int(metrics["skipped"]) == 0


def test_identity_and_inverse_generators_have_no_cycle_loss():
    models, state, step = _frozen_generators()
    batch = toy_batch(2)
    _, metrics = step(state, batch)
    assert float(metrics["cycle"]) == 0.0 and float(metrics["identity"]) == 0.0
    # The weights of _frozen_generators: adversarial 1, cycle 10, identity 1, segmentation 1, 1.
    total = sum(float(metrics[k]) for k in ("adversarial", "segmentation_source",
                                            "segmentation_translated"))
    np.testing.assert_allclose(metrics["generator_loss"], total, rtol=1e-6)
    # G(x) = 2x and F(x) = x / 2: no cycle loss, identity loss |2t - t| + |s/2 - s|.
    inverse = toy_nets(seed=2, generators=(Pointwise(2.0), Pointwise(0.5)))
    state = train.init_cross_contrast_state(inverse, generator_optimizer=optax.sgd(0.0),
                                            discriminator_optimizer=optax.adam(1e-2), key=0)
    _, metrics = step(state, batch)  # same structure: the compiled step is reused
    assert float(metrics["cycle"]) == 0.0
    want = np.mean(np.abs(batch["target"])) + 0.5 * np.mean(np.abs(batch["source"]))
    np.testing.assert_allclose(metrics["identity"], want, rtol=1e-5)
    total = sum(float(metrics[k]) for k in ("adversarial", "identity", "segmentation_source",
                                            "segmentation_translated"))
    np.testing.assert_allclose(metrics["generator_loss"], total, rtol=1e-6)
    assert float(metrics["adversarial"]) > 0


@pytest.mark.parametrize("semantic", [True, False])
def test_semantic_consistency_decides_whether_segmentation_trains_the_generator(semantic):
    """Also: a segmentation loss passed in is the one used (per-pixel squared error of the
    softmax here), on the source and on the translated logits."""
    models = toy_nets(seed=3, generators=(Pointwise(1.0, 0.5), Pointwise(0.7)))
    calls = []

    def brier(labels, logits):
        calls.append(logits.shape)
        onehot = jax.nn.one_hot(labels, logits.shape[-1])
        return jnp.mean(jnp.sum((jax.nn.softmax(logits) - onehot) ** 2, axis=-1))

    state, step = make(models, optax.sgd(1.0), optax.sgd(1.0), adversarial_weight=0.0,
                       cycle_weight=0.0, source_weight=0.0, translated_weight=1.0,
                       semantic_consistency=semantic, segmentation_loss=brier)
    batch = toy_batch(3)
    new, metrics = step(state, batch)
    assert calls == [(2, SIZE, SIZE, CLASSES)] * 2
    segmenter = train.cross_contrast_nets(models, state).segmenter
    translated = batch["source"] + 0.5 * batch["source"] ** 2
    np.testing.assert_allclose(metrics["segmentation_translated"],
                               brier(batch["labels"], segmenter(translated)), rtol=1e-5)
    moved = float(jnp.abs(new.generator_params["to_target"]["b"][...] - 0.5))
    assert (moved > 1e-5) == semantic, moved
    if not semantic:
        assert moved == 0.0
    # F never sees the labels; S always learns from the translated images.
    assert float(new.generator_params["to_source"]["a"][...]) == np.float32(0.7)
    assert max_diff(new.generator_params["segmenter"], state.generator_params["segmenter"]) > 0
    assert float(metrics["segmentation_translated"]) > 0


def test_training_lowers_the_segmentation_and_discriminator_losses():
    models, state, step = _default()
    batch = toy_batch(4)
    history = []
    for _ in range(12):
        state, metrics = step(state, batch)
        history.append({k: float(v) for k, v in metrics.items()})
    first, last = history[0], history[-1]
    assert last["segmentation_source"] < 0.7 * first["segmentation_source"]
    assert last["segmentation_translated"] < 0.8 * first["segmentation_translated"]
    assert last["cycle"] < first["cycle"]
    assert all(np.isfinite(v) for h in history for v in h.values())
    assert int(state.step) == 12 and int(state.skipped) == 0


def test_discriminator_update_lowers_its_loss_against_fixed_generators():
    models, state, step = _frozen_generators()
    batch = toy_batch(5)
    values = []
    for _ in range(6):
        new, metrics = step(state, batch)
        assert max_diff(new.generator_params, state.generator_params) == 0.0
        state = new
        values.append(float(metrics["discriminator_loss"]))
    assert values[-1] < 0.8 * values[0], values


def test_step_is_deterministic_and_cross_contrast_nets_carry_the_state():
    models, state, step = _default()
    batch = toy_batch(6)
    a, ma = step(state, batch)
    b, mb = step(state, batch)
    assert max_diff(a, b) == 0.0
    assert all(float(ma[k]) == float(mb[k]) for k in ma)
    trained = train.cross_contrast_nets(models, a)
    x = jnp.asarray(batch["target"])
    graphdef, _, rest = train.split_model(models.segmenter)
    want = train.merge_model(graphdef, a.generator_params["segmenter"], rest)(x)
    np.testing.assert_array_equal(trained.segmenter(x), want)
    assert not np.array_equal(trained.segmenter(x), models.segmenter(x))
    assert trained.segmenter(x).shape == (3, SIZE, SIZE, CLASSES)


def test_non_finite_batch_is_skipped():
    models, state, step = _default()
    batch = toy_batch(7)
    batch["target"][0, 3, 3, 0] = np.nan
    new, metrics = step(state, batch)
    assert int(metrics["skipped"]) == 1 and int(new.skipped) == 1 and int(new.step) == 1
    assert max_diff(new.generator_params, state.generator_params) == 0.0
    assert max_diff(new.discriminator_params, state.discriminator_params) == 0.0


def test_bad_input():
    models = toy_nets(seed=9, generators=(Pointwise(1.0), Pointwise(1.0)))
    opt = optax.sgd(0.1)
    make_step = functools.partial(train.make_cross_contrast_step, generator_optimizer=opt,
                                  discriminator_optimizer=opt)
    with pytest.raises(ValueError, match="make_cross_contrast_step: cycle_weight must be"):
        make_step(models, cycle_weight=-1.0)
    with pytest.raises(ValueError, match="adversarial_weight must be"):
        make_step(models, adversarial_weight=float("nan"))
    with pytest.raises(TypeError, match="nets must be a mskjax.train.CrossContrastNets"):
        make_step(tuple(models))
    with pytest.raises(TypeError, match="nets.segmenter must be a flax.nnx.Module"):
        make_step(models._replace(segmenter=lambda x: x))
    with pytest.raises(TypeError, match="generator_optimizer must be an optax"):
        train.init_cross_contrast_state(models, generator_optimizer=None,
                                        discriminator_optimizer=opt, key=0)
    state = train.init_cross_contrast_state(models, generator_optimizer=opt,
                                            discriminator_optimizer=opt, key=0)
    step = make_step(models)
    batch = toy_batch(9)
    with pytest.raises(ValueError, match="keys 'source', 'labels' and 'target'"):
        step(state, {"source": batch["source"], "target": batch["target"]})
    with pytest.raises(ValueError, match=r"batch\['labels'\] must be \(batch, \*spatial\)"):
        step(state, {**batch, "labels": batch["labels"][:1]})
    with pytest.raises(TypeError, match=r"batch\['labels'\] must be integers"):
        step(state, {**batch, "labels": batch["labels"].astype(np.float32)})
    with pytest.raises(TypeError, match="state must be a mskjax.train.CrossContrastState"):
        step(train.init_train_state({}, opt, key=0), batch)
