"""The data specs and the validator: the real files match their specs, files written by
mskjax match the fastMRI specs, and wrong files get the full list of their mismatches."""

import json
import os
import zlib

import h5py
import numpy as np
import pytest

from mskjax.io._cfl import write_cfl
from mskjax.io._fastmri import write_fastmri
from mskjax.io._validate import (
    SPEC_DIR,
    Mismatch,
    ValidationReport,
    load_spec,
    spec_names,
    validate,
)
from tests.conftest import random_complex

SHARED = [name for name in spec_names() if "path" in load_spec(name)]


def problems(report: ValidationReport):
    """``(where, key, problem)`` triples, for exact comparisons."""
    return [(m.where, m.key, m.problem) for m in report.mismatches]


# --------------------------------------------------------------------------- the specs


@pytest.mark.parametrize("name", spec_names())
def test_every_spec_is_well_formed(name):
    spec = load_spec(name)
    assert spec["name"] == name
    assert spec["description"] and spec["arrays"]
    for entry in spec["arrays"].values():
        assert "units" in entry and len(entry["axes"]) == len(entry["shape"])


def test_the_data_sets_have_specs():
    names = set(spec_names())
    assert {"fastmri_knee_multicoil", "fastmri_knee_singlecoil", "fastmri_knee_multicoil_test",
            "skm_tea_raw_data", "skm_tea_image", "skm_tea_segmentation",
            "oai_zib_segmentation", "mrnet_volume", "knee_axial_rss", "knee_axial_complex",
            "knee_qdess_t1rho", "knee3d_fair", "brain_8ch_espirit_full",
            "brain_8ch_bart_pics_img"} <= names
    assert {"knee_axial_rss", "knee_axial_complex", "knee_qdess_t1rho", "knee3d_fair",
            "brain_8ch_sigpy_cartesian_ksp"} | {
        f"brain_8ch_espirit_{n}" for n in ("full", "und2x2", "smallfov", "knee_l1")} | {
        "brain_8ch_bart_pics_ksp", "brain_8ch_bart_pics_img"} <= set(SHARED)


@pytest.mark.parametrize("name", SHARED)
def test_shared_files_match_their_specs(shared_data, name):
    report = validate(shared_data / load_spec(name)["path"], name, strict=True)
    assert report.ok and report.mismatches == ()
    assert str(report).endswith(f"matches spec '{name}'")


def test_a_changed_shared_spec_is_caught(shared_data):
    spec = load_spec("knee_qdess_t1rho")
    spec["arrays"]["dess"]["shape"] = [2, 8, 512, 256]
    spec["arrays"]["dess_te_ms"]["dtype"] = "float32"
    report = validate(shared_data / spec["path"], spec)
    assert problems(report) == [
        ("key", "dess", "axis 3 (col) must have size 256, got 512 (shape (2, 8, 512, 512))"),
        ("key", "dess_te_ms", "dtype must be float32, got float64"),
    ]


# --------------------------------------------------------------------------- fastMRI


def fastmri_multicoil(path, rng, slices=2):
    return write_fastmri(path, random_complex(rng, (slices, 3, 16, 12)),
                         reconstruction=rng.random((slices, 320, 320), dtype=np.float32),
                         acquisition="CORPD_FBK", patient_id="p")


def test_written_fastmri_files_match_the_fastmri_specs(tmp_path, rng):
    multi = fastmri_multicoil(tmp_path / "multi.h5", rng)
    assert validate(multi, "fastmri_knee_multicoil").ok
    single = write_fastmri(tmp_path / "single.h5", random_complex(rng, (2, 16, 12)),
                           reconstruction=rng.random((2, 320, 320), dtype=np.float32),
                           acquisition="CORPDFS_FBK", patient_id="q")
    assert validate(single, "fastmri_knee_singlecoil").ok
    test = write_fastmri(tmp_path / "test.h5", random_complex(rng, (2, 3, 16, 12)),
                         mask=np.arange(12) % 4 == 0, acceleration=4, num_low_frequency=2,
                         acquisition="CORPD_FBK", patient_id="r")
    assert validate(test, "fastmri_knee_multicoil_test").ok
    # And each is told apart from the others.
    assert problems(validate(test, "fastmri_knee_multicoil")) == [
        ("key", "reconstruction_rss", "is missing (the file has keys ['ismrmrd_header', "
                                      "'kspace', 'mask'])"),
        ("key", "mask", "is not in the spec"),
        ("attribute", "max", "is missing"),
        ("attribute", "norm", "is missing"),
        ("attribute", "acceleration", "is not in the spec"),
        ("attribute", "num_low_frequency", "is not in the spec"),
    ]
    assert [m.key for m in validate(single, "fastmri_knee_multicoil").mismatches] == [
        "kspace", "reconstruction_rss", "reconstruction_esc"]


def test_a_wrong_fastmri_file_gets_every_mismatch(tmp_path):
    path = tmp_path / "wrong.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 16, 12), np.float32))
        f.create_dataset("reconstruction_rss", data=np.zeros((3, 320, 256), np.float32))
        f.create_dataset("extra", data=np.zeros(3))
        f.attrs["max"] = "1.0"
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["patient_id"] = "p"
        f.attrs["scanner"] = "x"
    report = validate(path, "fastmri_knee_multicoil")
    assert problems(report) == [
        ("key", "kspace", "dtype must be complex64, got float32"),
        ("key", "kspace", "must have 4 axes (slice, coil, kx (readout), ky (phase encode)), got "
                          "shape (2, 16, 12)"),
        ("key", "reconstruction_rss", "axis 2 (col) must have size 320, got 256 (shape "
                                      "(3, 320, 256))"),
        ("key", "ismrmrd_header", "is missing (the file has keys ['extra', 'kspace', "
                                  "'reconstruction_rss'])"),
        ("key", "extra", "is not in the spec"),
        ("attribute", "max", "dtype must be float, got str ('1.0')"),
        ("attribute", "norm", "is missing"),
        ("attribute", "scanner", "is not in the spec"),
    ]
    assert not report.ok and report.keys()[:2] == ["kspace", "reconstruction_rss"]
    assert str(report.mismatches[0]) == (f"{path}: key 'kspace': dtype must be complex64, got "
                                         "float32")
    assert str(report.mismatches[5]).startswith(f"{path}: attribute 'max': ")
    with pytest.raises(ValueError) as err:
        validate(path, "fastmri_knee_multicoil", strict=True)
    text = str(err.value)
    assert text.startswith(f"mskjax.io.validate: {path} does not match spec "
                           "'fastmri_knee_multicoil' (8 mismatches):")
    assert all(str(m) in text for m in report.mismatches)


def test_named_dimensions_and_the_header_content(tmp_path, rng):
    path = fastmri_multicoil(tmp_path / "a.h5", rng)
    with h5py.File(path, "a") as f:
        del f["reconstruction_rss"], f["ismrmrd_header"]
        f.create_dataset("reconstruction_rss", data=np.zeros((5, 320, 320), np.float32))
        f.create_dataset("ismrmrd_header", data=b"<ismrmrdHeader><encoding/></ismrmrdHeader>")
    assert problems(validate(path, "fastmri_knee_multicoil")) == [
        ("key", "reconstruction_rss", "axis 0 (slice) has size 5, but 'slices' is 2 in key "
                                      "'kspace'"),
        ("key", "ismrmrd_header", "must hold an ISMRMRD XML header: the value has no <encoding> "
                                  "element in the ISMRMRD namespace http://www.ismrm.org/ISMRMRD "
                                  "(root element <ismrmrdHeader>)"),
    ]


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "a.h5").write_text("not hdf5")
    report = validate(tmp_path / "a.h5", "fastmri_knee_multicoil")
    assert len(report.mismatches) == 1
    assert report.mismatches[0].where == "file"
    assert str(report.mismatches[0]).startswith(f"{tmp_path}/a.h5: cannot be read as HDF5")
    with pytest.raises(FileNotFoundError, match=f"mskjax.io.validate: {tmp_path}/b.h5: no such"):
        validate(tmp_path / "b.h5", "fastmri_knee_multicoil")


# --------------------------------------------------------------------------- SKM-TEA


def test_skm_tea_layouts(tmp_path, rng):
    raw = tmp_path / "MTR_001.h5"
    with h5py.File(raw, "w") as f:
        f.create_dataset("kspace", data=random_complex(rng, (4, 6, 5, 2, 3)))
        f.create_dataset("maps", data=random_complex(rng, (4, 6, 5, 3, 1)))
        f.create_dataset("target", data=random_complex(rng, (4, 6, 5, 2, 1)))
        f.create_dataset("masks/poisson_6.0x", data=np.ones((6, 5), np.uint8))
    assert validate(raw, "skm_tea_raw_data").ok
    with h5py.File(raw, "a") as f:
        del f["maps"]
        f.create_dataset("maps", data=random_complex(rng, (4, 6, 5, 8, 1)))
    assert problems(validate(raw, "skm_tea_raw_data")) == [
        ("key", "maps", "axis 3 (coil) has size 8, but 'coils' is 3 in key 'kspace'")]

    image = tmp_path / "image.h5"
    with h5py.File(image, "w") as f:
        f.create_dataset("echo1", data=np.ones((4, 6, 5), np.uint16))
        f.create_dataset("echo2", data=np.ones((4, 6, 5), np.uint16))
        f.create_dataset("seg", data=np.zeros((4, 6, 5, 6), np.uint8))
        for echo in ("echo1", "echo2", "rss"):
            for stat in ("mean", "std", "min", "max"):
                f.create_dataset(f"stats/{echo}/{stat}", data=1.5)
    assert validate(image, "skm_tea_image").ok
    with h5py.File(image, "a") as f:
        del f["seg"], f["stats/rss/max"]
        f.create_dataset("seg", data=np.zeros((4, 6, 5, 4), np.uint8))
    assert problems(validate(image, "skm_tea_image")) == [
        ("key", "seg", "axis 3 (tissue) must have size 6, got 4 (shape (4, 6, 5, 4))"),
        ("key", "stats/rss/max", "is missing (the file has keys ['echo1', 'echo2', 'seg', "
                                 "'stats/echo1/max', 'stats/echo1/mean', 'stats/echo1/min', "
                                 "'stats/echo1/std', 'stats/echo2/max', 'stats/echo2/mean', "
                                 "'stats/echo2/min', 'stats/echo2/std', 'stats/rss/mean', "
                                 "'stats/rss/min', 'stats/rss/std'])"),
    ]


# --------------------------------------------------------------------------- label volumes


def nifti(path, array):
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)
    return path


def test_label_volumes_in_nifti(tmp_path):
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1, :, :] = 1
    labels[2, :3] = 4
    assert validate(nifti(tmp_path / "ok.nii.gz", labels), "oai_zib_segmentation").ok
    labels[0, 0, 0], labels[0, 0, 1] = 7, 9
    report = validate(nifti(tmp_path / "bad.nii.gz", labels), "oai_zib_segmentation")
    assert problems(report) == [
        ("key", "segmentation", "holds values 7, 9 that are not labels; the labels are "
                                "{0: 'background', 1: 'femoral bone', 2: 'femoral cartilage', "
                                "3: 'tibial bone', 4: 'tibial cartilage'}")]
    (skm_tea,) = validate(tmp_path / "bad.nii.gz", "skm_tea_segmentation").mismatches
    assert skm_tea.problem.startswith("holds values 7, 9 that are not labels")
    report = validate(nifti(tmp_path / "flat.nii.gz", labels[0]), "oai_zib_segmentation")
    assert problems(report)[0] == ("key", "segmentation",
                                   "must have 3 axes (x, y, z), got shape (5, 4)")
    report = validate(nifti(tmp_path / "half.nii", np.full((2, 2, 2), 0.5, np.float32)),
                      "oai_zib_segmentation")
    assert problems(report)[0][2].startswith("holds values 0.5 that are not labels")


def write_mhd(folder, array, *, compressed=False, element_type="MET_UCHAR", cut=0):
    data = np.asarray(array).ravel(order="F").tobytes()
    data = zlib.compress(data) if compressed else data
    (folder / "seg.raw").write_bytes(data[: len(data) - cut])
    (folder / "seg.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"CompressedData = {compressed}\nElementSpacing = 0.36 0.36 0.7\n"
        f"DimSize = {' '.join(str(s) for s in np.shape(array))}\n"
        f"ElementType = {element_type}\nElementDataFile = seg.raw\n")
    return folder / "seg.mhd"


def test_label_volumes_in_metaimage(tmp_path):
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[2:4, 1:3, :] = 2
    labels[4, 2, 1] = 3
    for compressed in (False, True):
        assert validate(write_mhd(tmp_path, labels, compressed=compressed),
                        "oai_zib_segmentation").ok
    labels[0, 0, 0] = 5
    assert validate(write_mhd(tmp_path, labels), "oai_zib_segmentation").keys() == [
        "segmentation"]
    report = validate(write_mhd(tmp_path, labels, cut=10), "oai_zib_segmentation")
    assert problems(report) == [("file", "", "its data has 110 bytes, the header implies 120")]
    report = validate(write_mhd(tmp_path, labels, element_type="MET_FANCY"),
                      "oai_zib_segmentation")
    assert problems(report) == [("file", "", "unknown MetaImage ElementType 'MET_FANCY'")]
    np.save(tmp_path / "seg.npy", labels)
    report = validate(tmp_path / "seg.npy", "oai_zib_segmentation")
    assert problems(report) == [("file", "", "is not a mhd or nifti file (expected a name ending "
                                             "in ['.mhd', '.mha', '.nii', '.nii.gz'])")]


# --------------------------------------------------------------------------- npz, npy, cfl, mat


def test_wrong_npz_gets_every_mismatch(tmp_path, rng):
    path = tmp_path / "knee.npz"
    np.savez(path, image=random_complex(rng, (2, 320, 256), np.complex128),
             mask=np.ones((320, 255), bool), foo=np.zeros(3))
    assert problems(validate(path, "knee_axial_complex")) == [
        ("key", "image", "dtype must be complex64, got complex128"),
        ("key", "kspace", "is missing (the file has keys ['foo', 'image', 'mask'])"),
        ("key", "mask", "axis 1 (kx) must have size 256, got 255 (shape (320, 255))"),
        ("key", "foo", "is not in the spec"),
    ]
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04 broken")
    assert validate(tmp_path / "zip.npz", "knee_axial_complex").mismatches[0].where == "file"


def test_mrnet_volumes(tmp_path):
    np.save(tmp_path / "0000.npy", np.zeros((20, 256, 256), np.uint8))
    assert validate(tmp_path / "0000.npy", "mrnet_volume").ok
    np.save(tmp_path / "0001.npy", np.zeros((20, 256, 255), np.float32))
    assert problems(validate(tmp_path / "0001.npy", "mrnet_volume")) == [
        ("key", "volume", "dtype must be uint8, got float32"),
        ("key", "volume", "axis 2 (col) must have size 256, got 255 (shape (20, 256, 255))"),
    ]


def test_cfl_against_its_spec(tmp_path, rng):
    write_cfl(tmp_path / "full", random_complex(rng, (1, 230, 180, 8, 1)))
    assert validate(tmp_path / "full", "brain_8ch_espirit_full").ok
    write_cfl(tmp_path / "small", random_complex(rng, (1, 23, 18, 8)))
    assert problems(validate(tmp_path / "small.cfl", "brain_8ch_espirit_full")) == [
        ("key", "full", "must have 5 axes (read, phase1, phase2, coil, map), got shape "
                        "(1, 23, 18, 8)")]
    with open(tmp_path / "full.cfl", "r+b") as fh:
        fh.truncate(1000)
    (report,) = validate(tmp_path / "full.hdr", "brain_8ch_espirit_full").mismatches
    assert report.where == "file" and "full.cfl: truncated" in report.problem


def test_mat_against_its_spec(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    good = {"dataT": np.zeros((128, 64, 128), np.uint8), "dataR": np.zeros((128, 64, 128),
                                                                              np.uint8),
            "omega": np.array([[0.0, 128, 0, 62, 0, 128]]), "m": np.array([[128.0, 64, 128]])}
    scipy_io.savemat(tmp_path / "good.mat", good)
    assert validate(tmp_path / "good.mat", "knee3d_fair").ok
    bad = dict(good, dataT=np.zeros((128, 64, 128)))
    del bad["m"]
    scipy_io.savemat(tmp_path / "bad.mat", bad)
    assert problems(validate(tmp_path / "bad.mat", "knee3d_fair")) == [
        ("key", "dataT", "dtype must be uint8, got float64"),
        ("key", "m", "is missing (the file has keys ['dataR', 'dataT', 'omega'])"),
    ]


# --------------------------------------------------------------------------- spec handling


def test_spec_by_name_path_or_dict(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((3, 256, 256), np.uint8))
    by_path = validate(tmp_path / "v.npy", SPEC_DIR / "mrnet_volume.json")
    by_dict = validate(tmp_path / "v.npy", json.loads((SPEC_DIR / "mrnet_volume.json")
                                                      .read_text()))
    assert by_path.ok and by_dict.ok and by_path.spec == by_dict.spec == "mrnet_volume"
    with pytest.raises(ValueError, match=r"no spec named 'mrnet' in .*; the specs are \[.*"
                                         r"'mrnet_volume'"):
        validate(tmp_path / "v.npy", "mrnet")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"{tmp_path}/bad.json: not valid JSON"):
        load_spec(tmp_path / "bad.json")
    with pytest.raises(TypeError, match="spec must be a dict"):
        load_spec(3)


def test_malformed_spec_lists_every_problem():
    spec = {"name": "broken", "format": "tiff",
            "arrays": {"a": {"shape": [2, -1], "dtype": "complex65", "axes": ["x"]},
                       "b": {"shape": [2], "dtype": "str", "axes": ["x"], "labels": {"x": 1}},
                       "c": {"shape": [2, None], "dtype": ["int", "float"], "axes": ["x"]}}}
    with pytest.raises(ValueError) as err:
        load_spec(spec)
    lines = str(err.value).splitlines()
    assert lines[0] == "mskjax.io.load_spec: spec 'broken' is not a valid spec:"
    assert [line.strip().split(" ")[0] for line in lines[1:]] == [
        "'format'", "arrays['a']['shape']", "arrays['a']['dtype']", "arrays['b']['labels']",
        "arrays['c']['axes']"]


def test_mismatch_and_report_text():
    m = Mismatch("/d/f.h5", "kspace", "is missing")
    assert str(m) == "/d/f.h5: key 'kspace': is missing"
    assert str(Mismatch("/d/f.h5", "", "cannot be read", "file")) == "/d/f.h5: cannot be read"
    report = ValidationReport("/d/f.h5", "s", (m,))
    assert str(report) == ("/d/f.h5 does not match spec 's' (1 mismatch):\n"
                           "  /d/f.h5: key 'kspace': is missing")
    assert os.fspath(SPEC_DIR).endswith("data_specs")
