import functools
import json
import threading

import h5py
import numpy as np
import pytest

from mskjax import sampling
from mskjax.cli import main
from mskjax.io._fastmri import read_fastmri
from mskjax.io._kspace_set import centre_crop_or_pad, make_kspace_set
from mskjax.io._loader import fastmri_batches
from mskjax.sim import knee_section

SUBJECTS = ["knee", "knee", "multi/P1", "multi/P1", "multi/P2", "multi/P2", "P3", "P3"]


@pytest.fixture
def images_npz(tmp_path):
    base = np.asarray(knee_section((32, 24)))
    images = np.stack([base * (1 + 0.1 * i) for i in range(len(SUBJECTS))]).astype(np.float32)
    path = tmp_path / "images.npz"
    np.savez(path, images=images, subject=np.array(SUBJECTS))
    return path, images


def make(images_path, out, *extra):
    return main(["data", "make-kspace-set", "--images", str(images_path), "--out", str(out),
                 "--coils", "4", "--snr-db", "60", "--recon-size", "40", "40", "--no-progress",
                 *extra])


def test_make_kspace_set_split_by_subject(images_npz, tmp_path, capsys):
    path, images = images_npz
    out = tmp_path / "set"
    assert make(path, out) == 0
    assert "wrote 4 files" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    assert len(val) == 1 and len(train) == 3 and not set(train) & set(val)
    assert sorted(train + val) == sorted(set(SUBJECTS))
    for subject, rel in manifest["files"].items():
        folder = "val" if subject in val else "train"
        assert rel.startswith(folder + "/") and "/" not in rel[len(folder) + 1:]
        index = [i for i, s in enumerate(SUBJECTS) if s == subject]
        with read_fastmri(out / rel) as f:
            assert f.multicoil and f.num_slices == 2
            kspace = np.asarray(f.kspace[:])
            assert kspace.shape == (2, 4, 32, 24) and kspace.dtype == np.complex64
            assert f.attrs["patient_id"] == subject and f.attrs["acquisition"] == "simulated"
            target = np.asarray(f.reconstruction[:])
            assert target.shape == (2, 40, 40) and f.reconstruction_key == "reconstruction_rss"
        # rss of the coil images equals the source magnitude (normalised maps), up to noise at
        # 60 dB, and the target is that image zero-padded to 40 x 40.
        want = centre_crop_or_pad(images[index], (40, 40))
        np.testing.assert_allclose(target, want, atol=5e-3 * images[index].max())


def test_make_kspace_set_no_split_and_determinism(images_npz, tmp_path):
    path, _ = images_npz
    assert make(path, tmp_path / "a", "--split", "none") == 0
    assert make(path, tmp_path / "b", "--split", "none") == 0
    assert make(path, tmp_path / "c", "--split", "none", "--seed", "1") == 0
    names = sorted(p.name for p in (tmp_path / "a").glob("*.h5"))
    assert names == ["P3.h5", "knee.h5", "multi_P1.h5", "multi_P2.h5"]
    with h5py.File(tmp_path / "a" / "P3.h5") as a, h5py.File(tmp_path / "b" / "P3.h5") as b, \
            h5py.File(tmp_path / "c" / "P3.h5") as c:
        np.testing.assert_array_equal(a["kspace"][()], b["kspace"][()])
        assert not np.allclose(a["kspace"][()], c["kspace"][()])
        # Different slices get different noise and phase.
        assert not np.allclose(a["kspace"][0], a["kspace"][1] / 1.1)


def test_make_kspace_set_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.ones((2, 8, 8), np.float32))
    assert make(bad, tmp_path / "out") == 2
    assert "missing key(s) ['subject']" in capsys.readouterr().err
    np.savez(bad, images=np.ones((2, 8, 8), np.float32), subject=np.array(["a"]))
    assert make(bad, tmp_path / "out") == 2
    assert "key 'subject' must be (2,)" in capsys.readouterr().err
    assert make(tmp_path / "none.npz", tmp_path / "out") == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="split must be 'subject' or None"):
        make_kspace_set(bad, tmp_path / "out", split="random")


@pytest.fixture
def kspace_folder(images_npz, tmp_path):
    path, _ = images_npz
    out = tmp_path / "flat"
    make_kspace_set(path, out, num_coils=4, snr_db=40.0, split=None, recon_size=(32, 24),
                    progress=False)
    return out


EQUISPACED = functools.partial(sampling.equispaced_mask, center_fraction=0.125, acceleration=4)


def test_batches_masks_are_deterministic_per_file(kspace_folder):
    batches = list(fastmri_batches(kspace_folder, batch_size=3, mask_func=EQUISPACED))
    assert [b.kspace.shape[0] for b in batches] == [3, 3, 2]
    batch = batches[0]
    assert batch.kspace.shape == (3, 4, 32, 24) and batch.kspace.dtype == np.complex64
    assert batch.mask.shape == (3, 24) and batch.target.shape == (3, 32, 24)
    for b in batches:
        for k, m, name in zip(b.kspace, b.mask, b.extra["fname"]):
            want, _ = sampling.equispaced_mask(k.shape, center_fraction=0.125, acceleration=4,
                                               seed=tuple(map(ord, name)))
            np.testing.assert_array_equal(m, want)
            assert np.all(k[..., ~m] == 0) and not np.any(np.signbit(k[..., ~m].real))
            assert np.all(np.abs(k[..., m]).sum(axis=(0, 1)) > 0)
    # Both slices of a file share the mask; files differ.
    names = sum((b.extra["fname"] for b in batches), [])
    masks = np.concatenate([b.mask for b in batches])
    for name in set(names):
        rows = [m for m, n in zip(masks, names) if n == name]
        np.testing.assert_array_equal(rows[0], rows[1])
    assert len({m.tobytes() for m in masks}) > 1


def test_batches_shuffle_epochs_drop_last_and_device_put(kspace_folder):
    seen = [(n, s) for b in fastmri_batches(kspace_folder, batch_size=2, shuffle=True, seed=3,
                                            epochs=2)
            for n, s in zip(b.extra["fname"], b.extra["slice"])]
    assert len(seen) == 16 and len(set(seen)) == 8
    assert seen[:8] != seen[8:]  # a new order each epoch
    plain = [(n, s) for b in fastmri_batches(kspace_folder, batch_size=2)
             for n, s in zip(b.extra["fname"], b.extra["slice"])]
    assert plain == sorted(plain) and sorted(seen[:8]) == plain
    dropped = list(fastmri_batches(kspace_folder, batch_size=3, drop_last=True))
    assert [b.kspace.shape[0] for b in dropped] == [3, 3]
    import jax
    batch = next(iter(fastmri_batches(kspace_folder, batch_size=2, device_put=True)))
    assert isinstance(batch.kspace, jax.Array)


def test_batches_stop_their_thread_and_raise_worker_errors(kspace_folder):
    before = threading.active_count()
    iterator = fastmri_batches(kspace_folder, batch_size=1, prefetch=1)
    next(iterator)
    iterator.close()
    assert threading.active_count() == before
    # A file that breaks after listing: the error reaches the consumer with the file name.
    victim = sorted(kspace_folder.glob("*.h5"))[-1]
    iterator = fastmri_batches(kspace_folder, batch_size=1, prefetch=1)
    next(iterator)
    victim.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match=victim.name):
        list(iterator)


def test_batches_bad_input(tmp_path, kspace_folder):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        next(fastmri_batches(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .h5 files"):
        next(fastmri_batches(tmp_path / "empty"))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        next(fastmri_batches(kspace_folder, batch_size=0))
