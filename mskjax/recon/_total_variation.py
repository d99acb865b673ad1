"""Total-variation regularised SENSE reconstruction by the primal-dual hybrid gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._result import Reconstruction
from ._sense_problem import regularised_problem


def _gradient(x, axes):
    return jnp.stack([x - jnp.roll(x, 1, axis=a) for a in axes])


def _gradient_adjoint(g, axes):
    return sum(g[i] - jnp.roll(g[i], -1, axis=a) for i, a in enumerate(axes))


def total_variation(kspace, maps, *, mask=None, lamda, max_iter=100, power_iter=30):
    """Total-variation SENSE reconstruction (the objective of sigpy's ``TotalVariationRecon``).

    Minimises ``1/2 ||A x - y||^2 + lamda ||G x||_1`` where ``A = M F S`` and ``G`` stacks
    the periodic finite differences along every spatial axis (:class:`mskjax.linop.
    FiniteDifference`); the l1 norm sums the magnitudes of the complex differences (anisotropic
    TV). Solved from ``x = 0`` by the primal-dual method with an explicit gradient step on the
    smooth data term (Condat 2013, J Optim Theory Appl 158:460; Vu 2013, Adv Comput Math
    38:667): ``x+ = x - tau (A^H (A x - y) + G^H v)``, ``v+ = clip_lamda(v + sigma G (2 x+ - x))``
    with ``sigma = 1 / ||G||^2`` (``||G||^2 = 4 * ndim``) and ``1 / tau = 1.01 (||A||^2 / 2 +
    sigma ||G||^2)``, ``||A||^2`` by power iteration. Handling the data term in the primal,
    rather than through a dual variable as the primal-dual hybrid gradient on ``[A; G]`` does,
    converges in far fewer iterations on undersampled MRI.

    Args:
        kspace: complex ``(coils, *spatial)`` k-space, zero where not sampled.
        maps: complex ``(coils, *spatial)`` sensitivity maps, or ``(sets, coils, *spatial)``
            for several sets (soft-SENSE; each set's image is regularised on its own).
        mask: boolean or real weights broadcasting to the k-space (keyword-only); default: the
            locations where any coil is nonzero.
        lamda: regularisation weight ``>= 0``.
        max_iter: iterations (static).
        power_iter: power iterations for ``||A||^2`` (static).

    Returns:
        :class:`Reconstruction` with ``history`` the objective after each iteration.
    """
    setup = regularised_problem(kspace, maps, mask, lamda=lamda, max_iter=max_iter,
                                power_iter=power_iter, func="mskjax.recon.total_variation")
    problem, lamda, b = setup.problem, setup.lamda, setup.adjoint_data
    real = lamda.dtype
    axes = problem.image_axes
    x0 = jnp.zeros(problem.image_shape, b.dtype)
    gradient_norm2 = 4.0 * len(axes)
    sigma = 1.0 / gradient_norm2
    tau = 1.0 / (1.01 * (setup.lipschitz / 2 + sigma * gradient_norm2))
    safe_lamda = jnp.where(lamda > 0, lamda, 1)

    def objective(x, normal_x):
        return (setup.half_residual_norm2(x, normal_x)
                + lamda * jnp.sum(jnp.abs(_gradient(x, axes))))

    def step(state, _):
        x, v, normal_x = state
        x_new = x - tau * (normal_x - b + _gradient_adjoint(v, axes))
        v = v + sigma * _gradient(2 * x_new - x, axes)
        v = v / jnp.maximum(1, jnp.abs(v) / safe_lamda) * (lamda > 0)
        normal_new = problem.normal(x_new)
        return (x_new, v, normal_new), objective(x_new, normal_new)

    state = (x0, jnp.zeros((len(axes), *x0.shape), x0.dtype), x0)
    (x, _, _), history = jax.lax.scan(step, state, None, length=max_iter)
    return Reconstruction(image=x, iterations=jnp.int32(max_iter),
                          history=history.astype(real), converged=jnp.bool_(False))
