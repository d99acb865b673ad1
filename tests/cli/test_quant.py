import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from mskjax.cli import main
from mskjax.quant import fit_relaxation, qdess_t2

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: E402

SCAN = dict(tr=25.0, te=7.48, flip_angle=30.0, gl_area=3132.0, tg=1760.0)
OUTPUTS = ["{k}.json", "{k}.nii.gz", "{k}.png", "{k}_valid.nii.gz"]


def outputs(kind):
    return sorted(name.format(k=kind) for name in OUTPUTS)


def knee(shared_data):
    folder = shared_data / "knee_sagittal_qdess_t1rho"
    return folder / "dicom_midslice", np.load(folder / "knee_qdess_t1rho_8slices.npz")


def nifti(path):
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


def write_slice(path, pixels, *, series_uid, position, orientation, echo_time, instance,
                spacing=(0.8, 0.6)):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", series_uid, 4
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelSpacing = [f"{s:g}" for s in spacing]
    ds.SliceThickness = "2"
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    ds.EchoTime, ds.RepetitionTime, ds.FlipAngle = f"{echo_time:g}", "3000", "90"
    ds.InstanceNumber = instance
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def multi_echo_series(tmp_path):
    """A 4-echo spin-echo series of 3 oblique slices (one series, files in shuffled order)."""
    folder = tmp_path / "mese"
    folder.mkdir()
    a = np.deg2rad(20.0)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([0.0, 0.0, -1.0])
    normal = np.cross(row, col)
    origin = np.array([-30.0, 12.5, 40.0])
    t2 = np.linspace(20.0, 80.0, 3 * 5 * 6).reshape(3, 5, 6)  # (slices, rows, cols)
    echo_times = (10.0, 25.0, 40.0, 70.0)
    uid = generate_uid()
    order = np.random.default_rng(3).permutation(12)
    for n, index in enumerate(order):
        k, e = divmod(int(index), 4)
        pixels = np.round(3000 * np.exp(-echo_times[e] / t2[k]))
        write_slice(folder / f"IM{n:03d}", pixels, series_uid=uid,
                    position=origin + 2.5 * k * normal, orientation=(*row, *col),
                    echo_time=echo_times[e], instance=n + 1)
    (folder / "README").write_text("not DICOM\n")
    return folder, t2, echo_times, (row, col, normal, origin)


def test_qdess_t2_of_the_real_dicom_folder(shared_data, tmp_path, capsys):
    folder, data = knee(shared_data)
    out = tmp_path / "out"
    assert main(["quant", "t2", str(folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == outputs("t2")
    assert "t2: qDESS analytic T2" in capsys.readouterr().out
    report = json.loads((out / "t2.json").read_text())
    assert report["parameters"] == {"gl_area": 3132.0, "tg": 1760.0, "tr": 25.0, "te": 7.48,
                                    "flip_angle": 30.0}
    assert report["input"].startswith("2 DICOM images")  # the T1rho files are left out
    t2, affine = nifti(out / "t2.nii.gz")
    valid, valid_affine = nifti(out / "t2_valid.nii.gz")
    assert t2.shape == (512, 512, 1) and t2.dtype == np.float32 and valid.dtype == np.uint8
    expected = qdess_t2(data["dess"][0, 4], data["dess"][1, 4], **SCAN)
    np.testing.assert_array_equal(t2[:, :, 0].T, np.asarray(expected.t2))
    np.testing.assert_array_equal(valid[:, :, 0].T, np.asarray(expected.valid))
    assert report["valid_voxels"] == int(np.asarray(expected.valid).sum())
    # the DICOM geometry: (0019) sagittal, row cosines (0, 1, 0), column cosines (0, 0, -1),
    # first pixel at LPS (-45.4152, -68.3588, 79.8372); RAS flips x and y
    np.testing.assert_allclose(affine[:3, 3], [45.4152, 68.3588, 79.8372], atol=1e-4)
    np.testing.assert_allclose(affine[:3, 0], [0, -0.3125, 0], atol=1e-6)  # column index
    np.testing.assert_allclose(affine[:3, 1], [0, 0, -0.3125], atol=1e-6)  # row index
    np.testing.assert_allclose(affine[:3, 2], [1.5, 0, 0], atol=1e-6)  # slice: the thickness
    np.testing.assert_array_equal(affine, valid_affine)


def test_t1rho_of_the_real_cubequant_files_with_a_mask(shared_data, tmp_path):
    folder, data = knee(shared_data)
    cubequant = tmp_path / "cubequant"
    cubequant.mkdir()
    for path in folder.glob("cubeQuant_*.dcm"):
        shutil.copy(path, cubequant / path.name)
    mask = np.zeros((1, 512, 512), bool)
    mask[0, 80:120, 340:420] = True  # muscle
    np.save(tmp_path / "mask.npy", mask)
    out = tmp_path / "out"
    assert main(["quant", "t1rho", str(cubequant), "--out", str(out), "--mask",
                 str(tmp_path / "mask.npy"), "--range", "0", "500", "--min-r2", "0.9"]) == 0
    assert sorted(p.name for p in out.iterdir()) == outputs("t1rho")
    t1rho, _ = nifti(out / "t1rho.nii.gz")
    expected = fit_relaxation(data["cubequant_t1rho"][:, 4:5], data["cubequant_tsl_ms"],
                              mask=mask, time_constant_range=(0, 500), min_r2=0.9)
    np.testing.assert_array_equal(np.transpose(t1rho, (2, 1, 0)),
                                  np.asarray(expected.time_constant))
    report = json.loads((out / "t1rho.json").read_text())
    assert report["times_ms"] == [1.0, 10.0, 30.0, 60.0]
    counts = report["status_counts"]
    assert counts["MASKED"] == 512 * 512 - mask.sum() and sum(counts.values()) == 512 * 512
    assert counts["VALID"] == report["valid_voxels"] > 0.9 * mask.sum()


def test_multi_echo_series_fit_and_oblique_affine(multi_echo_series, tmp_path):
    folder, t2, echo_times, (row, col, normal, origin) = multi_echo_series
    out = tmp_path / "out"
    assert main(["quant", "t2", str(folder), "--out", str(out)]) == 0
    report = json.loads((out / "t2.json").read_text())
    assert report["method"].startswith("mono-exponential fit")
    assert report["times_ms"] == list(echo_times) and report["shape"] == [3, 5, 6]
    values, affine = nifti(out / "t2.nii.gz")
    assert values.shape == (6, 5, 3)
    np.testing.assert_allclose(np.transpose(values, (2, 1, 0)), t2, rtol=2e-3)  # rounded pixels
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    for k in range(3):  # voxel (col i, row j, slice k) sits where DICOM puts that pixel
        for i, j in [(0, 0), (5, 0), (0, 4), (3, 2)]:
            lps = origin + 2.5 * k * normal + i * 0.6 * row + j * 0.8 * col
            np.testing.assert_allclose(affine @ [i, j, k, 1], [*(lps * lps_to_ras), 1],
                                       atol=1e-4)
    # a mask NIfTI on the output grid
    mask = np.zeros((6, 5, 3), np.uint8)
    mask[1:4, 1:3, 1] = 1
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    assert main(["quant", "t2", str(folder), "--out", str(out), "--mask",
                 str(tmp_path / "mask.nii.gz")]) == 0
    valid, _ = nifti(out / "t2_valid.nii.gz")
    np.testing.assert_array_equal(valid, mask)


def test_npz_inputs(tmp_path, rng):
    times = np.array([10.0, 30.0, 50.0])
    truth = rng.uniform(20, 60, (2, 4, 5))
    np.savez(tmp_path / "mese.npz", images=1000 * np.exp(-times[:, None, None, None] / truth),
             times=times, affine=np.diag([0.5, 0.5, 3.0, 1.0]))
    out = tmp_path / "out"
    assert main(["quant", "t2", str(tmp_path / "mese.npz"), "--out", str(out),
                 "--method", "log_linear"]) == 0
    values, affine = nifti(out / "t2.nii.gz")
    np.testing.assert_allclose(np.transpose(values, (2, 1, 0)), truth, rtol=1e-4)
    np.testing.assert_array_equal(affine, np.diag([0.5, 0.5, 3.0, 1.0]))
    # a qDESS npz: parameters from its keys, one overridden by a flag
    echo1 = rng.uniform(200, 900, (6, 7)).astype(np.float32)
    echo2 = echo1 * rng.uniform(0.05, 0.3, (6, 7)).astype(np.float32)
    np.savez(tmp_path / "dess.npz", dess=np.stack([echo1, echo2]), **SCAN)
    assert main(["quant", "t2", str(tmp_path / "dess.npz"), "--images-key", "dess",
                 "--out", str(out), "--t1", "1000"]) == 0
    values, _ = nifti(out / "t2.nii.gz")
    expected = qdess_t2(echo1, echo2, **SCAN, t1=1000.0)
    np.testing.assert_array_equal(values[:, :, 0].T, np.asarray(expected.t2))
    assert json.loads((out / "t2.json").read_text())["method"].endswith(
        "T1 1000.0 ms, diffusivity 1.25e-09 m^2/s")


def run_error(capsys, *argv):
    code = main(["quant", *argv])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line
    return code, err


def test_bad_input_is_one_line_and_leaves_nothing(multi_echo_series, shared_data, tmp_path,
                                                  capsys):
    folder, *_ = multi_echo_series
    out = tmp_path / "out"
    code, err = run_error(capsys, "t2", str(tmp_path / "nowhere"), "--out", str(out))
    assert code == 2 and "nowhere: no such file or folder" in err
    code, err = run_error(capsys, "t2", str(folder), "--out", str(out), "--times", "1", "2")
    assert code == 2 and "times has 2 entries but images has 4 images" in err
    code, err = run_error(capsys, "t2", str(folder), "--out", str(out), "--sequence", "qdess")
    assert code == 2 and "qDESS needs exactly 2 echoes (S+, S-), got 4" in err
    np.save(tmp_path / "bad_mask.npy", np.ones((2, 5, 6), bool))
    code, err = run_error(capsys, "t2", str(folder), "--out", str(out), "--mask",
                          str(tmp_path / "bad_mask.npy"))
    assert code == 2 and "shape (2, 5, 6) differs from the images' (slices, rows, cols)" in err
    flat = nib.Nifti1Image(np.ones((6, 5, 3), np.uint8), None)
    flat.header.set_sform(np.diag([0.6, 0.8, 0.0, 1.0]), code=1)  # a zero slice thickness
    nib.save(flat, tmp_path / "flat.nii.gz")
    code, err = run_error(capsys, "t2", str(folder), "--out", str(out), "--mask",
                          str(tmp_path / "flat.nii.gz"))
    assert code == 2 and "flat.nii.gz: the header's affine (sform/qform) is singular" in err
    # echoes of different shapes: one file of the series replaced by a smaller image
    victim = sorted(folder.glob("IM*"))[5]
    ds = pydicom.dcmread(victim)
    ds.Rows, ds.Columns = 4, 6
    ds.PixelData = np.zeros((4, 6), "<u2").tobytes()
    ds.save_as(victim)
    code, err = run_error(capsys, "t2", str(folder), "--out", str(out))
    assert code == 2 and f"{victim.name}: image shape (4, 6) differs from (5, 6)" in err
    # echoes that do not cover the same slices: the qDESS and T1rho files of the real knee
    code, err = run_error(capsys, "t1rho", str(knee(shared_data)[0]), "--out", str(out))
    assert code == 2 and "do not cover the slices" in err
    np.savez(tmp_path / "nokey.npz", other=np.ones((3, 4, 4)))
    code, err = run_error(capsys, "t2", str(tmp_path / "nokey.npz"), "--out", str(out))
    assert code == 2 and "no array named 'images' (found ['other'])" in err
    np.savez(tmp_path / "notimes.npz", images=np.ones((3, 4, 4)))
    code, err = run_error(capsys, "t2", str(tmp_path / "notimes.npz"), "--out", str(out))
    assert code == 2 and "carries no times; give --times" in err
    np.savez(tmp_path / "dess.npz", images=np.ones((2, 4, 4)), tr=25.0)
    code, err = run_error(capsys, "t2", str(tmp_path / "dess.npz"), "--out", str(out),
                          "--sequence", "qdess")
    assert code == 2 and "qDESS needs te, flip_angle, gl_area, tg" in err
    assert "give --te, --flip-angle, --gl-area, --tg" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_failure_keeps_earlier_outputs_and_debug_raises(multi_echo_series, tmp_path, capsys,
                                                        monkeypatch):
    folder, *_ = multi_echo_series
    out = tmp_path / "out"
    assert main(["quant", "t2", str(folder), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("mskjax.cli._quant._figure", broken)
    code, err = run_error(capsys, "t2", str(folder), "--out", str(out), "--method",
                          "log_linear")
    assert code == 1 and "mskjax quant t2: RuntimeError: disk on fire" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial or stale mix
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["quant", "t2", str(folder), "--out", str(out), "--debug"])
    assert sorted(p.name for p in out.iterdir()) == outputs("t2")
    with pytest.raises(SystemExit) as info:
        main(["quant", "t2", str(folder)])  # --out is required: argparse's usage error
    assert info.value.code == 2
