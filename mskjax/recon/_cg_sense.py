"""CG-SENSE: conjugate gradient on the normal equations of the SENSE model."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._checks import check_interval, check_positive_int
from ._result import Reconstruction
from ._sense_problem import sense_problem


def cg_sense(kspace, maps, *, mask=None, lamda=0.0, max_iter=30, tol=0.0):
    """Tikhonov-regularised SENSE reconstruction by conjugate gradient.

    Minimises ``1/2 ||A x - y||^2 + lamda/2 ||x||^2`` with ``A = M F S`` by solving
    ``(A^H A + lamda I) x = A^H y`` from ``x = 0``, as ``sigpy.mri.app.SenseRecon`` does. The
    iterations use plain FFTs (see :mod:`mskjax.recon._sense_problem`), two FFTs of
    the coil images each.

    Args:
        kspace: complex ``(coils, *spatial)`` k-space (1 to 3 spatial axes), zero where not
            sampled.
        maps: complex ``(coils, *spatial)`` sensitivity maps, or ``(sets, coils, *spatial)``
            for several sets (soft-SENSE); the image is then ``(sets, *spatial)``.
        mask: boolean or real weights broadcasting to the k-space (keyword-only); default: the
            locations where any coil is nonzero.
        lamda: Tikhonov weight ``>= 0``.
        max_iter: the most iterations (static).
        tol: stop when ``||r|| <= tol * ||A^H y||`` (relative residual of the normal equations).
            With the default 0 all ``max_iter`` iterations run in a ``lax.scan``, which can be
            differentiated in reverse mode (e.g. inside an unrolled network); with ``tol > 0``
            the solver exits early in a ``lax.while_loop`` (forward-mode derivatives only).

    Returns:
        :class:`Reconstruction`: ``image`` ``(*spatial)``, ``iterations``, ``history`` the
        relative residual ``||r_k|| / ||A^H y||`` after each iteration, ``converged``.
    """
    func = "mskjax.recon.cg_sense"
    check_positive_int(max_iter, "max_iter", func)
    for name, value in (("lamda", lamda), ("tol", tol)):
        if not isinstance(value, jax.core.Tracer):
            check_interval(value, name, func, low=0, low_open=False)
    problem = sense_problem(kspace, maps, mask, func)
    b = problem.adjoint(problem.kspace)
    real = jnp.finfo(b.dtype).dtype
    lamda = jnp.asarray(lamda, real)

    def normal(x):
        return problem.normal(x) + lamda * x

    b_norm = jnp.linalg.norm(b)
    scale = jnp.where(b_norm > 0, b_norm, 1)
    threshold = (jnp.asarray(tol, real) * scale) ** 2
    history = jnp.full((max_iter,), jnp.nan, real)
    rr = jnp.real(jnp.vdot(b, b))
    state = (jnp.int32(0), jnp.zeros_like(b), b, b, rr, history)

    def keep_going(state):
        i, _, _, _, rr, _ = state
        return (i < max_iter) & (rr > threshold)

    def step(state):
        i, x, r, p, rr, history = state
        ap = normal(p)
        pap = jnp.real(jnp.vdot(p, ap))
        alpha = jnp.where(pap > 0, rr / jnp.where(pap > 0, pap, 1), 0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = jnp.real(jnp.vdot(r, r))
        beta = jnp.where(rr > 0, rr_new / jnp.where(rr > 0, rr, 1), 0)
        p = r + beta * p
        history = history.at[i].set(jnp.sqrt(rr_new) / scale)
        return i + 1, x, r, p, rr_new, history

    if isinstance(tol, (int, float)) and tol == 0:
        state = jax.lax.fori_loop(0, max_iter, lambda _, s: step(s), state)
    else:
        state = jax.lax.while_loop(keep_going, step, state)
    iterations, x, _, _, rr, history = state
    return Reconstruction(image=x, iterations=iterations, history=history,
                          converged=rr <= threshold)
