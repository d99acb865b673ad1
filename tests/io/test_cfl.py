"""BART .cfl/.hdr: round trips, the byte layout, bad pairs, atomic writes and the real files."""

import os
import pathlib

import numpy as np
import pytest

from mskjax.io._cfl import cfl_dims, read_cfl, write_cfl
from tests.conftest import random_complex


@pytest.mark.parametrize("shape", [(7,), (3, 5), (1, 6, 4, 8), (2, 3, 1, 4, 5, 1),
                                   (1, 4, 3, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)])
def test_round_trip_keeps_the_header_dims(tmp_path, rng, shape):
    array = random_complex(rng, shape)
    cfl = write_cfl(tmp_path / "x", array)
    assert cfl == tmp_path / "x.cfl"
    assert sorted(os.listdir(tmp_path)) == ["x.cfl", "x.hdr"]
    for name in ("x", "x.cfl", "x.hdr"):
        got = read_cfl(tmp_path / name)
        assert got.shape == shape and got.dtype == np.complex64
        np.testing.assert_array_equal(got, array)
    squeezed = read_cfl(tmp_path / "x", squeeze=True)
    trailing = len(shape)
    while trailing > 1 and shape[trailing - 1] == 1:
        trailing -= 1
    assert squeezed.shape == shape[:trailing]
    np.testing.assert_array_equal(squeezed, array.reshape(shape[:trailing]))


def test_byte_layout_is_fortran_order_little_endian(tmp_path):
    array = (np.arange(24).reshape(2, 3, 4) * (1 + 0.5j)).astype(np.complex64)
    write_cfl(tmp_path / "x", array)
    assert (tmp_path / "x.hdr").read_text() == "# Dimensions\n2 3 4 \n"
    raw = np.fromfile(tmp_path / "x.cfl", dtype="<f4")
    # First dimension fastest: (0,0,0), (1,0,0), (0,1,0), ...
    np.testing.assert_array_equal(raw[:6], [0, 0, 12, 6, 4, 2])
    np.testing.assert_array_equal(raw[0::2] + 1j * raw[1::2], array.ravel(order="F"))


def test_header_written_by_bart_with_extra_sections(tmp_path, rng):
    array = random_complex(rng, (3, 2))
    array.ravel(order="F").tofile(tmp_path / "b.cfl")
    (tmp_path / "b.hdr").write_text("# Dimensions\n3 2 1 1 \n# Command\nphantom b \n"
                                    "# Files\n >b \n# Creator\nBART v0.9.00\n")
    assert cfl_dims(tmp_path / "b") == (3, 2, 1, 1)
    np.testing.assert_array_equal(read_cfl(tmp_path / "b", squeeze=True), array)


def test_real_and_jax_inputs_and_0d(tmp_path):
    import jax.numpy as jnp

    write_cfl(tmp_path / "r", np.arange(6, dtype=np.int16).reshape(2, 3))
    np.testing.assert_array_equal(read_cfl(tmp_path / "r"), np.arange(6).reshape(2, 3))
    write_cfl(tmp_path / "j", jnp.ones((2, 2), jnp.complex64) * 1j)
    np.testing.assert_array_equal(read_cfl(tmp_path / "j"), np.full((2, 2), 1j))
    write_cfl(tmp_path / "s", np.complex64(2 - 1j))
    assert read_cfl(tmp_path / "s").shape == (1,)


@pytest.mark.parametrize("array, error, match", [
    (np.zeros(3, np.complex128), TypeError, r"got complex128; convert explicitly"),
    (np.zeros(3, np.float64), TypeError, "got float64"),
    (np.zeros(3, np.int64), TypeError, "got int64"),
    (np.zeros((2, 0), np.complex64), ValueError, r"must not be empty.*\(2, 0\)"),
    ([1j, 2j], TypeError, "array must be an array, got list"),
])
def test_write_rejects_inexact_or_empty(tmp_path, array, error, match):
    with pytest.raises(error, match=f"mskjax.io.write_cfl: .*{match}"):
        write_cfl(tmp_path / "x", array)
    assert os.listdir(tmp_path) == []


def write_pair(folder, header, n_bytes):
    (folder / "x.hdr").write_text(header)
    (folder / "x.cfl").write_bytes(b"\0" * n_bytes)
    return folder / "x"


@pytest.mark.parametrize("header, n_bytes, error, match", [
    ("# Dimensions\n2 3 \n", 40, ValueError,
     r"x.cfl: truncated: the header gives dimensions \(2, 3\), 48 bytes of complex64, but the "
     r"file has 40 bytes"),
    ("# Dimensions\n2 3 \n", 56, ValueError, "x.cfl: longer than its header says"),
    ("# Dimensions\n2 three \n", 48, ValueError,
     "x.hdr: dimensions must be positive integers, got '2 three'"),
    ("# Dimensions\n2 0 \n", 0, ValueError, r"x.hdr: dimensions must be positive integers, got "
                                            r"\(2, 0\)"),
    ("# Dimensions\n", 48, ValueError, "x.hdr: the '# Dimensions' line is not followed by"),
    ("2 3\n", 48, ValueError, "x.hdr: not a BART header, it has no '# Dimensions' line"),
])
def test_bad_pairs_name_the_file(tmp_path, header, n_bytes, error, match):
    name = write_pair(tmp_path, header, n_bytes)
    with pytest.raises(error, match=f"mskjax.io.read_cfl: {tmp_path}/{match}"):
        read_cfl(name)


def test_missing_halves(tmp_path, rng):
    write_cfl(tmp_path / "x", random_complex(rng, (2, 2)))
    os.remove(tmp_path / "x.cfl")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/x.cfl: no such data file"):
        read_cfl(tmp_path / "x")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/y.hdr: no such header file"):
        read_cfl(tmp_path / "y.cfl")
    with pytest.raises(FileNotFoundError, match="the folder .*/nope does not exist"):
        write_cfl(tmp_path / "nope" / "x", np.ones(2, np.complex64))


def test_failed_write_keeps_the_old_pair(tmp_path, rng, monkeypatch):
    old = random_complex(rng, (3, 4))
    write_cfl(tmp_path / "x", old)
    before = {n: (tmp_path / n).read_bytes() for n in ("x.cfl", "x.hdr")}

    def failing_write_text(self, *args, **kwargs):
        raise OSError("No space left on device")

    # The header fails after the data went to its temporary file.
    monkeypatch.setattr(pathlib.Path, "write_text", failing_write_text)
    with pytest.raises(OSError, match="No space left"):
        write_cfl(tmp_path / "x", random_complex(rng, (5, 5)))
    with pytest.raises(OSError, match="No space left"):
        write_cfl(tmp_path / "new", random_complex(rng, (5, 5)))
    monkeypatch.undo()

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        write_cfl(tmp_path / "x", random_complex(rng, (5, 5)))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["x.cfl", "x.hdr"]
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    np.testing.assert_array_equal(read_cfl(tmp_path / "x"), old)


# --------------------------------------------------------------------------- the real files


REAL = {
    "brain_8ch_espirit/full": (1, 230, 180, 8),
    "brain_8ch_espirit/und2x2": (1, 230, 180, 8),
    "brain_8ch_espirit/smallfov": (1, 320, 168, 8),
    "brain_8ch_espirit/knee_l1": (1, 288, 236),
    "brain_8ch_bart_pics/ksp": (1, 180, 230, 8),
    "brain_8ch_bart_pics/img": (1, 180, 230, 1, 2),
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_files_have_the_shapes_of_the_readme(shared_data, name):
    array = read_cfl(shared_data / name, squeeze=True)
    assert array.shape == REAL[name] and array.dtype == np.complex64
    assert np.all(np.isfinite(array)) and np.abs(array).max() > 0
    full = read_cfl(shared_data / name)
    assert full.shape == cfl_dims(shared_data / name)
    assert full.shape[: len(REAL[name])] == REAL[name] and set(full.shape[len(REAL[name]):]) <= {1}


def test_bart_pics_headers_carry_all_16_dims(shared_data):
    assert read_cfl(shared_data / "brain_8ch_bart_pics/img").shape == (
        1, 180, 230, 1, 2) + (1,) * 11


def test_espirit_kspace_is_centred_and_und2x2_is_2x2_plus_calibration(shared_data):
    full = read_cfl(shared_data / "brain_8ch_espirit/full", squeeze=True)[0]
    und = read_cfl(shared_data / "brain_8ch_espirit/und2x2", squeeze=True)[0]
    energy = np.sum(np.abs(full) ** 2, axis=-1)
    peak = np.unravel_index(np.argmax(energy), energy.shape)
    assert abs(peak[0] - 115) <= 2 and abs(peak[1] - 90) <= 2
    sampled = np.any(und != 0, axis=-1)
    calibration = np.zeros_like(sampled)
    calibration[115 - 10:115 + 10, 90 - 10:90 + 10] = True
    assert sampled[calibration].all()
    assert sampled[~calibration].mean() == pytest.approx(0.25, abs=0.01)
    # Every second line in both phase-encode directions, outside the calibration region.
    outside = sampled & ~calibration
    rows, cols = np.nonzero(outside)
    assert len(set(rows % 2)) == 1 and len(set(cols % 2)) == 1
    # The samples that were kept are those of the fully sampled scan.
    np.testing.assert_array_equal(und[sampled], full[sampled])


def test_bart_pics_kspace_is_12_7_percent_sampled(shared_data):
    ksp = read_cfl(shared_data / "brain_8ch_bart_pics/ksp", squeeze=True)[0]
    assert np.any(ksp != 0, axis=-1).mean() == pytest.approx(0.127, abs=0.002)
