"""Adversarial losses: least-squares GAN (Mao et al. 2017) and CycleGAN's cycle consistency.

The discriminator's outputs are unbounded scores (no sigmoid), any shape, e.g. the
``(batch, *spatial', 1)`` map of a PatchGAN (:class:`mskjax.nets.PatchDiscriminator`); each
loss averages over every score, as CycleGAN's ``nn.MSELoss`` does. Real is scored towards 1,
fake towards 0 (the a = 0, b = c = 1 choice of the LSGAN paper, as in CycleGAN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._checks import as_array
from ._inputs import _check_real


def _real(x, name, func):
    x = as_array(x, name, func)
    _check_real(x, name, func)
    if x.size == 0:
        raise ValueError(f"{func}: {name} must not be empty, got shape {tuple(x.shape)}")
    return jnp.asarray(x)


def lsgan_generator_loss(fake_scores: ArrayLike) -> jax.Array:
    """The generator's least-squares GAN loss ``mean((D(G(x)) - 1)^2)``.

    Args:
        fake_scores: the discriminator's scores of generated images, any shape (a score map
            ``(batch, *spatial', 1)``), real.

    Returns:
        Scalar of the scores' dtype: 0 when the discriminator scores every fake as real.
    """
    scores = _real(fake_scores, "fake_scores", "mskjax.losses.lsgan_generator_loss")
    return jnp.mean((scores - 1) ** 2)


def lsgan_discriminator_loss(real_scores: ArrayLike, fake_scores: ArrayLike) -> jax.Array:
    """The discriminator's least-squares GAN loss
    ``(mean((D(y) - 1)^2) + mean(D(G(x))^2)) / 2``.

    The two means are taken separately, so real and fake batches may differ in size. Stop the
    gradient into the generator (``jax.lax.stop_gradient`` of the fakes) when training the
    discriminator alone.

    Args:
        real_scores: the discriminator's scores of real images, any shape, real.
        fake_scores: its scores of generated images, any shape, real.

    Returns:
        Scalar: 0 for a discriminator that scores real as 1 and fake as 0; 0.25 where it
        scores everything 0.5 (its least-squares optimum against a perfect generator).
    """
    func = "mskjax.losses.lsgan_discriminator_loss"
    real = _real(real_scores, "real_scores", func)
    fake = _real(fake_scores, "fake_scores", func)
    return 0.5 * (jnp.mean((real - 1) ** 2) + jnp.mean(fake ** 2))


def cycle_consistency_loss(image: ArrayLike, reconstruction: ArrayLike) -> jax.Array:
    """CycleGAN's cycle-consistency loss: the mean absolute difference between an image and
    its round trip through both generators, ``mean(|x - F(G(x))|)``.

    Args:
        image: the original images, any shape (``(batch, *spatial, channels)``), real.
        reconstruction: ``F(G(image))``, same shape.

    Returns:
        Scalar of the inputs' dtype; 0 exactly when the round trip returns the image.
    """
    func = "mskjax.losses.cycle_consistency_loss"
    image = _real(image, "image", func)
    reconstruction = _real(reconstruction, "reconstruction", func)
    if image.shape != reconstruction.shape:
        raise ValueError(f"{func}: image and reconstruction must have the same shape, got "
                         f"{tuple(image.shape)} and {tuple(reconstruction.shape)}")
    dtype = jnp.result_type(image, reconstruction)
    image, reconstruction = image.astype(dtype), reconstruction.astype(dtype)
    return jnp.mean(jnp.abs(image - reconstruction))
