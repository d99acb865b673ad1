"""Non-Cartesian stages: simulated trajectories, gridding, and CG-SENSE on Cartesian or
non-Cartesian k-space.

A non-Cartesian sample holds k-space ``(coils, *trajectory)`` in ``kspace``, its coordinates
``(*trajectory, ndim)`` in ``coords`` (cycles per field of view, the convention of
:class:`mskjax.linop.NUFFT`: ``coords[..., a]`` along the ``a``-th image axis) and optionally a
density compensation ``(*trajectory)`` in ``density`` (mskjax's scale: ``NUFFT.H(d * NUFFT(x))
~= x`` for a smooth image). :func:`sample_trajectory` makes one from ``sample.target`` and
``sample.maps``; :func:`gridding` and :func:`cg_sense` reconstruct it with
:func:`mskjax.recon.gridding` and :func:`mskjax.recon.cg_sense`. The stages are pure, so a chain
``sample_trajectory -> gridding / cg_sense`` jits as one program and vmaps over a batch of
samples (coordinates shared, given to the stage, or per sample, in ``sample.coords``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array, check_complex, check_interval, check_positive_int
from ..linop import NufftSense, check_coords, check_eps, check_weights
from ..recon import cg_sense as _cg_sense
from ..recon import gridding as _gridding
from ._stage import Stage, stateless
from ._stages import _require


def _coords_layout(coords, func: str, name: str = "coords"):
    """Shape and dtype checks of coordinates ``(*trajectory, ndim)`` before the grid is known."""
    coords = as_array(coords, name, func)
    if not (jnp.issubdtype(coords.dtype, jnp.floating) or jnp.issubdtype(coords.dtype,
                                                                          jnp.integer)):
        raise TypeError(f"{func}: {name} must be real (float32 or float64), got {coords.dtype}")
    if coords.ndim < 2 or not 1 <= coords.shape[-1] <= 3:
        raise ValueError(f"{func}: {name} must be (*trajectory, ndim) with ndim 1 to 3, got "
                         f"shape {tuple(coords.shape)}")
    return coords


def _need_coords(sample, func: str):
    coords = sample.coords
    if coords is None:
        raise ValueError(
            f"{func}: the sample has no coords, so its k-space is not non-Cartesian; run "
            "pipeline.sample_trajectory(coords) before this stage or build the sample with "
            "Sample(kspace=..., coords=...) (for Cartesian k-space use pipeline.zero_filled)")
    return coords


def _trajectory_of(kspace, coords, func: str):
    trajectory = tuple(np.shape(coords)[:-1])
    if tuple(np.shape(kspace)[1:]) != trajectory:
        raise ValueError(
            f"{func}: sample.kspace must be (coils, *trajectory) with trajectory = "
            f"sample.coords.shape[:-1] = {trajectory}, got shape {tuple(np.shape(kspace))}")
    return trajectory


def sample_trajectory(coords: ArrayLike | None = None, *, density: ArrayLike | None = None,
                      eps: float = 1e-6) -> Stage:
    """Simulate non-Cartesian multi-coil k-space of ``sample.target`` on a trajectory.

    ``sample.kspace`` becomes ``linop.NufftSense(sample.maps, coords)(sample.target)``, complex
    ``(coils, *trajectory)``, noise-free; ``sample.coords`` and ``sample.density`` record the
    trajectory and its density compensation for the stages after, and ``sample.mask`` is
    cleared (the trajectory is the sampling).

    Args:
        coords: real ``(*trajectory, ndim)`` coordinates in cycles per field of view, ``ndim``
            the target's number of axes (2 or 3), every one inside the target's grid
            (``|k_a| <= n_a / 2``); e.g. :func:`mskjax.sampling.radial`. None uses
            ``sample.coords`` (per-sample trajectories in a batch).
        density: real non-negative ``(*trajectory)`` density compensation, stored in
            ``sample.density`` (keyword-only; it does not change the k-space). None keeps the
            sample's own.
        eps: FINUFFT's relative accuracy (keyword-only).

    The sample needs ``target`` (``(*spatial)``, real or complex) and ``maps`` (complex
    ``(coils, *spatial)``).
    """
    func = "mskjax.pipeline.sample_trajectory"
    eps = check_eps(eps, func)
    if coords is not None:
        coords = _coords_layout(coords, func)
    if density is not None:
        density = as_array(density, "density", func)
        if coords is not None:
            density = check_weights(density, coords.shape[:-1], func, "density")

    def fn(sample, **extra):
        target = jnp.asarray(_require(sample, "target", func))
        maps = _require(sample, "maps", func)
        check_complex(maps, "sample.maps", func)
        if np.ndim(maps) != target.ndim + 1 or tuple(np.shape(maps)[1:]) != target.shape:
            raise ValueError(f"{func}: sample.maps must be (coils, *target.shape) = (coils, "
                             f"{', '.join(map(str, target.shape))}), got shape "
                             f"{tuple(np.shape(maps))}")
        points = _need_coords(sample, func) if coords is None else coords
        points = check_coords(points, target.shape, func)
        weights = sample.density if density is None else density
        if weights is not None:
            weights = check_weights(weights, points.shape[:-1], func, "density")
        maps = jnp.asarray(maps)
        image = target.astype(jnp.result_type(target.dtype, maps.dtype))
        kspace = NufftSense(maps, points, eps=eps)(image)
        return sample.replace(kspace=kspace, coords=points, density=weights, mask=None)

    return stateless(fn)


def gridding(*, shape: Sequence[int] | None = None, eps: float = 1e-6) -> Stage:
    """Gridding reconstruction of non-Cartesian ``sample.kspace`` into ``sample.image``.

    :func:`mskjax.recon.gridding`: the adjoint NUFFT of the k-space weighted by
    ``sample.density`` (when set), combined with ``sample.maps`` (a complex image) or, without
    maps, by root-sum-of-squares (a real image). The non-Cartesian counterpart of
    :func:`zero_filled`.

    Args:
        shape: the image grid ``(*spatial)`` (keyword-only); default ``sample.maps.shape[1:]``.
        eps: FINUFFT's relative accuracy (keyword-only).

    The sample needs ``kspace`` ``(coils, *trajectory)`` and ``coords`` ``(*trajectory,
    ndim)``.
    """
    func = "mskjax.pipeline.gridding"
    eps = check_eps(eps, func)
    if shape is not None:
        if isinstance(shape, (int, np.integer)) or not all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                for n in shape):
            raise ValueError(f"{func}: shape must be a sequence of positive integers, got "
                             f"{shape!r}")
        shape = tuple(int(n) for n in shape)

    def fn(sample, **extra):
        kspace = _require(sample, "kspace", func)
        coords = _need_coords(sample, func)
        _trajectory_of(kspace, coords, func)
        grid = shape
        if grid is None:
            if sample.maps is None:
                raise ValueError(f"{func}: the image grid is unknown: give gridding(shape=...) "
                                 "or a sample with maps (coils, *spatial)")
            grid = tuple(np.shape(sample.maps)[1:])
        image = _gridding(kspace, coords, shape=grid, density=sample.density, maps=sample.maps,
                          eps=eps)
        return sample.replace(image=image)

    return stateless(fn)


def cg_sense(*, max_iter: int = 30, lamda: float = 0.0, tol: float = 0.0) -> Stage:
    """CG-SENSE reconstruction of ``sample.kspace`` into ``sample.image`` (complex).

    :func:`mskjax.recon.cg_sense` with ``sample.maps``: on non-Cartesian k-space ``(coils,
    *trajectory)`` when the sample has ``coords`` (with ``sample.density`` weighting the data
    term, when set), else on Cartesian k-space ``(coils, *spatial)`` with ``sample.mask`` (or,
    without a mask, the nonzero entries as sampled).

    Args:
        max_iter: conjugate-gradient iterations (keyword-only).
        lamda: Tikhonov regularisation ``lamda/2 ||x||^2``, >= 0 (keyword-only).
        tol: relative residual at which to stop early; 0 runs all ``max_iter`` (keyword-only).
    """
    func = "mskjax.pipeline.cg_sense"
    check_positive_int(max_iter, "max_iter", func)
    check_interval(lamda, "lamda", func, low=0, low_open=False)
    check_interval(tol, "tol", func, low=0, low_open=False)

    def fn(sample, **extra):
        kspace = _require(sample, "kspace", func)
        maps = _require(sample, "maps", func)
        if sample.coords is None:
            if sample.density is not None:
                raise ValueError(f"{func}: the sample has a density but no coords; density "
                                 "compensation applies to non-Cartesian k-space only")
            result = _cg_sense(kspace, maps, mask=sample.mask, lamda=lamda, max_iter=max_iter,
                               tol=tol)
        else:
            if sample.mask is not None:
                raise ValueError(f"{func}: the sample has both coords and a mask; a "
                                 "non-Cartesian sample is sampled where its coords say (set "
                                 "mask=None)")
            _trajectory_of(kspace, sample.coords, func)
            result = _cg_sense(kspace, maps, coords=sample.coords, density=sample.density,
                               lamda=lamda, max_iter=max_iter, tol=tol)
        return sample.replace(image=result.image)

    return stateless(fn)
