"""Non-Cartesian trajectories (radial, stack of stars, kooshball, spiral) and the ramp density.

The key check is quantitative: with :func:`ramp_density` the gridding reconstruction
``NUFFT.H(d * NUFFT(x))`` returns smooth images ``x`` (2D radial with uniform and golden
angles, a non-square grid, stack of stars, kooshball). The bounds are about three times the
measured errors (see ``GRIDDING_CASES``) and below what the likely mistakes give: the centre
weight of the disc of radius ``dr / 2`` (2D errors 1 to 3.5 %, scale 1.005 to 1.02), golden
spokes weighted as if uniform (errors 2 to 4 %), a positive centre weight in 3D (scale
1.006 and up), a factor 2 anywhere (scale 0.5 or 2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.sampling import kooshball, radial, ramp_density, spiral, stack_of_stars

GOLDEN = math.pi * (math.sqrt(5) - 1) / 2  # 111.246 degrees


def normalised(coords, grid):
    """``q_a = k_a / (n_a / 2)`` as float64 numpy."""
    return np.asarray(coords, np.float64) / (np.asarray(grid, np.float64) / 2)


def spoke_angles(coords, grid):
    """The angle of each spoke from the last axis towards the first, in [0, pi)."""
    q = normalised(coords, grid)
    direction = q[..., -1, :] - q[..., 0, :]
    return np.mod(np.arctan2(direction[..., 0], direction[..., 1]), math.pi)


def within_grid(coords, grid):
    half = np.asarray(grid, np.float64) / 2
    return bool(np.all(np.abs(np.asarray(coords, np.float64)) <= half))


# ---------------------------------------------------------------- trajectories


def test_shapes_and_dtypes():
    assert radial(5, 8, shape=(16, 12)).shape == (5, 8, 2)
    assert stack_of_stars(5, 8, shape=(6, 16, 12)).shape == (6, 5, 8, 3)
    assert kooshball(5, 8, shape=(10, 16, 12)).shape == (5, 8, 3)
    assert spiral(3, 50, shape=(16, 12)).shape == (3, 50, 2)
    for coords in (radial(5, 8, shape=(16, 12)), stack_of_stars(5, 8, shape=(6, 16, 12)),
                   kooshball(5, 8, shape=(10, 16, 12)), spiral(3, 50, shape=(16, 12))):
        assert isinstance(coords, jax.Array) and coords.dtype == jnp.float32


def test_radial_convention_by_hand():
    # Uniform angles 0, pi/4, pi/2, 3pi/4 from the column axis towards the row axis; samples
    # at (i - S // 2) * n / S.
    coords = np.asarray(radial(4, 4, shape=(8, 8), golden=False))
    np.testing.assert_allclose(coords[0], [[0, -4], [0, -2], [0, 0], [0, 2]], atol=1e-6)
    np.testing.assert_allclose(coords[2], [[-4, 0], [-2, 0], [0, 0], [2, 0]], atol=1e-6)
    s = math.sqrt(0.5)
    np.testing.assert_allclose(coords[1], [[-4 * s, -4 * s], [-2 * s, -2 * s], [0, 0],
                                           [2 * s, 2 * s]], atol=1e-6)
    np.testing.assert_allclose(coords[3, 0], [-4 * s, 4 * s], atol=1e-6)
    # Odd samples: symmetric about the centre, n / S apart.
    odd = np.asarray(radial(1, 5, shape=(10, 10), golden=False))[0, :, 1]
    np.testing.assert_allclose(odd, [-4, -2, 0, 2, 4], atol=1e-6)


@pytest.mark.parametrize("grid,num_samples", [((64, 64), 128), ((48, 80), 96), ((33, 20), 31),
                                               ((7, 9), 2)])
@pytest.mark.parametrize("golden", [True, False])
def test_radial_inside_grid_reaches_edge_and_samples_centre(grid, num_samples, golden):
    coords = radial(37, num_samples, shape=grid, golden=golden)
    assert within_grid(coords, grid)
    q = normalised(coords, grid)
    radius = np.linalg.norm(q, axis=-1)
    # Every spoke spans the grid's own extent on each axis: |q| up to 1 (even S reaches -1).
    expected_end = 1.0 if num_samples % 2 == 0 else (num_samples - 1) / num_samples
    np.testing.assert_allclose(radius[:, 0], expected_end, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(coords)[:, num_samples // 2], 0)
    # Equal steps of 2 / S along every spoke in q.
    np.testing.assert_allclose(np.diff(radius[:, num_samples // 2:], axis=-1),
                               2 / num_samples, rtol=1e-5)


def test_golden_angle_increments():
    theta = spoke_angles(radial(60, 16, shape=(40, 32)), (40, 32))
    assert theta[0] == 0
    increments = np.mod(np.diff(theta), math.pi)
    np.testing.assert_allclose(increments, GOLDEN, atol=2e-6)
    assert abs(math.degrees(GOLDEN) - 111.246) < 1e-3


@pytest.mark.parametrize("num_spokes", [1, 7, 64])
def test_uniform_angles_cover_half_circle(num_spokes):
    theta = spoke_angles(radial(num_spokes, 16, shape=(32, 32), golden=False), (32, 32))
    np.testing.assert_allclose(np.sort(theta), np.arange(num_spokes) * math.pi / num_spokes,
                               atol=2e-6)


def test_stack_of_stars_partitions_and_star():
    grid = (5, 24, 20)
    coords = np.asarray(stack_of_stars(9, 12, shape=grid, golden=True))
    assert within_grid(coords, grid)
    np.testing.assert_array_equal(coords[..., 0],
                                  np.broadcast_to(np.arange(-2, 3)[:, None, None], (5, 9, 12)))
    star = np.asarray(radial(9, 12, shape=grid[1:]))
    for partition in coords:
        np.testing.assert_array_equal(partition[..., 1:], star)
    even = np.asarray(stack_of_stars(2, 4, shape=(4, 8, 8)))[:, 0, 0, 0]
    np.testing.assert_array_equal(even, [-2, -1, 0, 1])


@pytest.mark.parametrize("golden", [True, False])
def test_kooshball_directions_spread_over_sphere(golden):
    grid = (20, 32, 24)
    num_spokes, num_samples = 2000, 16
    coords = kooshball(num_spokes, num_samples, shape=grid, golden=golden)
    assert within_grid(coords, grid)
    np.testing.assert_array_equal(np.asarray(coords)[:, num_samples // 2], 0)
    q = normalised(coords, grid)
    u = q[:, -1] / np.linalg.norm(q[:, -1], axis=-1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(q[:, 0], axis=-1), 1, rtol=1e-6)  # to the edge
    assert np.all(u[:, 0] >= 0)  # one half-sphere; full spokes cover the other
    # Uniform on the half-sphere: mean (1/2, 0, 0), second moment I / 3, and the 2M spoke
    # ends (+u and -u) share the eight octants evenly.
    np.testing.assert_allclose(u.mean(0), [0.5, 0, 0], atol=0.01)
    np.testing.assert_allclose(u.T @ u / num_spokes, np.eye(3) / 3, atol=0.01)
    ends = np.concatenate([u, -u])
    octant = (ends > 0) @ np.array([1, 2, 4])
    counts = np.bincount(octant, minlength=8)
    assert np.all(np.abs(counts - 2 * num_spokes / 8) < 0.05 * 2 * num_spokes / 8), counts


def test_kooshball_golden_means_of_chan():
    # cos(polar) of spoke m is m * phi_1 mod 1 with phi_1 = 0.46557 (Chan et al. 2009).
    q = normalised(kooshball(6, 4, shape=(16, 16, 16)), (16, 16, 16))
    u = q[:, 0] / np.linalg.norm(q[:, 0], axis=-1, keepdims=True)
    np.testing.assert_allclose(-u[:, 0], np.mod(np.arange(6) * 0.465571232, 1), atol=1e-6)
    azimuth = np.mod(np.arctan2(-u[1:, 1], -u[1:, 2]), 2 * math.pi) / (2 * math.pi)
    np.testing.assert_allclose(azimuth, np.mod(np.arange(1, 6) * 0.682327804, 1), atol=1e-6)


def test_spiral_geometry():
    grid, num_interleaves, num_samples = (48, 64), 6, 2001
    coords = spiral(num_interleaves, num_samples, shape=grid, alpha=2.0)
    assert within_grid(coords, grid)
    np.testing.assert_array_equal(np.asarray(coords)[:, 0], 0)  # every interleave at the centre
    q = normalised(coords, grid)
    np.testing.assert_allclose(np.linalg.norm(q[:, -1], axis=-1), 1, rtol=1e-6)  # to the edge
    # Interleave j is interleave 0 rotated by 2 pi j / N (as complex numbers q1 + i q0).
    z = q[..., 1] + 1j * q[..., 0]
    rotation = np.exp(2j * math.pi * np.arange(num_interleaves) / num_interleaves)[:, None]
    np.testing.assert_allclose(z, z[:1] * rotation, atol=1e-6)
    # The default turns, alpha * max(n) / (2 N), put the rings 1 cycle/FOV apart at the edge.
    turns = np.unwrap(np.angle(z[0, 1:]))[-1] / (2 * math.pi)
    assert abs(turns - 2.0 * 64 / (2 * num_interleaves)) < 1e-3


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.5])
def test_spiral_density_falls_from_centre(alpha):
    coords = spiral(4, 3001, shape=(64, 64), alpha=alpha)
    radius = np.linalg.norm(normalised(coords, (64, 64)), axis=-1).ravel()
    # The fraction of samples within radius r is r**(1 / alpha) (samples uniform in tau).
    for r in (0.1, 0.25, 0.5, 0.9):
        assert abs(np.mean(radius <= r) - r ** (1 / alpha)) < 2e-3
    # Samples per unit area: the central disc r < 1/4 against the edge annulus 3/4 < r < 1.
    centre = np.sum(radius < 0.25) / (math.pi * 0.25**2)
    edge = np.sum(radius > 0.75) / (math.pi * (1 - 0.75**2))
    expected = (0.25 ** (1 / alpha) / 0.25**2) / ((1 - 0.75 ** (1 / alpha)) / (1 - 0.75**2))
    assert centre > 3 * edge
    assert abs(centre / edge / expected - 1) < 0.02


def test_spiral_turns_option():
    coords = spiral(1, 4001, shape=(32, 32), alpha=1.0, turns=5)
    z = np.asarray(coords[0, 1:, 1] + 1j * coords[0, 1:, 0])
    assert abs(np.unwrap(np.angle(z))[-1] / (2 * math.pi) - 5) < 1e-3
    # alpha = 1 is Archimedean: the radius grows linearly with the angle.
    np.testing.assert_allclose(np.abs(z) / 16, np.linspace(0, 1, 4001)[1:], atol=1e-6)


# ---------------------------------------------------------------- ramp density


@pytest.mark.parametrize("grid,num_spokes,num_samples", [((64, 64), 101, 128),
                                                         ((48, 80), 30, 64), ((20, 20), 3, 10)])
@pytest.mark.parametrize("golden", [True, False])
def test_ramp_2d_sums_to_disc_area(grid, num_spokes, num_samples, golden):
    # The rings of the trapezoid rule cover the ellipse |q| <= 1: in cycles per FOV its area
    # pi n0 n1 / 4, exactly pi n0 n1 / 4 * (1 + 2 / (3 S**2)) for even S (centre dr / 6).
    coords = radial(num_spokes, num_samples, shape=grid, golden=golden)
    density = ramp_density(coords, shape=grid)
    assert density.shape == coords.shape[:-1] and density.dtype == jnp.float32
    assert np.all(np.asarray(density) > 0)
    expected = math.pi * grid[0] * grid[1] / 4 * (1 + 2 / (3 * num_samples**2))
    np.testing.assert_allclose(float(np.sum(np.asarray(density, np.float64))), expected,
                               rtol=1e-5)
    # The ramp: linear in |k| away from the centre; the centre sample at a sixth of a step.
    radius = np.linalg.norm(normalised(coords, grid), axis=-1)
    spoke = np.asarray(density)[0]
    i = num_samples // 2
    np.testing.assert_allclose(spoke[i + 1:] / radius[0, i + 1:], spoke[-1] / radius[0, -1],
                               rtol=1e-5)
    np.testing.assert_allclose(spoke[i], spoke[i + 1] / 6, rtol=1e-5)


def test_ramp_angular_weights_follow_golden_gaps():
    coords = radial(5, 8, shape=(32, 32), golden=True)
    theta = np.sort(spoke_angles(coords, (32, 32)))
    gaps = np.diff(np.concatenate([theta, theta[:1] + math.pi]))
    share = (gaps + np.roll(gaps, 1)) / 2  # the sorted spokes' halves of their two gaps
    density = np.asarray(ramp_density(coords, shape=(32, 32)))
    order = np.argsort(spoke_angles(coords, (32, 32)))
    np.testing.assert_allclose(density[order, -1] / density[order[0], -1], share / share[0],
                               rtol=1e-5)
    assert np.ptp(share) > 0.1  # golden gaps are uneven, so the check has teeth


def test_ramp_stack_of_stars_and_kooshball_sums():
    grid = (6, 40, 32)
    coords = stack_of_stars(21, 64, shape=grid)
    density = np.asarray(ramp_density(coords, shape=grid), np.float64)
    assert density.shape == (6, 21, 64)
    # nz fully sampled partitions 1 apart, each the 2D ellipse area.
    np.testing.assert_allclose(density.sum(), 6 * math.pi * 40 * 32 / 4 * (1 + 2 / (3 * 64**2)),
                               rtol=1e-5)
    np.testing.assert_allclose(density, np.broadcast_to(
        np.asarray(ramp_density(radial(21, 64, shape=grid[1:]), shape=grid[1:])), density.shape),
        rtol=1e-6)
    # Partitions 2 apart (kz undersampled by 2) stand for twice the volume.
    sparse = np.asarray(coords)[::2]
    np.testing.assert_allclose(np.asarray(ramp_density(sparse, shape=grid)), 2 * density[::2],
                               rtol=1e-5)
    # Kooshball: the shells cover the ellipsoid, (4 pi / 3) prod(n / 2) (1 + 2 / S**2) for
    # even S; 0 at the centre, |k|**2 elsewhere.
    grid3 = (20, 24, 16)
    coords = kooshball(300, 32, shape=grid3)
    density = np.asarray(ramp_density(coords, shape=grid3), np.float64)
    np.testing.assert_allclose(density.sum(), 4 * math.pi / 3 * 20 * 24 * 16 / 8 * (1 + 2 / 32**2),
                               rtol=1e-5)
    np.testing.assert_array_equal(density[:, 16], 0)
    radius = np.linalg.norm(normalised(coords, grid3), axis=-1)
    np.testing.assert_allclose(density[:, 17:] / radius[:, 17:] ** 2,
                               density[0, -1] / radius[0, -1] ** 2, rtol=1e-5)


def smooth_images(grid):
    """A centred Gaussian, an off-centre Gaussian and a smooth-edged disc (ellipse), scaled to
    the grid's own extent on each axis so that a non-square grid is covered alike."""
    axes = np.meshgrid(*[(np.arange(n) - n // 2) / (n / 2) for n in grid], indexing="ij")
    radius2 = sum(a**2 for a in axes)
    shift = [0.1, -0.12, 0.06][-len(grid):]
    return {
        "gaussian": np.exp(-radius2 / (2 * 0.15**2)),
        "off-centre": np.exp(-sum((a - s) ** 2 for a, s in zip(axes, shift)) / (2 * 0.12**2)),
        "disc": 0.5 * (1 - np.tanh((np.sqrt(radius2) - 0.55) / 0.08)),
    }


def gridding_errors(coords, grid):
    """``(relative error, scale <x, y> / <x, x>)`` of ``y = A.H(d * A(x))`` for each image."""
    pytest.importorskip("jax_finufft")
    from mskjax.linop import NUFFT

    density = ramp_density(coords, shape=grid)
    operator = NUFFT(coords, shape=grid)
    out = {}
    for name, image in smooth_images(grid).items():
        y = np.asarray(operator.H(density * operator(jnp.asarray(image, jnp.complex64))))
        out[name] = (np.linalg.norm(y - image) / np.linalg.norm(image),
                     float(np.real(np.vdot(image, y)) / np.vdot(image, image)))
    return out


# (trajectory, grid, error bound, scale bound). Measured (jax-finufft, eps 1e-6): 2D relative
# errors 0.13 to 0.45 %, scale <x, y> / <x, x> within 7.8e-4 of 1; kooshball errors 0.29 to
# 0.67 %, scale within 4e-6 of 1. The remaining 2D error is the quadrature along the spokes
# and the corners of the grid outside the sampled disc.
GRIDDING_CASES = {
    "radial uniform": (lambda: radial(101, 128, shape=(64, 64), golden=False), (64, 64),
                       0.015, 3e-3),
    "radial golden": (lambda: radial(101, 128, shape=(64, 64)), (64, 64), 0.015, 3e-3),
    "radial golden non-square": (lambda: radial(101, 128, shape=(48, 64)), (48, 64), 0.015,
                                 3e-3),
    "stack of stars": (lambda: stack_of_stars(101, 128, shape=(8, 64, 64)), (8, 64, 64), 0.015,
                       3e-3),
    "kooshball": (lambda: kooshball(1608, 64, shape=(32, 32, 32), golden=False), (32, 32, 32),
                  0.02, 1e-3),
}


@pytest.mark.parametrize("case", GRIDDING_CASES)
def test_ramp_gridding_returns_smooth_images(case):
    # About pi / 2 * n spokes (pi / 2 * n**2 in 3D) and twofold readout oversampling.
    make, grid, error_bound, scale_bound = GRIDDING_CASES[case]
    for name, (error, scale) in gridding_errors(make(), grid).items():
        assert error < error_bound, (name, error)
        assert abs(scale - 1) < scale_bound, (name, scale)


def test_ramp_jit_equals_eager():
    coords = stack_of_stars(13, 16, shape=(4, 24, 20))
    eager = ramp_density(coords, shape=(4, 24, 20))
    jitted = jax.jit(lambda c: ramp_density(c, shape=(4, 24, 20)))(coords)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5)
    coords = radial(13, 16, shape=(24, 20))
    np.testing.assert_allclose(
        np.asarray(jax.jit(lambda c: ramp_density(c, shape=(24, 20)))(coords)),
        np.asarray(ramp_density(coords, shape=(24, 20))), rtol=1e-5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,error,message", [
    (lambda: radial(0, 8, shape=(8, 8)), ValueError, "num_spokes must be an integer >= 1"),
    (lambda: radial(4, 1, shape=(8, 8)), ValueError, "num_samples must be an integer >= 2"),
    (lambda: radial(2.5, 8, shape=(8, 8)), ValueError, "num_spokes"),
    (lambda: radial(True, 8, shape=(8, 8)), ValueError, "num_spokes"),
    (lambda: radial(4, 8, shape=(8, 8, 8)), ValueError, "shape must have 2 axes"),
    (lambda: radial(4, 8, shape=(8, 0)), ValueError, "positive sizes"),
    (lambda: radial(4, 8, shape=8), TypeError, "shape must be a tuple"),
    (lambda: radial(4, 8, shape=(8, 8), golden="yes"), TypeError, "golden must be True"),
    (lambda: stack_of_stars(4, 8, shape=(8, 8)), ValueError, "shape must have 3 axes"),
    (lambda: stack_of_stars(-1, 8, shape=(2, 8, 8)), ValueError, "num_spokes"),
    (lambda: kooshball(4, 8, shape=(8, 8)), ValueError, "shape must have 3 axes"),
    (lambda: kooshball(4, 0, shape=(8, 8, 8)), ValueError, "num_samples"),
    (lambda: spiral(0, 8, shape=(8, 8)), ValueError, "num_interleaves"),
    (lambda: spiral(2, 8, shape=(8, 8), alpha=0.5), ValueError, r"alpha must be in \[1"),
    (lambda: spiral(2, 8, shape=(8, 8), turns=0), ValueError, "turns must be in"),
    (lambda: spiral(2, 8, shape=(8, 8), turns=float("nan")), ValueError, "turns"),
])
def test_trajectory_bad_input(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert "mskjax.sampling." in str(info.value)


def bad_ramp_inputs():
    good = np.asarray(radial(8, 16, shape=(16, 16)))
    bent = good.copy()
    bent[2, 3] += 0.5  # one sample off its spoke
    shifted = good + 0.4  # spokes that miss the centre
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    stack = np.asarray(stack_of_stars(4, 8, shape=(4, 16, 16)))
    tilted = stack.copy()
    tilted[1, 0, 0, 0] += 0.5
    uneven = stack.copy()
    uneven[3, ..., 0] += 0.5
    return [
        (good, (16, 16, 16), ValueError, r"coords must be \(num_spokes"),
        (good[..., :1], (16, 16), ValueError, r"coords must be \(num_spokes"),
        (good[0], (16, 16), ValueError, r"coords must be \(num_spokes"),
        (good, (16,), ValueError, "2D"),
        (good[:, :1], (16, 16), ValueError, "at least 2 samples"),
        (good[:0], (16, 16), ValueError, "at least 2 samples"),
        (good, (8, 8), ValueError, r"must lie in \[-4, 4\]"),
        (nan, (16, 16), ValueError, "finite"),
        (good.astype(np.complex64), (16, 16), TypeError, "must be real"),
        ("coords", (16, 16), TypeError, "coords must be an array"),
        (bent, (16, 16), ValueError, "full spokes through the k-space centre"),
        (shifted, (16, 16), ValueError, "full spokes through the k-space centre"),
        (np.asarray(spiral(4, 16, shape=(16, 16))), (16, 16), ValueError, "full spokes"),
        (np.zeros((3, 4, 2)), (16, 16), ValueError, "length 0"),
        (tilted, (4, 16, 16), ValueError, "kz"),
        (uneven, (4, 16, 16), ValueError, "equally spaced"),
    ]


@pytest.mark.parametrize("coords,grid,error,message", bad_ramp_inputs())
def test_ramp_bad_input(coords, grid, error, message):
    with pytest.raises(error, match=message) as info:
        ramp_density(coords, shape=grid)
    assert "mskjax.sampling.ramp_density" in str(info.value)
