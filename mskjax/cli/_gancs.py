"""GANCS in ``mskjax train recon`` / ``eval recon``: the discriminator, the GAN step, restoring.

``--model gancs`` trains :class:`mskjax.nets.GANCSGenerator` (ESPIRiT maps from the sampled
centre lines, as ``varnet`` and ``modl``; the magnitude of its output compared with the
root-sum-of-squares target, both in units of the target's maximum) against a
:class:`mskjax.nets.PatchDiscriminator` on the magnitude images (one channel), with
:func:`mskjax.train.make_gan_train_step`: ``pixel loss + adversarial_weight * LSGAN``, the
pixel loss ``l1`` (default), ``l2`` or ``ssim`` (fastMRI's ``1 - SSIM``), two Adam optimisers
of the same learning rate (clipped at norm 1), ``discriminator_steps`` discriminator updates
per generator step. ``adversarial_weight=0`` trains the same generator on the pixel loss alone.

The checkpoint holds a :class:`mskjax.train.GANState` and, in its configuration, the
discriminator's options beside the generator it was trained with (``config["discriminator"]
= {"name", "kwargs", "generator"}``), so that a discriminator is never restored for another
generator (``--init`` of a gancs run with other generator options is refused by name).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from .. import losses, nets, train
from ._run import check_run, checkpoint_folder

#: The discriminator's defaults: a 3-layer PatchGAN (70 x 70 patches) of 16 first channels.
DISCRIMINATOR_DEFAULTS = {"chans": 16, "num_layers": 3}
#: The GAN options' defaults (see mskjax.train.make_gan_train_step for the weight).
GAN_DEFAULTS = {"adversarial_weight": 0.01, "discriminator_steps": 1, "pixel_loss": "l1"}
PIXEL_LOSSES = ("l1", "l2", "ssim")


def gan_settings(model: str, *, adversarial_weight, discriminator_steps, pixel_loss,
                 discriminator_config, func: str) -> dict | None:
    """The GAN options of a ``gancs`` run, validated, with defaults; ``None`` for the other
    models (which refuse GAN options)."""
    given = {"adversarial_weight": adversarial_weight,
             "discriminator_steps": discriminator_steps, "pixel_loss": pixel_loss,
             "discriminator_config": discriminator_config}
    if model != "gancs":
        named = [k for k, v in given.items() if v is not None]
        if named:
            raise ValueError(f"{func}: {', '.join(named)} apply to --model gancs only, not "
                             f"{model!r}")
        return None
    options = {k: (GAN_DEFAULTS[k] if given[k] is None else given[k]) for k in GAN_DEFAULTS}
    weight = options["adversarial_weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
            0 <= weight < float("inf")):
        raise ValueError(f"{func}: adversarial_weight must be a finite number >= 0, got "
                         f"{weight!r}")
    steps = options["discriminator_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{func}: discriminator_steps must be a positive integer, got "
                         f"{steps!r}")
    if options["pixel_loss"] not in PIXEL_LOSSES:
        raise ValueError(f"{func}: pixel_loss must be one of {list(PIXEL_LOSSES)}, got "
                         f"{options['pixel_loss']!r}")
    options["adversarial_weight"] = float(weight)
    options["discriminator"] = {**DISCRIMINATOR_DEFAULTS, **(discriminator_config or {})}
    return options


def build_discriminator(kwargs: dict, seed: int, func: str) -> nnx.Module:
    try:
        return nets.PatchDiscriminator(1, rngs=nnx.Rngs(params=seed + 2), **kwargs)
    except TypeError as err:
        raise ValueError(f"{func}: bad discriminator configuration {kwargs}: {err}") from err


def discriminator_entry(model_config: dict, kwargs: dict) -> dict:
    """``config["discriminator"]``: its options and the generator it is trained with."""
    return {"name": "PatchDiscriminator", "kwargs": dict(kwargs), "generator": model_config}


def start_gan_state(net, discriminator, opt, *, ckpt, settings, keys, run_config, out, seed,
                    init, func):
    """``(graphdef, rest, d_graphdef, d_rest, state, resumed)``: a fresh GANState, the run in
    ``ckpt`` when it holds one, or one started from the GAN checkpoint ``init``."""
    graphdef, params, rest = train.split_model(net)
    d_graphdef, d_params, d_rest = train.split_model(discriminator)
    state = train.init_gan_state(params, d_params, optimizer=opt, discriminator_optimizer=opt,
                                 key=seed)
    resumed = train.latest_step(ckpt) is not None
    generator = run_config["model"]
    discriminator_config = {k: v for k, v in run_config["discriminator"].items()
                            if k != "generator"}
    if resumed:
        check_run(train.read_checkpoint_config(ckpt)["train"], settings, keys, out, func)
        state, _ = train.restore_gan_checkpoint(ckpt, target=state, generator=generator,
                                                discriminator=discriminator_config)
    elif init is not None:
        init = checkpoint_folder(init, func, "mskjax train recon")
        config = train.read_checkpoint_config(init)
        where = f"--init {init}"
        if "discriminator" not in config:
            raise ValueError(f"{func}: {where} holds a {config['model'].get('name')!r} run "
                             "without a discriminator; give a gancs run")
        try:
            restored, _ = train.restore_gan_checkpoint(init, target=state, generator=generator,
                                                       discriminator=discriminator_config)
        except ValueError as err:
            raise ValueError(f"{func}: {where}: {err}") from err
        state = train.init_gan_state(restored.params, restored.discriminator_params,
                                     optimizer=opt, discriminator_optimizer=opt, key=seed)
    return graphdef, rest, d_graphdef, d_rest, state, resumed


def make_gan_step(example_fn, graphdef, rest, d_graphdef, d_rest, opt, gan: dict):
    """The pure GAN step of a gancs run (``example_fn(model, key, kspace) -> (image,
    target)`` in units of the zero-filled image's maximum, from ``make_example_fn``)."""
    import jax

    def generate(params, batch, key):
        model = train.merge_model(graphdef, params, rest)
        keys = jax.random.split(key, batch["kspace"].shape[0])
        images, targets = jax.vmap(lambda k, x: example_fn(model, k, x))(keys, batch["kspace"])
        peak = jnp.max(targets, axis=(-2, -1), keepdims=True)
        return (images / peak)[..., None], (targets / peak)[..., None]

    def discriminate(params, images):
        return train.merge_model(d_graphdef, params, d_rest)(images)

    pixel = gan["pixel_loss"]
    if pixel == "ssim":
        def pixel(real, fake):
            ones = jnp.ones(real.shape[:1], real.dtype)
            return losses.ssim_loss(real[..., 0], fake[..., 0], data_range=ones)

    return train.make_gan_train_step(
        generate, discriminate, optimizer=opt, discriminator_optimizer=opt, pixel_loss=pixel,
        adversarial_weight=gan["adversarial_weight"],
        discriminator_steps=gan["discriminator_steps"])


def restore_generator(path, net, config: dict, optimizer):
    """The generator ``net`` with the parameters of the GAN checkpoint in ``path`` (eval
    mode); the discriminator is built from the checkpoint's configuration to read the state."""
    entry = config.get("discriminator") or {}
    discriminator = build_discriminator(entry.get("kwargs", DISCRIMINATOR_DEFAULTS), 0,
                                        "mskjax eval recon")
    graphdef, params, rest = train.split_model(net)
    _, d_params, _ = train.split_model(discriminator)
    target = train.init_gan_state(params, d_params, optimizer=optimizer,
                                  discriminator_optimizer=optimizer, key=0)
    state, _ = train.restore_gan_checkpoint(
        path, target=target, generator=config["model"],
        discriminator={k: v for k, v in entry.items() if k != "generator"})
    net = train.merge_model(graphdef, state.params, rest)
    net.eval()
    return net
