"""Radial trajectories: 2D radial, stack-of-stars and the 3D radial kooshball.

Every spoke is a full diameter through the k-space centre. In normalised units ``q_a =
k_a / (n_a / 2)`` (the grid's own half-extent on each axis, so that a non-square grid is
covered to its edge on every axis) sample ``i`` of a spoke of ``num_samples = S`` points lies
at ``q = rho_i u`` with ``u`` the unit direction of the spoke and

``rho_i = (i - S // 2) * 2 / S``, ``i = 0 .. S - 1``,

equally spaced by ``2 / S`` in ``[-1, 1)``, with ``rho = 0`` (the k-space centre) at
``i = S // 2``, as on a centred Cartesian grid. In cycles per field of view
``k_a = rho_i u_a n_a / 2``: the step along a spoke parallel to axis ``a`` is ``n_a / S`` and
the readout oversampling ``S / n_a``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int
from ._common import check_shape

#: The golden angle for full-diameter spokes: ``pi / phi = pi (sqrt(5) - 1) / 2`` radians,
#: about 111.246 degrees (Winkelmann et al. 2007), ``phi`` the golden ratio.
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0


def _golden_means() -> tuple[float, float]:
    """The 2D golden means of Chan et al. 2009, about ``(0.46557, 0.68233)``: the first two
    entries of the eigenvector of ``[[0, 1, 0], [0, 0, 1], [1, 0, 1]]`` for its real
    eigenvalue, scaled so the third entry is 1."""
    values, vectors = np.linalg.eig(np.array([[0, 1, 0], [0, 0, 1], [1, 0, 1]], float))
    vector = np.real(vectors[:, int(np.argmax(np.real(values)))])
    vector = vector / vector[2]
    return float(vector[0]), float(vector[1])


#: The 2D golden means ``(phi_1, phi_2)`` of Chan et al. 2009 (about 0.46557, 0.68233).
GOLDEN_MEANS = _golden_means()


def check_counts(func: str, **counts) -> None:
    """Each keyword must be an int >= 1 (``num_samples`` >= 2: a spoke needs a step)."""
    for name, value in counts.items():
        check_positive_int(value, name, func, minimum=2 if name == "num_samples" else 1)


def check_golden(golden, func: str) -> bool:
    if not isinstance(golden, (bool, np.bool_)):
        raise TypeError(f"{func}: golden must be True or False, got {golden!r}")
    return bool(golden)


def spoke_positions(num_samples: int) -> np.ndarray:
    """``rho_i = (i - S // 2) * 2 / S`` (float64, ``(S,)``): see the module docstring."""
    return (np.arange(num_samples) - num_samples // 2) * (2.0 / num_samples)


def spoke_angles(num_spokes: int, golden: bool) -> np.ndarray:
    """Spoke angles in ``[0, pi)`` (float64): ``j * pi / phi mod pi`` or ``j * pi / M``."""
    j = np.arange(num_spokes, dtype=np.float64)
    if golden:
        return np.mod(j * GOLDEN_ANGLE, math.pi)
    return j * (math.pi / num_spokes)


def _in_plane(num_spokes: int, num_samples: int, grid: tuple[int, int], golden: bool):
    """``(M, S, 2)`` float64 radial coordinates on a 2D ``grid`` in cycles per FOV."""
    theta = spoke_angles(num_spokes, golden)[:, None]
    rho = spoke_positions(num_samples)[None, :]
    return np.stack([rho * np.sin(theta) * (grid[0] / 2),
                     rho * np.cos(theta) * (grid[1] / 2)], axis=-1)


def radial(num_spokes: int, num_samples: int, *, shape: Sequence[int],
           golden: bool = True) -> jax.Array:
    """A 2D radial trajectory of full-diameter spokes through the k-space centre.

    Spoke ``j`` has the angle ``theta_j`` from the last (column) axis towards the first (row)
    axis: ``theta_j = j * pi / phi mod pi`` (golden-angle increments of ``pi / phi``, about
    111.246 degrees, the golden angle for full spokes, phi the golden ratio) with
    ``golden=True``, or ``theta_j = j * pi / num_spokes`` (uniform over ``[0, pi)``) with
    ``golden=False``. Sample ``i`` of spoke ``j`` is

    ``k = rho_i * (sin(theta_j) * rows / 2, cos(theta_j) * cols / 2)``,
    ``rho_i = (i - num_samples // 2) * 2 / num_samples``,

    so samples are ``n / num_samples`` apart along an axis of ``n`` points (readout
    oversampling ``num_samples / n``), every coordinate lies in ``[-n/2, n/2]``, sample
    ``num_samples // 2`` of every spoke is the k-space centre, and on a non-square grid each
    axis is scaled by its own ``n / 2``. About ``pi / 2 * n`` spokes meet the Nyquist rate at
    the edge of an ``n x n`` grid.

    Args:
        num_spokes: the number of spokes, >= 1.
        num_samples: samples per spoke, >= 2.
        shape: the image grid ``(rows, cols)`` (keyword-only).
        golden: golden-angle (True, the default) or uniform angles.

    Returns:
        coords ``(num_spokes, num_samples, 2)`` float32 in cycles per field of view, for
        :class:`mskjax.linop.NUFFT`; :func:`ramp_density` is its density compensation.
    """
    func = "mskjax.sampling.radial"
    check_counts(func, num_spokes=num_spokes, num_samples=num_samples)
    grid = check_shape(shape, func, ndim=2)
    golden = check_golden(golden, func)
    return jnp.asarray(_in_plane(num_spokes, num_samples, grid, golden).astype(np.float32))


def stack_of_stars(num_spokes: int, num_samples: int, *, shape: Sequence[int],
                   golden: bool = True) -> jax.Array:
    """A stack-of-stars trajectory: Cartesian partitions along the first axis, radial in the
    last two.

    For ``shape = (nz, ny, nx)`` partition ``p`` sits at the integer ``kz = p - nz // 2``
    (``-nz/2 .. nz/2 - 1`` for even nz), every partition fully sampled, and holds the same
    :func:`radial` star of ``num_spokes`` spokes on the ``(ny, nx)`` grid (the same angles in
    every partition). Coordinate 0 is ``kz``, 1 is ``ky``, 2 is ``kx``, in the order of the
    image axes.

    Args:
        num_spokes: spokes per partition, >= 1.
        num_samples: samples per spoke, >= 2.
        shape: the image grid ``(nz, ny, nx)`` (keyword-only).
        golden: golden-angle (True, the default) or uniform angles, as in :func:`radial`.

    Returns:
        coords ``(nz, num_spokes, num_samples, 3)`` float32 in cycles per field of view.
    """
    func = "mskjax.sampling.stack_of_stars"
    check_counts(func, num_spokes=num_spokes, num_samples=num_samples)
    nz, ny, nx = check_shape(shape, func, ndim=3)
    golden = check_golden(golden, func)
    star = _in_plane(num_spokes, num_samples, (ny, nx), golden)
    kz = (np.arange(nz) - nz // 2).astype(np.float64)
    coords = np.empty((nz, num_spokes, num_samples, 3))
    coords[..., 0] = kz[:, None, None]
    coords[..., 1:] = star[None]
    return jnp.asarray(coords.astype(np.float32))


def kooshball_directions(num_spokes: int, golden: bool) -> np.ndarray:
    """``(M, 3)`` float64 unit spoke directions on the half-sphere ``u_0 >= 0``."""
    m = np.arange(num_spokes, dtype=np.float64)
    if golden:
        phi1, phi2 = GOLDEN_MEANS
        polar_cos = np.mod(m * phi1, 1.0)
        azimuth = 2 * math.pi * np.mod(m * phi2, 1.0)
    else:
        polar_cos = (m + 0.5) / num_spokes
        azimuth = np.mod(m * (math.pi * (3.0 - math.sqrt(5.0))), 2 * math.pi)
    polar_sin = np.sqrt(1.0 - polar_cos**2)
    return np.stack([polar_cos, polar_sin * np.sin(azimuth), polar_sin * np.cos(azimuth)], -1)


def kooshball(num_spokes: int, num_samples: int, *, shape: Sequence[int],
              golden: bool = True) -> jax.Array:
    """A 3D radial ("kooshball") trajectory of full-diameter spokes through the centre.

    The directions ``u`` cover the half-sphere ``u_0 >= 0`` (a full spoke also covers ``-u``),
    with ``u_0 = cos(polar)`` along the first image axis and the azimuth measured from the
    last axis towards the second: ``u = (cos p, sin p sin a, sin p cos a)``.

    - ``golden=True``: the 2D golden means of Chan et al. 2009 (MRM 61:354),
      ``cos p_m = m phi_1 mod 1`` and ``a_m = 2 pi (m phi_2 mod 1)`` with
      ``(phi_1, phi_2) ~= (0.46557, 0.68233)``: any run of consecutive spokes is spread
      evenly, for sliding-window and retrospective binning.
    - ``golden=False``: a Fibonacci spiral on the half-sphere, ``cos p_m = (m + 1/2) / M`` and
      ``a_m = m * pi (3 - sqrt 5)`` (the golden angle, 137.5 degrees): the most even spread
      for a fixed number of spokes.

    Samples along a spoke are placed as in :func:`radial`: ``k_a = rho_i u_a n_a / 2`` with
    ``rho_i = (i - num_samples // 2) * 2 / num_samples``. About ``pi / 2 * n**2`` spokes meet
    the Nyquist rate at the edge of an ``n**3`` grid.

    Args:
        num_spokes: the number of spokes, >= 1.
        num_samples: samples per spoke, >= 2.
        shape: the image grid ``(nz, ny, nx)`` (keyword-only).
        golden: Chan's 2D golden means (True, the default) or a Fibonacci spiral.

    Returns:
        coords ``(num_spokes, num_samples, 3)`` float32 in cycles per field of view.
    """
    func = "mskjax.sampling.kooshball"
    check_counts(func, num_spokes=num_spokes, num_samples=num_samples)
    grid = check_shape(shape, func, ndim=3)
    golden = check_golden(golden, func)
    u = kooshball_directions(num_spokes, golden)[:, None, :]
    rho = spoke_positions(num_samples)[None, :, None]
    coords = rho * u * (np.asarray(grid, np.float64) / 2)
    return jnp.asarray(coords.astype(np.float32))
