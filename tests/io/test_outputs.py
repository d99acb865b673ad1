"""The output rule of every writer of a folder, and I/O errors that name the real problem.

A non-empty output folder is refused unless ``overwrite``; a set is built beside its target and
renamed when complete, so a failure (or Ctrl-C) leaves nothing partial and a previous set
intact; the loader reads only what a set's manifest lists.
"""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from mskjax import io
from mskjax.cli import main
from mskjax.io import _atomic, _cls_set, _fastmri, _kspace_set, _seg_set
from mskjax.io._loader import fastmri_batches, fastmri_slices
from mskjax.sim import knee_section

SUBJECTS = ["a", "a", "b", "b", "c", "c"]


@pytest.fixture
def images_npz(tmp_path):
    base = np.asarray(knee_section((16, 16)))
    images = np.stack([base * (1 + 0.1 * i) for i in range(len(SUBJECTS))]).astype(np.float32)
    path = tmp_path / "images.npz"
    np.savez(path, images=images, subject=np.array(SUBJECTS))
    return path


def _make(images, out, **kwargs):
    kwargs = {"num_coils": 2, "recon_size": (16, 16), "progress": False, **kwargs}
    return io.make_kspace_set(images, out, **kwargs)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------- refusing a used folder

def test_kspace_set_refuses_a_folder_with_a_stale_file(images_npz, tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "stale.h5").write_bytes(b"old")
    with pytest.raises(ValueError, match=r"make_kspace_set: output folder .*set is not an "
                                         r"empty folder.*overwrite=True"):
        _make(images_npz, out)
    assert sorted(p.name for p in out.iterdir()) == ["stale.h5"]
    argv = ["data", "make-kspace-set", "--images", str(images_npz), "--out", str(out),
            "--coils", "2", "--recon-size", "16", "16", "--no-progress"]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "stale.h5").exists() and (out / "manifest.json").is_file()
    assert _hidden(tmp_path) == []


def test_a_file_at_out_is_refused_even_with_overwrite(images_npz, tmp_path):
    out = tmp_path / "set"
    out.write_text("not a folder")
    with pytest.raises(ValueError, match="exists and is a file"):
        _make(images_npz, out, overwrite=True)
    assert out.read_text() == "not a folder"


def test_an_empty_folder_is_used(images_npz, tmp_path):
    (tmp_path / "set").mkdir()
    manifest = _make(images_npz, tmp_path / "set", split=None)
    assert sorted(manifest["files"].values()) == ["a.h5", "b.h5", "c.h5"]


def test_seg_and_cls_sets_refuse_a_used_folder_before_simulating(tmp_path, monkeypatch):
    out = tmp_path / "used"
    out.mkdir()
    (out / "x").write_text("x")

    def boom(*args, **kwargs):
        raise AssertionError("simulated before checking the output folder")

    monkeypatch.setattr("mskjax.sim.segmentation_example", boom)
    monkeypatch.setattr("mskjax.io._cls_sim._detection", boom)
    with pytest.raises(ValueError, match="make_segmentation_set: output folder .* not an empty"):
        io.make_segmentation_set(out, train_subjects=1, test_subjects=0, shape=(16, 16, 16),
                                 progress=False)
    with pytest.raises(ValueError, match="make_classification_set: output folder .* not an "):
        io.make_classification_set(out, source="lesion", train_subjects=1, test_subjects=1,
                                   progress=False)
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        io.make_classification_set(out, source="lesion", overwrite="yes", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["x"]


# ----------------------------------------------------------------- no partial sets

@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_kspace_set_failure_leaves_nothing_and_keeps_the_previous_set(images_npz, tmp_path,
                                                                      monkeypatch, error):
    out = tmp_path / "set"
    _make(images_npz, out)
    before = _snapshot(out)
    calls = []
    write = _kspace_set.write_fastmri

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error("disk full")
        return write(*args, **kwargs)

    monkeypatch.setattr(_kspace_set, "write_fastmri", failing)
    with pytest.raises(error):
        _make(images_npz, out, overwrite=True, snr_db=10.0)
    assert _snapshot(out) == before
    calls.clear()
    with pytest.raises(error):
        _make(images_npz, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert _hidden(tmp_path) == []


def test_kspace_set_overwrite_replaces_the_whole_folder(images_npz, tmp_path):
    out = tmp_path / "set"
    _make(images_npz, out)
    (out / "train" / "extra.h5").write_bytes(b"old")
    _make(images_npz, out, split=None, overwrite=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "a.h5", "b.h5", "c.h5", "manifest.json"]


def test_classification_set_failure_keeps_the_previous_set(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    splits = {"train": {"image": rng.random((2, 8, 8)).astype(np.float32),
                        "label": np.array([0, 1], np.int32), "subject": np.array([0, 1])},
              "test": {"image": rng.random((1, 8, 8)).astype(np.float32),
                       "label": np.array([1], np.int32), "subject": np.array([2])}}
    out = tmp_path / "cls"
    io.write_classification_set(out, splits, task="binary", num_classes=2, source="t")
    before = _snapshot(out)
    with pytest.raises(ValueError, match="write_classification_set: output folder .* not an "):
        io.write_classification_set(out, splits, task="binary", num_classes=2, source="t")
    calls = []
    save = np.savez_compressed

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return save(*args, **kwargs)

    monkeypatch.setattr(_cls_set.np, "savez_compressed", failing)
    with pytest.raises(KeyboardInterrupt):
        io.write_classification_set(out, splits, task="binary", num_classes=2, source="u",
                                    overwrite=True)
    assert _snapshot(out) == before and _hidden(tmp_path) == []
    monkeypatch.setattr(_cls_set.np, "savez_compressed", save)
    io.write_classification_set(out, splits, task="binary", num_classes=2, source="u",
                                overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["source"] == "u"
    assert _hidden(tmp_path) == []


def test_segmentation_set_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    write = _seg_set.write_nifti

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return write(*args, **kwargs)

    monkeypatch.setattr(_seg_set, "write_nifti", failing)
    with pytest.raises(OSError, match="disk full"):
        io.make_segmentation_set(tmp_path / "seg", train_subjects=1, test_subjects=0,
                                 shape=(16, 16, 16), realistic=False, progress=False)
    assert sorted(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- the loader and the manifest

def test_loader_reads_only_what_the_manifest_lists(images_npz, tmp_path):
    flat = tmp_path / "flat"
    _make(images_npz, flat, split=None)
    shutil.copy(flat / "a.h5", flat / "stale.h5")
    names = sorted({p.name for p, _ in fastmri_slices(flat)})
    assert names == ["a.h5", "b.h5", "c.h5"]
    assert "stale.h5" not in {n for b in fastmri_batches(flat) for n in b.extra["fname"]}

    split = tmp_path / "split"
    manifest = _make(images_npz, split)
    train = [f for f in manifest["files"].values() if f.startswith("train/")]
    shutil.copy(split / train[0], split / "train" / "stale.h5")
    listed = sorted({str(p.relative_to(split)) for p, _ in fastmri_slices(split / "train")})
    assert listed == sorted(train)

    # a folder without a manifest is read whole, as before
    plain = tmp_path / "plain"
    shutil.copytree(flat, plain)
    (plain / "manifest.json").unlink()
    assert "stale.h5" in {p.name for p, _ in fastmri_slices(plain)}


def test_loader_refuses_a_set_with_a_listed_file_missing(images_npz, tmp_path):
    out = tmp_path / "flat"
    _make(images_npz, out, split=None)
    (out / "b.h5").unlink()
    with pytest.raises(ValueError, match=r"fastmri_batches: .*manifest.json lists .*b\.h5.* "
                                         "missing"):
        fastmri_slices(out)


# ----------------------------------------------------------------- I/O errors that say why

def test_unreadable_fastmri_file_says_permission_denied(images_npz, tmp_path, monkeypatch):
    out = tmp_path / "flat"
    _make(images_npz, out, split=None)
    path = out / "a.h5"

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(_fastmri, "open", denied, raising=False)
    with pytest.raises(PermissionError, match=r"read_fastmri: .*a\.h5: permission denied") as err:
        io.read_fastmri(path)
    assert "HDF5" not in str(err.value)
    with pytest.raises(PermissionError, match="permission denied"):
        fastmri_slices(out)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="chmod does not deny the superuser")
def test_unreadable_fastmri_file_on_disk(images_npz, tmp_path):
    out = tmp_path / "flat"
    _make(images_npz, out, split=None)
    path = out / "a.h5"
    path.chmod(0)
    try:
        with pytest.raises(PermissionError, match="permission denied"):
            io.read_fastmri(path)
    finally:
        path.chmod(0o644)


def test_write_into_a_read_only_folder_names_the_target(tmp_path, monkeypatch):
    real_open = os.open

    def denied(path, *args, **kwargs):
        if pathlib.Path(path).name.startswith("."):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(_atomic.os, "open", denied)
    target = tmp_path / "out.h5"
    with pytest.raises(PermissionError) as err:
        io.write_fastmri(target, np.ones((1, 2, 8, 8), np.complex64))
    message = str(err.value)
    assert message.startswith("mskjax.io.write_fastmri: cannot write ")
    assert str(target) in message and ".tmp" not in message
    assert list(tmp_path.iterdir()) == []


def test_set_into_a_read_only_folder_names_the_target(images_npz, tmp_path, monkeypatch):
    real_mkdir = pathlib.Path.mkdir

    def denied(self, *args, **kwargs):
        if self.name.startswith(".set."):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", denied)
    with pytest.raises(PermissionError) as err:
        _make(images_npz, tmp_path / "set")
    message = str(err.value)
    assert message.startswith("mskjax.io.make_kspace_set: cannot write the output folder ")
    assert str(tmp_path / "set") in message and ".tmp" not in message


def test_segmentation_reader_reads_only_what_the_manifest_lists(tmp_path):
    folder = tmp_path / "seg"
    (folder / "train").mkdir(parents=True)
    image = np.ones((4, 4, 4), np.float32)
    labels = np.zeros((4, 4, 4), np.uint8)
    for name in ("subject-000", "stale"):
        io.write_nifti(folder / "train" / f"{name}_image.nii.gz", image)
        io.write_nifti(folder / "train" / f"{name}_labels.nii.gz", labels)
    (folder / "manifest.json").write_text(json.dumps(
        {"kind": "mskjax segmentation set", "splits": {"train": ["subject-000"], "test": []}}))
    assert [name for name, _, _ in io.segmentation_pairs(folder, "train")] == ["subject-000"]
    assert io.read_segmentation_set(folder)["names"] == ["subject-000"]
    (folder / "manifest.json").unlink()
    assert [name for name, _, _ in io.segmentation_pairs(folder, "train")] == [
        "stale", "subject-000"]


def test_train_and_eval_recon_read_only_the_files_the_manifest_lists(tmp_path):
    import shutil

    from mskjax.cli._evaluate import data_files

    out = tmp_path / "set"
    images = np.random.default_rng(0).random((4, 16, 12)).astype(np.float32)
    np.savez(tmp_path / "images.npz", images=images, subject=np.arange(4))
    io.make_kspace_set(tmp_path / "images.npz", out, num_coils=2, val_fraction=0.5, seed=0,
                       recon_size=(16, 12), progress=False)
    listed = data_files(out, "train", "mskjax train recon")
    shutil.copy(listed[0], out / "train" / "stale.h5")
    assert data_files(out, "train", "mskjax train recon") == listed
