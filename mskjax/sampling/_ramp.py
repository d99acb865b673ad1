"""The analytic ramp density compensation of radial trajectories.

Scale (the project's convention): a density compensation function ``d`` is the k-space area
(volume in 3D) each sample stands for, in cycles per field of view, so that
``NUFFT.H(d * NUFFT(x)) ~= x`` for a smooth image ``x`` and a fully sampled Cartesian grid has
``d = 1``.

Derivation, in normalised units ``q_a = k_a / (n_a / 2)``. ``NUFFT.H(d * y)`` is a quadrature
of the inverse Fourier integral, which in polar (spherical) coordinates over full lines
through the centre is ``int_0^pi dtheta int |r| G dr`` in 2D and
``int_half-sphere dOmega int r**2 G dr`` in 3D. Each spoke stands for an angle ``w_j``, the
trapezoid rule runs along every spoke (step ``dr``), and the sample at radius ``r`` gets

- 2D: ``w_j |r| dr`` (the ramp), ``w_j`` half the gaps between spoke ``j`` and its two
  neighbours on the half-circle of directions (``pi / M`` for ``M`` uniform angles; it keeps
  the uneven gaps of golden-angle spokes from showing). ``|r|`` has a kink at 0, where the
  Euler-Maclaurin correction of the trapezoid rule, ``dr**2 / 12`` per half-line, gives the
  centre sample of each spoke ``w_j dr**2 / 6``: the ramp at ``r = dr / 6``. (The area of
  the central disc of radius ``dr / 2``, the ramp at ``dr / 4``, overweights the DC by half;
  on smooth 64 x 64 images with twofold readout oversampling the error grows from 0.1 to
  0.5 % to 1 to 3.5 %.)
- 3D: ``(2 pi / M) r**2 dr`` (the ``|k|**2`` ramp), for ``M`` directions spread evenly over
  the half-sphere (solid angle ``2 pi / M`` each). ``r**2 G`` is smooth through the centre,
  so the trapezoid rule along a full spoke is accurate to the decay of the spectrum, and the
  centre samples, where the integrand vanishes, get 0 (any positive value there biases the
  DC upwards).

Multiplying by ``prod(n_a / 2)`` converts normalised areas to cycles per field of view; a
stack of stars multiplies the in-plane ramp by the spacing of its Cartesian partitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import as_array
from ..linop import check_coords
from ._common import check_shape

#: Allowed deviation of a sample from its ideal place on an equally spaced spoke through the
#: centre, relative to the step along the spoke (float32 coordinates are good to about 1e-6
#: of ``n / 2``, a small fraction of a step).
_STRAIGHT_TOL = 1e-2


def _layout(coords, grid, func):
    """``"radial"``, ``"stack_of_stars"`` or ``"kooshball"`` from the shapes, or ValueError."""
    shape = tuple(coords.shape)
    if len(grid) == 2 and len(shape) == 3 and shape[-1] == 2:
        return "radial"
    if len(grid) == 3 and shape[-1:] == (3,) and len(shape) in (3, 4):
        return "kooshball" if len(shape) == 3 else "stack_of_stars"
    raise ValueError(
        f"{func}: coords must be (num_spokes, num_samples, 2) for a 2D grid, or "
        "(partitions, num_spokes, num_samples, 3) (stack of stars) or "
        f"(num_spokes, num_samples, 3) (kooshball) for a 3D grid; got coords of shape "
        f"{shape} for shape {tuple(grid)}")


def _check_spokes(q, func):
    """On concrete ``q (..., M, S, D)`` (normalised): every spoke equally spaced along a line
    through the centre with one common step; returns that step (float)."""
    first, last = q[..., :1, :], q[..., -1:, :]
    num_samples = q.shape[-2]
    velocity = (last - first) / (num_samples - 1)
    steps = np.linalg.norm(velocity[..., 0, :], axis=-1)
    step = float(np.mean(steps))
    if not step > 0:
        raise ValueError(f"{func}: coords must be radial spokes of distinct samples, got "
                         "spokes of length 0")
    ideal = first + np.arange(num_samples)[:, None] * velocity
    off_line = float(np.max(np.linalg.norm(q - ideal, axis=-1)))
    # The distance of each spoke's line from the k-space centre.
    direction = velocity / np.maximum(steps[..., None, None], np.finfo(float).tiny)
    along = np.sum(first * direction, axis=-1, keepdims=True)
    off_centre = float(np.max(np.linalg.norm(first - along * direction, axis=-1)))
    unequal = float(np.max(np.abs(steps - step)))
    worst = max(off_line, off_centre, unequal) / step
    if worst > _STRAIGHT_TOL:
        raise ValueError(
            f"{func}: coords must be full spokes through the k-space centre, equally spaced "
            f"with one step along every spoke (as mskjax.sampling.radial, stack_of_stars and "
            f"kooshball make them); samples lie up to {worst:.3g} steps off (tolerance "
            f"{_STRAIGHT_TOL:g}); use mskjax.sampling.pipe_menon_density for other "
            "trajectories")
    return step


def _partition_spacing(kz, func):
    """The spacing of the Cartesian partitions of a concrete stack of stars ``kz (P, M, S)``."""
    levels = kz[:, 0, 0]
    if float(np.max(np.abs(kz - levels[:, None, None]))) > 1e-6 * max(1.0, np.abs(kz).max()):
        raise ValueError(f"{func}: a stack of stars must keep coords[p, ..., 0] (kz) constant "
                         "within each partition p")
    if levels.size == 1:
        return 1.0
    gaps = np.diff(levels)
    spacing = float(np.mean(gaps))
    if not spacing > 0 or float(np.max(np.abs(gaps - spacing))) > 1e-3 * spacing:
        raise ValueError(f"{func}: the partitions of a stack of stars must be equally spaced "
                         f"and increasing in kz, got kz = {levels.tolist()}")
    return spacing


def ramp_density(coords: ArrayLike, *, shape: Sequence[int]) -> jax.Array:
    """The analytic ramp density compensation of a radial, stack-of-stars or kooshball
    trajectory, in the project's scale (module docstring: ``d`` is the k-space area each
    sample stands for, in cycles per field of view; 1 on a full Cartesian grid).

    With ``q_a = k_a / (n_a / 2)``, ``M`` spokes and the step ``dr`` between samples along a
    spoke (in ``q``; ``2 / num_samples`` for :func:`radial`):

    - 2D radial ``(M, S, 2)`` on ``shape = (rows, cols)``:
      ``d = w_j dr rows cols / 4 * max(|q|, dr / 6)`` with ``w_j`` the angle spoke ``j``
      stands for (``pi / M`` for uniform angles, half the gaps to its neighbours in general);
      the floor is the Euler-Maclaurin weight of the centre sample (module docstring).
    - stack of stars ``(P, M, S, 3)`` on ``(nz, ny, nx)``: the 2D ramp of each partition on
      ``(ny, nx)`` times the spacing of the partitions in kz (1 when fully sampled, or when
      ``P = 1``).
    - kooshball ``(M, S, 3)`` on ``(nz, ny, nx)``: ``d = pi dr nz ny nx / (4 M) * |q|**2``,
      0 at the centre; it assumes directions spread evenly over the sphere.

    Jittable with ``shape`` static; the structure checks (spokes straight, through the
    centre, one step) run on concrete coordinates only.

    Args:
        coords: ``(M, S, 2)``, ``(P, M, S, 3)`` or ``(M, S, 3)`` full-diameter spokes in cycles
            per field of view, as :func:`radial`, :func:`stack_of_stars` and
            :func:`kooshball` make them (``S >= 2``).
        shape: the image grid the coordinates refer to (keyword-only), 2 or 3 axes.

    Returns:
        ``d`` of shape ``coords.shape[:-1]``, real (float32 for float32 coordinates),
        positive except at the centre of a kooshball.
        For :class:`mskjax.linop.NUFFT` pass ``weights=sqrt(d)``.
    """
    func = "mskjax.sampling.ramp_density"
    grid = check_shape(shape, func)
    if len(grid) not in (2, 3):
        raise ValueError(f"{func}: shape must be a 2D (rows, cols) or 3D (nz, ny, nx) grid, "
                         f"got {grid}")
    coords = as_array(coords, "coords", func)
    layout = _layout(coords, grid, func)
    num_spokes, num_samples = coords.shape[-3], coords.shape[-2]
    if num_spokes < 1 or num_samples < 2 or 0 in coords.shape:
        raise ValueError(f"{func}: coords must hold at least one spoke of at least 2 samples, "
                         f"got shape {tuple(coords.shape)}")
    coords = check_coords(coords, grid, func)  # real, finite, inside the grid
    dtype = coords.dtype
    radial_grid = grid[1:] if layout == "stack_of_stars" else grid
    half = np.asarray(radial_grid, np.float64) / 2

    if not isinstance(coords, jax.core.Tracer):
        values = np.asarray(coords, np.float64)
        q_host = values[..., -len(radial_grid):] / half
        step = _check_spokes(q_host, func)
        spacing = (_partition_spacing(values[..., 0], func) if layout == "stack_of_stars"
                   else 1.0)
        step = jnp.asarray(step, dtype)
        spacing = jnp.asarray(spacing, dtype)
    else:
        q = coords[..., -len(radial_grid):].astype(dtype) / half.astype(dtype)
        step = jnp.mean(jnp.linalg.norm(q[..., -1, :] - q[..., 0, :], axis=-1)) / (
            num_samples - 1)
        spacing = (jnp.mean(jnp.diff(coords[:, 0, 0, 0].astype(dtype)))
                   if layout == "stack_of_stars" and coords.shape[0] > 1
                   else jnp.asarray(1.0, dtype))

    q = jnp.asarray(coords)[..., -len(radial_grid):].astype(dtype) / half.astype(dtype)
    radius = jnp.linalg.norm(q, axis=-1)
    area = math.prod(radial_grid) / 2 ** len(radial_grid)  # of a unit square of q
    if layout == "kooshball":
        density = (2 * math.pi / num_spokes) * area * step * radius**2
    else:
        angle = angular_weights(q)[..., None]
        density = angle * area * step * jnp.maximum(radius, step / 6) * spacing
    return density.astype(dtype)


def angular_weights(q: jax.Array) -> jax.Array:
    """The angle each spoke of ``q (..., M, S, 2)`` stands for, ``(..., M)``: half the gaps to
    its two neighbours on the half-circle of directions; ``pi / M`` for uniform angles."""
    direction = q[..., -1, :] - q[..., 0, :]
    theta = jnp.mod(jnp.arctan2(direction[..., 0], direction[..., 1]), math.pi)
    order = jnp.argsort(theta, axis=-1)
    ordered = jnp.take_along_axis(theta, order, axis=-1)
    wrapped = jnp.concatenate([ordered[..., -1:] - math.pi, ordered,
                               ordered[..., :1] + math.pi], axis=-1)
    share = (wrapped[..., 2:] - wrapped[..., :-2]) / 2
    return jnp.put_along_axis(jnp.zeros_like(theta), order, share, axis=-1, inplace=False)
