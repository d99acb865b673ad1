"""``mskjax train recon --model gancs`` / ``eval recon`` on a toy k-space set: the GAN run,
its checkpoint (GANState + the discriminator's generator), evaluation, the pixel-only run,
resuming, a discriminator of another generator, bad options."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("flax")

from mskjax import metrics, train  # noqa: E402
from mskjax.cli import main  # noqa: E402
from mskjax.cli._evaluate import read_fully_sampled  # noqa: E402
from mskjax.cli._train_recon import load_trained, train_recon  # noqa: E402
from mskjax.cli._learned import reconstruct  # noqa: E402
from mskjax.sim import knee_section  # noqa: E402
from tests.cli.kspace_sets import tiny_kspace_set  # noqa: E402

GEN = ["--config", "num_blocks=1", "features=4", "cg_iterations=3"]
DISC = ["--discriminator-config", "chans=2", "num_layers=1"]


@pytest.fixture(scope="module")
def kset(tmp_path_factory):
    root = tmp_path_factory.mktemp("kset")
    return tiny_kspace_set(root)


def _train(kset, out, *extra, steps=3):
    return main(["train", "recon", "--model", "gancs", "--data", str(kset), "--out", str(out),
                 *GEN, *DISC, "--steps", str(steps), "--checkpoint-every", "2", "--no-progress",
                 "--acceleration", "5", "--center-fraction", "0.12", *extra])


@pytest.fixture(scope="module")
def gan_run(kset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gancs"
    assert _train(kset, out, "--adversarial-weight", "0.1", "--discriminator-steps", "2") == 0
    return out


def test_gan_run_writes_a_gan_checkpoint(gan_run):
    records = train.read_metrics(gan_run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert np.isfinite(r["discriminator_loss"]) and r["adversarial"] > 0
        assert r["loss"] == pytest.approx(r["pixel"] + 0.1 * r["adversarial"], rel=1e-4)
    config = train.read_checkpoint_config(gan_run / "checkpoints")
    assert config["model"]["name"] == "gancs"
    assert config["discriminator"]["generator"] == config["model"]
    assert config["discriminator"]["kwargs"] == {"chans": 2, "num_layers": 1}
    assert config["train"]["gan"]["discriminator_steps"] == 2
    state, _ = train.restore_checkpoint(gan_run / "checkpoints")
    assert isinstance(state, train.GANState) and int(state.step) == 3


@pytest.mark.slow
def test_eval_scores_the_generator(gan_run, kset, tmp_path, capsys):
    out = tmp_path / "scores.json"
    code = main(["eval", "recon", "--checkpoint", str(gan_run), "--data", str(kset),
                 "--acceleration", "5", "--center-fraction", "0.12", "--json", str(out),
                 "--no-progress"])
    assert code == 0
    assert "gancs" in capsys.readouterr().out
    result = json.loads(out.read_text())
    (path,) = sorted((kset / "val").glob("*.h5"))
    full = read_fully_sampled(path, "test")
    example = train.fastmri_eval_example(full[0], fname=path.name, acceleration=5,
                                         center_fraction=0.12)
    name, net, _ = load_trained(gan_run)
    assert name == "gancs"
    image = np.asarray(jax.jit(lambda k, m: reconstruct(name, net, k, m, num_low=4))(
        example.kspace, example.mask))[None]
    target = np.asarray(example.target)[None]
    assert result["volumes"][path.name]["gancs"]["psnr_db"] == pytest.approx(
        float(metrics.psnr(target, image)), abs=1e-2)


@pytest.mark.slow
def test_pixel_only_run_differs_and_resume(kset, tmp_path):
    out = tmp_path / "pixel"
    summary = train_recon(data=kset, out=out, model="gancs",
                          config={"num_blocks": 1, "features": 4, "cg_iterations": 3},
                          discriminator_config={"chans": 2, "num_layers": 1},
                          adversarial_weight=0.0, acceleration=5, center_fraction=0.12,
                          steps=2, checkpoint_every=2, progress=False)
    assert summary["settings"]["gan"]["adversarial_weight"] == 0.0
    for r in train.read_metrics(out / "metrics.jsonl"):
        assert r["loss"] == pytest.approx(r["pixel"], rel=1e-6)
    # Resume to step 3 with the same settings; other settings are refused.
    assert _train(kset, out, "--adversarial-weight", "0", steps=3) == 0
    assert [r["step"] for r in train.read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    with pytest.raises(ValueError, match="holds a run with other settings.*gan"):
        train_recon(data=kset, out=out, model="gancs",
                    config={"num_blocks": 1, "features": 4, "cg_iterations": 3},
                    discriminator_config={"chans": 2, "num_layers": 1},
                    adversarial_weight=0.5, acceleration=5, center_fraction=0.12, steps=4,
                    progress=False)


@pytest.mark.slow
def test_init_from_another_generator_is_refused(gan_run, kset, tmp_path, capsys):
    out = tmp_path / "other"
    code = main(["train", "recon", "--model", "gancs", "--data", str(kset), "--out", str(out),
                 "--config", "num_blocks=1", "features=6", "cg_iterations=3", *DISC,
                 "--steps", "1", "--init", str(gan_run), "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err
    assert "discriminator" in err and "another generator" in err and "features" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing left behind
    # The same generator with other CG iterations (same shapes) is refused too.
    code = main(["train", "recon", "--model", "gancs", "--data", str(kset), "--out", str(out),
                 "--config", "num_blocks=1", "features=4", "cg_iterations=5", *DISC,
                 "--steps", "1", "--init", str(gan_run), "--no-progress"])
    assert code != 0 and "cg_iterations" in capsys.readouterr().err
    # The same generator starts from the run's weights.
    code = _train(kset, tmp_path / "fine", "--init", str(gan_run), steps=1)
    assert code == 0


@pytest.mark.parametrize("extra, match", [
    (["--discriminator-steps", "0"], "discriminator_steps must be a positive integer"),
    (["--adversarial-weight", "-1"], "adversarial_weight must be a finite number >= 0"),
    (["--discriminator-config", "chans=0"], "chans must be an integer >= 1"),
])
def test_bad_gan_options(kset, tmp_path, capsys, extra, match):
    code = main(["train", "recon", "--model", "gancs", "--data", str(kset), "--out",
                 str(tmp_path / "bad"), *GEN, "--steps", "1", "--no-progress", *extra])
    assert code == 2
    assert match in capsys.readouterr().err


def test_gan_options_refused_for_other_models(kset, tmp_path, capsys):
    code = main(["train", "recon", "--model", "unet", "--data", str(kset), "--out",
                 str(tmp_path / "unet"), "--adversarial-weight", "0.1", "--steps", "1",
                 "--no-progress"])
    assert code == 2
    assert "adversarial_weight apply to --model gancs only" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_shows_a_gancs_run(gan_run, tmp_path):
    image = np.asarray(knee_section((48, 40)))
    np.save(tmp_path / "image.npy", image)
    out = tmp_path / "demo"
    assert main(["demo", "--data", str(tmp_path / "image.npy"), "--out", str(out),
                 "--checkpoint", str(gan_run), "--acceleration", "5", "--center-fraction",
                 "0.12", "--seg-steps", "0", "--cls-steps", "0", "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert "gancs" in report["metrics"] and "gancs" in report["methods"]
    scores = report["metrics"]["gancs"]
    assert np.isfinite(scores["psnr_db"]) and 0 < scores["ssim"] <= 1
    assert (out / "figure.png").stat().st_size > 1000
