"""``mskjax recon``: a folder of fastMRI files in, fastMRI's reconstruction layout out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")

from mskjax import coils, recon, train  # noqa: E402
from mskjax.cli import main  # noqa: E402
from mskjax.cli._evaluate import classical_methods, evaluate_methods  # noqa: E402
from mskjax.cli._learned import sensitivity_maps  # noqa: E402
from mskjax.cli._recon import low_frequencies_of  # noqa: E402
from mskjax.cli._train_recon import learned_method, load_trained  # noqa: E402
from mskjax.fourier import ifft2c  # noqa: E402
from mskjax.io import make_kspace_set, read_fastmri, write_fastmri  # noqa: E402
from mskjax.sampling import equispaced_mask  # noqa: E402
from mskjax.sim import knee_section  # noqa: E402

fastmri_evaluate = pytest.importorskip("fastmri.evaluate")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kset(tmp_path_factory):
    """Three fully sampled 4-coil files (2, 2 and 3 slices) of square 32 x 32 knee slices."""
    root = tmp_path_factory.mktemp("recon_set")
    base = np.asarray(knee_section((32, 32)))
    rng = np.random.default_rng(0)
    images = np.stack([np.roll(base, s, axis=1) * rng.uniform(0.8, 1.2) for s in range(7)])
    np.savez(root / "images.npz", images=images.astype(np.float32),
             subject=np.array(["a", "a", "b", "b", "c", "c", "c"]))
    make_kspace_set(root / "images.npz", root / "set", num_coils=4, seed=0, split=None,
                    recon_size=(32, 32), progress=False)
    return root / "set"


def _run(*args):
    return main(["recon", *map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def outputs(kset, tmp_path_factory):
    """zero-filled and cg-sense outputs of ``kset``, one device."""
    root = tmp_path_factory.mktemp("recon_out")
    for method in ("zero-filled", "cg-sense"):
        assert _run("--method", method, "--data", kset, "--out", root / method) == 0
    return root


def _read(path):
    with h5py.File(path, "r") as hf:
        assert list(hf.keys()) == ["reconstruction"]
        return hf["reconstruction"][()]


def _undersampled(path):
    """fastMRI's retrospective mask for the file, applied to its k-space."""
    with read_fastmri(path) as f:
        kspace = np.asarray(f.kspace[...])
    mask, num_low = equispaced_mask(kspace.shape[1:], center_fraction=0.08, acceleration=4,
                                    seed=tuple(map(ord, path.name)))
    mask = np.broadcast_to(mask, kspace.shape[1:])[0, 0]
    return np.where(mask, kspace, 0).astype(np.complex64), mask, num_low


def test_fastmri_layout_and_fastmri_metrics_equal_eval_recon(kset, outputs, tmp_path):
    files = sorted(kset.glob("*.h5"))
    for method in ("zero-filled", "cg-sense"):
        written = sorted(p.name for p in (outputs / method).iterdir())
        assert written == [p.name for p in files] + ["recon_summary.json"]
        for path in files:
            image = _read(outputs / method / path.name)
            with read_fastmri(path) as f:
                assert image.shape == (f.num_slices, *f.header.recon_matrix[:2])
            assert image.dtype == np.float32
    # fastMRI's own evaluation loop on the target files and our predictions.
    targets = tmp_path / "targets"
    targets.mkdir()
    for path in files:
        (targets / path.name).symlink_to(path)
    ours = evaluate_methods(files, classical_methods(cg_lamda=0.01, l1_lamda=None),
                            acceleration=4, center_fraction=0.08, progress=False)
    for method, name in (("zero-filled", "zero-filled"), ("cg-sense", "CG-SENSE")):
        args = Namespace(target_path=targets, predictions_path=outputs / method,
                         acquisition=None, acceleration=None)
        means = fastmri_evaluate.evaluate(args, "reconstruction_rss").means()
        assert means["PSNR"] == pytest.approx(ours["overall"][name]["psnr_db"], abs=2e-3)
        assert means["SSIM"] == pytest.approx(ours["overall"][name]["ssim"], abs=2e-4)
        assert means["NMSE"] == pytest.approx(ours["overall"][name]["nmse"], rel=2e-3)
        for path in files:
            with h5py.File(path, "r") as hf:
                target = hf["reconstruction_rss"][()]
            pred = _read(outputs / method / path.name)
            vol = ours["volumes"][path.name][name]
            assert np.asarray(fastmri_evaluate.ssim(target, pred)).item() == pytest.approx(vol["ssim"],
                                                                               abs=2e-4)
            assert float(fastmri_evaluate.psnr(target, pred)) == pytest.approx(vol["psnr_db"],
                                                                               abs=2e-3)
    for path in files:
        zf, cg = ours["volumes"][path.name]["zero-filled"], ours["volumes"][path.name]["CG-SENSE"]
        assert cg["ssim"] > zf["ssim"] and cg["psnr_db"] > zf["psnr_db"]


def test_outputs_equal_the_single_slice_reconstructions(kset, outputs):
    path = sorted(kset.glob("*.h5"))[-1]  # 3 slices
    kspace, mask, num_low = _undersampled(path)
    zero_filled = np.stack([np.asarray(coils.rss(ifft2c(jnp.asarray(k)), axis=0))
                            for k in kspace])
    cg = np.stack([np.abs(np.asarray(recon.cg_sense(
        k, sensitivity_maps(k, num_low), mask=mask, lamda=0.01, max_iter=30).image))
        for k in kspace])
    for method, expected in (("zero-filled", zero_filled), ("cg-sense", cg)):
        got = _read(outputs / method / path.name)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * expected.max())
    assert not np.allclose(zero_filled, cg, atol=1e-2 * cg.max())


def test_one_compilation_per_shape(outputs):
    summary = json.loads((outputs / "cg-sense" / "recon_summary.json").read_text())
    files = summary["files"]
    # a.h5 and b.h5 have 2 slices, c.h5 3: two shapes, two compilations.
    assert [files[n]["compiled"] for n in ("a.h5", "b.h5", "c.h5")] == [True, False, True]
    assert summary["totals"]["files_done"] == 3 and summary["totals"]["slices"] == 7
    assert all(f["sampling"] == "retrospective" for f in files.values())


def test_two_devices_give_the_same_files(kset, outputs, tmp_path):
    out = tmp_path / "two"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-m", "mskjax", "recon", "--method", "cg-sense",
                           "--data", str(kset), "--out", str(out), "--devices", "2",
                           "--no-progress"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "recon_summary.json").read_text())
    assert len(summary["processes"][0]["devices"]) == 2
    for path in sorted(kset.glob("*.h5")):
        one, two = _read(outputs / "cg-sense" / path.name), _read(out / path.name)
        np.testing.assert_allclose(two, one, rtol=0, atol=1e-5 * one.max())


@pytest.mark.slow  # two JAX processes meet over TCP (about 10 s on 2 cores)
def test_two_processes_share_the_files(kset, outputs, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "mp"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    runs = [subprocess.Popen(
        [sys.executable, "-m", "mskjax", "recon", "--method", "cg-sense", "--data", str(kset),
         "--out", str(out), "--no-progress", "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i)], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    texts = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], texts
    assert "process 0 of 2: reconstructed 3 file(s)" in texts[0][0]  # the merged totals
    assert "process 1 of 2: reconstructed 1 file(s)" in texts[1][0]  # b.h5 = files[1::2]
    summary = json.loads((out / "recon_summary.json").read_text())
    assert [sorted(p["files"]) for p in summary["processes"]] == [["a.h5", "c.h5"], ["b.h5"]]
    assert sorted(p.name for p in out.iterdir()) == ["a.h5", "b.h5", "c.h5",
                                                     "recon_summary.json"]
    for path in sorted(kset.glob("*.h5")):
        one, two = _read(outputs / "cg-sense" / path.name), _read(out / path.name)
        np.testing.assert_allclose(two, one, rtol=0, atol=1e-5 * one.max())


def test_rerun_skips_finished_files_and_clears_stale_temporaries(kset, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run("--method", "zero-filled", "--data", kset, "--out", out) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    # An interrupted (killed) run: a.h5 missing, its temporary file left behind.
    (out / "a.h5").unlink()
    stale = out / ".a.0123456789ab.tmp.h5"
    stale.write_bytes(b"partial")
    capsys.readouterr()
    assert _run("--method", "zero-filled", "--data", kset, "--out", out) == 0
    text = capsys.readouterr().out
    assert "skipping 2 file(s)" in text and "reconstructed 1 file(s) (2 skipped)" in text
    assert not stale.exists()
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5") if p.name != "a.h5"} == {
        k: v for k, v in stamps.items() if k != "a.h5"}
    summary = json.loads((out / "recon_summary.json").read_text())
    assert sorted(summary["files"]) == ["a.h5", "b.h5", "c.h5"]  # earlier entries kept
    # --overwrite redoes all; other settings without it are refused.
    assert _run("--method", "zero-filled", "--data", kset, "--out", out, "--overwrite") == 0
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in out.glob("*.h5"))
    assert _run("--method", "zero-filled", "--data", kset, "--out", out,
                "--acceleration", "8") == 2
    assert "other settings" in capsys.readouterr().err


def test_a_set_manifest_decides_the_files(kset, tmp_path, capsys):
    import shutil

    data = tmp_path / "set"
    shutil.copytree(kset, data)
    shutil.copy(data / "a.h5", data / "unlisted.h5")
    out = tmp_path / "out"
    assert _run("--method", "zero-filled", "--data", data, "--out", out) == 0
    assert sorted(p.name for p in out.glob("*.h5")) == ["a.h5", "b.h5", "c.h5"]
    (data / "b.h5").unlink()
    capsys.readouterr()
    assert _run("--method", "zero-filled", "--data", data, "--out", tmp_path / "o2") == 2
    assert "the set is incomplete" in capsys.readouterr().err


def test_no_partial_file_after_an_error(kset, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    out = tmp_path / "out"
    assert _run("--method", "zero-filled", "--data", kset, "--out", out) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mskjax: error:") and "disk full" in err and "\n" not in err
    assert list(out.iterdir()) == []


def test_undersampled_files_are_used_as_they_are(kset, tmp_path):
    source = sorted(kset.glob("*.h5"))[0]
    with read_fastmri(source) as f:
        kspace, header = np.asarray(f.kspace[...]), f.header_xml
    cols = kspace.shape[-1]
    mask = np.zeros(cols, bool)
    mask[::2] = True
    mask[cols // 2 - 3:cols // 2 + 3] = True  # 6 centre lines
    data = tmp_path / "test_set"
    data.mkdir()
    masked = np.where(mask, kspace, 0).astype(np.complex64)
    write_fastmri(data / "with_attr.h5", masked, header=header, mask=mask, acceleration=2,
                  num_low_frequency=6)
    write_fastmri(data / "no_attr.h5", masked, header=header, mask=mask)
    out = tmp_path / "out"
    assert _run("--method", "zero-filled", "--data", data, "--out", out) == 0
    expected = np.stack([np.asarray(coils.rss(ifft2c(jnp.asarray(k)), axis=0)) for k in masked])
    for name in ("with_attr.h5", "no_attr.h5"):
        np.testing.assert_allclose(_read(out / name), expected, rtol=1e-5,
                                   atol=1e-6 * expected.max())
    files = json.loads((out / "recon_summary.json").read_text())["files"]
    assert files["with_attr.h5"]["sampling"] == "file"
    assert files["with_attr.h5"]["num_low_frequencies"] == 6
    assert files["no_attr.h5"]["num_low_frequencies"] == 6  # derived from the mask
    assert _run("--method", "cg-sense", "--data", data, "--out", tmp_path / "cg") == 0


def test_low_frequencies_of_a_mask_follow_fastmri_varnet():
    torch = pytest.importorskip("torch")
    from fastmri.models.varnet import SensitivityModel

    mask = np.zeros(20, bool)
    mask[8:12] = True
    assert low_frequencies_of(mask) == 4
    mask[7] = mask[12] = True  # the block around the centre grows to 7..12
    assert low_frequencies_of(mask) == 6
    assert low_frequencies_of(np.ones(10, bool)) == 10
    rng = np.random.default_rng(3)
    for cols in (17, 32, 33):
        for _ in range(20):
            mask = rng.random(cols) < 0.5
            mask[cols // 2] = True
            mask[rng.integers(cols // 2)] = False  # not all sampled on either side
            mask[cols // 2 + 1 + rng.integers(cols - cols // 2 - 1)] = False
            batch = torch.from_numpy(mask)[None, None, None, :, None]
            _, expected = SensitivityModel.get_pad_and_num_low_freqs(None, batch)
            assert low_frequencies_of(mask) == int(expected[0])


@pytest.mark.slow  # trains a tiny U-Net for 2 steps (about 20 s on 2 cores)
def test_trained_checkpoint_reconstructs(kset, tmp_path):
    run = tmp_path / "unet"
    assert main(["train", "recon", "--model", "unet", "--data", str(kset), "--out", str(run),
                 "--config", "chans=2", "num_pool_layers=1", "--steps", "2",
                 "--checkpoint-every", "2", "--no-progress"]) == 0
    out = tmp_path / "out"
    assert _run("--method", run, "--data", kset, "--out", out) == 0
    summary = json.loads((out / "recon_summary.json").read_text())
    assert summary["method"]["kind"] == "checkpoint" and summary["method"]["model"] == "unet"
    name, net, _ = load_trained(run)
    fn = learned_method(name, net)
    path = sorted(kset.glob("*.h5"))[0]
    kspace, mask, num_low = _undersampled(path)
    expected = np.stack([np.asarray(fn(jnp.asarray(k), jnp.asarray(mask), num_low))
                         for k in kspace])
    got = _read(out / path.name)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def _seg_checkpoint(folder: Path) -> Path:
    import optax

    state = train.init_train_state({"w": jnp.zeros(2)}, optax.adam(1e-3), key=0)
    train.save_checkpoint(folder / "checkpoints", state, step=1,
                          config={"model": {"name": "unet", "kwargs": {}},
                                  "train": {"num_classes": 3}})
    return folder


def test_bad_input_is_one_line(kset, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    single = tmp_path / "single"
    single.mkdir()
    write_fastmri(single / "s.h5", np.ones((1, 8, 8), np.complex64))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["--method", "zero-filled", "--data", tmp_path / "missing", "--out", tmp_path / "o1"],
         "no such folder"),
        (["--method", "zero-filled", "--data", empty, "--out", tmp_path / "o2"],
         "no fastMRI .h5 files"),
        (["--method", "bogus", "--data", kset, "--out", tmp_path / "o3"], "unknown method"),
        (["--method", _seg_checkpoint(tmp_path / "seg"), "--data", kset, "--out",
          tmp_path / "o4"], "not a reconstruction model"),
        (["--method", empty, "--data", kset, "--out", tmp_path / "o5"], "holds no checkpoint"),
        (["--method", "zero-filled", "--data", single, "--out", tmp_path / "o6"],
         "single-coil"),
        (["--method", "zero-filled", "--data", kset, "--out", a_file], "is a file"),
        (["--method", "zero-filled", "--data", kset, "--out", kset], "is the --data folder"),
        (["--method", "zero-filled", "--data", kset, "--out", tmp_path / "o7", "--devices",
          "64"], "--devices 64"),
    ]
    for args, words in cases:
        capsys.readouterr()
        assert _run(*args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mskjax: error: mskjax recon"), err
        assert words in err, (words, err)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))
