"""Least-squares GAN and cycle-consistency losses against CycleGAN's PyTorch definitions.

CycleGAN (``networks.GANLoss('lsgan')``): ``MSELoss(prediction, target)`` with the target a
tensor of ones (real) or zeros (fake) of the prediction's shape; the discriminator's loss is
``(loss(D(real), 1) + loss(D(fake), 0)) * 0.5``; the cycle loss is ``L1Loss``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import losses

torch = pytest.importorskip("torch")


def torch_gan(prediction, real: bool):
    prediction = torch.as_tensor(prediction)
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return torch.nn.functional.mse_loss(prediction, target)


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((3, 6, 5, 1)).astype(np.float32),
            rng.standard_normal((2, 6, 5, 1)).astype(np.float32))


def test_generator_loss_matches_cyclegan(scores):
    _, fake = scores
    got = losses.lsgan_generator_loss(fake)
    np.testing.assert_allclose(got, torch_gan(fake, real=True).item(), rtol=1e-6)
    # Gradient: 2 (s - 1) / N.
    grad = jax.grad(losses.lsgan_generator_loss)(jnp.asarray(fake))
    np.testing.assert_allclose(grad, 2 * (fake - 1) / fake.size, rtol=1e-6)


def test_discriminator_loss_matches_cyclegan(scores):
    real, fake = scores  # batches of different sizes
    got = losses.lsgan_discriminator_loss(real, fake)
    want = 0.5 * (torch_gan(real, real=True) + torch_gan(fake, real=False)).item()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    t_real = torch.tensor(real, requires_grad=True)
    t_fake = torch.tensor(fake, requires_grad=True)
    (0.5 * (torch_gan(t_real, True) + torch_gan(t_fake, False))).backward()
    g_real, g_fake = jax.grad(losses.lsgan_discriminator_loss, argnums=(0, 1))(real, fake)
    np.testing.assert_allclose(g_real, t_real.grad.numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(g_fake, t_fake.grad.numpy(), rtol=1e-5, atol=1e-8)


def test_least_squares_optima():
    ones, zeros, halves = np.ones((2, 4)), np.zeros((2, 4)), np.full((2, 4), 0.5)
    assert float(losses.lsgan_generator_loss(ones)) == 0.0
    assert float(losses.lsgan_generator_loss(zeros)) == 1.0
    assert float(losses.lsgan_discriminator_loss(ones, zeros)) == 0.0
    assert float(losses.lsgan_discriminator_loss(zeros, ones)) == 1.0
    assert float(losses.lsgan_discriminator_loss(halves, halves)) == 0.25
    # One constant score c for real and fake alike: 0.5 ((c - 1)^2 + c^2), least at c = 1/2.
    grid = np.linspace(0, 1, 101)
    values = [float(losses.lsgan_discriminator_loss(np.full(3, c), np.full(3, c)))
              for c in grid]
    assert grid[int(np.argmin(values))] == pytest.approx(0.5)


def test_cycle_loss_matches_l1_and_is_zero_for_a_perfect_round_trip(scores):
    image, _ = scores
    recon = image + np.random.default_rng(1).standard_normal(image.shape).astype(np.float32)
    got = losses.cycle_consistency_loss(image, recon)
    want = torch.nn.functional.l1_loss(torch.tensor(recon), torch.tensor(image)).item()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(losses.cycle_consistency_loss(image, image)) == 0.0
    assert float(losses.cycle_consistency_loss(image, image + 0.25)) == pytest.approx(0.25)


def test_jit_and_float64_kept():
    x = np.linspace(-1, 2, 12).reshape(3, 4)
    assert jax.jit(losses.lsgan_generator_loss)(x.astype(np.float32)) == pytest.approx(
        float(np.mean((x - 1) ** 2)), rel=1e-6)
    with jax.enable_x64(True):
        assert losses.lsgan_generator_loss(x).dtype == jnp.float64
        assert losses.cycle_consistency_loss(x, x * 2).dtype == jnp.float64


def test_bad_input():
    with pytest.raises(TypeError, match="lsgan_generator_loss: fake_scores must be real"):
        losses.lsgan_generator_loss(jnp.ones(3, jnp.complex64))
    with pytest.raises(TypeError, match="lsgan_discriminator_loss: real_scores must be floating"):
        losses.lsgan_discriminator_loss(np.ones(3, np.int32), np.ones(3))
    with pytest.raises(ValueError, match="lsgan_discriminator_loss: fake_scores must not be empty"):
        losses.lsgan_discriminator_loss(np.ones(3), np.ones((0, 2)))
    with pytest.raises(ValueError, match="cycle_consistency_loss: image and reconstruction must have the same"):
        losses.cycle_consistency_loss(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(TypeError, match="must be an array"):
        losses.lsgan_generator_loss("scores")
