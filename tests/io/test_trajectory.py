"""Non-Cartesian data in the file formats: BART trajectories and k-space (round trips, the byte
layout, ``bart traj`` and ``bart nufft`` as oracles of the axis, sign and scale conventions) and
fastMRI-style HDF5 files with a trajectory and a density compensation."""

import shutil
import subprocess

import h5py
import numpy as np
import pytest

from mskjax.io import (read_bart_kspace, read_bart_trajectory, read_cfl, read_fastmri,
                       validate, write_bart_kspace, write_bart_trajectory, write_cfl,
                       write_fastmri)
from mskjax.io._cfl import cfl_dims
from tests.conftest import random_complex

BART = shutil.which("bart")
needs_bart = pytest.mark.skipif(BART is None, reason="bart (Debian package bart) not on PATH")


def _bart(tmp_path, *args):
    subprocess.run([BART, *map(str, args)], check=True, cwd=tmp_path, capture_output=True)


def _coords(rng, shape, grid, fraction=1.0):
    """Uniform random coordinates ``(*shape, len(grid))`` within ``fraction`` of the grid."""
    half = np.asarray(grid, np.float32) / 2 * fraction
    return rng.uniform(-half, half, (*shape, len(grid))).astype(np.float32)


# --------------------------------------------------------------------------- BART trajectories


@pytest.mark.parametrize("shape,bart_dims", [
    ((9, 16, 2), (3, 16, 9, 1)),             # (spokes, readout, 2) -> (3, readout, spokes)
    ((16, 1), (3, 16, 1, 1)),                # a 1D trajectory of one line
    ((4, 9, 16, 3), (3, 16, 9, 1, 4)),       # 3D coordinates, a further axis after COIL_DIM
    ((2, 1, 3, 5, 2), (3, 5, 3, 1, 1, 2)),   # an inner singleton axis is kept
])
def test_trajectory_round_trip_and_dims(tmp_path, rng, shape, bart_dims):
    coords = _coords(rng, shape[:-1], (32,) * shape[-1])
    write_bart_trajectory(tmp_path / "t", coords)
    dims = cfl_dims(tmp_path / "t")
    assert dims == bart_dims
    got = read_bart_trajectory(tmp_path / "t", ndim=shape[-1])
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, coords)


def test_trajectory_byte_layout(tmp_path, rng):
    """BART's (x, y, z) of readout point r on spoke s is coords[s, r, :]; z written as 0."""
    coords = _coords(rng, (5, 7), (16, 16))
    write_bart_trajectory(tmp_path / "t", coords)
    bart = read_cfl(tmp_path / "t")
    assert bart.shape == (3, 7, 5, 1)
    for s, r in [(0, 0), (4, 6), (2, 3), (1, 5)]:
        np.testing.assert_array_equal(bart[:2, r, s, 0].real, coords[s, r])
        assert bart[2, r, s, 0] == 0
    assert np.all(bart.imag == 0)
    # The default ndim is 2 when z is zero everywhere, 3 otherwise.
    assert read_bart_trajectory(tmp_path / "t").shape == (5, 7, 2)
    np.testing.assert_array_equal(read_bart_trajectory(tmp_path / "t", ndim=3)[..., 2], 0)


def test_leading_singleton_trajectory_axes_come_back_dropped(tmp_path, rng):
    coords = _coords(rng, (1, 16), (32, 32))
    write_bart_trajectory(tmp_path / "t", coords)
    np.testing.assert_array_equal(read_bart_trajectory(tmp_path / "t"), coords[0])


def test_trajectory_float64_only_when_exact(tmp_path, rng):
    exact = _coords(rng, (3, 4), (16, 16)).astype(np.float64)
    write_bart_trajectory(tmp_path / "t", exact)
    np.testing.assert_array_equal(read_bart_trajectory(tmp_path / "t"), exact)
    with pytest.raises(TypeError, match=r"write_bart_trajectory: coords must be float32 .*"
                                        r"rounded; convert explicitly"):
        write_bart_trajectory(tmp_path / "u", exact + 1e-10)
    assert not (tmp_path / "u.cfl").exists()


def test_bad_trajectories(tmp_path, rng):
    write_cfl(tmp_path / "a", np.zeros((2, 5), np.complex64))
    with pytest.raises(ValueError, match=r"read_bart_trajectory: .*a\.cfl: a BART trajectory "
                                         r"has 3 coordinates .* got dimensions \(2, 5\)"):
        read_bart_trajectory(tmp_path / "a")
    write_cfl(tmp_path / "b", np.ones((3, 5, 2), np.complex64) * 1j)
    with pytest.raises(ValueError, match=r"b\.cfl: coordinates must be real, got 30 values"):
        read_bart_trajectory(tmp_path / "b")
    write_cfl(tmp_path / "c", np.ones((3, 5, 2, 4), np.complex64))
    with pytest.raises(ValueError, match=r"c\.cfl: a BART trajectory has size 1 in the coil "
                                         r"dimension \(3\)"):
        read_bart_trajectory(tmp_path / "c")
    coords = _coords(rng, (4, 6), (16, 16, 16))
    write_bart_trajectory(tmp_path / "d", coords)
    with pytest.raises(ValueError, match=r"d\.cfl: coordinate z is nonzero .* ndim=2 would "
                                         r"drop it; read it with ndim=3"):
        read_bart_trajectory(tmp_path / "d", ndim=2)
    np.testing.assert_array_equal(read_bart_trajectory(tmp_path / "d"), coords)
    for ndim in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match="ndim must be None, 1, 2 or 3"):
            read_bart_trajectory(tmp_path / "d", ndim=ndim)
    write_cfl(tmp_path / "e", np.full((3, 4), np.nan, np.complex64))
    with pytest.raises(ValueError, match=r"e\.cfl: coordinates must be finite"):
        read_bart_trajectory(tmp_path / "e")
    with pytest.raises(FileNotFoundError, match="read_cfl: .*missing.hdr"):
        read_bart_trajectory(tmp_path / "missing")
    for bad, kind in [(np.zeros(5, np.float32), ValueError),
                      (np.zeros((5, 4), np.float32), ValueError),
                      (np.zeros((0, 2), np.float32), ValueError),
                      (np.zeros((3, 2), np.complex64), TypeError),
                      (np.full((3, 2), np.inf, np.float32), ValueError),
                      ([[0.0, 1.0]], TypeError)]:
        with pytest.raises(kind, match="mskjax.io.write_bart_trajectory: coords"):
            write_bart_trajectory(tmp_path / "f", bad)
    assert not (tmp_path / "f.cfl").exists()


# --------------------------------------------------------------------------- BART k-space


@pytest.mark.parametrize("shape,bart_dims", [
    ((4, 9, 16), (1, 16, 9, 4)),
    ((2, 16), (1, 16, 1, 2)),
    ((3, 5, 9, 16), (1, 16, 9, 3, 5)),
])
def test_kspace_round_trip_and_layout(tmp_path, rng, shape, bart_dims):
    kspace = random_complex(rng, shape)
    write_bart_kspace(tmp_path / "k", kspace)
    assert cfl_dims(tmp_path / "k") == bart_dims
    bart = read_cfl(tmp_path / "k")
    c, r = shape[0] - 1, shape[-1] - 2
    if len(shape) == 3:
        assert bart[0, r, 3, c] == kspace[c, 3, r]
    if len(shape) == 4:
        assert bart[0, r, 4, c, 2] == kspace[c, 2, 4, r]
    got = read_bart_kspace(tmp_path / "k")
    assert got.dtype == np.complex64 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, kspace)


def test_kspace_fits_its_trajectory(tmp_path, rng):
    """The trajectory axes of k-space and of its trajectory match, inner singletons included."""
    coords = _coords(rng, (3, 1, 5, 8), (16, 16))
    kspace = random_complex(rng, (2, 3, 1, 5, 8))
    write_bart_trajectory(tmp_path / "t", coords)
    write_bart_kspace(tmp_path / "k", kspace)
    assert read_bart_kspace(tmp_path / "k").shape[1:] == read_bart_trajectory(
        tmp_path / "t").shape[:-1] == (3, 1, 5, 8)


def test_bad_kspace(tmp_path, rng):
    write_cfl(tmp_path / "cart", random_complex(rng, (16, 9, 1, 4)))
    with pytest.raises(ValueError, match=r"read_bart_kspace: .*cart\.cfl: non-Cartesian BART "
                                         r"k-space has size 1 in dimension 0 .* got dimensions "
                                         r"\(16, 9, 1, 4\); read Cartesian k-space with "
                                         r"mskjax.io.read_cfl"):
        read_bart_kspace(tmp_path / "cart")
    with pytest.raises(TypeError, match=r"write_bart_kspace: kspace must be complex64 .* got "
                                        r"complex128; convert explicitly"):
        write_bart_kspace(tmp_path / "k", random_complex(rng, (2, 5), np.complex128))
    with pytest.raises(ValueError, match=r"write_bart_kspace: kspace must be \(coils, "
                                         r"\*trajectory\)"):
        write_bart_kspace(tmp_path / "k", random_complex(rng, (5,)))
    assert not (tmp_path / "k.cfl").exists()


# --------------------------------------------------------------------------- BART as oracle


@needs_bart
def test_bart_traj_reads_as_spokes_by_readout(tmp_path):
    _bart(tmp_path, "traj", "-r", "-x", 16, "-y", 9, "t")
    coords = read_bart_trajectory(tmp_path / "t")
    assert coords.shape == (9, 16, 2)
    # BART's readout points are (i - 7.5) for 16 samples; its first spoke runs along y.
    np.testing.assert_array_equal(coords[0, :, 1], np.arange(16) - 7.5)
    np.testing.assert_array_equal(coords[0, :, 0], 0)
    radius = np.linalg.norm(coords, axis=-1)
    np.testing.assert_allclose(radius, np.abs(np.arange(16) - 7.5)[None].repeat(9, 0),
                               rtol=1e-6)
    # Spokes at 9 distinct angles over [0, pi).
    angles = np.sort(np.mod(np.arctan2(coords[:, -1, 1], coords[:, -1, 0]), np.pi))
    np.testing.assert_allclose(np.diff(angles), np.pi / 9, rtol=1e-4)


@needs_bart
def test_bart_radial_is_sampling_radial(tmp_path):
    """``bart traj -r -c`` (the centre sampled) read as coordinates is exactly
    ``mskjax.sampling.radial(..., golden=False)`` on a grid of the readout's size: the same
    angles, axes and orientation; plain ``bart traj -r`` is shifted by half a sample along each
    spoke."""
    from mskjax.sampling import radial

    ours = np.asarray(radial(9, 16, shape=(16, 16), golden=False))
    _bart(tmp_path, "traj", "-r", "-c", "-x", 16, "-y", 9, "centred")
    np.testing.assert_allclose(read_bart_trajectory(tmp_path / "centred"), ours, rtol=0,
                               atol=1e-5)
    _bart(tmp_path, "traj", "-r", "-x", 16, "-y", 9, "shifted")
    theta = np.arange(9) * np.pi / 9
    direction = np.stack([np.sin(theta), np.cos(theta)], -1)[:, None]
    np.testing.assert_allclose(read_bart_trajectory(tmp_path / "shifted"),
                               ours + 0.5 * direction, rtol=0, atol=1e-5)


@needs_bart
def test_bart_nufft_agrees_with_linop_nufft(tmp_path, rng):
    """``bart nufft -P`` (periodic, like mskjax's grid) of coil images read with read_cfl equals
    linop.NUFFT on the coordinates read with read_bart_trajectory and k-space read with
    read_bart_kspace. BART's own interpolation limits the agreement (measured 1.3e-3 relative,
    its kernel's accuracy; FINUFFT's here is 1e-6); a transposed axis mapping misses by O(1)."""
    from mskjax.linop import NUFFT

    _bart(tmp_path, "traj", "-r", "-x", 16, "-y", 9, "t")
    coords = read_bart_trajectory(tmp_path / "t")
    images = random_complex(rng, (3, 16, 20))                 # (coils, x, y), non-square
    write_cfl(tmp_path / "im", np.moveaxis(images, 0, -1)[:, :, None, :])
    _bart(tmp_path, "nufft", "-P", "t", "im", "ks")
    kspace = read_bart_kspace(tmp_path / "ks")
    assert kspace.shape == (3, 9, 16)
    ours = np.asarray(NUFFT(coords, shape=images.shape)(images))
    error = np.linalg.norm(ours - kspace) / np.linalg.norm(kspace)
    assert error < 5e-3
    # Neither the other axis mapping nor the other sign comes close.
    for wrong in (coords[..., ::-1], -coords):
        other = np.asarray(NUFFT(wrong, shape=images.shape)(images))
        assert np.linalg.norm(other - kspace) / np.linalg.norm(kspace) > 0.5
    # The adjoint: bart nufft -a on the 16 x 20 grid.
    _bart(tmp_path, "nufft", "-a", "-P", "-d", "16:20:1", "t", "ks", "adj")
    adjoint = np.moveaxis(read_cfl(tmp_path / "adj", squeeze=True)[:, :, 0], -1, 0)
    ours = np.asarray(NUFFT(coords, shape=images.shape).H(kspace))
    assert np.linalg.norm(ours - adjoint) / np.linalg.norm(adjoint) < 5e-3


@needs_bart
def test_bart_nufft_3d_from_a_written_trajectory(tmp_path, rng):
    """z is coordinate 2: a 3D trajectory written by mskjax, transformed by BART."""
    from mskjax.linop import NUFFT

    grid = (8, 10, 6)
    coords = _coords(rng, (5, 12), grid, fraction=0.9)
    image = random_complex(rng, grid)
    write_bart_trajectory(tmp_path / "t", coords)
    write_cfl(tmp_path / "im", image)
    _bart(tmp_path, "nufft", "-P", "t", "im", "ks")
    kspace = read_bart_kspace(tmp_path / "ks")
    assert kspace.shape == (1, 5, 12)
    ours = np.asarray(NUFFT(coords, shape=grid)(image))
    assert np.linalg.norm(ours - kspace[0]) / np.linalg.norm(kspace) < 5e-3


# --------------------------------------------------------------------------- fastMRI HDF5


def _radial_file(path, rng, *, per_slice=False, density=True, slices=2, coils=3):
    trajectory = _coords(rng, ((slices,) if per_slice else ()) + (5, 7), (8, 10))
    kspace = random_complex(rng, (slices, coils, 5, 7))
    dcf = rng.uniform(0, 2, trajectory.shape[:-1]).astype(np.float32) if density else None
    recon = rng.random((slices, 8, 10), dtype=np.float32)
    write_fastmri(path, kspace, trajectory=trajectory, density=dcf, matrix_size=(8, 10),
                  reconstruction=recon, acquisition="RADIAL", patient_id="p")
    return kspace, trajectory, dcf, recon


def test_fastmri_round_trip_with_a_shared_trajectory(tmp_path, rng):
    path = tmp_path / "radial.h5"
    kspace, trajectory, density, recon = _radial_file(path, rng)
    with read_fastmri(path) as f:
        assert f.noncartesian and f.multicoil and f.num_slices == 2
        assert f.matrix_size == (8, 10)
        assert f.header.encoded_matrix == (8, 10, 1)
        assert f.trajectory.dtype == np.float32 and f.density.dtype == np.float32
        np.testing.assert_array_equal(f.trajectory, trajectory)
        np.testing.assert_array_equal(f.density, density)
        np.testing.assert_array_equal(f.kspace[1], kspace[1])
        np.testing.assert_array_equal(f.reconstruction[0], recon[0])
        np.testing.assert_array_equal(f.trajectory_at(1), trajectory)
        np.testing.assert_array_equal(f.density_at(0), density)
        with pytest.raises(IndexError, match="has 2 slices, got index 2"):
            f.trajectory_at(2)
        assert "trajectory=(5, 7, 2)" in repr(f)
    with h5py.File(path, "r") as h:
        assert h["trajectory"].attrs["units"] == "cycles per field of view"
        np.testing.assert_array_equal(h["trajectory"].attrs["matrix_size"], [8, 10])
        assert b"<trajectory>other</trajectory>" in h["ismrmrd_header"][()]
    assert validate(path, "radial_multicoil", strict=True).ok
    # The Cartesian spec tells it apart.
    keys = [m.key for m in validate(path, "fastmri_knee_multicoil").mismatches]
    assert "trajectory" in keys and "density" in keys


def test_fastmri_round_trip_with_one_trajectory_per_slice(tmp_path, rng):
    path = tmp_path / "radial.h5"
    kspace, trajectory, density, _ = _radial_file(path, rng, per_slice=True, slices=3)
    f = read_fastmri(path)
    assert f.trajectory.shape == (3, 5, 7, 2) and f.density.shape == (3, 5, 7)
    for i in range(3):
        np.testing.assert_array_equal(f.trajectory_at(i), trajectory[i])
        np.testing.assert_array_equal(f.density_at(i), density[i])
    np.testing.assert_array_equal(np.asarray(f.trajectory), trajectory)
    np.testing.assert_array_equal(f.kspace[2], kspace[2])


def test_fastmri_3d_trajectory_and_header_matrix(tmp_path, rng):
    from mskjax.io import FastMRIHeader

    trajectory = _coords(rng, (4, 6), (8, 8, 6))
    kspace = random_complex(rng, (2, 2, 4, 6))
    header = FastMRIHeader(encoded_matrix=(8, 8, 6), recon_matrix=(8, 8, 6),
                           encoded_fov_mm=(160.0, 160.0, 60.0),
                           recon_fov_mm=(160.0, 160.0, 60.0))
    path = write_fastmri(tmp_path / "koosh.h5", kspace, trajectory=trajectory, header=header,
                         reconstruction=rng.random((2, 8, 8, 6), dtype=np.float32))
    f = read_fastmri(path)
    assert f.matrix_size == (8, 8, 6) and f.density is None and f.density_at(0) is None
    assert f.reconstruction.shape == (2, 8, 8, 6)
    np.testing.assert_array_equal(f.trajectory, trajectory)
    with pytest.raises(ValueError, match=r"write_fastmri: the header's encoded matrix "
                                         r"\(8, 8, 6\) must be matrix_size \(8, 8, 4\)"):
        write_fastmri(tmp_path / "x.h5", kspace, trajectory=trajectory, header=header,
                      matrix_size=(8, 8, 4))
    assert not (tmp_path / "x.h5").exists()


def test_a_cartesian_file_reads_as_before(tmp_path, rng):
    kspace = random_complex(rng, (2, 3, 8, 6))
    f = read_fastmri(write_fastmri(tmp_path / "c.h5", kspace))
    assert not f.noncartesian and f.multicoil
    assert f.trajectory is None and f.density is None and f.matrix_size is None
    with pytest.raises(ValueError, match=r"c\.h5: the file has no 'trajectory' \(Cartesian"):
        f.trajectory_at(0)
    assert f.density_at(0) is None
    with h5py.File(tmp_path / "c.h5", "r") as h:
        assert sorted(h) == ["ismrmrd_header", "kspace"]


def test_writing_bad_trajectories_is_refused(tmp_path, rng):
    kspace = random_complex(rng, (2, 3, 5, 7))
    good = _coords(rng, (5, 7), (8, 10))
    target = tmp_path / "bad.h5"
    cases = [
        (dict(trajectory=good[:4]), ValueError,
         r"trajectory must be float32 \(\*trajectory, ndim\), ndim 1 to 3, with trajectory = "
         r"kspace.shape\[2:\] = \(5, 7\) \(shared by the slices\), or \(2, \*trajectory, ndim\) "
         r"\(one per slice\), got shape \(4, 7, 2\)"),
        (dict(trajectory=np.zeros((5, 7, 4), np.float32)), ValueError,
         r"trajectory must be .* got shape \(5, 7, 4\)"),
        (dict(trajectory=good.astype(np.float64)), TypeError,
         r"trajectory must be float32 .* got float64; convert explicitly"),
        (dict(trajectory=good, matrix_size=(8, 6)), ValueError,
         r"trajectory: coords\[\.\.\., 1\] must lie in \[-3, 3\] .* got values up to"),
        (dict(trajectory=good), ValueError, r"a trajectory needs matrix_size"),
        (dict(trajectory=good, matrix_size=(8,)), ValueError,
         r"matrix_size must be 2 positive integers"),
        (dict(trajectory=good, matrix_size=(8, 10), mask=np.ones(7, bool)), ValueError,
         r"mask applies to Cartesian k-space only"),
        (dict(trajectory=good, matrix_size=(8, 10), density=np.ones((7, 5), np.float32)),
         ValueError, r"density must be float32 \(5, 7\), one value per trajectory point, got "
                     r"float32 \(7, 5\)"),
        (dict(trajectory=good, matrix_size=(8, 10), density=-np.ones((5, 7), np.float32)),
         ValueError, r"density must be non-negative"),
        (dict(density=np.ones((5, 7), np.float32)), ValueError, r"density needs a trajectory"),
        (dict(trajectory=good, matrix_size=(8, 10),
              reconstruction=np.zeros((2, 8, 10, 1), np.float32)), ValueError,
         r"reconstruction must be float32 \(2, rows, cols\)"),
    ]
    for kwargs, kind, message in cases:
        with pytest.raises(kind, match="mskjax.io.write_fastmri: " + message):
            write_fastmri(target, kspace, **kwargs)
    assert not target.exists()
    with pytest.raises(ValueError, match=r"kspace must be complex64 \(slices, coils, "
                                         r"\*trajectory\) with a trajectory, got complex64 "
                                         r"\(5, 7\)"):
        write_fastmri(target, kspace[0, 0], trajectory=good[0], matrix_size=(8, 10))


def _rewrite(path, change):
    with h5py.File(path, "r+") as h:
        change(h)


def test_reading_bad_trajectories_names_the_file(tmp_path, rng):
    def wrong_shape(h):
        del h["trajectory"], h["density"]
        h.create_dataset("trajectory", data=np.zeros((4, 7, 2), np.float32))

    def no_units(h):
        del h["trajectory"].attrs["units"]

    def other_matrix(h):
        h["trajectory"].attrs["matrix_size"] = np.array([8, 12])

    def outside(h):
        h["trajectory"][0, 0, 0] = 4.5

    def float64(h):
        data = h["trajectory"][()]
        attrs = dict(h["trajectory"].attrs)
        del h["trajectory"]
        h.create_dataset("trajectory", data=data.astype(np.float64)).attrs.update(attrs)

    def density_shape(h):
        del h["density"]
        h.create_dataset("density", data=np.ones((5,), np.float32))

    def density_alone(h):
        del h["trajectory"]

    def with_mask(h):
        h.create_dataset("mask", data=np.ones(7, bool))

    cases = [
        (wrong_shape, ValueError,
         r"key 'trajectory' must be float32 \(\*trajectory, ndim\), ndim 1 to 3, with trajectory "
         r"= kspace.shape\[2:\] = \(5, 7\) .* got shape \(4, 7, 2\)"),
        (no_units, ValueError, r"key 'trajectory' must have the attribute units = 'cycles per "
                               r"field of view', got None"),
        (other_matrix, ValueError, r"key 'trajectory': attribute matrix_size \(8, 12\) "
                                   r"disagrees with the header's encoded matrix \(8, 10, 1\)"),
        (outside, ValueError, r"key 'trajectory': coords\[\.\.\., 0\] must lie in \[-4, 4\]"),
        (float64, TypeError, r"key 'trajectory' must be float32 coordinates, got float64"),
        (density_shape, ValueError, r"key 'density' must be float32 \(5, 7\), one value per "
                                    r"trajectory point, got float32 \(5,\)"),
        (density_alone, ValueError, r"key 'density' needs a 'trajectory'"),
        (with_mask, ValueError, r"key 'mask' must be absent from a non-Cartesian file"),
    ]
    for i, (change, kind, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.h5"
        _radial_file(path, rng)
        _rewrite(path, change)
        with pytest.raises(kind, match=rf"mskjax.io.read_fastmri: .*bad{i}\.h5: {message}"):
            read_fastmri(path)


def test_the_cartesian_batch_loader_refuses_non_cartesian_files(tmp_path, rng):
    from mskjax.io import fastmri_batches

    _radial_file(tmp_path / "radial.h5", rng)
    with pytest.raises(ValueError, match=r"fastmri_batches: .*radial.h5: holds non-Cartesian"):
        next(iter(fastmri_batches(tmp_path, batch_size=1)))
