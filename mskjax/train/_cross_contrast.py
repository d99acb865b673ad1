"""Cross-contrast segmentation by cycle-consistent adversarial translation (SUSAN).

SUSAN (Liu F, "SUSAN: segment unannotated image structure using adversarial network", Magn
Reson Med 2019;81:3330-3345) segments a contrast that has no labels (the target, e.g.
fat-suppressed PD FSE) with the labels of another contrast (the source, e.g. T1-weighted SPGR).
A CycleGAN translates between the two contrasts without paired images; a segmentation net
learns from the source images and from the source images translated to the target contrast,
both with the source labels; and, trained jointly, the segmentation loss of a translated image
also reaches the source-to-target generator (semantic consistency: the translation must keep
the structures the labels describe). At test time the segmentation net is applied directly to
real target images.

Five nets, :class:`CrossContrastNets`: ``to_target`` (G, source -> target), ``to_source``
(F, target -> source), ``source_discriminator`` (D_S), ``target_discriminator`` (D_T) and
``segmenter`` (S, per-pixel class logits). Notation: ``s`` a batch of source images with labels
``y``, ``t`` a batch of target images (unpaired; the two batch sizes may differ).

One training step (:func:`make_cross_contrast_step`), both halves from the same forward pass:

1. G, F and S take one optimiser step on ::

       adversarial_weight * (lsgan_G(D_T(G(s))) + lsgan_G(D_S(F(t))))
     + cycle_weight * (|F(G(s)) - s|_1 + |G(F(t)) - t|_1)
     + identity_weight * (|G(t) - t|_1 + |F(s) - s|_1)          (skipped when 0)
     + source_weight * L(y, S(s))
     + translated_weight * L(y, S(G(s)))

   where ``L`` is the segmentation loss; with ``semantic_consistency=False`` the last term sees
   ``stop_gradient(G(s))`` (S learns from the translations, G gets nothing from S: a
   translate-then-segment baseline).
2. D_S and D_T take one optimiser step on the least-squares losses
   ``lsgan_D(D_T(t), D_T(G(s))) + lsgan_D(D_S(s), D_S(F(t)))`` with the fakes of step 1 (no
   gradient into the generators), as CycleGAN does (which also keeps a pool of 50 earlier
   fakes to show its discriminators; this step shows them the current ones only).

Arrays are channels-last with a leading batch axis, ``(batch, *spatial, channels)``, float32;
labels ``(batch, *spatial)`` integers in ``[0, num_classes)``. The state is one pytree
(:class:`CrossContrastState`); the step is pure and not jitted (``jax.jit(step,
donate_argnums=0)``). Non-finite losses or gradients leave every net unchanged and are
counted, as in :func:`mskjax.train.make_train_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from .. import losses
from ._model import merge_model, split_model
from ._state import as_key
from ._step import global_norm

GENERATORS = ("to_target", "to_source", "segmenter")
DISCRIMINATORS = ("source_discriminator", "target_discriminator")


class CrossContrastNets(NamedTuple):
    """The five nets of SUSAN (flax.nnx modules, channels-last).

    Attributes:
        to_target: generator G, source image -> target-contrast image, ``(batch, *spatial,
            channels)`` -> same shape (e.g. ``nets.UNet(1, 1, ...)``).
        to_source: generator F, target -> source, same shapes.
        source_discriminator: D_S, scores of source-contrast images (e.g.
            ``nets.PatchDiscriminator(1, ...)``).
        target_discriminator: D_T, scores of target-contrast images.
        segmenter: S, image -> ``(batch, *spatial, num_classes)`` logits (e.g.
            ``nets.UNet(1, num_classes, ...)``).
    """

    to_target: nnx.Module
    to_source: nnx.Module
    source_discriminator: nnx.Module
    target_discriminator: nnx.Module
    segmenter: nnx.Module


class CrossContrastState(NamedTuple):
    """Everything a SUSAN run changes, as one pytree.

    Attributes:
        step: int32 scalar, steps taken (skipped ones included).
        generator_params: dict ``{"to_target", "to_source", "segmenter"}`` of ``nnx.Param``
            states, trained together by one optimiser.
        discriminator_params: dict ``{"source_discriminator", "target_discriminator"}``.
        generator_opt_state: optax state of ``generator_params``.
        discriminator_opt_state: optax state of ``discriminator_params``.
        key: the run's PRNG key; step ``s`` uses ``fold_in(key, s)`` (dropout).
        skipped: int32 scalar, steps not applied because a loss or gradient was not finite.
    """

    step: jax.Array
    generator_params: dict
    discriminator_params: dict
    generator_opt_state: Any
    discriminator_opt_state: Any
    key: jax.Array
    skipped: jax.Array


def _check_optimizers(generator_optimizer, discriminator_optimizer, func):
    for name, optimizer in (("generator_optimizer", generator_optimizer),
                            ("discriminator_optimizer", discriminator_optimizer)):
        if not (callable(getattr(optimizer, "init", None))
                and callable(getattr(optimizer, "update", None))):
            raise TypeError(f"{func}: {name} must be an optax GradientTransformation (with "
                            f"init and update), got {type(optimizer).__name__}")


def _split(nets, func):
    if not isinstance(nets, CrossContrastNets):
        raise TypeError(f"{func}: nets must be a mskjax.train.CrossContrastNets, got "
                        f"{type(nets).__name__}")
    parts = {}
    for name in CrossContrastNets._fields:
        module = getattr(nets, name)
        if not isinstance(module, nnx.Module):
            raise TypeError(f"{func}: nets.{name} must be a flax.nnx.Module, got "
                            f"{type(module).__name__}")
        parts[name] = split_model(module)
    return parts


def init_cross_contrast_state(nets: CrossContrastNets, *, generator_optimizer,
                              discriminator_optimizer, key) -> CrossContrastState:
    """A fresh :class:`CrossContrastState` at step 0 from the nets' current parameters.

    Args:
        nets: the five nets, :class:`CrossContrastNets`.
        generator_optimizer: optax transformation of the generators and the segmenter
            (keyword-only; CycleGAN uses ``optax.adam(2e-4, b1=0.5)``).
        discriminator_optimizer: optax transformation of the discriminators.
        key: the run's seed: an int, a typed key or raw key data.

    Returns:
        ``CrossContrastState`` with both optimisers initialised.
    """
    func = "mskjax.train.init_cross_contrast_state"
    _check_optimizers(generator_optimizer, discriminator_optimizer, func)
    key = as_key(key, func)
    parts = _split(nets, func)
    gen = {name: parts[name][1] for name in GENERATORS}
    disc = {name: parts[name][1] for name in DISCRIMINATORS}
    return CrossContrastState(
        step=jnp.zeros((), jnp.int32), generator_params=gen, discriminator_params=disc,
        generator_opt_state=generator_optimizer.init(gen),
        discriminator_opt_state=discriminator_optimizer.init(disc), key=key,
        skipped=jnp.zeros((), jnp.int32))


def cross_contrast_nets(nets: CrossContrastNets, state: CrossContrastState) -> CrossContrastNets:
    """The nets of ``nets`` (their structure) with the parameters of ``state``: new modules,
    ``nets`` is not modified. ``cross_contrast_nets(nets, state).segmenter`` is the trained
    segmentation net, to apply to target images."""
    func = "mskjax.train.cross_contrast_nets"
    _check_state(state, func)
    parts = _split(nets, func)
    params = {**state.generator_params, **state.discriminator_params}
    return CrossContrastNets(**{name: merge_model(parts[name][0], params[name], parts[name][2])
                                for name in CrossContrastNets._fields})


def _check_state(state, func):
    if not isinstance(state, CrossContrastState):
        raise TypeError(f"{func}: state must be a mskjax.train.CrossContrastState (from "
                        f"init_cross_contrast_state), got {type(state).__name__}")


def _dice_ce(labels, logits):
    """Soft Dice + cross-entropy (:func:`mskjax.losses.dice_ce_loss`) over the logits'
    classes."""
    return losses.dice_ce_loss(labels, logits, num_classes=logits.shape[-1])


def _check_weight(value, name, func):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value >= 0 and value < float("inf")):
        raise ValueError(f"{func}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_batch(batch, func):
    if not isinstance(batch, dict) or set(batch) != {"source", "labels", "target"}:
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{func}: batch must be a dict with the keys 'source', 'labels' and "
                         f"'target', got {got}")
    source, labels, target = (jnp.asarray(batch[k]) for k in ("source", "labels", "target"))
    if source.ndim < 3 or target.ndim != source.ndim:
        raise ValueError(f"{func}: batch['source'] and batch['target'] must be (batch, "
                         f"*spatial, channels) of the same rank, got shapes {source.shape} "
                         f"and {target.shape}")
    if labels.shape != source.shape[:-1]:
        raise ValueError(f"{func}: batch['labels'] must be (batch, *spatial) = "
                         f"{source.shape[:-1]} (the source images without their channel "
                         f"axis), got shape {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{func}: batch['labels'] must be integers, got {labels.dtype}")
    for name, x in (("source", source), ("target", target)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{func}: batch[{name!r}] must be real floating point, got "
                            f"{x.dtype}")
    return source, labels, target


def make_cross_contrast_step(nets: CrossContrastNets, *, generator_optimizer,
                             discriminator_optimizer, adversarial_weight: float = 1.0,
                             cycle_weight: float = 10.0, identity_weight: float = 0.0,
                             source_weight: float = 1.0, translated_weight: float = 1.0,
                             semantic_consistency: bool = True,
                             segmentation_loss: Callable | None = None) -> Callable:
    """A pure SUSAN training step ``step(state, batch) -> (state, metrics)``.

    See the module docstring for the two updates it makes. ``nets`` gives the structure (and
    non-trainable variables) of the five nets; their parameters live in the state
    (:func:`init_cross_contrast_state`). Not jitted: ``jax.jit(step, donate_argnums=0)``.

    Args:
        nets: the five nets, :class:`CrossContrastNets`.
        generator_optimizer: optax transformation of G, F and S (keyword-only).
        discriminator_optimizer: optax transformation of D_S and D_T.
        adversarial_weight: weight of the generators' least-squares GAN losses.
        cycle_weight: weight of the two cycle-consistency L1 losses (CycleGAN's 10).
        identity_weight: weight of the identity losses ``|G(t) - t| + |F(s) - s|``; 0 (the
            default) skips them, since the two contrasts differ.
        source_weight: weight of the segmentation loss on source images.
        translated_weight: weight of the segmentation loss on source images translated to the
            target contrast, with the source labels.
        semantic_consistency: whether that loss also trains G (SUSAN's joint training); if
            False, S sees ``stop_gradient(G(s))``.
        segmentation_loss: ``loss(labels, logits) -> scalar`` with ``labels`` ``(batch,
            *spatial)`` integers and ``logits`` ``(batch, *spatial, num_classes)``; default
            soft Dice + cross-entropy, :func:`mskjax.losses.dice_ce_loss` with
            ``num_classes = logits.shape[-1]``.

    Returns:
        ``step(state, batch)`` with ``batch`` a dict: ``"source"`` ``(batch, *spatial,
        channels)`` float, ``"labels"`` ``(batch, *spatial)`` int (of the source images),
        ``"target"`` ``(batch', *spatial, channels)`` float. ``metrics`` holds every loss
        term (``adversarial``, ``cycle``, ``identity``, ``segmentation_source``,
        ``segmentation_translated``, ``generator_loss``, ``discriminator_loss``), the
        gradient norms ``generator_grad_norm`` and ``discriminator_grad_norm``, and
        ``skipped`` (1 when the step was not applied).
    """
    func = "mskjax.train.make_cross_contrast_step"
    _check_optimizers(generator_optimizer, discriminator_optimizer, func)
    weights = {name: _check_weight(value, name, func) for name, value in (
        ("adversarial_weight", adversarial_weight), ("cycle_weight", cycle_weight),
        ("identity_weight", identity_weight), ("source_weight", source_weight),
        ("translated_weight", translated_weight))}
    if not isinstance(semantic_consistency, bool):
        raise TypeError(f"{func}: semantic_consistency must be a bool, got "
                        f"{type(semantic_consistency).__name__}")
    if segmentation_loss is None:
        segmentation_loss = _dice_ce
    elif not callable(segmentation_loss):
        raise TypeError(f"{func}: segmentation_loss must be callable, got "
                        f"{type(segmentation_loss).__name__}")
    parts = _split(nets, func)

    def net(name, params, key):
        graphdef, _, rest = parts[name]
        model = merge_model(graphdef, params, rest)
        nnx.reseed(model, dropout=jax.random.fold_in(key, CrossContrastNets._fields.index(name)))
        return model

    def generator_objective(gen_params, disc_params, source, labels, target, key):
        to_target = net("to_target", gen_params["to_target"], key)
        to_source = net("to_source", gen_params["to_source"], key)
        segmenter = net("segmenter", gen_params["segmenter"], key)
        d_source = net("source_discriminator", disc_params["source_discriminator"], key)
        d_target = net("target_discriminator", disc_params["target_discriminator"], key)
        fake_target = to_target(source)
        fake_source = to_source(target)
        terms = {
            "adversarial": (losses.lsgan_generator_loss(d_target(fake_target))
                            + losses.lsgan_generator_loss(d_source(fake_source))),
            "cycle": (losses.cycle_consistency_loss(source, to_source(fake_target))
                      + losses.cycle_consistency_loss(target, to_target(fake_source))),
            "segmentation_source": segmentation_loss(labels, segmenter(source)),
        }
        translated = fake_target if semantic_consistency else jax.lax.stop_gradient(fake_target)
        terms["segmentation_translated"] = segmentation_loss(labels, segmenter(translated))
        if weights["identity_weight"] > 0:
            terms["identity"] = (losses.l1_loss(target, to_target(target))
                                 + losses.l1_loss(source, to_source(source)))
        else:
            terms["identity"] = jnp.zeros((), jnp.float32)
        total = (weights["adversarial_weight"] * terms["adversarial"]
                 + weights["cycle_weight"] * terms["cycle"]
                 + weights["identity_weight"] * terms["identity"]
                 + weights["source_weight"] * terms["segmentation_source"]
                 + weights["translated_weight"] * terms["segmentation_translated"])
        fakes = (jax.lax.stop_gradient(fake_source), jax.lax.stop_gradient(fake_target))
        return total, (terms, fakes)

    def discriminator_objective(disc_params, source, target, fakes, key):
        fake_source, fake_target = fakes
        d_source = net("source_discriminator", disc_params["source_discriminator"], key)
        d_target = net("target_discriminator", disc_params["target_discriminator"], key)
        return (losses.lsgan_discriminator_loss(d_target(target), d_target(fake_target))
                + losses.lsgan_discriminator_loss(d_source(source), d_source(fake_source)))

    def step(state: CrossContrastState, batch: dict) -> tuple[CrossContrastState, dict]:
        _check_state(state, f"{func} (step)")
        source, labels, target = _check_batch(batch, f"{func} (step)")
        key = jax.random.fold_in(state.key, state.step)
        gen_key, disc_key = jax.random.split(key)
        (gen_loss, (terms, fakes)), gen_grads = jax.value_and_grad(
            generator_objective, has_aux=True)(state.generator_params,
                                               state.discriminator_params, source, labels,
                                               target, gen_key)
        disc_loss, disc_grads = jax.value_and_grad(discriminator_objective)(
            state.discriminator_params, source, target, fakes, disc_key)
        gen_norm, disc_norm = global_norm(gen_grads), global_norm(disc_grads)
        ok = (jnp.isfinite(gen_loss) & jnp.isfinite(disc_loss) & jnp.isfinite(gen_norm)
              & jnp.isfinite(disc_norm))
        updates, gen_opt = generator_optimizer.update(gen_grads, state.generator_opt_state,
                                                      state.generator_params)
        gen_params = optax.apply_updates(state.generator_params, updates)
        updates, disc_opt = discriminator_optimizer.update(
            disc_grads, state.discriminator_opt_state, state.discriminator_params)
        disc_params = optax.apply_updates(state.discriminator_params, updates)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)

        skipped = jnp.logical_not(ok).astype(jnp.int32)
        new = CrossContrastState(
            step=state.step + 1,
            generator_params=keep(gen_params, state.generator_params),
            discriminator_params=keep(disc_params, state.discriminator_params),
            generator_opt_state=keep(gen_opt, state.generator_opt_state),
            discriminator_opt_state=keep(disc_opt, state.discriminator_opt_state),
            key=state.key, skipped=state.skipped + skipped)
        metrics = {**terms, "generator_loss": gen_loss, "discriminator_loss": disc_loss,
                   "generator_grad_norm": gen_norm, "discriminator_grad_norm": disc_norm,
                   "skipped": skipped}
        return new, metrics

    return step
