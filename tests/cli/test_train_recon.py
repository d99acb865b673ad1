"""``mskjax train recon`` / ``eval recon`` / ``demo --checkpoint`` on a toy k-space set."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("flax")

from mskjax import coils, metrics, train  # noqa: E402
from mskjax.cli import main  # noqa: E402
from mskjax.cli._evaluate import read_fully_sampled  # noqa: E402
from mskjax.cli._learned import build_model, reconstruct  # noqa: E402
from mskjax.cli._train_recon import crop_rows, load_trained, train_recon  # noqa: E402
from mskjax.fourier import ifft2c  # noqa: E402
from mskjax.sim import knee_section  # noqa: E402
from tests.cli.kspace_sets import tiny_kspace_set  # noqa: E402

UNET = ["--config", "chans=2", "num_pool_layers=1"]
E2E = {"num_cascades": 1, "sens_chans": 2, "sens_pools": 1, "chans": 2, "pools": 1}


@pytest.fixture(scope="module")
def kset(tmp_path_factory):
    root = tmp_path_factory.mktemp("kset")
    return tiny_kspace_set(root)


@pytest.fixture(scope="module")
def unet_run(kset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "unet"
    code = main(["train", "recon", "--model", "unet", "--data", str(kset), "--out", str(out),
                 *UNET, "--steps", "3", "--checkpoint-every", "2", "--no-progress"])
    assert code == 0
    return out


def test_train_writes_checkpoints_metrics_and_summary(unet_run):
    records = train.read_metrics(unet_run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and 0 <= r["loss"] <= 2 for r in records)
    assert train.latest_step(unet_run / "checkpoints") == 3
    summary = json.loads((unet_run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["stopped_by"] == "steps"
    assert summary["settings"]["training_slices"] == 3  # 3 training subjects, 1 held out


def test_eval_scores_what_the_methods_reconstruct(unet_run, kset, tmp_path, capsys):
    out = tmp_path / "scores.json"
    code = main(["eval", "recon", "--checkpoint", str(unet_run), "--data", str(kset),
                 "--json", str(out), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "overall (mean)" in text and "CG-SENSE" in text
    result = json.loads(out.read_text())
    (path,) = sorted((kset / "val").glob("*.h5"))
    assert list(result["volumes"]) == [path.name]
    assert set(result["overall"]) == {"unet", "zero-filled", "CG-SENSE"}
    # Recompute by hand: fastMRI's mask for the file, the model, the metrics.
    full = read_fully_sampled(path, "test")
    example = train.fastmri_eval_example(full[0], fname=path.name, acceleration=4,
                                         center_fraction=0.08)
    target = np.asarray(example.target)[None]
    zero_filled = np.asarray(coils.rss(ifft2c(example.kspace), axis=0))[None]
    name, net, _ = load_trained(unet_run)
    learned = np.asarray(reconstruct(name, net, example.kspace, example.mask,
                                     num_low=int(example.extra["num_low_frequencies"])))[None]
    for method, image in (("zero-filled", zero_filled), ("unet", learned)):
        scores = result["volumes"][path.name][method]
        assert scores["psnr_db"] == pytest.approx(float(metrics.psnr(target, image)), abs=1e-3)
        assert scores["ssim"] == pytest.approx(float(metrics.ssim(target, image)), abs=1e-4)
    assert result["overall"]["zero-filled"] == result["volumes"][path.name]["zero-filled"]


def test_demo_adds_the_learned_reconstruction(unet_run, tmp_path):
    image = np.asarray(knee_section((48, 40)))
    np.save(tmp_path / "image.npy", image)
    code = main(["demo", "--data", str(tmp_path / "image.npy"), "--out", str(tmp_path / "demo"),
                 "--checkpoint", str(unet_run), "--coils", "4", "--seg-steps", "0",
                 "--cls-steps", "0", "--no-progress"])
    assert code == 0
    report = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert list(report["metrics"]) == ["zero-filled", "CG-SENSE", "L1-wavelet", "unet"]
    assert np.isfinite(report["metrics"]["unet"]["psnr_db"])
    assert "unet" in report["methods"]


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(kset, tmp_path):
    common = dict(data=kset, model="e2e-varnet", config=E2E, checkpoint_every=2,
                  progress=False, patch_rows=24)
    train_recon(out=tmp_path / "whole", steps=4, **common)
    train_recon(out=tmp_path / "parts", steps=2, **common)
    train_recon(out=tmp_path / "parts", steps=4, **common)
    _, whole, _ = load_trained(tmp_path / "whole")
    _, parts, _ = load_trained(tmp_path / "parts")
    a = jax.tree_util.tree_leaves(train.split_model(whole)[1])
    b = jax.tree_util.tree_leaves(train.split_model(parts)[1])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    losses = [[r["loss"] for r in train.read_metrics(tmp_path / run / "metrics.jsonl")]
              for run in ("whole", "parts")]
    assert losses[0] == losses[1] and len(losses[0]) == 4
    # Training changed the weights.
    initial, _ = build_model("e2e-varnet", E2E, 0, "test")
    fresh = jax.tree_util.tree_leaves(train.split_model(initial)[1])
    assert not all(np.array_equal(x, y) for x, y in zip(a, fresh))


def test_crop_rows_is_a_band_of_the_image():
    rng = np.random.default_rng(1)
    image = rng.standard_normal((2, 16, 8)) + 1j * rng.standard_normal((2, 16, 8))
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=(-2, -1)), norm="ortho"),
                             axes=(-2, -1)).astype(np.complex64)
    band = crop_rows(jax.random.key(3), kspace, 6)
    cropped = np.asarray(ifft2c(band))
    starts = [s for s in range(11) if np.allclose(cropped, image[:, s:s + 6], atol=1e-5)]
    assert len(starts) == 1


def run_cli(*args):
    return main([*args])


def test_bad_input_is_one_line(kset, unet_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["train", "recon", "--model", "unet", "--data", str(empty), "--out",
          str(tmp_path / "o1"), "--no-progress"], "no fastMRI .h5 files"),
        (["train", "recon", "--model", "unet", "--data", str(kset), "--out", str(kset),
          "--no-progress"], "not empty and holds no run"),
        (["train", "recon", "--model", "unet", "--data", str(kset), "--out", str(unet_run),
          *UNET, "--lr", "0.5", "--steps", "4", "--no-progress"], "other settings"),
        (["train", "recon", "--model", "unet", "--data", str(kset), "--out",
          str(tmp_path / "o2"), "--config", "colours=3", "--no-progress"],
         "bad configuration"),
        (["train", "recon", "--model", "unet", "--data", str(kset), "--out",
          str(tmp_path / "o3"), "--patch-rows", "400", "--no-progress"], "patch_rows"),
        (["eval", "recon", "--checkpoint", str(empty), "--data", str(kset), "--no-progress"],
         "holds no checkpoint"),
        (["eval", "recon", "--checkpoint", str(unet_run), "--data", str(empty),
          "--no-progress"], "no fastMRI .h5 files"),
    ]
    for argv, message in cases:
        assert run_cli(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert not (tmp_path / "o1" / "checkpoints").exists()


def test_checkpoint_of_another_model_is_refused(tmp_path, kset, capsys):
    import optax
    from flax import nnx

    class Other(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(jax.numpy.ones(3))

    _, params, _ = train.split_model(Other(nnx.Rngs(0)))
    state = train.init_train_state(params, optax.adam(1e-3), key=0)
    train.save_checkpoint(tmp_path / "ckpt", state,
                          config={"model": {"name": "classifier", "kwargs": {}}})
    assert run_cli("eval", "recon", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(kset),
                   "--no-progress") == 2
    assert "not a reconstruction model" in capsys.readouterr().err


def test_undersampled_files_are_refused(tmp_path, kset, capsys):
    from mskjax.io import read_fastmri, write_fastmri

    (path,) = sorted((kset / "val").glob("*.h5"))
    with read_fastmri(path) as f:
        kspace = np.asarray(f.kspace[...])
    folder = tmp_path / "test"
    folder.mkdir()
    write_fastmri(folder / "x.h5", kspace, mask=np.ones(kspace.shape[-1], bool))
    assert run_cli("train", "recon", "--model", "unet", "--data", str(folder), "--out",
                   str(tmp_path / "o"), "--no-progress") == 2
    assert "undersampled" in capsys.readouterr().err
