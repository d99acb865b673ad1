"""L1-wavelet compressed sensing by FISTA."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..linop._wavelet import Wavelet
from ._result import Reconstruction
from ._sense_problem import regularised_problem


def soft_threshold(x, threshold):
    """Complex soft thresholding ``x * max(0, 1 - threshold / |x|)`` (0 where ``x == 0``)."""
    magnitude = jnp.abs(x)
    scale = jnp.maximum(0, 1 - threshold / jnp.where(magnitude > 0, magnitude, 1))
    return (x * scale.astype(x.dtype)).astype(x.dtype)


def l1_wavelet(kspace, maps, *, mask=None, lamda, max_iter=30, wavelet="db4", levels=None,
               power_iter=30):
    """L1-wavelet SENSE reconstruction (the objective of sigpy's ``L1WaveletRecon``).

    Minimises ``1/2 ||A x - y||^2 + lamda ||W x||_1`` with ``A = M F S`` and ``W`` the
    orthonormal Daubechies wavelet transform over the spatial axes (:class:`mskjax.linop.
    Wavelet`, periodic boundaries; the l1 norm sums complex magnitudes) by FISTA (Beck and
    Teboulle 2009) from ``x = 0`` with step ``1 / ||A||^2`` (power iteration), the proximal
    step being ``W^H soft(W x)``, as sigpy's accelerated ``GradientMethod`` does. Sizes that
    are not multiples of ``2**levels`` are zero-padded inside the transform; the proximal step
    is then exact only on the padded image (``W`` is an isometry, not square), the same
    approximation sigpy makes with its zero-padded wavelets.

    Args:
        kspace: complex ``(coils, *spatial)`` k-space, zero where not sampled.
        maps: complex ``(coils, *spatial)`` sensitivity maps, or ``(sets, coils, *spatial)``
            (soft-SENSE, as with two sets of ESPIRiT maps; the image is ``(sets, *spatial)``).
        mask: boolean or real weights broadcasting to the k-space (keyword-only); default: the
            locations where any coil is nonzero.
        lamda: regularisation weight ``>= 0``.
        max_iter: iterations (static).
        wavelet: ``"db1"`` to ``"db4"`` (see :class:`mskjax.linop.Wavelet`).
        levels: decomposition levels; None for the most the image allows.
        power_iter: power iterations for ``||A||^2`` (static).

    Returns:
        :class:`Reconstruction` with ``history`` the objective after each iteration.
    """
    setup = regularised_problem(kspace, maps, mask, lamda=lamda, max_iter=max_iter,
                                power_iter=power_iter, func="mskjax.recon.l1_wavelet")
    problem, lamda, b = setup.problem, setup.lamda, setup.adjoint_data
    real = lamda.dtype
    shape = problem.image_shape
    transform = Wavelet(shape, wavelet=wavelet, levels=levels,
                        axes=tuple(range(len(shape) - len(problem.axes), len(shape))))
    x0 = jnp.zeros(shape, b.dtype)
    step_size = 1 / setup.lipschitz

    def prox(v):
        return transform.H(soft_threshold(transform(v), step_size * lamda))

    def objective(x, normal_x):
        return setup.half_residual_norm2(x, normal_x) + lamda * jnp.sum(jnp.abs(transform(x)))

    def step(state, _):
        # FISTA; N is linear, so N z follows from N x and N x_prev: one normal per iteration.
        # z_k = x_k + (t_{k-1} - 1) / t_k (x_k - x_{k-1}), t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2.
        x, x_prev, normal_x, normal_prev, t_prev, t = state
        momentum = (t_prev - 1) / t
        z = x + momentum * (x - x_prev)
        normal_z = normal_x + momentum * (normal_x - normal_prev)
        x_new = prox(z - step_size * (normal_z - b))
        normal_new = problem.normal(x_new)
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        return (x_new, x, normal_new, normal_x, t, t_new), objective(x_new, normal_new)

    one = jnp.asarray(1.0, real)
    state = (x0, x0, x0, x0, one, one)
    (x, *_), history = jax.lax.scan(step, state, None, length=max_iter)
    return Reconstruction(image=x, iterations=jnp.int32(max_iter),
                          history=history.astype(real), converged=jnp.bool_(False))
