import json
import re
import sys

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from mskjax.io._dicom import (  # noqa: E402
    DicomImage,
    DicomSeries,
    list_dicom_series,
    read_dicom,
    read_dicom_series,
)

PYDICOM3 = int(pydicom.__version__.split(".")[0]) >= 3


def save(ds, path, *, implicit=False):
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    if PYDICOM3:
        ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    else:
        ds.is_implicit_VR, ds.is_little_endian = implicit, True
        ds.save_as(path, write_like_original=False)


def ds_number(x):
    return f"{x:.10g}"[:16]


def make_slice(path, pixels, *, series_uid, position=None, orientation=None, instance=None,
               echo_time=None, slope=None, intercept=None, description="synthetic T2 map",
               spacing=(0.5, 0.4)):
    """Write a single-frame MR DICOM (16-bit signed) from scratch."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    ds.SeriesNumber = 3
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelSpacing = [ds_number(s) for s in spacing]
    ds.SliceThickness = "2"
    if position is not None:
        ds.ImagePositionPatient = [ds_number(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [ds_number(v) for v in orientation]
    if instance is not None:
        ds.InstanceNumber = instance
    if echo_time is not None:
        ds.EchoTime = ds_number(echo_time)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = ds_number(slope), ds_number(intercept)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    save(ds, path)
    return ds


def oblique_frame():
    """Orthonormal row, column and normal directions of an oblique slice."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    frame = rz @ rx
    return frame[:, 0], frame[:, 1], frame[:, 2]


def slice_pixels(k, shape=(6, 5)):
    """A slice whose values encode its index ``k``."""
    return (np.arange(np.prod(shape)).reshape(shape) + 100 * k).astype(np.int16)


@pytest.fixture
def oblique_series(tmp_path, rng):
    """Seven slices 1.75 mm apart along an oblique normal, written in a shuffled file order with
    instance numbers unrelated to position, plus a README and a DICOM without pixel data."""
    folder = tmp_path / "series"
    folder.mkdir()
    row, col, normal = oblique_frame()
    origin = np.array([-60.0, 35.5, 12.25])
    uid = generate_uid()
    instances = rng.permutation(7) + 1
    names = rng.permutation(7)
    for k in range(7):
        # an in-plane shift as well: only the projection on the normal orders the slices
        position = origin + 1.75 * k * normal + 0.2 * k * row - 0.1 * k * col
        make_slice(folder / f"IM{names[k]:04d}", slice_pixels(k), series_uid=uid,
                   position=position, orientation=(*row, *col), instance=int(instances[k]),
                   echo_time=10.0 + k, slope=0.5 + 0.25 * k, intercept=-3.0)
    (folder / "README").write_text("Exported slices of a T2 map.\n")
    nopixels = make_slice(folder / "DICOMDIR", slice_pixels(0), series_uid=generate_uid())
    del nopixels.PixelData
    save(nopixels, folder / "DICOMDIR")
    return folder, uid, origin, normal, names


# --- real files ------------------------------------------------------------------------------


def test_shoulder_explicit_and_implicit_vr_read_alike(shared_data, tmp_path):
    folder = shared_data / "shoulder_mr_dicom"
    original = read_dicom(folder / "MR2_UNCR.dcm")
    assert isinstance(original, DicomImage)
    assert original.pixels.shape == (1024, 1024) and original.pixels.dtype == np.float32
    assert original.pixel_spacing == pytest.approx((0.195313, 0.195313))
    assert (original.echo_time, original.repetition_time, original.flip_angle) == (27, 350, 90)
    assert original.slice_thickness == 6.0 and original.instance_number == 1
    assert original.inversion_time is None and original.series_description is None
    assert original.position == pytest.approx((-180.058222, -97.147766, 112.827990))
    assert original.orientation == pytest.approx((0.569486, 0.822001, 0, 0, 0, -1))
    raw = read_dicom(folder / "MR2_UNCR.dcm", rescale=False).pixels
    assert raw.dtype == np.uint16 and raw.max() == 595
    # Philips rescale: slope 3.774114, intercept 0.000061
    np.testing.assert_allclose(original.pixels, raw * 3.774114 + 0.000061, rtol=1e-6)
    np.testing.assert_array_equal(raw, pydicom.dcmread(folder / "MR2_UNCR.dcm").pixel_array)

    # Both shared files are explicit VR little endian; re-encode one as implicit VR.
    implicit = tmp_path / "MR2_implicit.dcm"
    save(pydicom.dcmread(folder / "MR2_UNCR.dcm"), implicit, implicit=True)
    reread = read_dicom(implicit)
    assert reread.dataset.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    np.testing.assert_array_equal(reread.pixels, original.pixels)
    for name in ("pixel_spacing", "position", "orientation", "echo_time", "repetition_time",
                 "flip_angle", "series_uid", "instance_number"):
        assert getattr(reread, name) == getattr(original, name), name


def test_shoulder_uncompressed_lossy_copy(shared_data):
    folder = shared_data / "shoulder_mr_dicom"
    original = read_dicom(folder / "MR2_UNCR.dcm")
    lossy = read_dicom(folder / "MR2_UNCI.dcm")
    # MR2_UNCI is the decoded lossy (irreversible JPEG 2000, 18:1) copy of MR2_UNCR, not the
    # same pixels in another VR encoding.
    assert "irreversible" in lossy.dataset.DerivationDescription
    assert lossy.pixels.shape == (1024, 1024)
    assert lossy.pixel_spacing == original.pixel_spacing
    assert lossy.series_uid == original.series_uid and lossy.instance_number == 3
    assert not np.array_equal(lossy.pixels, original.pixels)
    err = lossy.pixels - original.pixels
    psnr = 10 * np.log10(original.pixels.max() ** 2 / np.mean(err ** 2))
    assert 35 < psnr < 50
    assert np.corrcoef(lossy.pixels.ravel(), original.pixels.ravel())[0, 1] > 0.995


def test_shoulder_folder_is_one_series_of_two_images(shared_data):
    """Both shoulder files share a SeriesInstanceUID and a position; LICENSE is skipped."""
    series = read_dicom_series(shared_data / "shoulder_mr_dicom")
    assert series.volume.shape == (2, 1024, 1024)
    assert [p.name for p in series.files] == ["MR2_UNCR.dcm", "MR2_UNCI.dcm"]  # instance 1, 3
    assert [p.name for p in series.skipped] == ["LICENSE"]
    assert series.slice_spacing is None and series.slice_positions[0] == series.slice_positions[1]
    np.testing.assert_array_equal(series.volume[0],
                                  read_dicom(series.files[0]).pixels)
    assert "shape=(2, 1024, 1024)" in repr(series)


def knee_files(shared_data):
    folder = shared_data / "knee_sagittal_qdess_t1rho"
    meta = json.loads((folder / "meta.json").read_text())
    slices = np.load(folder / "knee_qdess_t1rho_8slices.npz")
    return folder, meta, slices


def test_knee_mid_slices_match_meta_and_npz(shared_data):
    folder, meta, slices = knee_files(shared_data)
    dess, t1rho = slices["dess"], slices["cubequant_t1rho"]
    assert dess.shape == (2, 8, 512, 512) and t1rho.shape == (4, 8, 512, 512)  # (echo, slice, ..)
    mid = dess.shape[1] // 2  # slice index 4 of 8
    files = sorted((folder / "dicom_midslice").glob("*.dcm"))
    assert len(files) == 6
    for path in files:
        group, number = re.match(r"(DESS|cubeQuant)_(\d\d)_", path.name).groups()
        info = meta[f"{group}/{number}"]
        echo = int(number) - 1
        stack = dess if group == "DESS" else t1rho
        times = slices["dess_te_ms" if group == "DESS" else "cubequant_tsl_ms"]
        image = read_dicom(path)
        assert image.pixel_spacing == tuple(info["pixel_spacing_mm"]) == (0.3125, 0.3125)
        assert image.echo_time == pytest.approx(info["echo_time_or_tsl_ms"])
        assert image.echo_time == pytest.approx(times[echo])
        assert image.repetition_time == pytest.approx(info["repetition_time_ms"])
        assert image.flip_angle == pytest.approx(info["flip_angle"])
        assert image.slice_thickness == pytest.approx(info["slice_thickness_mm"])
        assert image.series_description == info["series_description"]
        assert image.position[0] == pytest.approx(info["slice_positions_x_mm"][mid])
        assert image.orientation == pytest.approx((0, 1, 0, 0, 0, -1))  # sagittal
        raw = read_dicom(path, rescale=False).pixels
        assert raw.dtype == np.int16
        np.testing.assert_array_equal(raw, stack[echo, mid])
        np.testing.assert_array_equal(image.pixels, stack[echo, mid].astype(np.float32))
        # and it is not a neighbouring slice or another echo
        assert not np.array_equal(raw, stack[echo, mid - 1])
        assert not np.array_equal(raw, stack[(echo + 1) % len(stack), mid])


def test_knee_folder_holds_six_series(shared_data):
    folder = shared_data / "knee_sagittal_qdess_t1rho" / "dicom_midslice"
    with pytest.raises(ValueError, match="read_dicom_series: .* holds 6 series") as info:
        read_dicom_series(folder)
    message = str(info.value)
    assert message.count("'Sag DESS 3132 30 HiRes thk1p5 ARCx2'") == 2
    assert message.count("'cubequant T1rho'") == 4
    assert message.count("(1 file,") == 6

    summaries = list_dicom_series(folder)
    assert len(summaries) == 6
    assert [s.series_number for s in summaries] == [5, 5, 7, 7, 7, 7]
    assert sorted(t for s in summaries for t in s.echo_times) == [1, 7.48, 10, 30, 42.52, 60]
    assert all(s.shape == (512, 512) and len(s.files) == 1 for s in summaries)
    for s in summaries:
        assert s.series_uid in message

    _, _, slices = knee_files(shared_data)
    tsl30 = next(s for s in summaries if s.echo_times == (30.0,))
    series = read_dicom_series(folder, series_uid=tsl30.series_uid)
    assert isinstance(series, DicomSeries)
    assert series.volume.shape == (1, 512, 512) and series.volume.dtype == np.float32
    np.testing.assert_array_equal(series.volume[0], slices["cubequant_t1rho"][2, 4])
    assert series.echo_times == (30.0,) and series.slice_spacing is None
    assert series.pixel_spacing == (0.3125, 0.3125)
    assert series.description == "cubequant T1rho"
    assert series.files == tsl30.files and series.skipped == ()
    # sagittal: the normal is (1, 0, 0) x ... = -x, so the position is minus the x coordinate
    assert series.slice_positions == pytest.approx([46.1652])


# --- synthetic series ------------------------------------------------------------------------


def test_series_sorted_along_oblique_normal(oblique_series):
    folder, uid, origin, normal, names = oblique_series
    series = read_dicom_series(folder)
    assert series.series_uid == uid and series.description == "synthetic T2 map"
    assert series.volume.shape == (7, 6, 5) and series.volume.dtype == np.float32
    for k in range(7):  # each slice rescaled with its own slope
        np.testing.assert_allclose(series.volume[k], slice_pixels(k) * (0.5 + 0.25 * k) - 3.0,
                                   rtol=1e-6)
    assert [p.name for p in series.files] == [f"IM{names[k]:04d}" for k in range(7)]
    np.testing.assert_allclose(series.slice_positions, np.dot(origin, normal) + 1.75 * np.arange(7),
                               atol=1e-5)
    assert series.slice_spacing == pytest.approx(1.75, abs=1e-5)
    assert series.echo_times == tuple(10.0 + k for k in range(7))
    assert series.pixel_spacing == (0.5, 0.4)
    assert series.orientation == pytest.approx(np.concatenate(oblique_frame()[:2]), abs=1e-9)
    assert sorted(p.name for p in series.skipped) == ["DICOMDIR", "README"]
    summaries = list_dicom_series(folder)
    assert len(summaries) == 1 and len(summaries[0].files) == 7


def test_series_without_geometry_sorted_by_instance_number(tmp_path):
    uid = generate_uid()
    for k, instance in enumerate([3, 1, 2]):
        make_slice(tmp_path / f"s{k}.dcm", slice_pixels(instance), series_uid=uid,
                   instance=instance)
    series = read_dicom_series(tmp_path)
    assert [p.name for p in series.files] == ["s1.dcm", "s2.dcm", "s0.dcm"]
    np.testing.assert_array_equal(series.volume, np.stack([slice_pixels(k) for k in (1, 2, 3)]))
    assert series.slice_positions is None and series.slice_spacing is None
    assert series.orientation is None and series.echo_times == (None, None, None)


def test_multi_echo_series_keeps_echoes_per_position(tmp_path):
    """Two echoes per slice location in one series: positions repeat, spacing ignores repeats."""
    uid = generate_uid()
    row, col, normal = oblique_frame()
    instance = 0
    for k in (2, 0, 1):
        for echo, te in enumerate((8.0, 40.0)):
            instance += 1
            make_slice(tmp_path / f"e{echo}_z{k}.dcm", slice_pixels(2 * k + echo),
                       series_uid=uid, position=3.0 * k * normal, orientation=(*row, *col),
                       instance=10 * k + echo, echo_time=te)
    series = read_dicom_series(tmp_path)
    assert series.echo_times == (8.0, 40.0) * 3
    np.testing.assert_allclose(series.slice_positions, [0, 0, 3, 3, 6, 6], atol=1e-5)
    assert series.slice_spacing == pytest.approx(3.0, abs=1e-5)
    np.testing.assert_array_equal(series.volume, np.stack([slice_pixels(i) for i in range(6)]))


def test_several_series_need_a_series_uid(oblique_series):
    folder, uid, *_ = oblique_series
    other = generate_uid()
    make_slice(folder / "other.dcm", slice_pixels(9), series_uid=other, description="localiser")
    with pytest.raises(ValueError, match=r"holds 2 series; pick one with series_uid") as info:
        read_dicom_series(folder)
    assert uid in str(info.value) and "'localiser'  (1 file)" in str(info.value)
    assert "(7 files, TE 10, 11, 12, 13, 14, 15, 16 ms)" in str(info.value)
    assert read_dicom_series(folder, series_uid=uid).volume.shape == (7, 6, 5)
    picked = read_dicom_series(folder, series_uid=other)
    np.testing.assert_array_equal(picked.volume[0], slice_pixels(9))
    with pytest.raises(ValueError, match=r"no series with SeriesInstanceUID '1\.2\.3'"):
        read_dicom_series(folder, series_uid="1.2.3")


def test_inconsistent_shapes_name_the_file(oblique_series):
    folder, uid, *_ = oblique_series
    row, col, normal = oblique_frame()
    make_slice(folder / "odd_one.dcm", np.zeros((4, 4), np.int16), series_uid=uid,
               position=20 * normal, orientation=(*row, *col), instance=99)
    with pytest.raises(ValueError, match=r"read_dicom_series: .*odd_one\.dcm: image shape "
                                         r"\(4, 4\) differs from \(6, 5\)"):
        read_dicom_series(folder)


def test_inconsistent_orientation_and_spacing_name_the_file(tmp_path):
    uid = generate_uid()
    row, col, normal = oblique_frame()
    make_slice(tmp_path / "a.dcm", slice_pixels(0), series_uid=uid, position=(0, 0, 0),
               orientation=(*row, *col), instance=1)
    make_slice(tmp_path / "b.dcm", slice_pixels(1), series_uid=uid, position=(0, 0, 0),
               orientation=(1, 0, 0, 0, 1, 0), instance=2)
    with pytest.raises(ValueError, match=r"b\.dcm: orientation .* differs"):
        read_dicom_series(tmp_path)
    make_slice(tmp_path / "b.dcm", slice_pixels(1), series_uid=uid, position=normal,
               orientation=(*row, *col), instance=2, spacing=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"b\.dcm: pixel spacing \(0\.5, 0\.5\) differs"):
        read_dicom_series(tmp_path)


def test_missing_optional_tags_are_none(tmp_path):
    make_slice(tmp_path / "bare.dcm", slice_pixels(0), series_uid=generate_uid())
    image = read_dicom(tmp_path / "bare.dcm")
    assert image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels, slice_pixels(0))
    for name in ("position", "orientation", "echo_time", "repetition_time", "flip_angle",
                 "inversion_time", "instance_number"):
        assert getattr(image, name) is None, name
    assert read_dicom(tmp_path / "bare.dcm", rescale=False).pixels.dtype == np.int16


# --- bad inputs ------------------------------------------------------------------------------


def test_read_dicom_bad_files_are_named(tmp_path, shared_data):
    with pytest.raises(FileNotFoundError, match=r"read_dicom: .*nothere\.dcm: no such file"):
        read_dicom(tmp_path / "nothere.dcm")
    (tmp_path / "README").write_text("not an image\n")
    with pytest.raises(ValueError, match=r"read_dicom: .*README: not a DICOM file"):
        read_dicom(tmp_path / "README")
    with pytest.raises(IsADirectoryError, match="read_dicom_series"):
        read_dicom(tmp_path)

    ds = pydicom.dcmread(shared_data / "shoulder_mr_dicom" / "MR2_UNCR.dcm")
    del ds.PixelData
    save(ds, tmp_path / "header_only.dcm")
    with pytest.raises(ValueError, match=r"header_only\.dcm: the DICOM file holds no pixel data"):
        read_dicom(tmp_path / "header_only.dcm")

    data = (shared_data / "shoulder_mr_dicom" / "MR2_UNCR.dcm").read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"read_dicom: .*truncated\.dcm: cannot decode the pixel "
                                         "data; the file may be truncated"):
        read_dicom(tmp_path / "truncated.dcm")


def test_read_dicom_series_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"read_dicom_series: .*nowhere: no such folder"):
        read_dicom_series(tmp_path / "nowhere")
    (tmp_path / "LICENSE").write_text("MIT\n")
    with pytest.raises(ValueError, match=r"no DICOM images found \(1 files skipped"):
        read_dicom_series(tmp_path)
    with pytest.raises(NotADirectoryError, match="read_dicom"):
        read_dicom_series(tmp_path / "LICENSE")
    assert list_dicom_series(tmp_path) == ()


def test_truncated_slice_in_series_is_named(oblique_series):
    folder, *_ = oblique_series
    victim = sorted(folder.glob("IM*"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[:-20])
    with pytest.raises(ValueError, match=rf"read_dicom_series: .*{victim.name}: cannot decode"):
        read_dicom_series(folder)


def test_missing_pydicom_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pydicom", None)
    for call in (lambda: read_dicom(tmp_path / "x.dcm"), lambda: read_dicom_series(tmp_path),
                 lambda: list_dicom_series(tmp_path)):
        with pytest.raises(ImportError, match=r"needs pydicom.*pip install mskjax\[dicom\]"):
            call()


# --- GE qDESS header -------------------------------------------------------------------------


def add_ge_qdess_tags(ds, *, gl_area, tg, block=0x10):
    """GE's private acquisition block, at private block ``block`` of group 0019."""
    ds.add_new((0x0019, block), "LO", "GEMS_ACQU_01")
    ds.add_new((0x0019, (block << 8) | 0xB6), "DS", ds_number(gl_area))
    ds.add_new((0x0019, (block << 8) | 0xB7), "DS", ds_number(tg))
    ds.RepetitionTime, ds.FlipAngle = "25", "30"


def test_real_qdess_file_and_folder(shared_data, tmp_path):
    from mskjax.io import QDessParameters, read_qdess_parameters

    folder = shared_data / "knee_sagittal_qdess_t1rho" / "dicom_midslice"
    s_plus = folder / "DESS_01_IM-0001-0079-0001.dcm"
    params = read_qdess_parameters(s_plus)
    assert isinstance(params, QDessParameters)
    assert (params.gl_area, params.tg) == (3132.0, 1760.0)
    assert (params.tr, params.te, params.flip_angle) == (25.0, 7.48, 30.0)
    assert params.echo_times == (7.48,) and params.files == (s_plus,)
    # the folder: both DESS echoes (two series) are read; the four T1rho files are not qDESS
    whole = read_qdess_parameters(folder)
    assert whole.echo_times == (7.48, 42.52) and whole.te == 7.48
    assert (whole.gl_area, whole.tg, whole.tr, whole.flip_angle) == (3132.0, 1760.0, 25.0, 30.0)
    assert sorted(p.name for p in whole.files) == ["DESS_01_IM-0001-0079-0001.dcm",
                                                   "DESS_02_IM-0001-0080-0001.dcm"]
    # a GE series of another kind carries the tags as 0
    with pytest.raises(ValueError, match=r"read_qdess_parameters: .*cubeQuant_01.*: not a qDESS "
                                         r"acquisition: the GE private GL area \(0019,10B6\) "
                                         r"is 0"):
        read_qdess_parameters(folder / "cubeQuant_01_IM-0001-0157-0001.dcm")
    only_t1rho = tmp_path / "t1rho"
    only_t1rho.mkdir()
    for path in folder.glob("cubeQuant_*.dcm"):
        (only_t1rho / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=r"no GE qDESS DICOM image in the folder \(4 DICOM images "
                                         r"read\); e.g. .*GL area \(0019,10B6\) is 0"):
        read_qdess_parameters(only_t1rho)


def test_qdess_tags_of_another_vendor_are_missing(shared_data):
    from mskjax.io import read_qdess_parameters

    with pytest.raises(ValueError, match=r"MR2_UNCR.dcm: not a GE qDESS file: no GL area "
                                         r"\(0019,10B6\) in the GE private block 'GEMS_ACQU_01' "
                                         r"\(manufacturer 'Philips'\)"):
        read_qdess_parameters(shared_data / "shoulder_mr_dicom" / "MR2_UNCR.dcm")


def test_qdess_tags_found_by_private_creator_and_checked(tmp_path):
    from mskjax.io import read_qdess_parameters

    uid = generate_uid()
    for echo, te in enumerate((6.0, 34.5)):
        ds = make_slice(tmp_path / f"echo{echo}.dcm", slice_pixels(echo), series_uid=uid,
                        echo_time=te, instance=echo + 1)
        # another vendor's block takes 0019,10xx: GE's sits at 0019,11xx
        ds.add_new((0x0019, 0x0010), "LO", "OTHER_VENDOR")
        ds.add_new((0x0019, 0x10B6), "DS", "999")
        add_ge_qdess_tags(ds, gl_area=2000.5, tg=1500, block=0x11)
        save(ds, tmp_path / f"echo{echo}.dcm")
    (tmp_path / "README").write_text("two echoes\n")
    params = read_qdess_parameters(tmp_path)
    assert (params.gl_area, params.tg, params.echo_times, params.te) == (2000.5, 1500.0,
                                                                         (6.0, 34.5), 6.0)
    ds = pydicom.dcmread(tmp_path / "echo1.dcm")
    ds[0x0019, 0x11B6].value = "2100"
    save(ds, tmp_path / "echo1.dcm")
    with pytest.raises(ValueError, match=r"echo1.dcm: gl_area 2100 differs from 2000.5 of "
                                         r"echo0.dcm; the folder holds more than one qDESS"):
        read_qdess_parameters(tmp_path)
    ds[0x0019, 0x11B6].value = "2000.5"
    del ds.FlipAngle
    save(ds, tmp_path / "echo1.dcm")
    with pytest.raises(ValueError, match=r"echo1.dcm: the DICOM header has no FlipAngle"):
        read_qdess_parameters(tmp_path / "echo1.dcm")
    with pytest.raises(FileNotFoundError, match=r"read_qdess_parameters: .*nothere: no such"):
        read_qdess_parameters(tmp_path / "nothere")
    with pytest.raises(ValueError, match=r"README: not a DICOM file"):
        read_qdess_parameters(tmp_path / "README")
