"""grappa: real 2x2 brain data against the fully sampled scan and pygrappa, simulated coils at
R = 2, 3 and 2x2 (odd sizes), a loop-based oracle of the exact definition, jit/vmap, errors.

The ESPIRiT example files ``brain_8ch_espirit/{full,und2x2}.cfl`` have BART dimensions
``(READ, PHS1, PHS2, COIL) = (1, 230, 180, 8)``: a single readout position, two phase-encode
axes of 230 and 180 samples, 8 coils. Squeezed, indexed at the readout and with the coils moved
first they are ``(coils, ky, kx) = (8, 230, 180)`` with ``ky`` = BART dim 1 and ``kx`` = BART
dim 2. ``und2x2`` keeps every second sample along both axes (the odd indices 1, 3, ...: lattice
offset (1, 1)) plus the fully sampled central 20x20 block ``ky`` 105..124, ``kx`` 80..99
(``n // 2 - 10 ... n // 2 + 9``), and equals ``full`` exactly on every acquired sample.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.io import read_cfl
from mskjax.linop import Sense
from mskjax.recon import grappa, zero_filled

from ..conftest import random_complex

FUNC = r"mskjax\.recon\.grappa: "


def nrmse(estimate, reference):
    estimate, reference = np.asarray(estimate), np.asarray(reference)
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def lattice_mask(shape, accel, offset):
    mask = np.ones(shape, bool)
    for d, (r, o) in enumerate(zip(accel, offset)):
        line = np.zeros(shape[d], bool)
        line[o::r] = True
        mask &= line.reshape([-1 if i == d else 1 for i in range(len(shape))])
    return mask


def centre(shape, size):
    return (slice(None),) + tuple(slice(n // 2 - s // 2, n // 2 - s // 2 + s)
                                  for n, s in zip(shape, size))


# -- real data ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def brain(shared_data):
    folder = shared_data / "brain_8ch_espirit"

    def load(name):
        return np.ascontiguousarray(np.moveaxis(read_cfl(folder / name, squeeze=True)[0], -1, 0))

    und, full = load("und2x2"), load("full")
    calib = und[centre(und.shape[1:], (20, 20))]
    out = grappa(und, calib, kernel_size=(5, 5), acceleration=(2, 2))
    return und, full, calib, np.asarray(out)


def test_brain_layout(brain):
    und, full, calib, _ = brain
    assert und.shape == full.shape == (8, 230, 180)
    acquired = np.any(und != 0, axis=0)
    expected = lattice_mask((230, 180), (2, 2), (1, 1))
    expected[105:125, 80:100] = True
    np.testing.assert_array_equal(acquired, expected)
    np.testing.assert_array_equal(und[:, acquired], full[:, acquired])
    assert np.all(calib != 0)


def test_brain_2x2_against_full(brain):
    und, full, _, out = brain
    reference = zero_filled(full)
    image = nrmse(zero_filled(out), reference)
    image_zf = nrmse(zero_filled(und), reference)
    kspace, kspace_zf = nrmse(out, full), nrmse(und, full)
    # Measured: image 0.069 (zero-filled 0.242); coil k-space 0.146 (zero-filled 0.320).
    assert image < 0.075 and image < 0.3 * image_zf
    assert kspace < 0.155 and kspace < 0.5 * kspace_zf
    acquired = np.any(und != 0, axis=0)
    np.testing.assert_array_equal(out[:, acquired], und[:, acquired])
    assert np.all(out[:, ~acquired] != 0)


def test_brain_inferred_acceleration_equals_explicit(brain):
    und, _, calib, out = brain
    np.testing.assert_allclose(grappa(und, calib), out, rtol=0, atol=1e-6 * np.abs(out).max())


def test_brain_no_worse_than_pygrappa(brain):
    pygrappa = pytest.importorskip("pygrappa", reason="pygrappa (the peer GRAPPA) not installed")
    und, full, calib, out = brain
    peer = pygrappa.grappa(und, calib, kernel_size=(5, 5), coil_axis=0).astype(np.complex64)
    reference = zero_filled(full)
    ours_image, peer_image = nrmse(zero_filled(out), reference), nrmse(zero_filled(peer), reference)
    # Measured: mskjax 0.0693 / 0.146, pygrappa 0.0737 / 0.158 (image / coil k-space).
    assert ours_image <= peer_image + 0.002
    assert nrmse(out, full) <= nrmse(peer, full) + 0.005
    assert nrmse(zero_filled(peer), zero_filled(out)) < 0.05


# -- simulated coils ---------------------------------------------------------------------------

def phantom(shape):
    """A smooth complex image: a rounded blob plus a Gaussian bump, smooth phase."""
    grids = np.meshgrid(*[(np.arange(n) - n / 2) / (n / 2) for n in shape], indexing="ij")
    scales = (0.7, 0.55, 0.6)[-len(shape):]
    r2 = sum(g ** 2 / s ** 2 for g, s in zip(grids, scales))
    magnitude = np.exp(-4 * r2 ** 2) + 0.5 * np.exp(-((grids[-1] - 0.2) ** 2
                                                      + (grids[-2] + 0.1) ** 2) / 0.05)
    phase = np.exp(1j * np.pi * 0.3 * (grids[-1] + grids[-2] ** 2))
    return (magnitude * phase).astype(np.complex64)


@functools.lru_cache(maxsize=None)
def simulated(shape):
    maps = normalize_maps(birdcage_maps((8,) + shape))
    return np.asarray(Sense(maps)(jnp.asarray(phantom(shape))))


@pytest.mark.parametrize("accel, offset, kernel, bound", [
    ((2, 1), (1, 0), (5, 5), 0.004),   # measured 0.0018
    ((3, 1), (2, 0), (5, 5), 0.008),   # 61 rows: the last cell is partial
    ((2, 2), (1, 0), (5, 5), 0.015),
])
def test_simulated_noise_free(accel, offset, kernel, bound):
    shape = (61, 57)
    full = simulated(shape)
    und = full * lattice_mask(shape, accel, offset)
    calib = full[centre(shape, (24, 24))]
    out = np.asarray(grappa(und, calib, kernel_size=kernel, lamda=1e-4))
    error = nrmse(out, full)
    assert error < bound, error
    assert error < 0.02 * nrmse(und, full)
    acquired = lattice_mask(shape, accel, offset)
    np.testing.assert_array_equal(out[:, acquired], und[:, acquired])
    # Regularisation is applied: a strong one costs accuracy on noise-free data.
    assert nrmse(grappa(und, calib, kernel_size=kernel, lamda=1.0), full) > 2 * error


def test_simulated_3d():
    shape = (12, 21, 19)
    full = simulated(shape)
    und = full * lattice_mask(shape, (1, 2, 2), (0, 1, 0))
    calib = full[centre(shape, (10, 16, 16))]
    out = grappa(und, calib, kernel_size=(3, 5, 5), lamda=1e-4, acceleration=(1, 2, 2))
    assert nrmse(out, full) < 0.012  # measured 0.007 (zero-filled 0.87)


# -- the exact definition ----------------------------------------------------------------------

def loop_grappa(kspace, calib, kernel, lamda, accel, offset):
    """GRAPPA by loops in float64, written from the documented definition."""
    coils, shape = kspace.shape[0], kspace.shape[1:]
    nd = len(shape)
    window = [range(-(k // 2), k - k // 2) for k in kernel]
    qlo = [min(-((k // 2 - dl) // r) for dl in range(r)) for k, r in zip(kernel, accel)]
    qhi = [max((dl + k - k // 2 - 1) // r for dl in range(r)) for k, r in zip(kernel, accel)]
    starts = [range(-qlo[d] * accel[d], min(calib.shape[1 + d] - 1 - qhi[d] * accel[d],
                                            calib.shape[1 + d] - accel[d]) + 1)
              for d in range(nd)]
    acquired = np.any(kspace != 0, axis=0)
    out = kspace.copy()
    for delta in itertools.product(*(range(r) for r in accel)):
        if not any(delta):
            continue
        steps = [s for s in itertools.product(*window)
                 if all((s[d] + delta[d]) % accel[d] == 0 for d in range(nd))]
        rows, targets = [], []
        for p in itertools.product(*starts):
            t = tuple(pi + di for pi, di in zip(p, delta))
            rows.append(np.concatenate(
                [calib[(slice(None),) + tuple(a + b for a, b in zip(t, s))] for s in steps]))
            targets.append(calib[(slice(None),) + t])
        a, b = np.array(rows), np.array(targets)
        gram = a.conj().T @ a
        reg = lamda * np.trace(gram).real / len(gram)
        weights = np.linalg.solve(gram + reg * np.eye(len(gram)), a.conj().T @ b)
        for t in itertools.product(*(range(n) for n in shape)):
            on_target = all((t[d] - offset[d] - delta[d]) % accel[d] == 0 for d in range(nd))
            if not on_target or acquired[t]:
                continue
            sources = []
            for s in steps:
                pos = tuple(a + b for a, b in zip(t, s))
                inside = all(0 <= pos[d] < shape[d] for d in range(nd))
                sources.append(kspace[(slice(None),) + pos] if inside else np.zeros(coils))
            out[(slice(None),) + t] = np.concatenate(sources) @ weights
    return out


@pytest.mark.parametrize("shape, accel, offset, kernel", [
    ((11, 13), (2, 2), (1, 0), (3, 5)),
    ((13, 10), (1, 3), (0, 2), (4, 5)),       # even window: one more sample before
    ((7, 9, 8), (2, 1, 3), (1, 0, 2), (3, 2, 5)),
])
def test_matches_loop_definition(rng, shape, accel, offset, kernel):
    full = random_complex(rng, (3,) + shape)
    und = full * lattice_mask(shape, accel, offset)
    und[(slice(None),) + tuple(slice(0, 2) for _ in shape)] = full[
        (slice(None),) + tuple(slice(0, 2) for _ in shape)]  # extra acquired samples are kept
    got = grappa(und, full, kernel_size=kernel, lamda=0.1, acceleration=accel)
    want = loop_grappa(und.astype(np.complex128), full.astype(np.complex128), kernel, 0.1,
                       accel, offset)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


# -- transformations and options ---------------------------------------------------------------

def test_jit_and_vmap_find_the_offset_in_the_graph():
    shape = (31, 24)
    full = simulated(shape)
    batch = np.stack([full * lattice_mask(shape, (2, 1), (o, 0)) for o in (0, 1)])
    calib = np.stack([full[centre(shape, (16, 16))]] * 2)
    want = [loop_grappa(k.astype(np.complex128), c.astype(np.complex128), (5, 5), 1e-3,
                        (2, 1), (o, 0)) for k, c, o in zip(batch, calib, (0, 1))]
    assert not np.allclose(want[0], want[1])
    run = jax.jit(jax.vmap(functools.partial(grappa, lamda=1e-3, acceleration=(2, 1))))
    np.testing.assert_allclose(run(batch, calib), np.stack(want), rtol=0,
                               atol=2e-5 * np.abs(full).max())


def test_keep_calib_and_fully_sampled():
    shape = (31, 24)
    full = simulated(shape)
    und = full * lattice_mask(shape, (2, 1), (1, 0))
    calib = full[centre(shape, (16, 16))]
    kept = np.asarray(grappa(und, calib, keep_calib=True))
    plain = np.asarray(grappa(und, calib))
    index = centre(shape, (16, 16))
    np.testing.assert_array_equal(kept[index], calib)
    assert not np.array_equal(plain[index], calib)
    outside = np.ones(shape, bool)
    outside[index[1:]] = False
    np.testing.assert_array_equal(kept[:, outside], plain[:, outside])
    np.testing.assert_array_equal(grappa(full, calib), full)


# -- errors ------------------------------------------------------------------------------------

def with_value(x, value):
    x = x.copy()
    x[2, 3, 4] = value
    return x


@pytest.fixture(scope="module")
def small():
    shape = (20, 18)
    full = simulated(shape)
    return full * lattice_mask(shape, (2, 1), (0, 0)), full[centre(shape, (12, 12))]


@pytest.mark.parametrize("change, error, message", [
    (lambda k, c: (k.real, c), TypeError, "kspace must be complex"),
    (lambda k, c: (k, np.abs(c)), TypeError, "calib must be complex"),
    (lambda k, c: ("kspace", c), TypeError, "kspace must be an array"),
    (lambda k, c: (k[0], c[0]), ValueError, "kspace must be"),
    (lambda k, c: (k, c[0]), ValueError, "calib must be"),
    (lambda k, c: (k, c[:4]), ValueError, "calib must have the 8 coils"),
    (lambda k, c: (k[:, :10], c), ValueError, "calib must be no larger"),
    (lambda k, c: (k, c[:, :5, :5]), ValueError, "calib .* too small"),
    (lambda k, c: (with_value(k, np.nan), c), ValueError, "kspace must be finite"),
    (lambda k, c: (k, with_value(c, np.inf)), ValueError, "calib must be finite"),
])
def test_bad_arrays(small, change, error, message):
    kspace, calib = change(*small)
    with pytest.raises(error, match=FUNC + message):
        grappa(kspace, calib)


@pytest.mark.parametrize("options, message", [
    (dict(kernel_size=(5, 1, 5)), "kernel_size must be 2 positive ints"),
    (dict(kernel_size=0), "kernel_size must be 2 positive ints"),
    (dict(kernel_size=(1, 5)), "kernel_size .* too small for acceleration"),
    (dict(lamda=-1.0), "lamda must be in"),
    (dict(acceleration=(2,)), "acceleration must be 2 positive ints"),
    (dict(acceleration=(21, 1)), "acceleration must not exceed the matrix size"),
    (dict(acceleration=(3, 1)), ".*not acquired on a lattice of acceleration"),
    (dict(acceleration=(2, 2), kernel_size=(11, 11)), "calib .* too small"),
])
def test_bad_options(small, options, message):
    with pytest.raises(ValueError, match=FUNC + message):
        grappa(*small, **options)


def test_bad_patterns(small, rng):
    kspace, calib = small
    with pytest.raises(ValueError, match=FUNC + ".*not a regular lattice"):
        grappa(kspace * (rng.random(kspace.shape[1:]) < 0.3), calib)
    rows_or_columns = (lattice_mask((20, 18), (2, 1), (0, 0))
                       | lattice_mask((20, 18), (1, 2), (0, 0)))
    with pytest.raises(ValueError, match=FUNC + ".*not a single regular lattice"):
        grappa(simulated((20, 18)) * rows_or_columns, calib)
    with pytest.raises(ValueError, match=FUNC + "kspace has no non-zero sample"):
        grappa(np.zeros_like(kspace), calib)
    with pytest.raises(TypeError, match=FUNC + "keep_calib must be a bool"):
        grappa(kspace, calib, keep_calib=1)
    with pytest.raises(TypeError, match=FUNC + "acceleration must be given"):
        jax.jit(grappa)(kspace, calib)
