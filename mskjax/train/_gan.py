"""A pure GAN train step: a generator against a discriminator, pixel plus least-squares GAN loss.

The step of GANCS (Mardani et al., IEEE TMI 2019) and of any paired image-to-image GAN
(pix2pix-like): a generator ``G`` produces an image from a batch, the batch also holds the real
image it should match, and a discriminator ``D`` scores images patch by patch
(:class:`mskjax.nets.PatchDiscriminator`). One step, both halves from one forward pass of G:

1. ``G`` takes one optimiser step on ::

       pixel_weight * pixel(real, G(batch)) + adversarial_weight * lsgan_G(D(G(batch)))

   with ``pixel`` the mean absolute (``"l1"``) or squared (``"l2"``) error, or a function
   ``pixel(real, fake) -> scalar``, and ``lsgan_G`` :func:`mskjax.losses.lsgan_generator_loss`
   (D's current parameters, not updated by this half).
2. ``D`` takes ``discriminator_steps`` optimiser steps on the least-squares loss
   :func:`mskjax.losses.lsgan_discriminator_loss` of the real images and the fakes of step 1
   (``stop_gradient``: no gradient into G), each step on the same pair: the usual stabiliser
   of a discriminator that must keep up with the generator.

Default weights: ``pixel_weight = 1`` and ``adversarial_weight = 0.01``. Mardani et al. mix the
pixel-wise cost with a small share of the LSGAN cost (the pixel term keeps the result faithful,
the adversarial term only removes the blur that a pixel loss alone leaves): for images in units
of the target's maximum, an l1 error of a few per cent and an LSGAN loss of about 0.25 to 1, a
weight of 0.01 makes the adversarial term a fraction of the pixel term rather than its master.
``adversarial_weight = 0`` trains the same generator with the pixel loss alone (the
discriminator still learns, to report how far the fakes are from real).

State: :class:`GANState` has the fields of :class:`mskjax.train.TrainState` (``step``,
``params`` and ``opt_state`` are the generator's, ``key``, ``skipped``) plus
``discriminator_params`` and ``discriminator_opt_state``, so the checkpoint functions and the
CLI's training loop handle it as they handle a ``TrainState``. The key of step ``s`` is
``fold_in(key, s)`` (split for G and D). Non-finite losses or gradients (of either net) leave
both nets and both optimisers unchanged; the step counter advances and ``skipped`` counts
them, as in :func:`mskjax.train.make_train_step`. The step is pure and not jitted
(``jax.jit(step, donate_argnums=0)`` or :func:`mskjax.train.data_parallel`).

Images are channels-last with a leading batch axis, ``(batch, *spatial, channels)``, real.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import losses
from ._state import as_key, check_optimizer
from ._step import global_norm

#: Metric names that the GAN step writes itself.
GAN_METRICS = ("loss", "pixel", "adversarial", "discriminator_loss", "grad_norm",
               "discriminator_grad_norm", "skipped")


class GANState(NamedTuple):
    """Everything a GAN run changes, as one pytree (a ``NamedTuple``).

    Attributes:
        step: int32 scalar, generator steps taken (skipped ones included).
        params: the generator's trainable parameters (an ``nnx.State``).
        opt_state: the optax state of ``params``.
        key: the run's PRNG key; step ``s`` uses ``fold_in(key, s)``.
        skipped: int32 scalar, steps not applied because a loss or gradient was not finite.
        discriminator_params: the discriminator's trainable parameters.
        discriminator_opt_state: the optax state of ``discriminator_params``.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array
    skipped: jax.Array
    discriminator_params: Any
    discriminator_opt_state: Any


def _check_gan_state(state, func):
    if not isinstance(state, GANState):
        raise TypeError(f"{func}: state must be a mskjax.train.GANState (from init_gan_state), "
                        f"got {type(state).__name__}")


def init_gan_state(params: Any, discriminator_params: Any, *, optimizer,
                   discriminator_optimizer, key) -> GANState:
    """A fresh :class:`GANState` at step 0.

    Args:
        params: the generator's parameters (e.g. from :func:`mskjax.train.split_model`).
        discriminator_params: the discriminator's parameters.
        optimizer: optax transformation of the generator (keyword-only).
        discriminator_optimizer: optax transformation of the discriminator.
        key: the run's seed: a non-negative int, a typed key or raw key data.
    """
    func = "mskjax.train.init_gan_state"
    check_optimizer(optimizer, func)
    check_optimizer(discriminator_optimizer, func)
    key = as_key(key, func)
    return GANState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), key=key,
                    skipped=jnp.zeros((), jnp.int32),
                    discriminator_params=discriminator_params,
                    discriminator_opt_state=discriminator_optimizer.init(discriminator_params))


def _weight(value, name, func):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value < float("inf")):
        raise ValueError(f"{func}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _pixel_loss(pixel_loss, func) -> Callable:
    if pixel_loss == "l1":
        return losses.l1_loss
    if pixel_loss == "l2":
        return losses.l2_loss
    if callable(pixel_loss):
        return pixel_loss
    raise ValueError(f"{func}: pixel_loss must be 'l1', 'l2' or a function (real, fake) -> "
                     f"scalar, got {pixel_loss!r}")


def _images(out, what, func):
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{func}: generate must return (fake, real) images, got "
                        f"{type(out).__name__}")
    fake, real = out
    if jnp.shape(fake) != jnp.shape(real) or jnp.ndim(fake) < 3:
        raise ValueError(f"{func}: generate must return fake and real images of one shape "
                         f"(batch, *spatial, channels), got {jnp.shape(fake)} and "
                         f"{jnp.shape(real)}")
    for name, x in (("fake", fake), ("real", real)):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(f"{func}: generate's {name} images must be real floating point "
                            f"(a complex image enters as two channels), got "
                            f"{jnp.result_type(x)}")
    return fake, real


def make_gan_train_step(generate: Callable, discriminate: Callable, *, optimizer,
                        discriminator_optimizer, pixel_loss: str | Callable = "l1",
                        pixel_weight: float = 1.0, adversarial_weight: float = 0.01,
                        discriminator_steps: int = 1) -> Callable:
    """A pure GAN step ``step(state, batch) -> (state, metrics)`` (see the module docstring).

    Args:
        generate: ``generate(params, batch, key) -> (fake, real)``: the generator's images of a
            batch and the real images they should match, both ``(batch, *spatial,
            channels)`` real, a pure function of the generator's parameters.
        discriminate: ``discriminate(discriminator_params, images) -> scores``, any shape
            (a PatchGAN score map), pure.
        optimizer: optax transformation of the generator (keyword-only).
        discriminator_optimizer: optax transformation of the discriminator.
        pixel_loss: ``"l1"`` (default), ``"l2"``, or ``loss(real, fake) -> scalar``.
        pixel_weight: weight of the pixel loss (>= 0).
        adversarial_weight: weight of the generator's LSGAN loss (>= 0; default 0.01, see the
            module docstring; 0 trains on the pixel loss alone).
        discriminator_steps: discriminator updates per generator step (>= 1).

    Returns:
        ``step(state, batch)`` with ``state`` a :class:`GANState`. ``metrics``: ``loss`` (the
        generator's total), ``pixel``, ``adversarial``, ``discriminator_loss`` (its loss before
        the last of its updates), ``grad_norm`` (generator), ``discriminator_grad_norm``
        (largest over its updates), ``skipped`` (1 when the step was not applied).
    """
    func = "mskjax.train.make_gan_train_step"
    for name, fn in (("generate", generate), ("discriminate", discriminate)):
        if not callable(fn):
            raise TypeError(f"{func}: {name} must be callable, got {type(fn).__name__}")
    check_optimizer(optimizer, func)
    check_optimizer(discriminator_optimizer, func)
    pixel = _pixel_loss(pixel_loss, func)
    pixel_weight = _weight(pixel_weight, "pixel_weight", func)
    adversarial_weight = _weight(adversarial_weight, "adversarial_weight", func)
    if isinstance(discriminator_steps, bool) or not isinstance(discriminator_steps, int) or \
            discriminator_steps < 1:
        raise ValueError(f"{func}: discriminator_steps must be an integer >= 1, got "
                         f"{discriminator_steps!r}")

    def generator_objective(params, disc_params, batch, key):
        fake, real = _images(generate(params, batch, key), "generate", func)
        pixel_term = jnp.asarray(pixel(real, fake))
        if pixel_term.shape != ():
            raise TypeError(f"{func}: pixel_loss must return a scalar, got shape "
                            f"{pixel_term.shape}")
        adversarial = losses.lsgan_generator_loss(discriminate(disc_params, fake))
        total = pixel_weight * pixel_term + adversarial_weight * adversarial
        terms = {"pixel": pixel_term, "adversarial": adversarial}
        return total, (terms, jax.lax.stop_gradient(fake), jax.lax.stop_gradient(real))

    def discriminator_objective(disc_params, real, fake):
        return losses.lsgan_discriminator_loss(discriminate(disc_params, real),
                                               discriminate(disc_params, fake))

    def discriminator_update(carry, _):
        disc_params, disc_opt, real, fake = carry
        loss, grads = jax.value_and_grad(discriminator_objective)(disc_params, real, fake)
        updates, disc_opt = discriminator_optimizer.update(grads, disc_opt, disc_params)
        disc_params = optax.apply_updates(disc_params, updates)
        return (disc_params, disc_opt, real, fake), (loss, global_norm(grads))

    def step(state: GANState, batch: Any) -> tuple[GANState, dict]:
        _check_gan_state(state, f"{func} (step)")
        key = jax.random.fold_in(state.key, state.step)
        gen_key, _ = jax.random.split(key)
        (gen_loss, (terms, fake, real)), grads = jax.value_and_grad(
            generator_objective, has_aux=True)(state.params, state.discriminator_params,
                                               batch, gen_key)
        gen_norm = global_norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        (disc_params, disc_opt, _, _), (disc_losses, disc_norms) = jax.lax.scan(
            discriminator_update,
            (state.discriminator_params, state.discriminator_opt_state, real, fake), None,
            length=discriminator_steps)
        disc_norm = jnp.max(disc_norms)
        ok = (jnp.isfinite(gen_loss) & jnp.isfinite(gen_norm)
              & jnp.all(jnp.isfinite(disc_losses)) & jnp.all(jnp.isfinite(disc_norms)))

        def keep(new, old):
            return jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)

        skipped = jnp.logical_not(ok).astype(jnp.int32)
        new = GANState(step=state.step + 1, params=keep(params, state.params),
                       opt_state=keep(opt_state, state.opt_state), key=state.key,
                       skipped=state.skipped + skipped,
                       discriminator_params=keep(disc_params, state.discriminator_params),
                       discriminator_opt_state=keep(disc_opt, state.discriminator_opt_state))
        metrics = {**terms, "loss": gen_loss, "discriminator_loss": disc_losses[-1],
                   "grad_norm": gen_norm, "discriminator_grad_norm": disc_norm,
                   "skipped": skipped}
        return new, metrics

    return step


def check_discriminator_config(config: Mapping, generator: Mapping, where: str,
                               func: str) -> None:
    """Refuse a checkpoint's discriminator trained with another generator.

    ``config`` is a checkpoint's configuration (:func:`mskjax.train.read_checkpoint_config`);
    a GAN checkpoint's has a ``"discriminator"`` entry whose ``"generator"`` is the
    ``{"name", "kwargs"}`` of the generator it was trained against. A ValueError names every
    difference from ``generator``, or says that the checkpoint has no discriminator.
    """
    from ._checkpoint import _listing, _model_differences

    entry = config.get("discriminator")
    if not isinstance(entry, Mapping) or not isinstance(entry.get("generator"), Mapping):
        raise ValueError(f"{func}: {where} holds no discriminator (its configuration has no "
                         "'discriminator' entry with the 'generator' it was trained with)")
    differences = _model_differences(entry["generator"], generator)
    if differences:
        raise ValueError(f"{func}: the discriminator of {where} was trained with another "
                         f"generator ({_listing(differences)}); it cannot be restored for this "
                         "one")


def restore_gan_checkpoint(directory, *, target: GANState, generator: Mapping,
                           discriminator: Mapping | None = None,
                           step: int | None = None) -> tuple[GANState, dict]:
    """Restore a :class:`GANState` saved by :func:`mskjax.train.save_checkpoint`, refusing a
    discriminator that was trained with another generator.

    The checkpoint's configuration must have ``config["model"]`` (the generator) and
    ``config["discriminator"] = {"name", "kwargs", "generator": config["model"]}``.

    Args:
        directory: the checkpoint folder.
        target: a :class:`GANState` of the generator, discriminator and optimisers to restore
            into (keyword-only); shapes and dtypes must match.
        generator: the expected generator ``{"name": str, "kwargs": dict}``; a checkpoint whose
            discriminator was trained with another one raises a ValueError naming the
            differing options (also when the shapes would fit).
        discriminator: the expected discriminator ``{"name", "kwargs"}``, checked likewise.
        step: which checkpoint; default the latest.

    Returns:
        ``(state, config)``.
    """
    from ._checkpoint import (_directory, _listing, _model_differences, _resolve_step,
                              read_checkpoint_config, restore_checkpoint)

    func = "mskjax.train.restore_gan_checkpoint"
    _check_gan_state(target, func)
    path = _directory(directory, func)
    step = _resolve_step(path, step, func)
    config = read_checkpoint_config(path, step=step)
    where = f"the checkpoint {path / str(step)}"
    check_discriminator_config(config, generator, where, func)
    if discriminator is not None:
        differences = _model_differences(
            {k: v for k, v in config["discriminator"].items() if k != "generator"},
            discriminator)
        if differences:
            raise ValueError(f"{func}: {where} holds another discriminator: "
                             f"{_listing(differences)}")
    return restore_checkpoint(path, target=target, step=step, model=generator)
