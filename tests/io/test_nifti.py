import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from mskjax.io._nifti import Volume, read_labels, read_nifti, write_nifti

VOXEL = (0.3125, 0.3125, 1.5)


def oblique_affine(voxel_size=VOXEL):
    """A rotation about an oblique axis, anisotropic voxels and a translation."""
    a, b = np.deg2rad(20.0), np.deg2rad(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(voxel_size)
    affine[:3, 3] = (-80.25, 41.5, 12.125)
    return affine


@pytest.fixture
def image(rng):
    return rng.standard_normal((12, 10, 6)).astype(np.float32) * 100


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_float_image_round_trip_keeps_values_affine_and_voxel_size(tmp_path, image, suffix):
    path = tmp_path / f"image{suffix}"
    affine = oblique_affine()
    assert write_nifti(path, image, affine=affine) == path
    vol = read_nifti(path)
    assert isinstance(vol, Volume) and vol.path == path
    assert vol.array.dtype == np.float32 and vol.array.shape == (12, 10, 6)
    np.testing.assert_array_equal(vol.array, image)
    assert vol.affine.dtype == np.float64 and vol.affine.shape == (4, 4)
    np.testing.assert_allclose(vol.affine, affine, rtol=0, atol=1e-5)  # the sform is float32
    np.testing.assert_allclose(vol.voxel_size, VOXEL, rtol=1e-6)
    assert len(vol.voxel_size) == 3
    # the voxel sizes agree with nibabel's own reading of the header
    np.testing.assert_allclose(vol.voxel_size, nib.load(path).header.get_zooms(), rtol=1e-6)
    if suffix == ".nii.gz":
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip magic
    else:
        assert path.read_bytes()[344:348] == b"n+1\x00"  # single-file NIfTI-1 magic


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_labels_keep_integer_dtype_and_values(tmp_path, rng, dtype, suffix):
    labels = rng.integers(0, 6, size=(9, 8, 7)).astype(dtype)
    labels[0, 0, 0] = 5
    path = tmp_path / f"labels{suffix}"
    write_nifti(path, labels, affine=oblique_affine())
    for vol in (read_nifti(path), read_labels(path, names={i: f"t{i}" for i in range(1, 6)})):
        assert vol.array.dtype == dtype
        np.testing.assert_array_equal(vol.array, labels)
        np.testing.assert_allclose(vol.affine, oblique_affine(), atol=1e-5)


def test_four_dimensional_series_round_trip(tmp_path, rng):
    series = rng.random((5, 4, 3, 7)).astype(np.float32)
    path = tmp_path / "t2_echoes.nii.gz"
    write_nifti(path, series, voxel_size=VOXEL)
    vol = read_nifti(path)
    assert vol.array.shape == (5, 4, 3, 7)
    np.testing.assert_array_equal(vol.array, series)
    assert vol.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_array_equal(vol.affine, np.diag([*VOXEL, 1.0]))


def test_default_affine_and_voxel_size(tmp_path, image):
    write_nifti(tmp_path / "a.nii", image)
    vol = read_nifti(tmp_path / "a.nii")
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    assert vol.voxel_size == (1.0, 1.0, 1.0)
    write_nifti(tmp_path / "b.nii", image, affine=oblique_affine())
    assert read_nifti(tmp_path / "b.nii").voxel_size == pytest.approx(VOXEL)
    write_nifti(tmp_path / "c.nii", image, affine=oblique_affine(), voxel_size=VOXEL)
    with pytest.raises(ValueError, match=r"write_nifti: voxel_size .* disagrees"):
        write_nifti(tmp_path / "d.nii", image, affine=oblique_affine(), voxel_size=(1, 1, 1))
    assert not (tmp_path / "d.nii").exists()


def test_jax_and_bool_arrays(tmp_path):
    import jax.numpy as jnp

    write_nifti(tmp_path / "j.nii", jnp.arange(24, dtype=jnp.float32).reshape(2, 3, 4))
    np.testing.assert_array_equal(read_nifti(tmp_path / "j.nii").array,
                                  np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    write_nifti(tmp_path / "m.nii.gz", mask)
    got = read_labels(tmp_path / "m.nii.gz").array
    assert got.dtype == np.uint8 and got.sum() == 1 and got[1, 1, 1] == 1


def test_scaled_data_are_read_as_float32_with_scaling(tmp_path, image):
    path = tmp_path / "scaled.nii"
    img = nib.Nifti1Image(image, np.eye(4))
    img.set_data_dtype(np.int16)  # nibabel stores int16 with a slope and an intercept
    img.to_filename(path)
    slope, inter = nib.load(path).dataobj.slope, nib.load(path).dataobj.inter
    assert slope != 1.0
    vol = read_nifti(path)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, image, atol=slope)  # within the quantisation step
    raw = np.asanyarray(nib.load(path).dataobj.get_unscaled())
    np.testing.assert_allclose(vol.array, raw * slope + inter, rtol=1e-6, atol=1e-6 * slope)
    assert read_nifti(path, dtype=np.float64).array.dtype == np.float64
    with pytest.raises(ValueError, match=r"read_nifti: .*scaled\.nii: cannot read as int16: .*"
                                         r"not whole numbers"):
        read_nifti(path, dtype=np.int16)


def test_labels_stored_as_float(tmp_path):
    labels = np.zeros((4, 4, 4), np.float32)
    labels[1, :, :] = 3
    labels[2, :, :] = 300
    write_nifti(tmp_path / "f.nii", labels)
    got = read_labels(tmp_path / "f.nii").array
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, labels.astype(np.uint16))
    labels[0, 0, 0] = 1.5
    write_nifti(tmp_path / "frac.nii", labels)
    with pytest.raises(ValueError, match=r"read_labels: .*frac\.nii: .* not whole numbers"):
        read_labels(tmp_path / "frac.nii")
    labels[0, 0, 0] = np.nan
    write_nifti(tmp_path / "nan.nii", labels)
    with pytest.raises(ValueError, match=r"nan\.nii: .* not whole numbers"):
        read_labels(tmp_path / "nan.nii")


def test_read_nifti_dtype_keyword(tmp_path):
    labels = np.array([[[0, 1], [2, 300]]], np.int16)
    write_nifti(tmp_path / "l.nii", labels)
    as_float = read_nifti(tmp_path / "l.nii", dtype=np.float32).array
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, labels)
    with pytest.raises(ValueError, match=r"cannot read as uint8: values span \[0, 300\]"):
        read_nifti(tmp_path / "l.nii", dtype=np.uint8)


def test_read_labels_checks_names(tmp_path):
    labels = np.zeros((3, 3, 3), np.uint8)
    labels[0] = 1
    labels[1] = 4
    path = tmp_path / "seg.nii.gz"
    write_nifti(path, labels)
    vol = read_labels(path, names={1: "femoral cartilage", 4: "meniscus"})  # 0 is background
    np.testing.assert_array_equal(vol.array, labels)
    with pytest.raises(ValueError, match=r"read_labels: .*seg\.nii\.gz: label values \[4\] are "
                                         r"not among the known names"):
        read_labels(path, names={1: "femoral cartilage", 2: "tibial cartilage"})
    with pytest.raises(TypeError, match="names must be a dict"):
        read_labels(path, names=["femoral cartilage"])


def test_spatial_units_are_converted_to_mm(tmp_path, image):
    img = nib.Nifti1Image(image, np.diag([312.5, 312.5, 1500.0, 1.0]))
    img.header.set_xyzt_units("micron")
    img.to_filename(tmp_path / "um.nii")
    vol = read_nifti(tmp_path / "um.nii")
    assert vol.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_allclose(vol.affine, np.diag([*VOXEL, 1.0]))


# --- bad inputs ------------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nothere.nii.gz"
    with pytest.raises(FileNotFoundError, match=r"read_nifti: .*nothere\.nii\.gz: no such file"):
        read_nifti(missing)
    with pytest.raises(FileNotFoundError, match=r"read_labels: .*nothere\.nii\.gz"):
        read_labels(missing)


def test_not_a_nifti_file_is_named(tmp_path):
    for name, content in [("notes.nii", b"plain text, not an image\n" * 20),
                          ("notes.nii.gz", b"plain text"), ("notes.txt", b"x")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"read_nifti: .*{name.replace('.', '[.]')}: "
                                             "not a NIfTI file"):
            read_nifti(tmp_path / name)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_file_is_named(tmp_path, rng, suffix):
    path = tmp_path / f"image{suffix}"
    write_nifti(path, rng.standard_normal((20, 20, 20)).astype(np.float32))
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(ValueError, match=rf"read_nifti: .*cut{suffix.replace('.', '[.]')}: "
                                         r"the voxel data are truncated or corrupt"):
        read_nifti(cut)


@pytest.mark.parametrize("where", ["crc", "middle"])
def test_corrupt_gzip_is_named(tmp_path, rng, where):
    path = tmp_path / "image.nii.gz"
    write_nifti(path, rng.standard_normal((20, 20, 20)).astype(np.float32))
    data = bytearray(path.read_bytes())
    if where == "crc":
        data[-8:-4] = bytes(b ^ 0xFF for b in data[-8:-4])  # the stored CRC-32
    else:
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(64)  # still decodes, to different voxels
    bad = tmp_path / f"{where}.nii.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(bytes(data))
    with pytest.raises(ValueError, match=rf"{where}\.nii\.gz: the voxel data are truncated or "
                                         "corrupt"):
        read_nifti(bad)


def test_non_finite_affine_is_named(tmp_path, image):
    path = tmp_path / "nan_affine.nii"
    write_nifti(path, image, affine=oblique_affine())
    data = bytearray(path.read_bytes())
    assert struct.unpack("<h", data[254:256])[0] > 0  # sform_code: the sform is the affine
    data[280:284] = struct.pack("<f", np.nan)  # srow_x[0]
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"read_nifti: .*nan_affine\.nii: the header's affine"):
        read_nifti(path)


def test_write_refuses_complex_and_bad_arguments(tmp_path, image):
    with pytest.raises(TypeError, match=r"write_nifti: .* must be real, got complex64.*magnitude"):
        write_nifti(tmp_path / "c.nii", image.astype(np.complex64))
    with pytest.raises(ValueError, match=r"\.nii or \.nii\.gz"):
        write_nifti(tmp_path / "image.npy", image)
    with pytest.raises(ValueError, match=r"2- to 4-dimensional, got shape \(12,\)"):
        write_nifti(tmp_path / "v.nii", image[:, 0, 0])
    with pytest.raises(ValueError, match="affine must be a finite 4x4"):
        write_nifti(tmp_path / "a.nii", image, affine=np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="voxel_size must be 3 positive"):
        write_nifti(tmp_path / "v.nii", image, voxel_size=(1.0, 1.0))
    with pytest.raises(TypeError, match="float16 cannot be stored"):
        write_nifti(tmp_path / "h.nii", image.astype(np.float16))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_nifti(tmp_path / "no" / "dir.nii", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, image, monkeypatch,
                                                                    suffix):
    path = tmp_path / f"out{suffix}"
    write_nifti(path, image)
    before = path.read_bytes()

    def broken(self, filename, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(nib.Nifti1Image, "to_filename", broken)
    with pytest.raises(OSError, match="No space left"):
        write_nifti(path, image * 2)
    with pytest.raises(OSError, match="No space left"):
        write_nifti(tmp_path / f"new{suffix}", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert path.read_bytes() == before
    monkeypatch.undo()
    write_nifti(path, image * 2)  # a successful write does replace it
    np.testing.assert_array_equal(read_nifti(path).array, image * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_singular_affine_is_an_error(tmp_path, image):
    path = tmp_path / "flat.nii"
    write_nifti(path, image, affine=oblique_affine())
    data = bytearray(path.read_bytes())
    assert struct.unpack("<h", data[254:256])[0] > 0  # the sform is the affine
    # make the third column (the slice axis) parallel to the first: srow_*[2] = srow_*[0]
    for row in range(3):
        start = 280 + 16 * row
        data[start + 8:start + 12] = data[start:start + 4]
    path.write_bytes(bytes(data))
    assert abs(np.linalg.det(nib.load(path).affine[:3, :3])) < 1e-9
    with pytest.raises(ValueError, match=r"read_nifti: .*flat\.nii: the header's affine "
                                         r"\(sform/qform\) is singular"):
        read_nifti(path)
    with pytest.raises(ValueError, match=r"read_labels: .*flat\.nii: the header's affine"):
        read_labels(path)
    singular = oblique_affine()
    singular[:3, 2] = 0.0  # a zero slice thickness
    with pytest.raises(ValueError, match=r"write_nifti: affine must be invertible"):
        write_nifti(tmp_path / "zero.nii", image, affine=singular)
    assert not (tmp_path / "zero.nii").exists()
    # a thin but genuine voxel is not singular
    thin = oblique_affine(voxel_size=(0.3125, 0.3125, 1e-4))
    write_nifti(tmp_path / "thin.nii", image, affine=thin)
    np.testing.assert_allclose(read_nifti(tmp_path / "thin.nii").affine, thin, atol=1e-5)
