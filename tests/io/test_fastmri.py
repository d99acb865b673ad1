"""fastMRI HDF5: round trips, the published layout written with plain h5py, fastMRI's own reader
as the oracle, lazy per-slice reading, bad files and failed writes."""

import os
import pickle
import re
import stat
import xml.etree.ElementTree as ElementTree

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax.io._fastmri import (
    FastMRIHeader,
    ismrmrd_header_xml,
    parse_ismrmrd_header,
    read_fastmri,
    write_fastmri,
)
from tests.conftest import random_complex

LAYOUT = "complex64 (slices, coils, rows, cols) or (slices, rows, cols)"

# A header as the fastMRI knee files carry it: 640 x 368 encoded (2x readout oversampling),
# 320 x 320 reconstructed, with the phase encodes sampled from column 19 to 350.
KNEE_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">
  <studyInformation><studyTime>12:00:00</studyTime></studyInformation>
  <measurementInformation>
    <measurementID>45280_39012806_39012815_1210</measurementID>
    <patientPosition>FFS</patientPosition>
    <protocolName>CORPD_FBK</protocolName>
    <frameOfReferenceUID>1.3.12.2.1107.5.2.19.45280.1.20180101000000000.0.0.0</frameOfReferenceUID>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor>
    <systemModel>Skyra</systemModel>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T>
    <relativeReceiverNoiseBandwidth>0.793</relativeReceiverNoiseBandwidth>
    <receiverChannels>15</receiverChannels>
    <institutionName>NYU</institutionName>
  </acquisitionSystemInformation>
  <experimentalConditions>
    <H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz>
  </experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>640</x><y>368</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>280</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>320</x><y>320</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>330</maximum><center>165</center>
      </kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center>
      </kspace_encoding_step_2>
      <average><minimum>0</minimum><maximum>0</maximum><center>0</center></average>
      <slice><minimum>0</minimum><maximum>34</maximum><center>17</center></slice>
      <contrast><minimum>0</minimum><maximum>0</maximum><center>0</center></contrast>
      <phase><minimum>0</minimum><maximum>0</maximum><center>0</center></phase>
      <repetition><minimum>0</minimum><maximum>0</maximum><center>0</center></repetition>
      <set><minimum>0</minimum><maximum>0</maximum><center>0</center></set>
      <segment><minimum>0</minimum><maximum>0</maximum><center>0</center></segment>
    </encodingLimits>
    <parallelImaging>
      <accelerationFactor><kspace_encoding_step_1>1</kspace_encoding_step_1>
        <kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>
      <calibrationMode>other</calibrationMode>
    </parallelImaging>
  </encoding>
  <sequenceParameters>
    <TR>2750</TR><TE>27</TE><TI>100</TI><flipAngle_deg>180</flipAngle_deg>
    <sequence_type>TurboSpinEcho</sequence_type>
  </sequenceParameters>
</ismrmrdHeader>
"""


def small_header(rows=16, cols=12):
    return ismrmrd_header_xml(encoded_matrix=(rows, cols, 1), recon_matrix=(rows, cols, 1),
                              encoded_fov_mm=(160.0, 120.0, 3.0),
                              recon_fov_mm=(160.0, 120.0, 3.0))


def plain_file(path, *, kspace=None, header=None, attrs=None, **datasets):
    """A file written with plain h5py; ``kspace=False`` or ``header=False`` leaves it out."""
    with h5py.File(path, "w") as f:
        if kspace is not False:
            kspace = np.zeros((2, 3, 16, 12), np.complex64) if kspace is None else kspace
            f.create_dataset("kspace", data=kspace)
        if header is not False:
            f.create_dataset("ismrmrd_header", data=small_header() if header is None else header)
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


def fastmri_slice_dataset(root, challenge):
    mri_data = pytest.importorskip("fastmri.data.mri_data")
    return mri_data.SliceDataset(root=root, challenge=challenge)


# --------------------------------------------------------------------------- round trips


def test_multicoil_round_trip(tmp_path, rng):
    kspace = random_complex(rng, (3, 4, 16, 12))
    recon = rng.random((3, 10, 8), dtype=np.float32)
    path = write_fastmri(tmp_path / "vol.h5", jnp.asarray(kspace), reconstruction=recon,
                         acquisition="CORPD_FBK", patient_id="p01", fov_mm=(160, 120, 3))
    assert os.listdir(tmp_path) == ["vol.h5"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    f = read_fastmri(path)
    assert f.multicoil and f.num_slices == 3 and len(f.kspace) == 3
    assert f.kspace.shape == (3, 4, 16, 12) and f.kspace.dtype == np.complex64
    np.testing.assert_array_equal(np.asarray(f.kspace), kspace)
    assert f.reconstruction_key == "reconstruction_rss"
    np.testing.assert_array_equal(f.reconstruction[:], recon)
    assert f.attrs["acquisition"] == "CORPD_FBK" and f.attrs["patient_id"] == "p01"
    assert f.attrs["max"] == float(recon.max())
    np.testing.assert_allclose(f.attrs["norm"], np.sqrt(np.sum(recon.astype(float) ** 2)),
                               rtol=1e-12)
    assert f.mask is None and "acceleration" not in f.attrs
    assert f.header == FastMRIHeader(
        encoded_matrix=(16, 12, 1), recon_matrix=(10, 8, 1), encoded_fov_mm=(160.0, 120.0, 3.0),
        recon_fov_mm=(160.0, 120.0, 3.0), enc_limits_center=6, enc_limits_max=12)
    assert (f.header.padding_left, f.header.padding_right) == (0, 12)
    # The on-disk dtypes and names are those of the published files.
    with h5py.File(path, "r") as h5:
        assert sorted(h5.keys()) == ["ismrmrd_header", "kspace", "reconstruction_rss"]
        assert h5["kspace"].dtype == np.complex64
        assert h5["reconstruction_rss"].dtype == np.float32
        assert isinstance(h5["ismrmrd_header"][()], bytes)
        assert h5.attrs["max"].dtype == np.float64


def test_single_coil_round_trip_and_indexing(tmp_path, rng):
    kspace = random_complex(rng, (5, 16, 12))
    recon = rng.random((5, 8, 8), dtype=np.float32)
    f = read_fastmri(write_fastmri(tmp_path / "sc.h5", kspace, reconstruction=recon,
                                   max_value=2.5, norm=7.0))
    assert not f.multicoil and f.reconstruction_key == "reconstruction_esc"
    assert f.attrs["max"] == 2.5 and f.attrs["norm"] == 7.0
    np.testing.assert_array_equal(f.kspace[1], kspace[1])
    np.testing.assert_array_equal(f.kspace[-1], kspace[-1])
    np.testing.assert_array_equal(f.kspace[1:4], kspace[1:4])
    np.testing.assert_array_equal(f.kspace[::-2], kspace[::-2])
    np.testing.assert_array_equal(f.kspace[4:1:-1], kspace[4:1:-1])
    np.testing.assert_array_equal(f.kspace[2, 3:5], kspace[2, 3:5])
    np.testing.assert_array_equal(f.kspace[1:3, :, 0], kspace[1:3, :, 0])
    np.testing.assert_array_equal(f.reconstruction[...], recon)
    assert f.kspace[3:3].shape == (0, 16, 12)
    with pytest.raises(IndexError, match="has 5 slices, got index 5"):
        f.kspace[5]
    with pytest.raises(TypeError, match="indexed by slice"):
        f.kspace[[0, 1]]


def test_test_set_round_trip(tmp_path, rng):
    kspace = random_complex(rng, (2, 3, 16, 12))
    mask = np.zeros(12, bool)
    mask[[0, 4, 5, 6, 8]] = True
    kspace[..., ~mask] = 0
    f = read_fastmri(write_fastmri(tmp_path / "test.h5", kspace, mask=mask.astype(np.float32),
                                   acceleration=4, num_low_frequency=3, acquisition="CORPDFS_FBK",
                                   patient_id="x"))
    assert f.reconstruction is None and f.reconstruction_key is None
    assert f.mask.dtype == np.bool_
    np.testing.assert_array_equal(f.mask, mask)
    assert f.attrs == {"acceleration": 4, "num_low_frequency": 3, "acquisition": "CORPDFS_FBK",
                       "patient_id": "x"}
    assert type(f.attrs["acceleration"]) is int
    np.testing.assert_array_equal(f.kspace[:], kspace)


def test_header_object_and_xml_are_written_as_given(tmp_path, rng):
    kspace = random_complex(rng, (1, 2, 640 // 20, 368 // 16))
    header = parse_ismrmrd_header(KNEE_HEADER)
    f = read_fastmri(write_fastmri(tmp_path / "a.h5", kspace, header=KNEE_HEADER))
    assert f.header == header and f.header_xml == KNEE_HEADER
    g = read_fastmri(write_fastmri(tmp_path / "b.h5", kspace, header=header))
    assert g.header == header
    assert "<receiverChannels>2</receiverChannels>" in g.header_xml


def test_file_is_picklable_and_context_manager_keeps_it_open(tmp_path, rng):
    kspace = random_complex(rng, (3, 2, 8, 6))
    path = write_fastmri(tmp_path / "a.h5", kspace)
    f = read_fastmri(path)
    with f:
        moved = tmp_path / "moved.h5"
        os.rename(path, moved)  # the open handle still reads the data
        np.testing.assert_array_equal(f.kspace[2], kspace[2])
        clone = pickle.loads(pickle.dumps(f))
    with pytest.raises(FileNotFoundError, match=f"{path}: no such file"):
        f.kspace[0]  # closed: each access reopens the path
    os.rename(moved, path)
    np.testing.assert_array_equal(clone.kspace[1], kspace[1])


# --------------------------------------------------------------------------- the published layout


def test_plain_h5py_file_in_the_published_layout(tmp_path, rng):
    kspace = random_complex(rng, (2, 2, 640, 368))
    recon = rng.random((2, 320, 320), dtype=np.float32)
    path = tmp_path / "file1000001.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("ismrmrd_header", data=KNEE_HEADER.encode())
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=recon)
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = np.float64(recon.max())
        f.attrs["norm"] = np.float64(np.linalg.norm(recon))
        f.attrs["patient_id"] = "0a1b2c3d4e5f"
    f = read_fastmri(path)
    assert f.header.encoded_matrix == (640, 368, 1)
    assert f.header.recon_matrix == (320, 320, 1)
    assert f.header.encoded_fov_mm == (280.0, 280.0, 4.5)
    assert f.header.recon_fov_mm == (140.0, 140.0, 3.0)
    assert (f.header.enc_limits_center, f.header.enc_limits_max) == (165, 331)
    assert (f.header.padding_left, f.header.padding_right) == (19, 350)
    assert f.attrs["acquisition"] == "CORPD_FBK" and f.attrs["patient_id"] == "0a1b2c3d4e5f"
    assert f.attrs["max"] == recon.max()
    np.testing.assert_array_equal(f.kspace[1], kspace[1])
    np.testing.assert_array_equal(f.reconstruction[0], recon[0])

    # fastMRI reads the same fields from the same file.
    dataset = fastmri_slice_dataset(tmp_path, "multicoil")
    meta = dataset.raw_samples[0].metadata
    assert meta["encoding_size"] == f.header.encoded_matrix
    assert meta["recon_size"] == f.header.recon_matrix
    assert (meta["padding_left"], meta["padding_right"]) == (19, 350)


# --------------------------------------------------------------------------- fastMRI as the oracle


def test_fastmri_reads_what_write_fastmri_wrote(tmp_path, rng):
    kspace = random_complex(rng, (3, 4, 20, 14))
    recon = rng.random((3, 10, 10), dtype=np.float32)
    write_fastmri(tmp_path / "vol.h5", kspace, reconstruction=recon, acquisition="CORPD_FBK",
                  patient_id="p", fov_mm=(200, 140, 2.5))
    ours = read_fastmri(tmp_path / "vol.h5")
    dataset = fastmri_slice_dataset(tmp_path, "multicoil")
    assert len(dataset) == 3
    meta = dataset.raw_samples[0].metadata
    assert meta["encoding_size"] == ours.header.encoded_matrix == (20, 14, 1)
    assert meta["recon_size"] == ours.header.recon_matrix == (10, 10, 1)
    assert meta["padding_left"] == ours.header.padding_left == 0
    assert meta["padding_right"] == ours.header.padding_right == 14
    for i in range(3):
        k, mask, target, attrs, fname, index = dataset[i]
        assert (fname, index, mask) == ("vol.h5", i, None)
        np.testing.assert_array_equal(k, ours.kspace[i])
        np.testing.assert_array_equal(target, ours.reconstruction[i])
        assert attrs["max"] == ours.attrs["max"] and attrs["norm"] == ours.attrs["norm"]
        assert attrs["acquisition"] == "CORPD_FBK"
    # The field of view, read with fastMRI's own XML query.
    et_query = pytest.importorskip("fastmri.data.mri_data").et_query
    root = ElementTree.fromstring(ours.header_xml)
    fov = tuple(float(et_query(root, ["encoding", "encodedSpace", "fieldOfView_mm", a]))
                for a in "xyz")
    assert fov == ours.header.encoded_fov_mm == (200.0, 140.0, 2.5)


def test_fastmri_reads_single_coil_and_test_files(tmp_path, rng):
    single, multi = tmp_path / "single", tmp_path / "test"
    single.mkdir()
    multi.mkdir()
    kspace = random_complex(rng, (2, 16, 12))
    recon = rng.random((2, 8, 8), dtype=np.float32)
    write_fastmri(single / "sc.h5", kspace, reconstruction=recon)
    k, _, target, _, _, _ = fastmri_slice_dataset(single, "singlecoil")[1]
    np.testing.assert_array_equal(k, kspace[1])
    np.testing.assert_array_equal(target, recon[1])

    kspace = random_complex(rng, (2, 3, 16, 12))
    mask = np.arange(12) % 3 == 0
    write_fastmri(multi / "t.h5", kspace * mask, mask=mask, acceleration=3, num_low_frequency=2)
    k, got_mask, target, attrs, _, _ = fastmri_slice_dataset(multi, "multicoil")[0]
    np.testing.assert_array_equal(got_mask, mask)
    assert target is None and attrs["acceleration"] == 3 and attrs["num_low_frequency"] == 2
    np.testing.assert_array_equal(k, kspace[0] * mask)


def test_header_xml_matches_fastmri_query():
    et_query = pytest.importorskip("fastmri.data.mri_data").et_query
    xml = ismrmrd_header_xml(encoded_matrix=(640, 368, 1), recon_matrix=(320, 320, 1),
                             encoded_fov_mm=(280, 280, 4.5), recon_fov_mm=(140, 140, 3),
                             enc_limits_center=165, enc_limits_max=331, num_coils=15)
    root = ElementTree.fromstring(xml)
    lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
    assert et_query(root, lims + ["center"]) == "165"
    assert et_query(root, lims + ["maximum"]) == "330"
    assert et_query(root, ["encoding", "reconSpace", "fieldOfView_mm", "z"]) == "3.0"
    assert et_query(root, ["receiverChannels"]) == "15"
    assert parse_ismrmrd_header(xml) == parse_ismrmrd_header(KNEE_HEADER)


@pytest.mark.parametrize("kwargs, match", [
    (dict(encoded_matrix=(640, 368)), "encoded_matrix must be three positive integers"),
    (dict(recon_matrix=(320, 0, 1)), "recon_matrix must be three positive integers"),
    (dict(encoded_fov_mm=(280, float("nan"), 1)), "encoded_fov_mm must be three positive"),
    (dict(enc_limits_center=3), "give both enc_limits_center and enc_limits_max"),
    (dict(trajectory="zigzag"), "trajectory must be one of"),
    (dict(num_coils=0), "num_coils must be None or an integer >= 1"),
])
def test_header_xml_rejects_bad_arguments(kwargs, match):
    args = dict(encoded_matrix=(640, 368, 1), recon_matrix=(320, 320, 1),
                encoded_fov_mm=(280, 280, 4.5), recon_fov_mm=(140, 140, 3)) | kwargs
    with pytest.raises(ValueError, match=f"mskjax.io.ismrmrd_header_xml: {match}"):
        ismrmrd_header_xml(**args)


# --------------------------------------------------------------------------- lazy reading


def test_indexing_reads_only_the_requested_slices(tmp_path, rng):
    """Slice 2's compressed chunk is overwritten with garbage: every read that avoids slice 2
    succeeds, so it never touched that chunk; a read that needs it fails with a clear error."""
    kspace = random_complex(rng, (4, 2, 16, 12))
    path = plain_file(tmp_path / "chunked.h5", kspace=False)
    with h5py.File(path, "a") as f:
        f.create_dataset("kspace", data=kspace, chunks=(1, 2, 16, 12), compression="gzip")
    with h5py.File(path, "r") as f:
        chunk = f["kspace"].id.get_chunk_info_by_coord((2, 0, 0, 0))
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset)
        fh.write(b"\xa5" * chunk.size)
    f = read_fastmri(path)
    np.testing.assert_array_equal(f.kspace[0], kspace[0])
    np.testing.assert_array_equal(f.kspace[3], kspace[3])
    np.testing.assert_array_equal(f.kspace[:2], kspace[:2])
    np.testing.assert_array_equal(f.kspace[::3], kspace[::3])
    with pytest.raises(ValueError, match=rf"{path}: key 'kspace': cannot read slices 2, the "
                                         "file is corrupt"):
        f.kspace[2]
    with pytest.raises(ValueError, match="key 'kspace'"):
        np.asarray(f.kspace)


# --------------------------------------------------------------------------- bad files


def test_float_kspace_message(tmp_path):
    path = plain_file(tmp_path / "a.h5", kspace=np.zeros((3, 4, 5), np.float32))
    with pytest.raises(TypeError) as err:
        read_fastmri(path)
    assert str(err.value) == (f"mskjax.io.read_fastmri: {path}: key 'kspace' must be {LAYOUT}, "
                              "got float32 (3, 4, 5)")


BAD_FILES = {
    "missing kspace": (dict(kspace=False), ValueError, "key 'kspace' is missing"),
    "kspace rank 2": (dict(kspace=np.zeros((4, 5), np.complex64)), ValueError,
                      r"key 'kspace' must be complex64 .*, got complex64 \(4, 5\)"),
    "complex128 kspace": (dict(kspace=np.zeros((2, 4, 5), np.complex128)), TypeError,
                          "key 'kspace' must be complex64 .*, got complex128"),
    "missing header": (dict(header=False), ValueError, "key 'ismrmrd_header' is missing"),
    "header not xml": (dict(header=b"<ismrmrdHeader><enc"), ValueError,
                       "key 'ismrmrd_header' is not well-formed XML"),
    "header without namespace": (
        dict(header=small_header().replace(' xmlns="http://www.ismrm.org/ISMRMRD"', "")),
        ValueError, "key 'ismrmrd_header' has no <encoding> element in the ISMRMRD namespace"),
    "header without recon matrix": (
        dict(header=re.sub(r"(<reconSpace>\s*)<matrixSize>.*?</matrixSize>", r"\1",
                           small_header(), flags=re.S)),
        ValueError, r"key 'ismrmrd_header' has no <encoding/reconSpace/matrixSize/x> value"),
    "header with a word for a size": (
        dict(header=small_header().replace("<y>12</y>", "<y>twelve</y>", 1)),
        ValueError, "key 'ismrmrd_header': <encoding/encodedSpace/matrixSize/y> must be an "
        "integer, got 'twelve'"),
    "header held as numbers": (dict(header=np.arange(3.0)), ValueError,
                               "key 'ismrmrd_header' must hold the ISMRMRD XML as a string"),
    "float64 reconstruction": (dict(reconstruction_rss=np.zeros((2, 8, 8))), TypeError,
                               "key 'reconstruction_rss' must be float32 "),
    "reconstruction with other slices": (
        dict(reconstruction_rss=np.zeros((3, 8, 8), np.float32)), ValueError,
        r"key 'reconstruction_rss' must be float32 \(2, rows, cols\).*got float32 \(3, 8, 8\)"),
    "mask of wrong length": (dict(mask=np.ones(11, bool)), ValueError,
                             r"key 'mask' must be a \(12,\) vector"),
    "mask with values other than 0 and 1": (dict(mask=np.full(12, 2, np.uint8)), ValueError,
                                            "key 'mask' must be bool or hold only 0 and 1"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_name_file_key_and_problem(tmp_path, name):
    kwargs, error, match = BAD_FILES[name]
    path = plain_file(tmp_path / "bad.h5", **kwargs)
    with pytest.raises(error, match=f"mskjax.io.read_fastmri: {path}: {match}"):
        read_fastmri(path)


def test_kspace_group_missing_file_folder_not_hdf5_and_truncated(tmp_path, rng):
    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("kspace")
    with pytest.raises(ValueError, match="key 'kspace' must be a dataset, got a group"):
        read_fastmri(tmp_path / "group.h5")
    with pytest.raises(FileNotFoundError, match=f"read_fastmri: {tmp_path}/nope.h5: no such"):
        read_fastmri(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match="is a folder"):
        read_fastmri(tmp_path)
    (tmp_path / "text.h5").write_text("kspace = 1\n")
    with pytest.raises(ValueError, match=f"{tmp_path}/text.h5: not an HDF5 file"):
        read_fastmri(tmp_path / "text.h5")
    whole = write_fastmri(tmp_path / "whole.h5", random_complex(rng, (2, 2, 16, 12)))
    data = whole.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{tmp_path}/cut.h5: cannot open the HDF5 file, it is "
                                         "truncated or corrupt"):
        read_fastmri(tmp_path / "cut.h5")


# --------------------------------------------------------------------------- bad writes


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((np.zeros((2, 3, 4, 5), np.float32),), {}, TypeError,
     r"kspace must be complex64 .*, got float32 \(2, 3, 4, 5\)$"),
    ((np.zeros((2, 3, 4, 5), np.complex128),), {}, TypeError,
     r"kspace must be complex64 .*convert explicitly with kspace.astype\(np.complex64\)"),
    ((np.zeros((4, 5), np.complex64),), {}, ValueError,
     r"kspace must be complex64 .*, got complex64 \(4, 5\)"),
    (([[1j]],), {}, TypeError, "kspace must be an array, got list"),
    ((np.zeros((2, 4, 5), np.complex64),), dict(reconstruction=np.zeros((2, 4, 4))), TypeError,
     r"reconstruction must be float32 \(2, rows, cols\).*astype\(np.float32\)"),
    ((np.zeros((2, 4, 5), np.complex64),),
     dict(reconstruction=np.zeros((1, 4, 4), np.float32)), ValueError,
     r"reconstruction must be float32 \(2, rows, cols\)"),
    ((np.zeros((2, 4, 5), np.complex64),), dict(mask=np.ones(4, bool)), ValueError,
     r"mask must be a \(5,\) vector"),
    ((np.zeros((2, 4, 5), np.complex64),), dict(header="<ismrmrdHeader/>"), ValueError,
     "header has no <encoding> element"),
    ((np.zeros((2, 4, 5), np.complex64),), dict(header=small_header(), fov_mm=(1, 1, 1)),
     ValueError, "fov_mm only applies to a built header"),
    ((np.zeros((2, 4, 5), np.complex64),), dict(acquisition=3), TypeError,
     "acquisition must be None or a str, got int"),
    ((np.zeros((2, 4, 5), np.complex64),), dict(max_value=float("inf")), ValueError,
     "max_value must be None or a finite real number"),
    ((np.zeros((2, 4, 5), np.complex64),), dict(num_low_frequency=2.5), ValueError,
     "num_low_frequency must be None or an integer >= 0"),
])
def test_bad_writes_raise_before_writing(tmp_path, args, kwargs, error, match):
    with pytest.raises(error, match=f"mskjax.io.write_fastmri: {match}"):
        write_fastmri(tmp_path / "out.h5", *args, **kwargs)
    assert os.listdir(tmp_path) == []


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .*/missing does not exist"):
        write_fastmri(tmp_path / "missing" / "a.h5", np.zeros((1, 4, 4), np.complex64))


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, rng, monkeypatch):
    old = random_complex(rng, (2, 2, 8, 6))
    path = write_fastmri(tmp_path / "vol.h5", old)
    before = path.read_bytes()
    create = h5py.Group.create_dataset
    calls = []

    def failing(self, name, *args, **kwargs):
        calls.append(name)
        if name == "ismrmrd_header":  # k-space and the target are already on disk
            raise OSError("No space left on device")
        return create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    new = random_complex(rng, (3, 2, 8, 6))
    recon = np.ones((3, 4, 4), np.float32)
    with pytest.raises(OSError, match="No space left"):
        write_fastmri(path, new, reconstruction=recon)
    with pytest.raises(OSError, match="No space left"):
        write_fastmri(tmp_path / "new.h5", new)
    assert calls == ["kspace", "reconstruction_rss", "ismrmrd_header", "kspace",
                     "ismrmrd_header"]
    assert os.listdir(tmp_path) == ["vol.h5"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    np.testing.assert_array_equal(read_fastmri(path).kspace[:], old)
