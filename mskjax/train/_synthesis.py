"""MR-to-pseudo-CT synthesis: an image-to-image generator trained with L1 and, optionally, a
least-squares adversarial loss against a conditional patch discriminator (pix2pix style).

The generator maps MR contrasts ``(batch, *spatial, n_contrasts)`` to one channel, the CT in
units of :data:`HOUNSFIELD_SCALE` (``HU / 1000``: air -1, water 0, cortical bone about +1.8),
e.g. ``nets.UNet(n_contrasts, 1, ...)``; :func:`predict_hounsfield` turns its output back into
HU. The discriminator, when given, scores the pair ``concat(mr, ct / 1000)`` (``n_contrasts + 1``
channels, e.g. ``nets.PatchDiscriminator(n_contrasts + 1, ...)``), so it judges whether the CT
fits the MR, not only whether it looks like a CT.

:func:`make_synthesis_step` builds on the library's two train steps rather than a loop of its
own:

* without a discriminator, :func:`mskjax.train.make_train_step` on the loss
  ``mean |G(mr) - ct / 1000|`` (state :class:`mskjax.train.TrainState`);
* with one, :func:`mskjax.train.make_gan_train_step` (state :class:`mskjax.train.GANState`):
  the generator's loss is ``mean |G(mr) - ct / 1000| + adversarial_weight *
  lsgan_G(D(mr, G(mr)))`` (default weight 0.01, pix2pix's 1 : 100), and the discriminator
  takes ``discriminator_steps`` steps on ``lsgan_D(D(mr, ct / 1000), D(mr, G(mr)))``.

Batches are dicts ``{"mr": (batch, *spatial, n_contrasts) float, "hounsfield": (batch,
*spatial) float HU}`` (stacked :func:`mskjax.sim.pseudo_ct_example`). The steps are pure and not
jitted (``jax.jit(step, donate_argnums=0)``); non-finite losses or gradients are skipped and
counted, as by the steps they build on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .. import losses
from ._gan import GANState, init_gan_state, make_gan_train_step
from ._model import merge_model, split_model
from ._state import TrainState, check_optimizer, init_train_state
from ._step import make_train_step

#: The generator predicts ``HU / HOUNSFIELD_SCALE``.
HOUNSFIELD_SCALE = 1000.0


def _check_nets(generator, discriminator, discriminator_optimizer, func):
    if not isinstance(generator, nnx.Module):
        raise TypeError(f"{func}: generator must be a flax.nnx.Module, got "
                        f"{type(generator).__name__}")
    if getattr(generator, "out_chans", 1) != 1:
        raise ValueError(f"{func}: the generator must have one output channel (the CT), got "
                         f"out_chans={generator.out_chans}")
    if discriminator is None:
        if discriminator_optimizer is not None:
            raise ValueError(f"{func}: discriminator_optimizer given without a discriminator")
        return
    if not isinstance(discriminator, nnx.Module):
        raise TypeError(f"{func}: discriminator must be a flax.nnx.Module or None, got "
                        f"{type(discriminator).__name__}")
    if discriminator_optimizer is None:
        raise ValueError(f"{func}: a discriminator needs a discriminator_optimizer")
    check_optimizer(discriminator_optimizer, func)
    contrasts = getattr(generator, "in_chans", None)
    pair = getattr(discriminator, "in_chans", None)
    if contrasts is not None and pair is not None and pair != contrasts + 1:
        raise ValueError(f"{func}: the discriminator scores the MR contrasts and the CT "
                         f"together, so it needs in_chans = {contrasts} + 1 = {contrasts + 1} "
                         f"for a generator of {contrasts} contrasts, got {pair}")


def init_synthesis_state(generator: nnx.Module, *, optimizer, key,
                         discriminator: nnx.Module | None = None,
                         discriminator_optimizer=None) -> TrainState | GANState:
    """A fresh state at step 0 from the nets' current parameters.

    Args:
        generator: MR contrasts -> CT / 1000, e.g. ``nets.UNet(n_contrasts, 1, ...)``.
        optimizer: optax transformation of the generator (keyword-only).
        key: the run's seed: an int, a typed key or raw key data.
        discriminator: optional, e.g. ``nets.PatchDiscriminator(n_contrasts + 1, ...)``.
        discriminator_optimizer: its optax transformation (required with a discriminator).

    Returns:
        A :class:`mskjax.train.TrainState` of the generator, or with a discriminator a
        :class:`mskjax.train.GANState` (both saved by :func:`mskjax.train.save_checkpoint`).
    """
    func = "mskjax.train.init_synthesis_state"
    check_optimizer(optimizer, func)
    _check_nets(generator, discriminator, discriminator_optimizer, func)
    params = split_model(generator)[1]
    if discriminator is None:
        return init_train_state(params, optimizer, key=key)
    return init_gan_state(params, split_model(discriminator)[1], optimizer=optimizer,
                          discriminator_optimizer=discriminator_optimizer, key=key)


def synthesis_generator(generator: nnx.Module, state: TrainState | GANState) -> nnx.Module:
    """A new module with the structure of ``generator`` and the generator parameters of
    ``state`` (the trained generator; ``generator`` is not modified)."""
    func = "mskjax.train.synthesis_generator"
    if not isinstance(state, (TrainState, GANState)):
        raise TypeError(f"{func}: state must be a TrainState or GANState (from "
                        f"init_synthesis_state), got {type(state).__name__}")
    graphdef, _, rest = split_model(generator)
    return merge_model(graphdef, state.params, rest)


def _contrast_channels(mr, generator, func, name="mr"):
    mr = jnp.asarray(mr)
    ndim = getattr(generator, "ndim", None)
    if mr.ndim < 3 or (ndim is not None and mr.ndim != ndim + 2):
        want = f"{ndim + 2}" if ndim is not None else "at least 3"
        raise ValueError(f"{func}: {name} must be (batch, *spatial, n_contrasts) of rank "
                         f"{want}, got shape {mr.shape}")
    if not jnp.issubdtype(mr.dtype, jnp.floating):
        raise TypeError(f"{func}: {name} must be real floating point, got {mr.dtype}")
    channels = getattr(generator, "in_chans", None)
    if channels is not None and mr.shape[-1] != channels:
        raise ValueError(f"{func}: {name} has {mr.shape[-1]} contrast channels but the "
                         f"generator was built for {channels} (its in_chans); give the "
                         f"contrasts it was trained on, in the same order")
    return mr


def predict_hounsfield(generator: nnx.Module, mr) -> jax.Array:
    """The generator's pseudo-CT in HU: ``HOUNSFIELD_SCALE * generator(mr)[..., 0]``.

    Args:
        generator: a trained generator (:func:`synthesis_generator`).
        mr: ``(batch, *spatial, n_contrasts)`` float, as in training.

    Returns:
        float32 ``(batch, *spatial)`` HU.
    """
    mr = _contrast_channels(mr, generator, "mskjax.train.predict_hounsfield")
    return HOUNSFIELD_SCALE * generator(mr)[..., 0]


def _check_batch(batch, generator, func):
    if not isinstance(batch, dict) or set(batch) != {"mr", "hounsfield"}:
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{func}: batch must be a dict with the keys 'mr' and 'hounsfield', "
                         f"got {got}")
    mr = _contrast_channels(batch["mr"], generator, func, "batch['mr']")
    hu = jnp.asarray(batch["hounsfield"])
    if hu.shape != mr.shape[:-1]:
        raise ValueError(f"{func}: batch['hounsfield'] must be (batch, *spatial) = "
                         f"{mr.shape[:-1]} (the MR images without their contrast axis), got "
                         f"shape {hu.shape}")
    if not jnp.issubdtype(hu.dtype, jnp.floating):
        raise TypeError(f"{func}: batch['hounsfield'] must be real floating point HU, got "
                        f"{hu.dtype}")
    return {"mr": mr, "hounsfield": hu}


def _ct_channel_l1(real, fake):
    """L1 of the last channel (the CT) of ``concat(mr, ct)`` pairs; the MR channels agree."""
    return losses.l1_loss(real[..., -1], fake[..., -1])


def make_synthesis_step(generator: nnx.Module, *, optimizer,
                        discriminator: nnx.Module | None = None, discriminator_optimizer=None,
                        adversarial_weight: float = 0.01, discriminator_steps: int = 1):
    """A pure synthesis training step ``step(state, batch) -> (state, metrics)``.

    See the module docstring. ``generator`` (and ``discriminator``) give the structure and
    non-trainable variables; the parameters live in the state (:func:`init_synthesis_state`).
    Not jitted: ``jax.jit(step, donate_argnums=0)``.

    Args:
        generator: MR contrasts -> CT / 1000, e.g. ``nets.UNet(n_contrasts, 1, ...)``.
        optimizer: optax transformation of the generator (keyword-only).
        discriminator: optional conditional discriminator of ``n_contrasts + 1`` channels;
            None trains with L1 alone.
        discriminator_optimizer: its optax transformation (required with a discriminator).
        adversarial_weight: weight of the generator's least-squares GAN loss relative to the
            L1 loss on ``HU / 1000`` (default 0.01).
        discriminator_steps: discriminator updates per generator step.

    Returns:
        ``step(state, batch)``. ``metrics`` holds ``loss``, ``pixel`` (the L1 on HU / 1000),
        ``l1_hu`` (the same in HU), ``grad_norm`` and ``skipped``; with a discriminator also
        ``adversarial``, ``discriminator_loss`` and ``discriminator_grad_norm``
        (:func:`mskjax.train.make_gan_train_step`).
    """
    func = "mskjax.train.make_synthesis_step"
    check_optimizer(optimizer, func)
    _check_nets(generator, discriminator, discriminator_optimizer, func)
    if isinstance(adversarial_weight, bool) or not isinstance(
            adversarial_weight, (int, float)) or not (0 <= adversarial_weight < float("inf")):
        raise ValueError(f"{func}: adversarial_weight must be a finite number >= 0, got "
                         f"{adversarial_weight!r}")
    if isinstance(discriminator_steps, bool) or not isinstance(discriminator_steps, int) or \
            discriminator_steps < 1:
        raise ValueError(f"{func}: discriminator_steps must be an integer >= 1, got "
                         f"{discriminator_steps!r}")
    gen_graph, _, gen_rest = split_model(generator)

    def generate(params, mr, key):
        model = merge_model(gen_graph, params, gen_rest)
        nnx.reseed(model, dropout=key)
        return model(mr)

    def target_of(batch):
        return (batch["hounsfield"] / HOUNSFIELD_SCALE)[..., None].astype(batch["mr"].dtype)

    if discriminator is None:
        def loss_fn(params, batch, key):
            l1 = losses.l1_loss(target_of(batch), generate(params, batch["mr"], key))
            return l1, {"pixel": l1}

        inner = make_train_step(loss_fn, optimizer)
    else:
        disc_graph, _, disc_rest = split_model(discriminator)

        def generate_pair(params, batch, key):
            fake = generate(params, batch["mr"], key)
            return (jnp.concatenate([batch["mr"], fake], -1),
                    jnp.concatenate([batch["mr"], target_of(batch)], -1))

        def discriminate(params, pair):
            return merge_model(disc_graph, params, disc_rest)(pair)

        inner = make_gan_train_step(generate_pair, discriminate, optimizer=optimizer,
                                    discriminator_optimizer=discriminator_optimizer,
                                    pixel_loss=_ct_channel_l1,
                                    adversarial_weight=adversarial_weight,
                                    discriminator_steps=discriminator_steps)
    kind = TrainState if discriminator is None else GANState

    def step(state, batch):
        if not isinstance(state, kind):
            raise TypeError(f"{func} (step): state must be the {kind.__name__} of "
                            f"init_synthesis_state for this generator"
                            f"{'' if discriminator is None else ' and discriminator'}, got "
                            f"{type(state).__name__}")
        state, metrics = inner(state, _check_batch(batch, generator, f"{func} (step)"))
        return state, {**metrics, "l1_hu": HOUNSFIELD_SCALE * metrics["pixel"]}

    return step
