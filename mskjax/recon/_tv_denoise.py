"""Total-variation denoising of an image (Rudin-Osher-Fatemi), e.g. of a low-dose CT's FBP.

Minimises ``1/2 ||x - y||^2 + lamda TV(x)`` with the isotropic total variation of Chambolle
(2004) that ``skimage.restoration.denoise_tv_chambolle`` minimises (its ``weight`` is
``lamda``): at every pixel the Euclidean norm of the forward differences along all axes, a
difference across the image border counting as zero (Neumann boundary, no wrap-around). So
both reach the same minimiser; scikit-image by Chambolle's projection algorithm, this function
by FISTA on the dual (the fast gradient projection of Beck and Teboulle 2009): with ``K`` the
finite differences (:class:`mskjax.linop.FiniteDifference` with the wrapped differences masked
out by :class:`mskjax.linop.Mask`, ``||K||^2 <= 4 ndim``), the dual problem

    min_v 1/2 ||K^H v - y||^2   subject to   ||v[:, pixel]||_2 <= lamda at every pixel

is solved by :func:`mskjax.solvers.fista` (the proximal map a projection onto the balls, step
``1 / (4 ndim)``) and the image is ``x = y - K^H v``. ``K`` annihilates constants, so every
iterate keeps the image's mean exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_interval, check_positive_int
from ..linop import FiniteDifference, Mask
from ..solvers import fista
from ..solvers.prox import Prox
from ._result import Reconstruction

_FUNC = "mskjax.recon.tv_denoise"


def _ball_projection(lamda) -> Prox:
    """The indicator of ``{v : ||v[:, pixel]||_2 <= lamda at every pixel}`` on ``(ndim,
    *spatial)`` dual variables: its proximal map is the projection onto the balls."""

    def apply(v, step):
        real = jnp.finfo(v.dtype).dtype
        lam = jnp.asarray(lamda, real)
        norms = jnp.sqrt(jnp.sum(jnp.abs(v) ** 2, axis=0, keepdims=True))
        projected = v / jnp.maximum(1, norms / jnp.where(lam > 0, lam, 1)) * (lam > 0)
        # a traced lamda is not checked: NaN or negative makes the result NaN (status
        # NONFINITE), never the undenoised image
        return jnp.where(lam >= 0, projected, jnp.nan).astype(v.dtype)

    return Prox(apply, lambda v: jnp.zeros((), jnp.finfo(v.dtype).dtype))


def neumann_gradient(shape: tuple[int, ...]):
    """Forward finite differences along every axis with a zero difference across the border,
    as an operator ``(*shape) -> (ndim, *shape)`` acting on the image flipped along every
    axis (:class:`~mskjax.linop.FiniteDifference`'s backward differences of the flipped image
    are the forward differences of the image)."""
    ndim = len(shape)
    weights = np.ones((ndim, *shape), np.float32)
    for axis in range(ndim):
        index = [axis] + [slice(None)] * ndim
        index[1 + axis] = 0
        weights[tuple(index)] = 0
    return Mask(weights) @ FiniteDifference(shape)


def tv_denoise(image: ArrayLike, *, lamda, max_iter: int = 300) -> Reconstruction:
    """Isotropic total-variation denoising (module docstring).

    Args:
        image: ``(*spatial)`` real (or complex) image, 1 to 3 spatial axes.
        lamda: the weight of the total variation ``>= 0`` (keyword-only), in the image's units
            (``weight`` in scikit-image); 0 returns the image. May be traced (tuned under
            ``jax.vmap``); a traced NaN or negative ``lamda`` gives a NaN image with status
            ``NONFINITE``.
        max_iter: FISTA iterations (keyword-only, static); 300 reach scikit-image's minimiser
            (and its objective to 1e-5) to about 1e-3 of the image's range on a noisy
            piecewise-constant image.

    Returns:
        :class:`Reconstruction` with ``image`` the denoised image (the input's shape and
        dtype), ``history`` the dual objective ``1/2 ||K^H v - y||^2`` after each iteration
        (``1/2 ||x||^2`` of the current estimate ``x``, decreasing), ``status``
        ``MAX_ITERATIONS`` (or ``NONFINITE`` for NaN or infinite input, never a silent NaN).
    """
    func = _FUNC
    image = as_array(image, "image", func)
    if not 1 <= np.ndim(image) <= 3:
        raise ValueError(f"{func}: image must have 1 to 3 spatial axes, got shape "
                         f"{tuple(np.shape(image))}")
    if 0 in np.shape(image):
        raise ValueError(f"{func}: image must not have an empty axis, got shape "
                         f"{tuple(np.shape(image))}")
    dtype = jnp.result_type(image)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{func}: image must be floating point or complex, got {dtype}")
    if not isinstance(lamda, jax.core.Tracer):
        check_interval(lamda, "lamda", func, low=0, low_open=False)
    check_positive_int(max_iter, "max_iter", func)
    flipped = jnp.flip(jnp.asarray(image), axis=tuple(range(np.ndim(image))))
    shape = tuple(flipped.shape)
    gradient = neumann_gradient(shape)
    result = fista(gradient.H, flipped, _ball_projection(lamda), step=1.0 / (4.0 * len(shape)),
                   max_iter=int(max_iter))
    denoised = flipped - gradient.H(result.x)
    denoised = jnp.flip(denoised, axis=tuple(range(len(shape)))).astype(dtype)
    return Reconstruction(image=denoised, iterations=result.iterations,
                          history=result.history, status=result.status)
